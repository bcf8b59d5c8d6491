/**
 * cfn-lint, CloudFormation's own linter (pinned, installed by .ci/python-tools.sh), over every template the
 * CDK apps synthesize: the app in the repository's cdk.json and each app under examples/aws/ (a directory
 * with a cdk.json), each through `cdk synth` into a temporary directory, as a user runs it. Any finding
 * fails; the rules ignored, each with its reason, are in .cfnlintrc.yaml. In CI a missing cfn-lint fails
 * this file instead of skipping it.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { requirePythonTool } from '../support/aws/moto.js';
import { ensureFunctionBundles } from '../support/bundles.js';
import { REPO_ROOT } from '../support/fixtures.js';
import { run } from '../support/run.js';
import { makeTempDir, removeTempDirs } from '../support/temp.js';

const cfnLint = requirePythonTool('cfn-lint');
const CDK = path.join(REPO_ROOT, 'node_modules/aws-cdk/bin/cdk');
const CONFIG = path.join(REPO_ROOT, '.cfnlintrc.yaml');

/** Directories holding a CDK app: the repository root and every directory under examples/aws/ with a cdk.json. */
function cdkApps(): string[] {
  const apps = [REPO_ROOT];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const full = path.join(dir, name);
      if (name === 'node_modules' || name === 'cdk.out' || !statSync(full).isDirectory()) continue;
      if (existsSync(path.join(full, 'cdk.json'))) apps.push(full);
      walk(full);
    }
  };
  const examples = path.join(REPO_ROOT, 'examples/aws');
  if (existsSync(path.join(examples, 'cdk.json'))) apps.push(examples);
  walk(examples);
  return apps;
}

/** Every `*.template.json` in a cloud assembly, nested stage assemblies included. */
function templatesIn(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.template.json'))
    .map((f) => path.join(dir, f));
}

// The apps deploy the esbuild bundles; `npm test` builds them, a single-file run may not.
beforeAll(ensureFunctionBundles, 120_000);
afterAll(removeTempDirs);

/** Runs the pinned cfn-lint with the repository's configuration on `templates`. */
const lint = (templates: string[], cwd: string) =>
  run(cfnLint as string, ['--config-file', CONFIG, '--format', 'parseable', '--', ...templates], {
    cwd,
    timeoutMs: 120_000,
  });

// The apps synthesize side by side (each `cdk synth` is a child process that waits on another).
describe.skipIf(!cfnLint)('cfn-lint on the synthesized templates', () => {
  it.concurrent('the configuration catches what it should: a template with an unknown property fails', async ({
    expect,
  }) => {
    const dir = await makeTempDir('broker-cfn-lint-');
    const bad = path.join(dir, 'bad.template.json');
    await writeFile(
      bad,
      JSON.stringify({
        Resources: { Queue: { Type: 'AWS::SQS::Queue', Properties: { RetentionDays: 4 } } },
      }),
    );
    const result = await lint([bad], dir);
    expect(result.code).not.toBe(0);
    expect(result.stdout).toMatch(/E3002.*RetentionDays/);
  });

  for (const app of cdkApps()) {
    const name = path.relative(REPO_ROOT, app) || 'the app in cdk.json';
    it.concurrent(`${name}: cdk synth, then cfn-lint finds nothing`, async ({ expect }) => {
      const out = await makeTempDir('broker-cfn-lint-');
      const synth = await run(process.execPath, [CDK, 'synth', '--quiet', '--no-notices', '-o', out], {
        cwd: app,
        timeoutMs: 240_000,
      });
      expect(synth.code, `cdk synth in ${name} failed:\n${synth.stderr}`).toBe(0);
      const templates = templatesIn(out);
      expect(templates.length, `cdk synth in ${name} wrote no template`).toBeGreaterThan(0);

      const result = await lint(templates, out);
      // Exit 0 and no output: no error, warning or informational finding that is not ignored.
      expect({ code: result.code, findings: result.stdout.trim(), stderr: result.stderr.trim() }).toEqual({
        code: 0,
        findings: '',
        stderr: '',
      });
    }, 400_000);
  }
});
