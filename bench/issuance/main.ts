/**
 * bench/issuance: database client certificates the authority signs per second, side by side with
 * `openssl speed rsa2048` sign/s on the same machine (DESIGN.md §9: ≥ 0.7×).
 *
 * Run through `npm run bench` (bench/run.mjs bundles this file with esbuild and runs it with node), or
 * alone: `node bench/run.mjs issuance [--quick] [--rounds N] [--seconds S]`.
 */
import path from 'node:path';
import { describeMachine, machineLine } from '../lib/machine.mjs';
import { parseBenchOptions, repoRoot } from '../lib/options.js';
import { type BenchResult, checkTarget, writeResult } from '../lib/result.js';
import { fmt, fmtRatio, pairedRatio, type Summary, summarize } from '../lib/stats.js';
import { barChartSvg } from '../lib/svg.js';
import { opensslSpeedRsa2048 } from './openssl.js';
import { type Operation, SUBJECT_KEYS, setUpIssuance } from './workloads.js';

const TARGET_RATIO = 0.7;
const CONCURRENCY = 8;

type Id =
  | 'openssl-1'
  | 'openssl-multi'
  | 'sign-seq'
  | 'sign-conc'
  | 'build-seq'
  | 'build-conc'
  | 'issue-seq'
  | 'issue-conc'
  | 'issue-cached-conc';

type Series = 'openssl' | 'sign' | 'build' | 'issue' | 'diagnostic';

interface Sample {
  /** Operations per second of wall-clock time. */
  rate: number;
  /** Node measurements: CPU time of the whole process (all threads) per operation, µs. */
  cpuUsPerOp?: number;
  /** Node measurements: average number of cores the process kept busy. */
  coresBusy?: number;
  /** Node measurements: operations completed. */
  count?: number;
}

interface Measurement {
  id: Id;
  label: string;
  series: Series;
  run(): Promise<Sample>;
}

/** Repeats `op` with `concurrency` requests in flight for `seconds`; requests in flight at the end finish and count. */
async function measureRate(op: Operation, concurrency: number, seconds: number): Promise<Sample> {
  let count = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  const worker = async () => {
    while (performance.now() < deadline) {
      await op();
      count++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const cpuUs = cpu.user + cpu.system;
  return { rate: count / wall, cpuUsPerOp: cpuUs / count, coresBusy: cpuUs / 1e6 / wall, count };
}

function pad(cells: string[], widths: number[]): string {
  return cells
    .map((c, i) => (i === 0 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number)))
    .join('  ');
}

function textTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  return [
    pad(header, widths),
    widths.map((w) => '-'.repeat(w)).join('  '),
    ...rows.map((r) => pad(r, widths)),
  ].join('\n');
}

function mdTable(header: string[], rows: string[][]): string {
  const align = header.map((_, i) => (i === 0 ? '---' : '---:'));
  return [header, align, ...rows].map((r) => `| ${r.join(' | ')} |`).join('\n');
}

