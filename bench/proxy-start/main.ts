/**
 * bench/proxy-start: how fast the proxy container starts and how much its health check costs (issue 14).
 * The container's command (`node <sidecar flags> dist/proxy-container/proxy.mjs` configured by environment as
 * the ECS task definition configures it, the bundle read from a Secrets Manager double over loopback HTTP) is
 * started side by side with a reference bundled the same way that does only what a container must before it
 * is ready (proxy-start/reference.ts); then the image's HEALTHCHECK command (`node
 * proxy-container/healthcheck.mjs`) against the running proxy, next to a Node process that does nothing.
 * There is no target in DESIGN.md §9 for these; the report gives the figures and their ratios.
 *
 * Run through `npm run bench`, or alone: `node bench/run.mjs proxy-start [--quick] [--rounds N]`.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { CreateSecretCommand } from '@aws-sdk/client-secrets-manager';
import { build } from 'esbuild';
import { SIDECAR_NODE_FLAGS } from '../../proxy-container/node-flags.js';
import { MemoryAuditLog } from '../../src/authority/audit.js';
import { Authority } from '../../src/authority/authority.js';
import { serializeBundle } from '../../src/credentials/bundle.js';
import { freePort } from '../../src/devdb/postgres.js';
import { MemoryStateStore } from '../../src/state/memory-store.js';
import { SecretsManagerDouble } from '../../test/support/aws/secretsmanager.js';
import { CJS_SHIM } from '../bundle-import/build.js';
import { describeMachine, machineLine } from '../lib/machine.mjs';
import { parseBenchOptions, repoRoot } from '../lib/options.js';
import {
  contentionWarning,
  ForeignLoad,
  fmtPercent,
  processCpuSeconds,
  processMemory,
} from '../lib/procfs.js';
import { type BenchResult, writeResult } from '../lib/result.js';
import { fmt, fmtRatio, pairedRatio, type Summary, summarize } from '../lib/stats.js';
import { mdTable, textTable } from '../lib/table.js';
import { cleanEnv } from '../proxy/processes.js';
import { issueBenchBundle, SERVICE } from '../proxy/setup.js';

const MB = 1e6;
const SECRET = 'broker/bench/proxy-start';
const log = (line: string) => console.log(`proxy-start: ${line}`);

interface StartSample {
  /** Spawn to the "listening on" line on stdout. */
  listenMs: number;
  /** Spawn to the first 200 from /readyz (polled every 5 ms). */
  readyMs: number;
  /** CPU seconds of the process up to ready. */
  cpuMs: number;
  rssMb: number;
  /** SIGTERM to exit. */
  stopMs: number;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function readyzStatus(diag: string): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get(`http://${diag}/readyz`, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', () => resolve(0));
  });
}

function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

/** Starts `args` with the container's environment; measures until ready, then stops it. */
async function startOnce(
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  diag: string,
): Promise<StartSample> {
  const t0 = performance.now();
  const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let listenMs = Number.NaN;
  child.stdout?.on('data', (d: Buffer) => {
    stdout += d.toString('utf8');
    if (Number.isNaN(listenMs) && /listening on/.test(stdout)) listenMs = performance.now() - t0;
  });
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString('utf8');
  });
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`exited with ${child.exitCode}: ${stderr.trim()}`);
      if (performance.now() - t0 > 30_000) throw new Error(`not ready within 30 s: ${stderr.trim()}`);
      if ((await readyzStatus(diag)) === 200) break;
      await sleep(5);
    }
    const readyMs = performance.now() - t0;
    const pid = child.pid as number;
    const cpuMs = processCpuSeconds(pid) * 1000;
    const rssMb = processMemory(pid).rss / MB;
    const s0 = performance.now();
    child.kill('SIGTERM');
    const code = await exited(child);
    if (code !== 0) throw new Error(`SIGTERM: exit ${code}: ${stderr.trim()}`);
    return { listenMs, readyMs, cpuMs, rssMb, stopMs: performance.now() - s0 };
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
}

/** Runs a command to its end: wall time spawn to exit, and its exit code. */
function runOnce(
  args: readonly string[],
  env: NodeJS.ProcessEnv,
): Promise<{ ms: number; code: number | null }> {
  const t0 = performance.now();
  const child = spawn(process.execPath, args, { env, stdio: 'ignore' });
  return exited(child).then((code) => ({ ms: performance.now() - t0, code }));
}

