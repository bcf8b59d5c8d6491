/**
 * `aws_arn` in an iam token's allow rules: an ARN glob matched segment by segment. An ARN is
 * `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE` and its resource is split by `/`
 * (`assumed-role/ROLE/SESSION`, `user/PATH/NAME`). `*` matches any run of characters and `?` one character,
 * both inside one segment only: they never cross `:` or `/`, so `assumed-role/bot*` cannot run from the role
 * name into the session name and admit `bot-role-admin`. Everything else is literal.
 *
 * Teleport's IAM join (lib/auth/join_iam.go, arnMatches) matches the whole ARN as one glob, where `*` also
 * matches `/`; this matcher is deliberately stricter.
 */

const SEPARATOR = /[:/]/;
const WILDCARD_ONLY = /^[*?]+$/;

/** Whether `arn` (a caller's ARN from STS) matches `pattern`. A pattern with a problem matches nothing. */
export function arnMatches(pattern: string, arn: string): boolean {
  if (arnPatternProblem(pattern) !== undefined) return false;
  const source = [...pattern]
    .map((c) => (c === '*' ? '[^:/]*' : c === '?' ? '[^:/]' : c.replace(/[\\^$.|+()[\]{}]/g, '\\$&')))
    .join('');
  return new RegExp(`^${source}$`).test(arn);
}

/**
 * Why `pattern` cannot be an allow rule, or undefined when it can: it must be an ARN, not a regular
 * expression; an `assumed-role` pattern must have the role and the session segment; and it must not leave the
 * role open while constraining only the session name, which whoever calls sts:AssumeRole chooses.
 */
export function arnPatternProblem(pattern: string): string | undefined {
  if (/^\^.*\$$/.test(pattern))
    return 'is an ARN glob (`*` and `?` within one segment), not a regular expression';
  const fields = pattern.split(':');
  if (fields.length < 6 || fields[0] !== 'arn' || fields.slice(5).join(':') === '')
    return 'is not an ARN: expected arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE (`*` never spans a `:`)';
  const resource = fields.slice(5).join(':').split(SEPARATOR);
  const [type = '', role = '', session = ''] = resource;
  if (resource.length === 1 && WILDCARD_ONLY.test(type))
    return 'matches nothing: `*` stays inside one segment, and every caller ARN has more than one; omit aws_arn to allow every identity of aws_account';
  if (type === 'assumed-role' && resource.length !== 3)
    return 'matches nothing: an assumed-role ARN is assumed-role/ROLE/SESSION (`*` never spans a `/`); to allow every session of a role write assumed-role/ROLE/*';
  if (
    resource.length === 3 &&
    (type === 'assumed-role' || WILDCARD_ONLY.test(type)) &&
    WILDCARD_ONLY.test(role) &&
    !WILDCARD_ONLY.test(session)
  )
    return `constrains only the session name ("${session}"), and whoever calls sts:AssumeRole chooses it: any role of the account could join by naming its session so; name the role (assumed-role/ROLE/*)`;
  return undefined;
}

/** The literal account an ARN pattern names, when it names one. */
export function arnPatternAccount(pattern: string): string | undefined {
  const account = pattern.split(':')[4];
  return account !== undefined && /^\d{12}$/.test(account) ? account : undefined;
}