async function main(): Promise<void> {
  const startedAt = new Date();
  const options = parseBenchOptions();
  const rounds = options.rounds ?? (options.quick ? 1 : 5);
  const seconds = options.seconds ?? (options.quick ? 1 : 2);
  // openssl speed takes whole seconds, and spends as long again on verify/s after sign/s.
  const opensslSeconds = Math.max(1, Math.round(seconds));
  // The decomposition rows (bare sign, bare build) only explain the headline, so they run half as long.
  const detailSeconds = seconds / 2;
  const machine = describeMachine();
  const processes = machine.cores;
  const root = repoRoot();

  console.log(`issuance: ${machineLine(machine)}`);
  console.log(
    `issuance: ${rounds} round(s); openssl -seconds ${opensslSeconds}, authority ${seconds}s, decomposition and diagnostic ${detailSeconds}s; ${CONCURRENCY} requests in flight for the concurrent rows`,
  );

  const work = await setUpIssuance();
  const measurements: Measurement[] = [
    {
      id: 'openssl-1',
      label: 'openssl speed rsa2048 (1 process)',
      series: 'openssl',
      run: async () => ({
        rate: (await opensslSpeedRsa2048({ seconds: opensslSeconds, processes: 1, elapsed: true }))
          .signPerSecond,
      }),
    },
    {
      id: 'openssl-multi',
      label: `openssl speed -multi ${processes} rsa2048`,
      series: 'openssl',
      run: async () => ({
        rate: (await opensslSpeedRsa2048({ seconds: opensslSeconds, processes, elapsed: true }))
          .signPerSecond,
      }),
    },
    {
      id: 'issue-seq',
      label: 'authority issue, sequential',
      series: 'issue',
      run: () => measureRate(work.issue, 1, seconds),
    },
    {
      id: 'issue-conc',
      label: `authority issue, ${CONCURRENCY} in flight`,
      series: 'issue',
      run: () => measureRate(work.issue, CONCURRENCY, seconds),
    },
    {
      id: 'issue-cached-conc',
      label: `authority, cached signer, ${CONCURRENCY} in flight (diagnostic)`,
      series: 'diagnostic',
      run: () => measureRate(work.issueCachedSigner, CONCURRENCY, detailSeconds),
    },
    {
      id: 'build-seq',
      label: 'buildCertificate, sequential',
      series: 'build',
      run: () => measureRate(work.build, 1, detailSeconds),
    },
    {
      id: 'build-conc',
      label: `buildCertificate, ${CONCURRENCY} in flight`,
      series: 'build',
      run: () => measureRate(work.build, CONCURRENCY, detailSeconds),
    },
    {
      id: 'sign-seq',
      label: 'Node crypto.sign, sequential',
      series: 'sign',
      run: () => measureRate(work.sign, 1, detailSeconds),
    },
    {
      id: 'sign-conc',
      label: `Node crypto.sign, ${CONCURRENCY} in flight`,
      series: 'sign',
      run: () => measureRate(work.sign, CONCURRENCY, detailSeconds),
    },
  ];
  const byId = new Map(measurements.map((m) => [m.id, m]));
  // Authority rows sit next to the openssl runs they are compared with; every other round runs in reverse.
  const order: Id[] = [
    'openssl-1',
    'issue-seq',
    'issue-conc',
    'openssl-multi',
    'issue-cached-conc',
    'build-conc',
    'build-seq',
    'sign-seq',
    'sign-conc',
  ];

  // Warm-up: JIT, the issuer cache, libuv's threads; results discarded.
  const warm = options.quick ? 0.2 : 0.5;
  for (const op of [work.issue, work.issueCachedSigner, work.build, work.sign])
    for (const c of [1, CONCURRENCY]) await measureRate(op, c, warm);
  await opensslSpeedRsa2048({ seconds: 1, processes: 1, elapsed: true });

  // The literal command of DESIGN §9 (no -elapsed: openssl divides by its user CPU time), once, for reference.
  const reference = await opensslSpeedRsa2048({ seconds: opensslSeconds, processes: 1, elapsed: false });
  console.log(`issuance: reference: ${reference.command}: ${fmt(reference.signPerSecond)} sign/s`);

  const samples = new Map<Id, Sample[]>(measurements.map((m) => [m.id, []]));
  for (let r = 0; r < rounds; r++) {
    const ids = r % 2 === 0 ? order : [...order].reverse();
    const line: string[] = [];
    for (const id of ids) {
      const m = byId.get(id) as Measurement;
      const before = work.audit.success;
      const sample = await m.run();
      if (m.series === 'issue' || m.series === 'diagnostic') {
        // Every issued certificate must have been audited exactly once, and nothing denied.
        if (work.audit.other > 0) throw new Error(`the authority denied a request: ${work.audit.lastReason}`);
        if (work.audit.success - before !== sample.count)
          throw new Error(
            `${sample.count} certificates issued but ${work.audit.success - before} success events audited`,
          );
      }
      samples.get(id)?.push(sample);
      line.push(`${id} ${fmt(sample.rate)}/s`);
    }
    console.log(`issuance: round ${r + 1}/${rounds}: ${line.join(', ')}`);
  }
  await work.verifySamples();

  const rates = (id: Id) => (samples.get(id) ?? []).map((s) => s.rate);
  const summary = (id: Id): Summary => summarize(rates(id));
  const cpuOf = (id: Id) => summarize((samples.get(id) ?? []).map((s) => s.cpuUsPerOp ?? Number.NaN));
  const coresOf = (id: Id) => summarize((samples.get(id) ?? []).map((s) => s.coresBusy ?? Number.NaN));
  const vsSingle = (id: Id) => pairedRatio(rates(id), rates('openssl-1'));

  const ratioSeq = vsSingle('issue-seq');
  const ratioConc = vsSingle('issue-conc');
  const ratioSameCores = pairedRatio(rates('issue-conc'), rates('openssl-multi'));
  const ratioReference = summary('issue-conc').median / reference.signPerSecond;
  const ratioCached = vsSingle('issue-cached-conc');
  const target = checkTarget({
    what: 'authority certificate signing rate',
    target: `≥ ${TARGET_RATIO}× openssl speed rsa2048 sign/s`,
    measured: ratioConc.median,
    threshold: TARGET_RATIO,
    direction: '>=',
  });

  // Signs that something else used the CPU: openssl -multi N should sign about N times as fast as one process.
  const multiScaling = pairedRatio(rates('openssl-multi'), rates('openssl-1')).median;
  const busyAtStart = (machine.loadAverage[0] ?? 0) > 0.5 * machine.cores;
  const contended = multiScaling < 0.75 * processes || busyAtStart;
  const contention = contended
    ? `> **Warning: the machine was busy during this run** (${[
        busyAtStart ? `load average ${machine.loadAverage[0]} at the start on ${machine.cores} cores` : '',
        multiScaling < 0.75 * processes
          ? `\`openssl speed -multi ${processes}\` signed only ${multiScaling.toFixed(2)}× as fast as one process, where about ${processes}× is expected`
          : '',
      ]
        .filter(Boolean)
        .join(
          '; ',
        )}). The paired ratios cancel part of that, but treat these numbers as rough and run again on an idle machine.\n\n`
    : '';

  // ---- stdout ----------------------------------------------------------------------------------------
  const header = ['measurement', 'median/s', 'min/s', 'max/s', 'CPU µs/op', 'cores busy', '× openssl 1 proc'];
  const displayOrder: Id[] = [
    'openssl-1',
    'openssl-multi',
    'sign-seq',
    'sign-conc',
    'build-seq',
    'build-conc',
    'issue-seq',
    'issue-conc',
    'issue-cached-conc',
  ];
  const tableRows = displayOrder.map((id) => {
    const s = summary(id);
    const isNode = !id.startsWith('openssl');
    return [
      (byId.get(id) as Measurement).label,
      fmt(s.median),
      fmt(s.min),
      fmt(s.max),
      isNode ? fmt(cpuOf(id).median) : '',
      isNode ? coresOf(id).median.toFixed(2) : '',
      id === 'openssl-1' ? '1.00×' : fmtRatio(vsSingle(id).median),
    ];
  });
  const range = (s: Summary) => `${s.min.toFixed(2)}–${s.max.toFixed(2)}`;
  console.log('');
  console.log(textTable(header, tableRows));
  console.log('');
  console.log(
    `authority sequential / openssl 1 process:            ${fmtRatio(ratioSeq.median)} (rounds ${range(ratioSeq)})`,
  );
  console.log(
    `authority ${CONCURRENCY} in flight / openssl 1 process:         ${fmtRatio(ratioConc.median)} (rounds ${range(ratioConc)})  <- DESIGN §9 target ≥ ${TARGET_RATIO}×: ${target.met ? 'MET' : 'NOT MET'}`,
  );
  console.log(
    `authority ${CONCURRENCY} in flight / openssl -multi ${processes}:           ${fmtRatio(ratioSameCores.median)} (rounds ${range(ratioSameCores)})`,
  );
  if (contended)
    console.log('WARNING: the machine was busy during this run (see the report); numbers are rough');
  console.log(
    `reference: ${reference.command} (CPU-time divisor): ${fmt(reference.signPerSecond)} sign/s; authority ${CONCURRENCY} in flight against it: ${fmtRatio(ratioReference)}`,
  );

  // ---- chart -----------------------------------------------------------------------------------------
  const svg = barChartSvg({
    title: 'Certificates signed per second: the authority against openssl speed rsa2048',
    subtitle: `${machine.cpuModel}, ${machine.cores} cores, Node ${machine.node}, ${machine.systemOpenssl.split(' ').slice(0, 2).join(' ')}; median of ${rounds} round(s), ${startedAt.toISOString().slice(0, 10)}`,
    unit: 'RSA-2048 signatures (certificates) per second, wall clock',
    bars: displayOrder.map((id) => {
      const s = summary(id);
      const m = byId.get(id) as Measurement;
      return {
        label: m.label,
        value: s.median,
        min: s.min,
        max: s.max,
        series: m.series,
        note: `${id === 'openssl-1' ? '1.00×' : fmtRatio(vsSingle(id).median)} openssl`,
      };
    }),
    series: {
      openssl: { colour: '#9ca3af', label: 'openssl speed' },
      sign: { colour: '#93c5fd', label: 'Node crypto.sign' },
      build: { colour: '#60a5fa', label: 'buildCertificate' },
      issue: { colour: '#1d4ed8', label: 'authority issueDatabaseCertificate' },
      diagnostic: { colour: '#c4b5fd', label: 'diagnostic (not shipped)' },
    },
    markers: [
      {
        value: TARGET_RATIO * summary('openssl-1').median,
        label: `target ${TARGET_RATIO}× openssl 1 process`,
        colour: '#dc2626',
      },
    ],
  });

  // ---- report section --------------------------------------------------------------------------------
  const opensslSingle = summary('openssl-1').median;
  const needed = TARGET_RATIO * opensslSingle;
  const issueConc = summary('issue-conc').median;
  const verdict = target.met
    ? `**Target met**: ${fmtRatio(ratioConc.median)} ≥ ${TARGET_RATIO}× (${fmt(issueConc)} certificates/s against ${fmt(needed)} needed).`
    : `**Target not met**: ${fmtRatio(ratioConc.median)} < ${TARGET_RATIO}×, short by ${(TARGET_RATIO - ratioConc.median).toFixed(2)}. The authority signs ${fmt(issueConc)} certificates/s; ${TARGET_RATIO}× openssl is ${fmt(needed)}/s, so it needs ${(needed / issueConc).toFixed(2)}× its current rate (${fmt(needed - issueConc)} more per second).`;
  const perCert = (id: Id) => 1e6 / summary(id).median;
  const cpu = (id: Id) => cpuOf(id).median;
  const mdRows = displayOrder.map((id) => {
    const s = summary(id);
    const isNode = !id.startsWith('openssl');
    const label = (byId.get(id) as Measurement).label;
    return [
      id === 'issue-conc' ? `**${label}**` : label,
      fmt(s.median),
      `${fmt(s.min)}–${fmt(s.max)}`,
      isNode ? fmt(cpuOf(id).median) : '—',
      isNode ? coresOf(id).median.toFixed(2) : '—',
      id === 'openssl-1' ? '1.00×' : fmtRatio(vsSingle(id).median),
    ];
  });
  const markdown = `Certificates signed per second by the authority's real issuing path, side by side with \`openssl speed rsa2048\` sign/s on the same machine, in one run. DESIGN.md §9 target: **authority certificate signing rate ≥ ${TARGET_RATIO}× \`openssl speed rsa2048\` sign/s**.

