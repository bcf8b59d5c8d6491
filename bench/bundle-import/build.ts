/** Bundles the reference modules the way scripts/build.mjs bundles the Lambda functions. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { type BuildOptions, build, type Metafile } from 'esbuild';
import { ownFileForRequired } from '../../scripts/own-file-plugin.mjs';

/**
 * The banner scripts/build.mjs puts on each function bundle (ESM bundles that inline CommonJS packages
 * need `require` and `__dirname`). Kept identical by `checkBanner`, which fails when the two drift.
 */
export const CJS_SHIM = [
  "import { createRequire as __brokerCreateRequire } from 'node:module';",
  "import { fileURLToPath as __brokerFileURLToPath } from 'node:url';",
  "import { dirname as __brokerDirname } from 'node:path';",
  'const require = __brokerCreateRequire(import.meta.url);',
  'const __filename = __brokerFileURLToPath(import.meta.url);',
  'const __dirname = __brokerDirname(__filename);',
].join('\n');

/** The function target's options in scripts/build.mjs: everything bundled, minified, ESM, node20, split. */
export function functionBuildOptions(entry: string, outfile: string): BuildOptions {
  return {
    // An entry file and its lazily imported chunks (chunks/ beside it), as the function bundles are split.
    entryPoints: { [path.basename(outfile, '.mjs')]: entry },
    outdir: path.dirname(outfile),
    outExtension: { '.js': '.mjs' },
    splitting: true,
    chunkNames: 'chunks/[name]-[hash]',
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    // As scripts/build.mjs builds by default (maps are opt-in there), so sizes match dist/ byte for byte.
    sourcemap: false,
    minify: true,
    metafile: true,
    banner: { js: CJS_SHIM },
    // As scripts/build.mjs: a package required on first use goes to its own file beside the entry.
    plugins: [ownFileForRequired(['re2js'])],
    logLevel: 'warning',
  };
}

/** Throws when a built Lambda bundle does not start with CJS_SHIM (scripts/build.mjs changed its banner). */
export function checkBanner(bundleFile: string): void {
  const head = readFileSync(bundleFile, 'utf8').slice(0, CJS_SHIM.length + 200);
  if (!head.startsWith(CJS_SHIM))
    throw new Error(
      `${bundleFile} does not start with the banner bench/bundle-import/build.ts uses; scripts/build.mjs changed it, so update CJS_SHIM to match`,
    );
}

export async function bundle(entry: string, outfile: string): Promise<Metafile> {
  const result = await build(functionBuildOptions(entry, outfile));
  if (!result.metafile) throw new Error(`esbuild returned no metafile for ${entry}`);
  return result.metafile;
}

/**
 * Output bytes that importing a bundle loads (its entry file and the chunks that imports statically, not
 * the chunks loaded on first use) by where they came from: an npm package, or the project's own source.
 */
export function bytesByOrigin(metafile: Metafile): Map<string, number> {
  const loaded = new Set<string>();
  // A chunk loaded with import() has an entryPoint too (the module imported): only the entry files count.
  const dynamic = new Set(
    Object.values(metafile.outputs).flatMap((o) =>
      o.imports.filter((i) => i.kind === 'dynamic-import').map((i) => i.path),
    ),
  );
  const pending = Object.keys(metafile.outputs).filter(
    (file) => metafile.outputs[file]?.entryPoint && !dynamic.has(file),
  );
  for (let file = pending.pop(); file !== undefined; file = pending.pop()) {
    if (loaded.has(file)) continue;
    loaded.add(file);
    for (const i of metafile.outputs[file]?.imports ?? [])
      if (i.kind === 'import-statement' && !i.external) pending.push(i.path);
  }
  const totals = new Map<string, number>();
  for (const file of loaded)
    for (const [input, info] of Object.entries(metafile.outputs[file]?.inputs ?? {})) {
      const parts = input.split(/[\\/]/);
      const at = parts.lastIndexOf('node_modules');
      let origin: string;
      if (at >= 0) {
        const first = parts[at + 1] ?? '?';
        origin = first.startsWith('@') ? `${first}/${parts[at + 2] ?? '?'}` : first;
      } else
        origin = `project ${parts[0] === 'src' || parts[0] === 'functions' ? `${parts[0]}/` : path.dirname(input)}`;
      totals.set(origin, (totals.get(origin) ?? 0) + info.bytesInOutput);
    }
  return totals;
}
