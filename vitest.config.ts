import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// Integration tests start real database servers; in CI their files run one by one to keep a 2-core machine
// steady. Unit tests open no socket and start no process (test/support/unit-guard.ts), so they always run
// in parallel, one file per core (vitest's default leaves a core idle: on 2 cores, one file at a time).
const ci = process.env.CI === 'true';
const cores = availableParallelism();

export default defineConfig({
  // The package's own exports, as examples/aws/app.ts imports them, resolve to the sources here (tsconfig.json
  // maps them the same way for tsc and tsx); an installed package resolves them to dist/.
  resolve: {
    alias: {
      'db-credential-broker/cdk': fileURLToPath(new URL('./cdk/index.ts', import.meta.url)),
      'db-credential-broker/client': fileURLToPath(new URL('./src/client/index.ts', import.meta.url)),
    },
  },
  test: {
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Test key pairs made once per run (RSA generation is slow), for every project.
    globalSetup: ['test/support/key-pool.ts'],
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts', 'test/contracts/**/*.test.ts'],
          setupFiles: ['test/support/unit-guard.ts'],
          maxWorkers: cores,
        },
      },
      {
        extends: true,
        // Runs beside the unit project (same group), so it takes the same worker count.
        test: { name: 'cdk', include: ['test/cdk/**/*.test.ts'], maxWorkers: cores },
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
