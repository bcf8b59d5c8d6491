// Builds the `broker` CLI into one ESM bundle. Dependencies stay external for the CLI (they are installed
// next to it); Lambda and container bundles inline everything.
import { build } from 'esbuild';

await build({
  entryPoints: { broker: 'src/cli/main.ts' },
  outdir: 'dist',
  outExtension: { '.js': '.mjs' },
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  sourcemap: true,
  packages: 'external',
  banner: { js: '#!/usr/bin/env node' },
  logLevel: 'warning',
});
