import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { App, Stack, Validations } from 'aws-cdk-lib';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import type { CloudAssembly } from 'aws-cdk-lib/cx-api';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrokerStack } from '../../cdk/broker-stack.js';
import { loadBrokerConfig } from '../../cdk/config.js';
import { REPO_ROOT } from '../../cdk/constructs/broker-function.js';
import { ensureFunctionBundles } from '../support/bundles.js';
import { cdkJsonContext } from '../support/cdk.js';

/**
 * The example app exactly as cdk/app.ts builds it, from cdk.json's context, with the real esbuild bundles
 * and cdk-nag: one synthesis shared by the tests below.
 */
const outdirs: string[] = [];
const tempDir = (): string => {
  const dir = mkdtempSync(path.join(tmpdir(), 'broker-cdk-'));
  outdirs.push(dir);
  return dir;
};
let app: App;
let assembly: CloudAssembly;

beforeAll(() => {
  ensureFunctionBundles();
  app = new App({ outdir: tempDir(), context: cdkJsonContext() });
  const config = loadBrokerConfig(app.node);
  new BrokerStack(app, config.stackName, config);
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { writeSuppressionsToCloudFormation: true }));
  assembly = app.synth();
}, 180_000);

afterAll(() => {
  for (const dir of outdirs) rmSync(dir, { recursive: true, force: true });
});

