import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Integration tests start real database servers; running files one by one keeps a 2-core machine steady.
    fileParallelism: process.env.CI !== 'true',
  },
});
