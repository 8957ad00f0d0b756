import { resolve } from 'node:path';
import { defineConfig } from 'vitest/config';

// The benchmark only: `npx vitest run --config bench/vitest.config.ts` (or `npm run bench`).
// vitest is just the TypeScript runner here; globalSetup builds dist/ (the gateway runs from it
// as a separate process) unless BENCH_SKIP_BUILD=1.
export default defineConfig({
  root: resolve(import.meta.dirname, '..'),
  test: {
    include: ['bench/**/*.bench.ts'],
    globalSetup: ['bench/global-setup.ts'],
    testTimeout: 3_600_000,
    hookTimeout: 120_000,
    pool: 'forks',
    fileParallelism: false,
  },
});
