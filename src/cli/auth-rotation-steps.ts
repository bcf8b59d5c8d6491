/**
 * What an operator does at each phase of a CA rotation, printed by `broker auth rotate` (and written out in
 * the README's "Rotating a CA"). The databases are outside the broker: each step names the file to install
 * and the reload that takes it without dropping a connection.
 */
import type { RotationOutcome } from '../authority/authority.js';
import type { CaType } from '../pki/ca.js';
import type { RotationPhase } from '../pki/ca-rotation.js';

/** How each engine takes new TLS files without a restart (open connections stay). */
export const RELOADS =
  'PostgreSQL `SELECT pg_reload_conf()`; MariaDB/MySQL `FLUSH SSL` (MariaDB 10.4+) or `ALTER INSTANCE RELOAD TLS` (MySQL 8); Redis `CONFIG SET tls-ca-cert-file <file>` (or tls-cert-file/tls-key-file) with the same path; MongoDB `db.adminCommand({ rotateCertificates: 1 })`';

const RENEWAL_AWS =
  'bots pick the change up at their next scheduled run (or now: `aws lambda invoke --function-name "$BOT" --invocation-type Event /dev/null` for each bot\'s function, stack output BotFunction-<bot>), and proxies at their next read of the bundle: nothing needs a restart';

const RENEWAL =
  'bots pick the change up at their next renewal (renewal_interval, 20m by default; `broker start --oneshot` or restarting a bot does it now), and proxies at their next read of the bundle: nothing needs a restart';

/** Where the rotation runs: the local authority, or the AWS stack's rotation action (`--function`). */
export interface StepsContext {
  /** The CAs the phase moved (`db-server`, `db-client/<service>`, `bot`). */
  cas: readonly string[];
  /** An automatic rotation: the authority moves it on by itself. */
  auto: boolean;
  /** AWS mode: the rotation action's name and region, as given to `auth rotate`. */
  aws?: { function: string; region?: string | undefined } | undefined;
}

/** The lines `auth rotate` prints after moving `type`'s CAs to `phase`. */
export function rotationSteps(
  type: CaType,
  phase: RotationPhase,
  outcomes: readonly RotationOutcome[],
): string[] {
  return rotationStepsFor(type, phase, {
    cas: outcomes.map((o) => o.ca),
    auto: outcomes.some((o) => o.record.rotation?.mode === 'auto'),
  });
}

/** The same for either mode: AWS mode names the stack's functions instead of the local commands. */
export function rotationStepsFor(type: CaType, phase: RotationPhase, ctx: StepsContext): string[] {
  const { aws } = ctx;
  const services = ctx.cas
    .filter((ca) => ca.startsWith('db-client/'))
    .map((ca) => ca.slice('db-client/'.length));
  const svc = services.length === 1 ? (services[0] as string) : 'SERVICE';
  const exportCas = aws
    ? `aws lambda invoke --function-name "$AUTHORITY" --cli-binary-format raw-in-base64-out --payload '{"v":1,"type":"ca-bundles","requestId":"ca-'$(date +%s)'","params":{"service":"${svc}"}}' ca.json && jq -r .result.dbClient ca.json > ${svc}-client-ca.pem   ($AUTHORITY: the stack output AuthorityFunctionName)`
    : `broker auth export --type db-client --service ${svc} > ${svc}-client-ca.pem`;
  const fn = aws ? `--function ${aws.function}${aws.region ? ` --region ${aws.region}` : ''} ` : '';
  const next = (p: string) =>
    `Then: broker auth rotate ${fn}--type ${type}${services.length === 1 ? ` --service ${svc}` : ''} --manual --phase ${p}`;
  const signServer = aws
    ? '  broker auth sign --format=db --function "$SIGN" --service SERVICE --host HOST --out PREFIX --overwrite   ($SIGN: the stack output DbServerCertFunctionName)'
    : '  broker auth sign --format=db --service SERVICE --host HOST --out PREFIX --overwrite';
  const renewal = aws ? RENEWAL_AWS : RENEWAL;
  const keyLeft = aws
    ? ' The KMS key that left is scheduled for deletion (30 days; `aws kms cancel-key-deletion` recovers it).'
    : '';
  const steps: Record<CaType, Partial<Record<RotationPhase, string[]>>> = {
    'db-client': {
      init: [
        'The new key is trusted but signs nothing yet. On every database of each rotated service, install the client CA file again (it now holds both keys) and reload:',
        `  ${exportCas}   (or: broker auth sign --format=db ${aws ? '--function "$SIGN" ' : ''}--service ${svc} --host HOST --out PREFIX --overwrite, PREFIX.cas)`,
        `  reload: ${RELOADS}`,
        next('update_clients'),
      ],
      update_clients: [
        `Client certificates are now signed by the new key, which every database already trusts; ${renewal}.`,
        next('update_servers'),
      ],
      update_servers: [
        'Nothing changes on the databases for a client CA. Wait until every certificate the old key signed has been renewed (each bot has renewed since update_clients) or has expired (credential_ttl, at most 24h).',
        next('standby'),
      ],
      standby: [
        `The old key is gone.${keyLeft} On every database, install the client CA file again (now only the new key) and reload:`,
        `  ${exportCas}`,
        `  reload: ${RELOADS}`,
      ],
      rollback: [
        `The old key signs again and the new one stays trusted; ${renewal}. Once every bot has renewed:`,
        next('standby'),
        'then install the client CA file (only the old key) on every database and reload.',
      ],
    },
    'db-server': {
      init: [
        `Clients now trust both keys: the bundles' teleport-database-ca.crt, teleport-host-ca.crt (and tls.cas, mongo.cas, cockroach/ca.crt) gain the new key; ${renewal}.`,
        'Wait until every bot has renewed, then:',
        next('update_clients'),
      ],
      update_clients: [
        `\`broker auth sign --format=db${aws ? ' --function' : ''}\` now signs with the new key. Nothing to do on the databases yet.`,
        next('update_servers'),
      ],
      update_servers: [
        'On every database, sign a new server certificate and reload (clients trust both keys):',
        signServer,
        `  reload: ${RELOADS}`,
        next('standby'),
      ],
      standby: [
        `The old key leaves the clients' CA files; ${renewal}. Nothing to do on the databases.${keyLeft}`,
      ],
      rollback: [
        'The old key signs again. Re-sign and reload every database that took a new server certificate:',
        signServer,
        next('standby'),
      ],
    },
    bot: {
      init: [
        aws
          ? `Bots learn the new key with their next renewal; ${renewal}.`
          : `Bots learn the new key with their next renewal. Bots that reach the authority over HTTPS: add the new key's pin (broker status) to their ca_pins now.`,
        next('update_clients'),
      ],
      update_clients: [`Bot identities are now signed by the new key; ${renewal}.`, next('update_servers')],
      update_servers: [
        `${aws ? 'Bots reach the authority through Lambda Invoke, with no HTTPS certificate: nothing to restart.' : 'Restart `broker authority serve` so its HTTPS certificate comes from the new key.'} Before standby every bot must have renewed since update_clients: identities from the old key are refused after it.`,
        next('standby'),
      ],
      standby: [
        aws
          ? `The old key is gone.${keyLeft}`
          : "The old key is gone; remove its pin from the bots' ca_pins.",
      ],
      rollback: [`The old key signs identities again; ${renewal}.`, next('standby')],
    },
  };
  if (ctx.auto)
    return [
      aws
        ? 'The authority moves the rotation on by itself, at the first request after each phase is due.'
        : 'The authority moves the rotation on by itself at the times above; `broker status` shows where it is.',
    ];
  return steps[type][phase] ?? [];
}
