/**
 * What a tbot configuration may hold that only a Teleport cluster can serve. These are refused before the
 * schema runs, each naming its key and saying why, rather than reported as an unknown field.
 */

/** A refusal: the path of the key in the file and what to do. */
export interface ConfigIssue {
  path: (string | number)[];
  message: string;
}

const CLUSTER = 'needs a Teleport cluster';

/** tbot's join methods; this broker verifies `token` and `iam` itself. */
const TBOT_JOIN_METHODS = [
  'azure',
  'azure_devops',
  'bitbucket',
  'bound_keypair',
  'circleci',
  'ec2',
  'gcp',
  'github',
  'gitlab',
  'kubernetes',
  'oracle',
  'spacelift',
  'terraform_cloud',
  'tpm',
];
/** Sub-sections of `onboarding` that configure one of those join methods. */
const ONBOARDING_CLUSTER_KEYS = ['azure', 'gitlab', 'terraform', 'bound_keypair', 'kubernetes', 'bitbucket'];

/** tbot output and service types other than `database`, `database-tunnel`: SSH, app, Kubernetes, SPIFFE. */
const TBOT_CLUSTER_TYPES = new Map<string, string>([
  ['identity', 'an identity (tsh/SSH) output'],
  ['application', 'an application output'],
  ['application-tunnel', 'an application tunnel'],
  ['kubernetes', 'a Kubernetes output'],
  ['kubernetes/v2', 'a Kubernetes output'],
  ['kubernetes/argo-cd', 'a Kubernetes output'],
  ['ssh_host', 'an SSH host certificate output'],
  ['ssh-multiplexer', 'the SSH multiplexer'],
  ['ssh-proxy', 'the SSH proxy'],
  ['spiffe-svid', 'a SPIFFE SVID output'],
  ['spiffe-workload-api', 'the SPIFFE Workload API'],
  ['workload-identity-x509', 'a workload identity output'],
  ['workload-identity-jwt', 'a workload identity output'],
  ['workload-identity-api', 'the workload identity API'],
  ['workload-identity-aws-roles-anywhere', 'a workload identity output'],
  ['client-credential', 'a client credential output'],
  ['example', 'the example service'],
]);

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function destinationIssues(d: unknown, at: (string | number)[]): ConfigIssue[] {
  if (isRecord(d) && d.type === 'kubernetes_secret')
    return [
      {
        path: [...at, 'type'],
        message: `kubernetes_secret ${CLUSTER} deployment on Kubernetes (tbot writes it through the cluster's Kubernetes access); this broker writes directory, secretsmanager or memory`,
      },
    ];
  return [];
}

function entryIssues(entry: unknown, at: (string | number)[], allowed: readonly string[]): ConfigIssue[] {
  if (!isRecord(entry)) return [];
  const type = entry.type;
  if (typeof type === 'string' && !allowed.includes(type)) {
    const what = TBOT_CLUSTER_TYPES.get(type);
    return [
      {
        path: [...at, 'type'],
        message: what
          ? `${type}: ${what} ${CLUSTER} (it is issued by Teleport's Auth Service and used through Teleport's Proxy); this broker serves ${allowed.join(' and ')}`
          : `unrecognized type ${JSON.stringify(type)} (tbot refuses it too); allowed here: ${allowed.join(', ')}`,
      },
    ];
  }
  return destinationIssues(entry.destination, [...at, 'destination']);
}

/** The refusals of tbot features this broker cannot serve, each at its key. Empty: go on to the schema. */
export function tbotRefusals(doc: unknown): ConfigIssue[] {
  if (!isRecord(doc)) return [];
  const issues: ConfigIssue[] = [];
  if (doc.proxy_server !== undefined)
    issues.push({
      path: ['proxy_server'],
      message: `a Teleport Proxy Service address ${CLUSTER}; this broker's bots reach the authority directly: use auth_server (e.g. unix:///run/broker/authority.sock or https://HOST:3025)`,
    });
  if (doc.fips === true)
    issues.push({
      path: ['fips'],
      message:
        'true: tbot runs in FIPS mode only as a FIPS build and refuses otherwise; this broker is not a FIPS build: remove fips or set it to false',
    });
  if (doc.insecure === true)
    issues.push({
      path: ['insecure'],
      message:
        'true would trust whatever answers at auth_server; this broker always verifies the authority: give onboarding.ca_pins (`broker status` prints them) or onboarding.ca_path',
    });
  if (isRecord(doc.onboarding)) {
    const method = doc.onboarding.join_method;
    if (typeof method === 'string' && TBOT_JOIN_METHODS.includes(method))
      issues.push({
        path: ['onboarding', 'join_method'],
        message: `${method} ${CLUSTER} (Teleport's Auth Service verifies that proof); this broker joins with token or iam`,
      });
    for (const key of ONBOARDING_CLUSTER_KEYS)
      if (doc.onboarding[key] !== undefined)
        issues.push({
          path: ['onboarding', key],
          message: `configures a join method that ${CLUSTER}; this broker joins with token or iam`,
        });
  }
  issues.push(...destinationIssues(doc.storage, ['storage']));
  if (Array.isArray(doc.outputs))
    doc.outputs.forEach((o, i) => {
      issues.push(...entryIssues(o, ['outputs', i], ['database']));
    });
  if (Array.isArray(doc.services))
    doc.services.forEach((s, i) => {
      issues.push(...entryIssues(s, ['services', i], ['database', 'database-tunnel']));
    });
  return issues;
}
