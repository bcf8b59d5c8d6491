import type { Plugin } from 'esbuild';

/** See own-file-plugin.mjs: each package required by name goes to `<outdir>/<package>.cjs` beside the entry. */
export function ownFileForRequired(packages: string[]): Plugin;
