import { defineConfig } from 'vitest/config';

// Unit tests are pure logic; integration tests start the real gateway (built into dist/ by
// `npm test`) on loopback. Files run in parallel on the two cores; each test uses port 0.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});
