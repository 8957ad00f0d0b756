import { defineConfig } from 'vitest/config';

// `npm run fuzz` (test/fuzz/run.mjs): the properties of test/fuzz/*.properties.ts for as long as
// FUZZ_SECONDS allows, split between the files. Not part of `npm test`, whose include
// (test/**/*.test.ts) does not match *.fuzz.ts; the bounded runs live in test/unit and
// test/integration.
const seconds = Number(process.env.FUZZ_SECONDS ?? 60);

export default defineConfig({
  test: {
    include: ['test/fuzz/**/*.fuzz.ts'],
    testTimeout: (seconds + 120) * 1000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});
