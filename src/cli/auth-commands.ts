import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import {
  type Authority,
  DEFAULT_GRACE_PERIOD_MS,
  DEFAULT_SERVER_CERT_TTL_MS,
  type RotationOutcome,
} from '../authority/authority.js';
import { checkServerCertRequest } from '../authority/server-cert.js';
import { ConfigError } from '../config/errors.js';
import { formatDuration, parseDuration } from '../duration.js';
import { CA_DESCRIPTIONS, CA_TYPES, type CaType } from '../pki/ca.js';
import { ROTATION_PHASES, type RotationPhase } from '../pki/ca-rotation.js';
import { writeFileAtomic } from '../state/file-store.js';
import { describeAwsOutcome, rotateWithLambda, signWithLambda } from './auth-aws.js';
import { rotationSteps, rotationStepsFor } from './auth-rotation-steps.js';
import { UsageError } from './errors.js';

type Out = (line: string) => void;

/**
 * Why `auth sign --format=db` needs `--service`: printed when it is missing. The shared client CA an older
 * setup trusts signs nothing any more, so a database given it would refuse every broker certificate.
 */
export const SERVICE_REQUIRED =
  '--service is required: each database trusts only the client CA of its own database service (the name of ' +
  'its `db` resource), so a certificate issued for one database opens no other; e.g. ' +
  '`broker auth sign --format=db --service example-server --host db.internal --out server`';

interface SignOptions {
  format: string;
  service?: string;
  host: string;
  out: string;
  ttl: string;
  overwrite: boolean;
  function?: string;
  region?: string;
}

function durationOption(text: string, flag: string): number {
  const ms = parseDuration(text);
  if (ms === undefined || ms <= 0)
    throw new UsageError(`${flag} ${JSON.stringify(text)} is not a duration; use e.g. 30m, 1h, 8h`);
  return ms;
}

interface RotateOptions {
  type: string;
  service?: string;
  phase?: string;
  manual: boolean;
  gracePeriod: string;
  kmsKey?: string;
  function?: string;
  region?: string;
}

function caTypeOption(text: string): CaType {
  if (!(CA_TYPES as readonly string[]).includes(text))
    throw new UsageError(
      `--type must be one of ${CA_TYPES.map((t) => `${t} (${CA_DESCRIPTIONS[t]})`).join('; ')}`,
    );
  return text as CaType;
}

/** `db-server CA: init -> update_clients (manual rotation 1f…)`, or that it already was there. */
function describeOutcome(o: RotationOutcome): string {
  const r = o.record.rotation;
  if (!o.changed) return `${o.ca} CA: already in phase ${o.to}`;
  const how =
    r?.mode === 'auto' && r.schedule
      ? ` (automatic: update_clients at ${r.schedule.updateClients}, update_servers at ${r.schedule.updateServers}, standby at ${r.schedule.standby})`
      : '';
  return `${o.ca} CA: ${o.from} -> ${o.to}${how}${o.retired ? `; the key that left it: ${o.retired}` : ''}`;
}

const exists = (file: string) =>
  fs.stat(file).then(
    () => true,
    () => false,
  );

