// An esbuild plugin for the Lambda bundles: a package the code loads with a synchronous `require()` on first
// use goes to a CommonJS file of its own beside the entry file (`<outdir>/<package>.cjs`) instead of into it.
//
// Why: V8 parses the whole entry file at import, functions it never calls included, so a large package that a
// cold start does not need still costs its parse time. An esbuild split chunk is loaded with `import()`,
// which would make the caller asynchronous; a file beside the bundle keeps the call synchronous. The
// bundle's `require` (the createRequire banner of scripts/build.mjs) resolves it relative to the entry file,
// and the Lambda asset is that whole directory, so the file ships with it.
//
// Only `require('<package>')` calls move; `import` statements of the same package are bundled as usual.
// The file is added to the build's metafile, so the build's clean-up keeps it.
import path from 'node:path';
import { build } from 'esbuild';

/** @param {string[]} packages the packages to move, each required by name (e.g. `re2js`) */
export function ownFileForRequired(packages) {
  const names = new Set(packages);
  return {
    name: 'own-file-for-required',
    setup(pluginBuild) {
      const { outdir, minify, target } = pluginBuild.initialOptions;
      if (!outdir) throw new Error('own-file-for-required needs outdir');
      /** Each package required, with the directory it is resolved from (the first requiring file's). */
      const used = new Map();
      pluginBuild.onStart(() => used.clear());
      pluginBuild.onResolve({ filter: /^[@a-z0-9][\w./@-]*$/ }, (args) => {
        if (args.kind !== 'require-call' || !names.has(args.path)) return undefined;
        if (!used.has(args.path)) used.set(args.path, args.resolveDir);
        return { path: `./${fileName(args.path)}`, external: true };
      });
      pluginBuild.onEnd(async (result) => {
        if (result.errors.length > 0) return;
        for (const [name, resolveDir] of used) {
          const outfile = path.join(outdir, fileName(name));
          const own = await build({
            stdin: { contents: `module.exports = require(${JSON.stringify(name)});`, resolveDir },
            bundle: true,
            platform: 'node',
            format: 'cjs',
            target,
            minify,
            outfile,
            metafile: true,
            logLevel: 'warning',
          });
          if (result.metafile) Object.assign(result.metafile.outputs, own.metafile.outputs);
        }
      });
    },
  };
}

function fileName(name) {
  return `${name.replace(/^@/, '').replaceAll('/', '-')}.cjs`;
}
