import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Two cores: test files share one Postgres; two at a time keeps it busy without starving it.
    maxWorkers: 2,
    pool: 'forks',
    reporters: ['default'],
  },
});