/** Registers `auth sign --format=db` and `auth export` (`tctl auth`-shaped) on the program. */
export function registerAuthCommands(program: Command, out: Out, open: () => Promise<Authority>): void {
  const auth = program.command('auth').description('certificate authority operations');
  auth
    .command('sign')
    .description(
      "sign a database server certificate for one database service (writes PREFIX.crt, PREFIX.key, and PREFIX.cas: that service's client CA) like `tctl auth sign --format=db`",
    )
    .requiredOption('--format <format>', 'only "db"')
    .option('--service <name>', 'the database service (db resource name) this server is; required')
    .requiredOption('--host <hosts>', 'comma-separated host names / IPs of the database server')
    .requiredOption('-o, --out <prefix>', 'output path prefix')
    .option(
      '--ttl <duration>',
      'validity of the server certificate',
      formatDuration(DEFAULT_SERVER_CERT_TTL_MS),
    )
    .option('--overwrite', 'replace existing files', false)
    .option(
      '--function <name>',
      "AWS mode: the stack's server certificate action (output DbServerCertFunctionName); the key is made here and only a certificate request signed by it (PKCS#10) is sent",
    )
    .option('--region <region>', 'AWS mode: the region of --function (default: the AWS SDK configuration)')
    .action(async (opts: SignOptions) => {
      if (opts.format !== 'db') throw new UsageError('--format must be "db"');
      if (!opts.service) throw new UsageError(SERVICE_REQUIRED);
      const service = opts.service;
      if (opts.region !== undefined && opts.function === undefined)
        throw new UsageError('--region goes with --function (AWS mode) only');
      const files = { crt: `${opts.out}.crt`, key: `${opts.out}.key`, cas: `${opts.out}.cas` };
      if (!opts.overwrite)
        for (const f of Object.values(files))
          if (await exists(f)) throw new ConfigError(`${f} exists; use --overwrite to replace it`);
      const hosts = opts.host
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
      const ttlMs = durationOption(opts.ttl, '--ttl');
      checkServerCertRequest(hosts, ttlMs);
      const authority = opts.function === undefined ? await open() : undefined;
      const signed = authority
        ? await authority.signDatabaseServer(hosts, { service, ttlMs })
        : await signWithLambda(
            { function: opts.function as string, region: opts.region },
            { service, hosts, ttl: opts.ttl },
          );
      await fs.mkdir(path.dirname(path.resolve(files.crt)), { recursive: true });
      await writeFileAtomic(files.key, signed.privateKeyPem, 0o600);
      await writeFileAtomic(files.crt, signed.certificatePem, 0o644);
      await writeFileAtomic(files.cas, signed.clientCaPem, 0o644);
      out(
        `Database server credentials for service "${service}" written (serial ${signed.serial}, expires ${signed.expires}):`,
      );
      out(`  ${files.crt}  server certificate (SANs include localhost and 127.0.0.1)`);
      out(`  ${files.key}  its private key (0600)`);
      out(
        `  ${files.cas}  the client CA of "${service}": the server trusts certificates issued for this service only`,
      );
      out(
        'PostgreSQL: ssl = on, ssl_cert_file, ssl_key_file, ssl_ca_file = these files; pg_hba.conf: hostssl all all 0.0.0.0/0 cert',
      );
      if (authority && (await authority.getResources('db')).every((db) => db.metadata.name !== service))
        out(
          `Note: there is no db resource "${service}" yet; certificates are issued for it once \`broker create\` adds one with that name.`,
        );
    });
  auth
    .command('rotate')
    .description(
      'move a CA through a rotation (`tctl auth rotate`): init (new key trusted) -> update_clients (new key signs) -> update_servers -> standby (old key removed); rollback before standby',
    )
    .requiredOption('--type <type>', `one of ${CA_TYPES.join(', ')}`)
    .option('--service <name>', "with --type db-client: only this database service's client CA")
    .option('--phase <phase>', `target phase: ${ROTATION_PHASES.join(', ')} (default init)`)
    .option('--manual', 'the operator sets every phase (required for db-client and db-server)', false)
    .option(
      '--grace-period <duration>',
      'automatic mode: the phases are spread evenly over it',
      formatDuration(DEFAULT_GRACE_PERIOD_MS),
    )
    .option('--kms-key <id>', 'AWS mode, --phase init: the KMS key the stack created as the next key')
    .option(
      '--function <name>',
      "AWS mode: the stack's rotation action (output RotationFunctionName), invoked with the AWS SDK's configuration",
    )
    .option('--region <region>', 'AWS mode: the region of --function (default: the AWS SDK configuration)')
    .addHelpText(
      'after',
      '\nAWS mode: broker auth rotate --function "$ROTATE" --type db-client --service orders-postgres --manual --phase init\n' +
        '(ROTATE: the stack output RotationFunctionName; needs lambda:InvokeFunction on it, CaRotation.grantRotate)',
    )
    .action(async (opts: RotateOptions) => {
      const type = caTypeOption(opts.type);
      const phase = opts.phase ?? 'init';
      if (!(ROTATION_PHASES as readonly string[]).includes(phase))
        throw new UsageError(`--phase must be one of ${ROTATION_PHASES.join(', ')}`);
      if (opts.service !== undefined && type !== 'db-client')
        throw new UsageError('--service goes with --type db-client only');
      const gracePeriodMs = durationOption(opts.gracePeriod, '--grace-period');
      if (opts.region !== undefined && opts.function === undefined)
        throw new UsageError('--region goes with --function (AWS mode) only');
      if (opts.function !== undefined) {
        const aws = { function: opts.function, region: opts.region };
        const outcomes = await rotateWithLambda(aws, {
          type,
          ...(opts.service !== undefined ? { service: opts.service } : {}),
          phase,
          manual: opts.manual,
          ...(opts.manual ? {} : { gracePeriod: formatDuration(gracePeriodMs) }),
          ...(opts.kmsKey !== undefined ? { kmsKeyId: opts.kmsKey } : {}),
        });
        for (const o of outcomes) out(describeAwsOutcome(o));
        out('');
        const ctx = { cas: outcomes.map((o) => o.ca), auto: !opts.manual, aws };
        for (const line of rotationStepsFor(type, phase as RotationPhase, ctx)) out(line);
        return;
      }
      const authority = await open();
      const outcomes = await authority.rotateCa({
        type,
        service: opts.service,
        phase: phase as RotationPhase,
        mode: opts.manual ? 'manual' : 'auto',
        gracePeriodMs,
        kmsKeyId: opts.kmsKey,
      });
      for (const o of outcomes) out(describeOutcome(o));
      out('');
      for (const line of rotationSteps(type, phase as RotationPhase, outcomes)) out(line);
    });
  auth
    .command('export')
    .description('print a CA certificate bundle (every active certificate)')
    .requiredOption('--type <type>', `one of ${CA_TYPES.join(', ')}`)
    .option(
      '--service <name>',
      'with --type db-client: the client CA of this database service (what its database trusts)',
    )
    .action(async (opts: { type: string; service?: string }) => {
      caTypeOption(opts.type);
      if (opts.service !== undefined && opts.type !== 'db-client')
        throw new UsageError('--service goes with --type db-client only');
      const authority = await open();
      const bundle =
        opts.service === undefined
          ? await authority.caBundle(opts.type as CaType)
          : await authority.dbClientCaBundle(opts.service);
      out(bundle.trimEnd());
    });
}
