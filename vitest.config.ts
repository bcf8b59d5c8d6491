import { defineConfig } from 'vitest/config';

// Integration tests start real database servers; in CI their files run one by one to keep a 2-core machine
// steady. Unit tests open no socket and start no process (test/support/unit-guard.ts), so they always run
// in parallel.
const ci = process.env.CI === 'true';

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 60_000,
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts', 'test/contracts/**/*.test.ts'],
          setupFiles: ['test/support/unit-guard.ts'],
        },
      },
      {
        extends: true,
        test: { name: 'cdk', include: ['test/cdk/**/*.test.ts'] },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          fileParallelism: !ci,
          // After unit and cdk: projects that differ in parallelism run in separate groups.
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
