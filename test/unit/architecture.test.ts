/**
 * The shape of the code, checked so it stays true (DESIGN.md §7): dependencies point one way, there are no
 * import cycles, no file under src/ grows past 400 lines and no function takes more than four positional
 * parameters. Reads the sources only; nothing is executed.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * Which modules each module under src/ may import. `base` is the files directly under src/ and src/config/
 * (errors, clock, durations, logging, YAML reading). A module not listed here fails the test until it is
 * given a place.
 */
const ALLOWED: Record<string, readonly string[]> = {
  base: [],
  credentials: ['base'],
  pki: ['base', 'credentials'],
  state: ['base'],
  aws: ['base'],
  devdb: ['base'],
  destinations: ['base', 'credentials', 'state', 'aws'],
  authority: ['base', 'credentials', 'pki', 'state'],
  api: ['base', 'credentials', 'pki', 'state', 'authority'],
  bot: ['base', 'credentials', 'pki', 'state', 'aws', 'destinations', 'api'],
  proxy: ['base', 'credentials', 'aws', 'destinations'],
  client: ['base', 'credentials', 'aws'],
  cli: [
    'base',
    'credentials',
    'pki',
    'state',
    'aws',
    'devdb',
    'destinations',
    'authority',
    'api',
    'bot',
    'proxy',
  ],
};

/** Entry points on top of src/: they may import any module of src/, and src/ never imports them. */
const TOP = ['functions', 'cdk', 'proxy-container'];

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
    const rel = `${dir}/${entry.name}`;
    if (entry.isDirectory()) out.push(...walk(rel));
    else if (/\.(ts|mts)$/.test(entry.name) && !entry.name.endsWith('.d.ts')) out.push(rel);
  }
  return out;
}

/** The module of a file: `base`, a directory directly under src/, or a top-level entry directory. */
function moduleOf(file: string): string {
  const parts = file.split('/');
  if (parts[0] !== 'src') return parts[0] as string;
  if (parts.length === 2 || parts[1] === 'config') return 'base';
  return parts[1] as string;
}

const IMPORT =
  /(?:^|\n)\s*(?:import|export)\b[^'";]*?from\s*['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)/g;

/** Relative imports of a file, resolved to repository paths (`.js` spelled imports map to `.ts` sources). */
function importsOf(file: string): string[] {
  const text = readFileSync(path.join(ROOT, file), 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(IMPORT)) {
    const spec = m[1] ?? m[2];
    if (!spec?.startsWith('.')) continue;
    const resolved = path.relative(ROOT, path.resolve(ROOT, path.dirname(file), spec));
    out.push(resolved.replace(/\.js$/, '.ts').replace(/\.mjs$/, '.mts'));
  }
  return out;
}

/** Imports that go against ALLOWED, as `from -> to (why)` lines. */
function findViolations(graph: ReadonlyMap<string, readonly string[]>): string[] {
  const violations: string[] = [];
  for (const [file, imports] of graph) {
    const from = moduleOf(file);
    for (const target of imports) {
      if (!target.startsWith('src/')) {
        if (file.startsWith('src/')) violations.push(`${file} -> ${target} (src/ imports outside src/)`);
        continue;
      }
      const to = moduleOf(target);
      if (to === from || TOP.includes(from)) continue;
      if (!ALLOWED[from]?.includes(to))
        violations.push(`${file} -> ${target} (${from} may not import ${to})`);
    }
  }
  return violations;
}

/** Import cycles between files, each as `a -> b -> a`. */
function findCycles(graph: ReadonlyMap<string, readonly string[]>): string[] {
  const state = new Map<string, 'open' | 'done'>();
  const cycles: string[] = [];
  const visit = (file: string, stack: string[]): void => {
    if (state.get(file) === 'done') return;
    if (state.get(file) === 'open') {
      cycles.push([...stack.slice(stack.indexOf(file)), file].join(' -> '));
      return;
    }
    state.set(file, 'open');
    for (const dep of graph.get(file) ?? []) if (graph.has(dep)) visit(dep, [...stack, file]);
    state.set(file, 'done');
  };
  for (const file of graph.keys()) visit(file, []);
  return cycles;
}