async function main(): Promise<void> {
  const startedAt = new Date();
  const options = parseBenchOptions();
  const rounds = options.rounds ?? (options.quick ? 2 : 15);
  const machine = describeMachine();
  const root = repoRoot();
  const entry = path.join(root, 'dist', 'proxy-container', 'proxy.mjs');
  const healthcheck = path.join(root, 'proxy-container', 'healthcheck.mjs');
  if (!existsSync(entry))
    throw new Error(`${entry} is missing: run \`npm run build\` first (npm run bench does)`);
  log(machineLine(machine));

  // The reference, bundled as scripts/build.mjs bundles the proxy (ESM, minified, node20, the same banner).
  const refDir = path.join(root, 'bench', '.build', 'proxy-start-reference');
  mkdirSync(refDir, { recursive: true });
  const reference = path.join(refDir, 'reference.mjs');
  await build({
    entryPoints: [path.join(root, 'bench', 'proxy-start', 'reference.ts')],
    outfile: reference,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    minify: true,
    banner: { js: CJS_SHIM },
    logLevel: 'warning',
  });

  const sm = await SecretsManagerDouble.start();
  try {
    const authority = new Authority({ store: new MemoryStateStore(), audit: new MemoryAuditLog() });
    await authority.initialize('bench');
    // The database is never dialled: readiness is a loaded, valid bundle.
    const bundle = await issueBenchBundle(authority, await freePort());
    await sm.client().send(new CreateSecretCommand({ Name: SECRET, SecretString: serializeBundle(bundle) }));

    const port = await freePort();
    const diag = `127.0.0.1:${await freePort()}`;
    // What the ECS task definition sets (cdk), plus the endpoint of the double.
    const env = cleanEnv({
      BROKER_BUNDLE_SECRET_ID: SECRET,
      BROKER_SERVICE: SERVICE,
      BROKER_PROXY_PORT: String(port),
      BROKER_DIAG_ADDR: diag,
      BROKER_MAX_SIGTERM_DELAY: '5s',
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
      AWS_EC2_METADATA_DISABLED: 'true',
      AWS_ENDPOINT_URL_SECRETS_MANAGER: sm.endpoint,
    });
    const starts = {
      container: {
        label: 'proxy container (dist/proxy-container/proxy.mjs)',
        args: [...SIDECAR_NODE_FLAGS, entry],
      },
      reference: {
        label: 'reference: SDK read, TLS context, listeners',
        args: [...SIDECAR_NODE_FLAGS, reference],
      },
    } as const;
    type StartId = keyof typeof starts;
    const startSamples: Record<StartId, StartSample[]> = { container: [], reference: [] };
    const healthSamples: number[] = [];
    const floorSamples: number[] = [];
    const foreign = new ForeignLoad();

    // Warm-up: page cache, the double's first requests.
    for (const id of ['container', 'reference'] as const) await startOnce(starts[id].args, env, diag);
    for (let r = 0; r < rounds; r++) {
      const order: StartId[] = r % 2 === 0 ? ['container', 'reference'] : ['reference', 'container'];
      for (const id of order)
        startSamples[id].push(await foreign.measure(() => startOnce(starts[id].args, env, diag)));
      // The health check against a running, ready proxy container, then a Node process that does nothing.
      const child = spawn(process.execPath, starts.container.args, { env, stdio: 'ignore' });
      try {
        while ((await readyzStatus(diag)) !== 200) {
          if (child.exitCode !== null) throw new Error(`the proxy container exited with ${child.exitCode}`);
          await sleep(5);
        }
        const checks = await foreign.measure(async () => {
          const h = await runOnce([healthcheck], env);
          const f = await runOnce(['-e', ''], env);
          return { h, f };
        });
        if (checks.h.code !== 0)
          throw new Error(`the health check failed (exit ${checks.h.code}) on a ready proxy`);
        healthSamples.push(checks.h.ms);
        floorSamples.push(checks.f.ms);
      } finally {
        child.kill('SIGTERM');
        await exited(child);
      }
      log(
        `round ${r + 1}/${rounds}: ready in ${fmt(startSamples.container.at(-1)?.readyMs ?? Number.NaN)} ms (reference ${fmt(startSamples.reference.at(-1)?.readyMs ?? Number.NaN)}), health check ${fmt(healthSamples.at(-1) ?? Number.NaN)} ms`,
      );
    }
    // With nothing listening the health check must fail: it is checked, not assumed.
    const down = await runOnce([healthcheck], env);
    if (down.code === 0) throw new Error('the health check passed with no proxy running');

    const pick = (id: StartId, f: (s: StartSample) => number): Summary => summarize(startSamples[id].map(f));
    const ratio = (f: (s: StartSample) => number) =>
      pairedRatio(startSamples.container.map(f), startSamples.reference.map(f));
    const rows = (['container', 'reference'] as const).map((id) => {
      const ready = pick(id, (s) => s.readyMs);
      return [
        id === 'container' ? `**${starts[id].label}**` : starts[id].label,
        fmt(pick(id, (s) => s.listenMs).median),
        `${fmt(ready.median)} (${fmt(ready.min)}–${fmt(ready.max)})`,
        fmt(pick(id, (s) => s.cpuMs).median),
        fmt(pick(id, (s) => s.rssMb).median),
        fmt(pick(id, (s) => s.stopMs).median),
        id === 'container' ? `**${fmtRatio(ratio((s) => s.readyMs).median)}**` : '1.00×',
        id === 'container' ? fmtRatio(ratio((s) => s.cpuMs).median) : '1.00×',
      ];
    });
    const health = summarize(healthSamples);
    const floor = summarize(floorSamples);
    const healthRatio = pairedRatio(healthSamples, floorSamples);
    const containerReady = pick('container', (s) => s.readyMs);
    const readyRatio = ratio((s) => s.readyMs);
    const header = [
      'process',
      'listening, ms',
      'ready (/readyz 200), ms (range)',
      'CPU ms to ready',
      'RSS at ready, MB',
      'SIGTERM to exit, ms',
      '× reference (ready)',
      '× reference (CPU)',
    ];
    console.log('');
    console.log(
      textTable(
        header,
        rows.map((r) => r.map((c) => c.replace(/\*\*/g, ''))),
      ),
    );
    console.log(
      `\nhealth check ${fmt(health.median)} ms (node doing nothing: ${fmt(floor.median)} ms, ${fmtRatio(healthRatio.median)})`,
    );

    const contention = contentionWarning(foreign);
    const markdown = `How fast the proxy container starts and what its health check costs. The container's command, \`node ${SIDECAR_NODE_FLAGS.join(' ')} dist/proxy-container/proxy.mjs\` configured by environment as the ECS task definition configures it (\`BROKER_BUNDLE_SECRET_ID\`, \`BROKER_SERVICE\`, \`BROKER_PROXY_PORT\`, \`BROKER_DIAG_ADDR\`), reads its bundle from a Secrets Manager double over loopback HTTP (the real AWS SDK, \`AWS_ENDPOINT_URL_SECRETS_MANAGER\`); it is started side by side with a reference bundled the same way that does only what a container must before it is ready: read the secret with the same SDK client, build a TLS context from the bundle, listen on the proxy port and answer /readyz (bench/proxy-start/reference.ts). Then the image's \`HEALTHCHECK\` command, \`node proxy-container/healthcheck.mjs\`, runs against a ready proxy, next to \`node -e ''\`. Issue 14 asks for these to be measured; DESIGN.md §9 sets no target for them.

- The container is ready (its /readyz answers 200) **${fmt(containerReady.median)} ms** after it is started (range ${fmt(containerReady.min)}–${fmt(containerReady.max)}), **${fmtRatio(readyRatio.median)}** the reference's time (rounds ${readyRatio.min.toFixed(2)}–${readyRatio.max.toFixed(2)}).
- The health check takes **${fmt(health.median)} ms** (range ${fmt(health.min)}–${fmt(health.max)}), ${fmtRatio(healthRatio.median)} of a Node process that does nothing (${fmt(floor.median)} ms): nearly all of it is Node starting, since it asks one question over loopback and loads nothing of the proxy. ECS runs it every 10 s (\`--interval=10s --timeout=3s\` in proxy-container/Dockerfile).

${contention}- Run: ${startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC; ${machineLine(machine)}. Processes outside the benchmark used ${fmtPercent(foreign.overall)} of the machine's CPU while it measured.
- ${rounds} round(s) after a warm-up start of each; in each round the container and the reference start one after the other (the order alternates), then the health check and \`node -e ''\` run once each against a freshly started container. **listening** is spawn to the process's "listening on" line; **ready** is spawn to the first 200 from /readyz, polled every 5 ms; **CPU ms** and **RSS** are read from /proc when it is ready; **SIGTERM to exit** has no connection open. Medians; ratios are medians of per-round ratios. The health check is also run with nothing listening, and must fail.

${mdTable(header, rows)}
`;
    const result: BenchResult = {
      name: 'proxy-start',
      title: 'Proxy container: start and health check',
      date: new Date().toISOString(),
      machine,
      settings: { rounds, quick: options.quick, nodeFlags: SIDECAR_NODE_FLAGS },
      targets: [],
      markdown,
      artifacts: {},
      data: {
        starts: Object.fromEntries(
          (['container', 'reference'] as const).map((id) => [
            id,
            {
              readyMs: pick(id, (s) => s.readyMs),
              listenMs: pick(id, (s) => s.listenMs),
              cpuMs: pick(id, (s) => s.cpuMs),
              rssMb: pick(id, (s) => s.rssMb),
              stopMs: pick(id, (s) => s.stopMs),
            },
          ]),
        ),
        readyRatio,
        healthcheckMs: health,
        nodeFloorMs: floor,
        healthRatio,
        foreignLoad: { overall: foreign.overall, worst: foreign.worst },
      },
    };
    const file = writeResult(root, result);
    console.log(`\nproxy-start: wrote ${path.relative(process.cwd(), file)}`);
  } finally {
    await sm.close();
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exit(1);
});
