// Builds every artifact with esbuild and prints their sizes:
//   dist/broker.mjs                      the `broker` CLI (dependencies stay external: installed beside it)
//   dist/functions/authority/index.mjs   the authority Lambda   (everything bundled, minified)
//   dist/functions/authority-rotate/     the CA rotation action (an operator-only Lambda)
//   dist/functions/authority-sign/       the database server certificate action (operator-only)
//   dist/functions/bot/index.mjs         the bot Lambda
//   dist/proxy-container/proxy.mjs       the proxy sidecar container's entry point
//   dist/proxy-loop.mjs, dist/proxy-container/proxy-loop.mjs   a `broker proxy db --workers` event loop
//   dist/client/index.mjs                the client module for Lambda workloads (`db-credential-broker/client`)
//   dist/cdk/index.mjs                   the CDK constructs as a library (`db-credential-broker/cdk`)
// `--target NAME` builds one of: cli, client, functions, proxy-container, cdk; `--target types` (not part of
// the default build; `npm pack` runs it) writes the type declarations of both packages' exports to dist/types.
// Source maps (`<bundle>.map` beside each bundle) only with BROKER_SOURCEMAP=1: loading one with
// --enable-source-maps adds about 40% to a Lambda cold start, so a stale map is removed otherwise.
import { execFileSync } from 'node:child_process';
import { readdirSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { build } from 'esbuild';
import { builtinsWithoutNamespaces } from './builtins-plugin.mjs';
import { ownFileForRequired } from './own-file-plugin.mjs';

const only = process.argv.includes('--target')
  ? process.argv[process.argv.indexOf('--target') + 1]
  : undefined;
const quiet = process.argv.includes('--quiet');
const sourcemap = process.env.BROKER_SOURCEMAP === '1';

// ESM bundles that inline CommonJS packages need `require` and `__dirname`.
const cjsShim = [
  "import { createRequire as __brokerCreateRequire } from 'node:module';",
  "import { fileURLToPath as __brokerFileURLToPath } from 'node:url';",
  "import { dirname as __brokerDirname } from 'node:path';",
  'const require = __brokerCreateRequire(import.meta.url);',
  'const __filename = __brokerFileURLToPath(import.meta.url);',
  'const __dirname = __brokerDirname(__filename);',
].join('\n');

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  sourcemap,
  logLevel: 'warning',
};

const targets = {
  cli: [
    {
      ...common,
      // proxy-loop: a worker event loop of `broker proxy db --workers N`, found beside broker.mjs.
      entryPoints: { broker: 'src/cli/bin.ts', 'proxy-loop': 'src/proxy/loop-worker.ts' },
      outdir: 'dist',
      outExtension: { '.js': '.mjs' },
      packages: 'external',
      banner: { js: '#!/usr/bin/env node' },
    },
  ],
  client: [
    {
      ...common,
      entryPoints: { index: 'src/client/index.ts' },
      outdir: 'dist/client',
      outExtension: { '.js': '.mjs' },
      packages: 'external',
    },
  ],
  // The constructs with the broker code they use; aws-cdk-lib, constructs and every other package stay
  // external (the consumer's own copies, so `instanceof` and construct trees work across the boundary).
  cdk: [
    {
      ...common,
      entryPoints: { index: 'cdk/index.ts' },
      outdir: 'dist/cdk',
      outExtension: { '.js': '.mjs' },
      packages: 'external',
    },
  ],
  functions: ['authority', 'authority-rotate', 'authority-sign', 'bot'].map((fn) => ({
    ...common,
    entryPoints: { index: `functions/${fn}.ts` },
    outdir: `dist/functions/${fn}`,
    outExtension: { '.js': '.mjs' },
    minify: true,
    metafile: true,
    banner: { js: cjsShim },
    // What a cold start does not load (the YAML library, for configuration that is not the stack's JSON)
    // goes to a chunk of its own: code in the entry file is parsed at import even when it never runs.
    splitting: true,
    chunkNames: 'chunks/[name]-[hash]',
    // re2js (the authority's regular expression engine, required synchronously on a role's first `^…$`
    // pattern) goes to re2js.cjs beside index.mjs, for the same reason (own-file-plugin.mjs).
    plugins: [ownFileForRequired(['re2js'])],
    clean: true,
  })),
  // The AWS SDK (needed only with a Secrets Manager bundle) goes to a chunk of its own, loaded on first use:
  // a proxy reading a directory output never parses it.
  'proxy-container': [
    // A worker event loop of `--workers N` (BROKER_PROXY_WORKERS), found beside proxy.mjs. A build of its
    // own: in the split build below, the code both entries share would move to chunks, and an idle sidecar
    // with one loop would load more modules.
    {
      ...common,
      entryPoints: { 'proxy-loop': 'src/proxy/loop-worker.ts' },
      outdir: 'dist/proxy-container',
      outExtension: { '.js': '.mjs' },
      minify: true,
      plugins: [builtinsWithoutNamespaces],
    },
    {
      ...common,
      entryPoints: { proxy: 'proxy-container/main.ts' },
      outdir: 'dist/proxy-container',
      outExtension: { '.js': '.mjs' },
      splitting: true,
      chunkNames: 'chunks/[name]-[hash]',
      // The SDK's ES build: a split chunk of its CommonJS build exports only `default`, so the dynamic
      // import would see no SecretsManagerClient.
      mainFields: ['module', 'main'],
      minify: true,
      // No CommonJS shim (nothing in this bundle calls require; the shim loads node:module at start) and the
      // built-ins without ES namespaces (builtins-plugin.mjs): each is start-up memory an idle sidecar keeps.
      plugins: [builtinsWithoutNamespaces],
      clean: true,
    },
  ],
};

if (only === 'types') {
  // Declarations only, from tsconfig.lib.json (cdk/index.ts and src/client/index.ts and what they import).
  rmSync('dist/types', { recursive: true, force: true });
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  execFileSync(process.execPath, [tsc, '-p', 'tsconfig.lib.json'], { stdio: 'inherit' });
  if (!quiet) console.log('dist/types/                               declarations');
  process.exit(0);
}

const sizes = [];
/** Removes the files under `dir` that are not in `keep` (absolute paths), and directories left empty. */
function removeStale(dir, keep) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const file = path.resolve(dir, entry.name);
    if (entry.isDirectory()) {
      removeStale(file, keep);
      if (readdirSync(file).length === 0) rmSync(file, { recursive: true, force: true });
    } else if (!keep.has(file)) rmSync(file, { force: true });
  }
}

for (const [name, configs] of Object.entries(targets)) {
  if (only && only !== name) continue;
  // What this target's builds wrote: a clean build keeps the files of the builds before it in its directory.
  const written = new Set();
  for (const config of configs) {
    const { clean, ...options } = config;
    const result = await build({ ...options, metafile: true });
    for (const f of Object.keys(result.metafile.outputs)) written.add(path.resolve(f));
    // A split build leaves chunks named by hash: old ones go afterwards, so the directory holds one build
    // and the entry files are never missing while it runs (tests read them while others rebuild).
    if (clean) removeStale(config.outdir, written);
    const out = `${config.outdir}/${Object.keys(config.entryPoints)[0]}.mjs`;
    if (!sourcemap) rmSync(`${out}.map`, { force: true });
    sizes.push([out, statSync(out).size]);
  }
}
if (!quiet)
  for (const [file, size] of sizes)
    console.log(`${file.padEnd(40)} ${(size / 1024).toFixed(0).padStart(6)} KiB`);
