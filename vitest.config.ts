import { defineConfig } from 'vitest/config';

// One runner for the whole workspace. Suites that need PostgreSQL find it through
// SLUICE_TEST_DATABASE_URL (default: the machine's postgres://postgres@127.0.0.1:5432/test).
export default defineConfig({
  test: {
    include: ['packages/*/test/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
