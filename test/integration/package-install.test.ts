/**
 * The package as a consumer gets it: `npm pack` of the bundles `npm test` built (with --ignore-scripts: the
 * prepack build would rewrite dist/ under the other test files reading it) and of the declarations this file
 * builds (dist/types, which nothing else reads), the
 * tarball unpacked into a scratch project's node_modules beside its dependencies (linked from this
 * repository's node_modules: the machine is offline, and the dependencies are what `npm install` would
 * resolve from the package's own dependency list), then the client module and the constructs imported by
 * plain Node.js, type-checked by tsc, and the shipped example app synthesized from the installed package.
 */
import { execFileSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../support/fixtures.js';
import { tempDir } from '../support/temp.js';

let work: Awaited<ReturnType<typeof tempDir>>;
let project: string;
let files: string[];

const node = (args: string[], cwd: string, env: NodeJS.ProcessEnv = {}) =>
  execFileSync(process.execPath, args, {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 240_000,
  });

beforeAll(async () => {
  work = await tempDir('package-install');
  for (const bundle of ['dist/broker.mjs', 'dist/client/index.mjs', 'dist/cdk/index.mjs', 'dist/functions'])
    if (!existsSync(path.join(REPO_ROOT, bundle)))
      throw new Error(`${bundle} is missing: run \`npm run build\` first (npm test does)`);
  node(['scripts/build.mjs', '--target', 'types', '--quiet'], REPO_ROOT);
  const packed = JSON.parse(
    execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', work.dir], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
      timeout: 480_000,
      env: { ...process.env, npm_config_update_notifier: 'false', npm_config_fund: 'false' },
    }),
  ) as { filename: string; files: { path: string }[] }[];
  const tarball = path.join(work.dir, packed[0]?.filename as string);
  files = (packed[0]?.files ?? []).map((f) => f.path);

  project = path.join(work.dir, 'consumer');
  const modules = path.join(project, 'node_modules');
  mkdirSync(path.join(modules, 'db-credential-broker'), { recursive: true });
  writeFileSync(
    path.join(project, 'package.json'),
    JSON.stringify({ name: 'consumer', private: true, type: 'module' }),
  );
  for (const entry of readdirSync(path.join(REPO_ROOT, 'node_modules')))
    if (entry !== '.bin' && entry !== 'db-credential-broker')
      symlinkSync(path.join(REPO_ROOT, 'node_modules', entry), path.join(modules, entry));
  execFileSync('tar', [
    '-xzf',
    tarball,
    '-C',
    path.join(modules, 'db-credential-broker'),
    '--strip-components=1',
  ]);
}, 600_000);

afterAll(async () => {
  await work?.cleanup();
});

describe('npm pack and a scratch project that installs the tarball', () => {
  it('packs the built code, the declarations, the image build and the examples, and no tests or sources', () => {
    for (const f of [
      'package.json',
      'dist/cdk/index.mjs',
      'dist/types/cdk/index.d.ts',
      'dist/client/index.mjs',
      'dist/types/src/client/index.d.ts',
      'dist/functions/authority/index.mjs',
      'dist/functions/bot/index.mjs',
      'dist/proxy-container/proxy.mjs',
      // --workers loads the loop's entry from beside the entry point that runs it.
      'dist/proxy-container/proxy-loop.mjs',
      'dist/broker.mjs',
      'dist/proxy-loop.mjs',
      'proxy-container/Dockerfile',
      'proxy-container/healthcheck.mjs',
      'examples/aws/orders-stack.ts',
      'examples/aws/resources.yaml',
    ])
      expect(files).toContain(f);
    expect(files.filter((f) => /^(test|src|bench|cdk|functions|scripts)\//.test(f))).toEqual([]);
    expect(files.filter((f) => f.endsWith('.map') || f.endsWith('.test.ts'))).toEqual([]);
  });

  it('imports the client module and the constructs with plain Node.js', { timeout: 120_000 }, () => {
    const out = node(
      [
        '--input-type=module',
        '-e',
        `const client = await import('db-credential-broker/client');
         const cdk = await import('db-credential-broker/cdk');
         console.log(JSON.stringify({
           client: ['createCredentialClient', 'pgOptions', 'mysql2Options'].map((n) => typeof client[n]),
           cdk: ['CredentialBroker', 'Authority', 'Bot', 'BotOutput', 'DatabaseProxySidecar'].map((n) => typeof cdk[n]),
           root: cdk.packageRoot(),
         }));`,
      ],
      project,
    );
    expect(JSON.parse(out)).toEqual({
      client: ['function', 'function', 'function'],
      cdk: ['function', 'function', 'function', 'function', 'function'],
      root: path.join(project, 'node_modules', 'db-credential-broker'),
    });
  });

  it('type-checks a consumer against the declarations', () => {
    writeFileSync(
      path.join(project, 'use.ts'),
      `import { App, Stack } from 'aws-cdk-lib';
import { CredentialBroker, DatabaseProxySidecar, type CredentialBrokerProps } from 'db-credential-broker/cdk';
import { createCredentialClient, pgOptions } from 'db-credential-broker/client';
const props: CredentialBrokerProps = { resourcesFile: 'resources.yaml', botConfigFiles: ['orders.yaml'] };
export const make = () => new CredentialBroker(new Stack(new App(), 'S'), 'Broker', props);
export const sidecar: typeof DatabaseProxySidecar = DatabaseProxySidecar;
export const client = createCredentialClient({ secretId: 'arn' });
export const options: (b: Parameters<typeof pgOptions>[0]) => { user?: string | undefined } = pgOptions;
`,
    );
    writeFileSync(
      path.join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          target: 'ES2022',
          strict: true,
          noEmit: true,
          skipLibCheck: true,
          types: ['node'],
          typeRoots: [path.join(REPO_ROOT, 'node_modules', '@types')],
        },
        files: ['use.ts'],
      }),
    );
    node([path.join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], project);
  }, 300_000);

  it('synthesizes the shipped example app from the installed package, under cdk-nag', () => {
    const app = path.join(project, 'orders-app');
    cpSync(path.join(project, 'node_modules', 'db-credential-broker', 'examples', 'aws'), app, {
      recursive: true,
    });
    const out = path.join(project, 'cdk.out');
    node([path.join(REPO_ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs'), 'app.ts'], app, {
      CDK_OUTDIR: out,
    });
    const template = JSON.parse(readFileSync(path.join(out, 'Orders.template.json'), 'utf8')) as {
      Resources: Record<string, { Type: string }>;
    };
    const types = Object.values(template.Resources).map((r) => r.Type);
    expect(types.filter((t) => t === 'AWS::Lambda::Function').length).toBeGreaterThanOrEqual(3);
    expect(types).toContain('AWS::ECS::TaskDefinition');
    // The proxy image is built from the package's own bundle: no sources, no npm ci.
    const assets = JSON.parse(readFileSync(path.join(out, 'Orders.assets.json'), 'utf8')) as {
      dockerImages: Record<
        string,
        { source: { directory: string; dockerBuildArgs?: Record<string, string> } }
      >;
    };
    const [image] = Object.values(assets.dockerImages);
    expect(image?.source.dockerBuildArgs).toEqual({ PROXY_BUNDLE: 'prebuilt' });
    expect(readdirSync(path.join(out, image?.source.directory as string)).sort()).toEqual([
      'dist',
      'proxy-container',
    ]);
  }, 300_000);
});
