import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Tests start brokers and child processes on free ports; files run in parallel workers.
    pool: 'forks',
    reporters: ['default'],
  },
});