/** Every `Validations.of(x).acknowledge(...)` in a tree: construct path, rule id, reason. */
function acknowledgements(root: IConstruct): { path: string; id: string; reason: string }[] {
  return root.node.findAll().flatMap((c) =>
    c.node.metadata
      .filter((m) => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
      .flatMap((m) =>
        Object.entries(m.data as Record<string, string>).map(([id, reason]) => ({
          path: c.node.path,
          id: id.replace(/^annotation::/i, ''),
          reason,
        })),
      ),
  );
}

describe('the example app (cdk/app.ts with examples/aws)', () => {
  it('passes cdk-nag AwsSolutions with no unacknowledged finding', () => {
    // app.synth() above throws on any violation; the pack's own report says the same.
    const report = new AwsSolutionsChecks().validateScope(app);
    expect(report.violations).toEqual([]);
    expect(report.success).toBe(true);
  });

  it('acknowledges exactly the known findings, each by its rule id with a specific reason', () => {
    const acks = acknowledgements(app);
    expect(acks.map((a) => `${a.path} ${a.id}`).sort()).toEqual([
      'Broker/Bot-orders/DeadLetterQueue/Resource AwsSolutions-SQS3',
      'Broker/Bot-orders/Output0/Secret AwsSolutions-SMG4',
      'Broker/Bot-reports/DeadLetterQueue/Resource AwsSolutions-SQS3',
      'Broker/Bot-reports/Output0/Secret AwsSolutions-SMG4',
      'Broker/Bot-reports/Output1/Secret AwsSolutions-SMG4',
    ]);
    for (const a of acks) expect(a.reason.length).toBeGreaterThan(80);
    // ... and the template carries them, for whoever audits the deployed stack.
    const resources = (
      assembly.getStackByName('Broker').template as {
        Resources: Record<
          string,
          { Metadata?: { cdk_nag?: { rules_to_suppress: { id: string; reason: string }[] } } }
        >;
      }
    ).Resources;
    const inTemplate = Object.values(resources).flatMap((r) => r.Metadata?.cdk_nag?.rules_to_suppress ?? []);
    expect(inTemplate.map((r) => r.id).sort()).toEqual([
      'AwsSolutions-SMG4',
      'AwsSolutions-SMG4',
      'AwsSolutions-SMG4',
      'AwsSolutions-SQS3',
      'AwsSolutions-SQS3',
    ]);
  });

  it('fails the synth on a finding nobody acknowledged', () => {
    const bad = new App({ outdir: tempDir() });
    new sqs.Queue(new Stack(bad, 'Bad'), 'Queue');
    Validations.of(bad).addPlugins(new AwsSolutionsChecks(bad));
    expect(() => bad.synth()).toThrow(/AwsSolutions-SQS3/);
    expect(new AwsSolutionsChecks().validateScope(bad).violations.map((v) => v.ruleName)).toContain(
      'AwsSolutions-SQS3',
    );
  });

  it('builds source maps only with BROKER_SOURCEMAP=1, and removes a stale one otherwise', () => {
    const map = path.join(REPO_ROOT, 'dist', 'client', 'index.mjs.map');
    const build = (flag: string) =>
      execFileSync(process.execPath, ['scripts/build.mjs', '--target', 'client', '--quiet'], {
        cwd: REPO_ROOT,
        env: { ...process.env, BROKER_SOURCEMAP: flag },
      });
    build('1');
    expect(existsSync(map)).toBe(true);
    build('');
    expect(existsSync(map)).toBe(false);
  });

  it('synthesizes with the real esbuild bundles as the Lambda assets', () => {
    const stack = assembly.getStackByName('Broker');
    const template = stack.template as {
      Resources: Record<string, { Type: string; Properties: Record<string, unknown> }>;
    };
    // The asset manifest maps each S3 object key to the directory staged in the cloud assembly.
    const manifest = JSON.parse(
      readFileSync(path.join(assembly.directory, 'Broker.assets.json'), 'utf8'),
    ) as {
      files: Record<
        string,
        { source: { path: string }; destinations: Record<string, { objectKey: string }> }
      >;
    };
    const stagedDir = (key: string) =>
      Object.values(manifest.files).find((f) =>
        Object.values(f.destinations).some((d) => d.objectKey === key),
      )?.source.path;
    const all = Object.entries(template.Resources).filter(([, r]) => r.Type === 'AWS::Lambda::Function');
    // The broker's three, and aws-cdk-lib's provider behind the bots' first runs (Custom::Trigger).
    const functions = all.filter(([id]) => /^(Authority|Bot)/.test(id));
    expect(functions).toHaveLength(3);
    expect(all.map(([id]) => id).filter((id) => !/^(Authority|Bot)/.test(id))).toEqual([
      expect.stringMatching(/^AWSCDKTriggerCustomResourceProvider/),
    ]);
    for (const [id, fn] of functions) {
      const key = (fn.Properties.Code as { S3Key: string }).S3Key;
      expect(key).toMatch(/^[0-9a-f]{64}\.zip$/);
      const staged = path.join(assembly.directory, stagedDir(key) as string);
      const name = id.startsWith('Authority') ? 'authority' : 'bot';
      // Buffer.equals: a deep toEqual over 1.5 MB of bytes takes seconds.
      const same = readFileSync(path.join(staged, 'index.mjs')).equals(
        readFileSync(path.join(REPO_ROOT, 'dist', 'functions', name, 'index.mjs')),
      );
      expect(same, `${staged}/index.mjs is dist/functions/${name}/index.mjs`).toBe(true);
      // Source maps are opt-in (BROKER_SOURCEMAP=1): a default build ships none, not even a stale one.
      expect(existsSync(path.join(staged, 'index.mjs.map'))).toBe(false);
      expect(fn.Properties.Handler).toBe('index.handler');
    }
    // `index.handler` is what the bundles export. Imported by plain Node (not through vitest's transform):
    // importing runs no handler, the environment is read on the first invocation.
    const exported = execFileSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `for (const n of ['authority', 'bot']) { const m = await import(new URL('dist/functions/' + n + '/index.mjs', ${JSON.stringify(pathToFileURL(`${REPO_ROOT}/`).href)})); console.log(n, typeof m.handler); }`,
      ],
      { encoding: 'utf8' },
    );
    expect(exported.trim().split('\n')).toEqual(['authority function', 'bot function']);
  });

  it('synthesizes from the command line offline: npx cdk synth --quiet', () => {
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: tempDir(),
      CDK_DISABLE_VERSION_CHECK: '1',
    };
    const out = tempDir();
    const run = spawnSync(
      path.join(REPO_ROOT, 'node_modules', '.bin', 'cdk'),
      ['synth', '--quiet', '--no-notices', '-o', out],
      {
        cwd: REPO_ROOT,
        env,
        encoding: 'utf8',
        timeout: 180_000,
      },
    );
    expect(run.stderr).not.toMatch(/AwsSolutions-/);
    expect(run.status).toBe(0);
    expect(existsSync(path.join(out, 'Broker.template.json'))).toBe(true);
  }, 200_000);
});