${verdict}

${contention}- Run: ${startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC; ${machineLine(machine)}.
- ${rounds} round(s); in each, every row below is measured once, the authority rows next to the openssl runs (order reversed every other round), after a warm-up. Authority rows run ${seconds} s each (the decomposition rows, Node crypto.sign and buildCertificate, ${detailSeconds} s), openssl \`-seconds ${opensslSeconds}\`. Medians are reported; ratios are the median of per-round ratios (each round's authority rate over the same round's openssl rate), so drift of the machine cancels.
- All rates are per second of wall-clock time. openssl runs with \`-elapsed\` so it is divided by wall-clock time too (plain \`openssl speed\` divides by its user CPU time, which reads higher on a busy or virtualised machine; see the reference line below).

![issuance chart](issuance.svg)

${mdTable(['measurement', 'median /s', 'range over rounds /s', 'CPU µs per op', 'cores busy', '× openssl (1 process)'], mdRows)}

| ratio | median | range over rounds |
|---|---:|---:|
| authority sequential / openssl 1 process | ${fmtRatio(ratioSeq.median)} | ${range(ratioSeq)} |
| **authority ${CONCURRENCY} in flight / openssl 1 process — the ratio the §9 target is checked against** | **${fmtRatio(ratioConc.median)}** | ${range(ratioConc)} |
| authority ${CONCURRENCY} in flight / openssl \`-multi ${processes}\` (same CPU resources) | ${fmtRatio(ratioSameCores.median)} | ${range(ratioSameCores)} |

How to read the target ratio: \`openssl speed rsa2048\` with no options is one process on one core. The authority signs on libuv's thread pool, so with ${CONCURRENCY} requests in flight it may use all ${machine.cores} cores; the checked ratio therefore compares the authority on ${machine.cores} cores with OpenSSL on one, which is the most favourable reading of the target. The same-resources comparison (against \`openssl speed -multi ${processes}\`, one openssl process per core) is ${fmtRatio(ratioSameCores.median)}, and one request at a time against one openssl process is ${fmtRatio(ratioSeq.median)}.

Reference: the literal command \`${reference.command}\` (CPU-time divisor), run once after the warm-up, gave ${fmt(reference.signPerSecond)} sign/s; the authority's ${CONCURRENCY}-in-flight median against it is ${fmtRatio(ratioReference)}.

What each row does:

- **openssl speed**: raw RSA-2048 PKCS#1 v1.5 signatures by the system OpenSSL (${machine.systemOpenssl}).
- **Node crypto.sign**: \`LocalSigner.sign\` (src/pki/signer.ts), one SHA-256/RSA-2048 signature on libuv's thread pool with Node's bundled OpenSSL ${machine.nodeOpenssl}; the ceiling for everything below.
- **buildCertificate**: \`buildCertificate\` (src/pki/certificate.ts) with a signer created once: DER encoding of the to-be-signed certificate (src/pki/der.ts), the signature, and the PEM encoding.
- **authority issue**: \`Authority.issueDatabaseCertificate(bot, route, publicKeyPem, ttl)\` (src/authority/authority.ts) on a \`MemoryStateStore\` with a counting audit sink: lock check, bot, role and db lookups, RBAC decision, public-key check, CA lookup and signer, \`buildCertificate\`, audit event, CA bundle for the response. Subject keys are ${SUBJECT_KEYS} pre-generated RSA-2048 public keys (key generation is the bot's cost, not the authority's). A sample certificate of each kind is verified against the db-client CA before and after the run, and every request must be audited as a success.
- **authority, cached signer (diagnostic)**: the same \`issueDatabaseCertificate\` on a second authority built with a \`signerFactory\` (a public \`AuthorityOptions\` field) that keeps one \`LocalSigner\` per CA key instead of letting the default factory make one per request. Measured ${detailSeconds} s per round, like the decomposition rows.
- **CPU µs per op** is the process's CPU time (all threads) per operation; **cores busy** is CPU time over wall time.

### Where the time goes

CPU time per certificate with ${CONCURRENCY} in flight (all threads of the process): the signature alone ${fmt(cpu('sign-conc'))} µs; \`buildCertificate\` ${fmt(cpu('build-conc'))} µs (+${fmt(cpu('build-conc') - cpu('sign-conc'))} µs of certificate building); the authority with a cached signer ${fmt(cpu('issue-cached-conc'))} µs (+${fmt(cpu('issue-cached-conc') - cpu('build-conc'))} µs of lookups, RBAC, CA and key checks, audit and response); the authority as shipped ${fmt(cpu('issue-conc'))} µs, so making a signer per request costs ${fmt(cpu('issue-conc') - cpu('issue-cached-conc'))} µs more. With ${machine.cores} cores the process cannot sign more than about ${fmt((machine.cores * 1e6) / cpu('issue-conc'))} certificates/s at that cost.

Sequentially, in wall-clock time per certificate: signature ${fmt(perCert('sign-seq'))} µs, \`buildCertificate\` ${fmt(perCert('build-seq'))} µs, the authority ${fmt(perCert('issue-seq'))} µs; one openssl signature takes ${fmt(1e6 / opensslSingle)} µs.

The diagnostic row reaches ${fmtRatio(ratioCached.median)} of openssl (1 process)${ratioCached.median >= TARGET_RATIO ? `, which would meet the ${TARGET_RATIO}× target` : `, still short of the ${TARGET_RATIO}× target`}: it shows how much of the gap is the per-request signer; it is not the shipped configuration and is not the checked number.
`;

  const result: BenchResult = {
    name: 'issuance',
    title: 'Issuance: certificates signed per second',
    date: new Date().toISOString(),
    machine,
    settings: {
      rounds,
      seconds,
      opensslSeconds,
      detailSeconds,
      concurrency: CONCURRENCY,
      opensslProcesses: processes,
      uvThreadpoolSize: Number(process.env.UV_THREADPOOL_SIZE ?? 4),
      quick: options.quick,
    },
    targets: [target],
    markdown,
    artifacts: { 'issuance.svg': svg },
    data: {
      measurements: Object.fromEntries(
        displayOrder.map((id) => [
          id,
          {
            label: (byId.get(id) as Measurement).label,
            rate: summary(id),
            ...(id.startsWith('openssl') ? {} : { cpuUsPerOp: cpuOf(id), coresBusy: coresOf(id) }),
            ratioToOpensslSingle: id === 'openssl-1' ? undefined : vsSingle(id),
          },
        ]),
      ),
      ratios: {
        sequentialToOpensslSingle: ratioSeq,
        concurrentToOpensslSingle: ratioConc,
        concurrentToOpensslMulti: ratioSameCores,
        concurrentToPlainOpensslReference: ratioReference,
        cachedSignerConcurrentToOpensslSingle: ratioCached,
      },
      reference: { command: reference.command, signPerSecond: reference.signPerSecond },
      target: { ratio: TARGET_RATIO, met: target.met, neededCertificatesPerSecond: needed },
      contended,
      opensslMultiScaling: multiScaling,
    },
  };
  const file = writeResult(root, result);
  console.log(`\nissuance: wrote ${path.relative(process.cwd(), file)}`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exit(1);
});