const SOURCES = ['src', ...TOP].flatMap(walk);
const GRAPH = new Map(SOURCES.map((f) => [f, importsOf(f)]));

describe('dependencies point one way (DESIGN.md §7)', () => {
  it('the allowed-dependency table itself has no cycle', () => {
    const seen = new Set<string>();
    const visit = (m: string, stack: string[]): void => {
      expect(stack, `cycle in ALLOWED: ${[...stack, m].join(' -> ')}`).not.toContain(m);
      if (seen.has(m)) return;
      for (const dep of ALLOWED[m] ?? []) visit(dep, [...stack, m]);
      seen.add(m);
    };
    for (const m of Object.keys(ALLOWED)) visit(m, []);
  });

  it('every module under src/ has a place in the table', () => {
    const modules = new Set(walk('src').map(moduleOf));
    expect([...modules].filter((m) => !(m in ALLOWED))).toEqual([]);
  });

  it('no module imports one above it or beside it, and src/ never imports tests, benchmarks or entry points', () => {
    expect(findViolations(GRAPH)).toEqual([]);
  });

  it('every relative import names a file that exists', () => {
    const missing = [...GRAPH].flatMap(([file, imports]) =>
      imports.filter((t) => !GRAPH.has(t) && t.startsWith('src/')).map((t) => `${file} -> ${t}`),
    );
    expect(missing).toEqual([]);
  });

  it('there are no import cycles between files', () => {
    expect(findCycles(GRAPH)).toEqual([]);
  });

  it('the checks catch a planted upward import, a sideways import, an import of a test and a cycle', () => {
    const planted = new Map<string, string[]>([
      ['src/credentials/bundle.ts', ['src/authority/authority.ts']],
      ['src/proxy/proxy.ts', ['src/bot/bot.ts', 'src/credentials/bundle.ts']],
      ['src/pki/keys.ts', ['test/support/fixtures.ts']],
      ['src/authority/authority.ts', ['src/authority/rbac.ts']],
      ['src/authority/rbac.ts', ['src/authority/authority.ts']],
      ['cdk/app.ts', ['src/cli/main.ts']],
    ]);
    expect(findViolations(planted)).toEqual([
      'src/credentials/bundle.ts -> src/authority/authority.ts (credentials may not import authority)',
      'src/proxy/proxy.ts -> src/bot/bot.ts (proxy may not import bot)',
      'src/pki/keys.ts -> test/support/fixtures.ts (src/ imports outside src/)',
    ]);
    expect(findCycles(planted)).toEqual([
      'src/authority/authority.ts -> src/authority/rbac.ts -> src/authority/authority.ts',
    ]);
    expect(moduleOf('src/errors.ts')).toBe('base');
    expect(moduleOf('src/config/yaml.ts')).toBe('base');
    expect(importsOf('test/unit/architecture.test.ts')).toEqual([]);
  });
});

describe('rooms of a readable size', () => {
  it('no file under src/ is over 400 lines', () => {
    const long = walk('src')
      .map((f) => ({ f, lines: readFileSync(path.join(ROOT, f), 'utf8').split('\n').length - 1 }))
      .filter(({ lines }) => lines > 400)
      .map(({ f, lines }) => `${f}: ${lines} lines`);
    expect(long).toEqual([]);
  });

  it('no function under src/ takes more than four positional parameters (use one options object)', () => {
    const offenders: string[] = [];
    for (const file of walk('src')) {
      const text = readFileSync(path.join(ROOT, file), 'utf8');
      const source = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true);
      const visit = (node: ts.Node): void => {
        if (ts.isFunctionLike(node) && !ts.isFunctionTypeNode(node) && node.parameters.length > 4) {
          const { line } = source.getLineAndCharacterOfPosition(node.getStart());
          const name = node.name?.getText(source) ?? '(anonymous)';
          offenders.push(`${file}:${line + 1} ${name} has ${node.parameters.length} parameters`);
        }
        ts.forEachChild(node, visit);
      };
      visit(source);
    }
    expect(offenders).toEqual([]);
  });
});
