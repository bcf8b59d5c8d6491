// An esbuild plugin for bundles whose start-up memory counts (the proxy sidecar): Node's built-in modules are
// taken with process.getBuiltinModule() instead of `import … from 'node:x'`.
//
// Why: an ES import of a built-in builds a module namespace from every export of it, which runs the lazy
// getters Node keeps for what few programs use: `import { X509Certificate } from 'node:crypto'` loads Web
// Crypto (crypto.webcrypto, crypto.subtle), `import { readFileSync } from 'node:fs'` loads fs.promises and
// with it the readline interface and web streams. For the proxy that is about 1 MB of RSS for nothing.
// getBuiltinModule() hands back the CommonJS exports object, whose getters stay unread; the module here
// re-exports its plain value properties (accessor properties such as fs.promises are not exported, so code
// that needs one fails to build instead of loading it eagerly: import 'node:fs/promises' instead).
// Node before 20.16 has no getBuiltinModule; there the module falls back to the ordinary import.
import { builtinModules, createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
const NAMESPACE = 'builtin-exports';
const builtins = new Set(builtinModules.filter((m) => !m.startsWith('_')));

/** The exports of a built-in module: its plain value properties and its getters (read only when used). */
function exportsOf(id) {
  const descriptors = Object.getOwnPropertyDescriptors(require(id));
  const names = Object.keys(descriptors).filter((k) => k !== 'default' && /^[A-Za-z_$][\w$]*$/.test(k));
  return {
    values: names.filter((k) => 'value' in descriptors[k]),
    getters: names.filter((k) => !('value' in descriptors[k])),
  };
}

export const builtinsWithoutNamespaces = {
  name: 'builtins-without-namespaces',
  setup(build) {
    build.onResolve({ filter: /^(node:)?[a-z_][a-z0-9_/]*$/ }, (args) => {
      const id = args.path.replace(/^node:/, '');
      if (!builtins.has(id)) return undefined;
      // Packages keep their ordinary imports: in the proxy they are the AWS SDK, loaded only with --secret-id,
      // and a getter one of them uses (crypto.getRandomValues) would otherwise be read at every start.
      if (args.importer.includes(`${path.sep}node_modules${path.sep}`)) return undefined;
      // The fallback import inside the generated module is the real built-in.
      if (args.namespace === NAMESPACE) return { path: `node:${id}`, external: true };
      return { path: `node:${id}`, namespace: NAMESPACE, sideEffects: false };
    });
    // `builtin-exports:node:x` (what the code imports), `…#object` (the exports object) and `…#getter:name`
    // (one getter, in a module of its own so that it is read only in the chunk whose code uses it).
    build.onResolve({ filter: /#/, namespace: NAMESPACE }, (args) => ({
      path: args.path,
      namespace: NAMESPACE,
      sideEffects: false,
    }));
    build.onLoad({ filter: /.*/, namespace: NAMESPACE }, (args) => {
      const [id, part] = args.path.split('#');
      const quoted = JSON.stringify(id);
      let lines;
      if (part === 'object')
        lines = [
          `const m = process.getBuiltinModule ? process.getBuiltinModule(${quoted}) : (await import(${quoted})).default;`,
          'export default m;',
        ];
      else if (part?.startsWith('getter:'))
        lines = [`import m from '${id}#object';`, `export default m.${part.slice('getter:'.length)};`];
      else {
        const { values, getters } = exportsOf(id);
        lines = [
          `import m from '${id}#object';`,
          'export default m;',
          ...values.map((name, i) => `const e${i} = m.${name};`),
          `export { ${values.map((name, i) => `e${i} as ${name}`).join(', ')} };`,
          ...getters.map((name) => `export { default as ${name} } from '${id}#getter:${name}';`),
        ];
      }
      return { contents: lines.join('\n'), loader: 'js' };
    });
  },
};
