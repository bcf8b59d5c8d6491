import path from 'node:path';
import { formatDuration } from '../duration.js';
import type { ConfigIssue } from './config-tbot.js';
import type { BotConfig, DatabaseOutputConfig } from './config-types.js';

/** The shortest renewal interval for a bot that writes a Secrets Manager secret (an output or its storage). */
export const SECRET_WRITE_MIN_INTERVAL_MS = 10 * 60_000;

/** Why: versions pile up faster than AWS removes them, until PutSecretValue fails on the version quota. */
export const SECRET_WRITE_GUIDANCE =
  'Secrets Manager keeps every version of a secret younger than 24 hours and advises at most one write per secret per 10 minutes';

/** The raw fields the rules look at besides the resolved configuration. */
export interface RawFields {
  credential_ttl?: number | undefined;
  certificate_ttl?: number | undefined;
  ca_pins?: string[] | undefined;
  onboarding: { ca_pins?: string[] | undefined; ca_path?: string | undefined };
}

/** The rules tbot and the project place on the combination of fields; returns refusals and warnings. */
export function crossCheck(cfg: BotConfig, raw: RawFields): { issues: ConfigIssue[]; warnings: string[] } {
  const issues: ConfigIssue[] = [];
  const warnings: string[] = [];
  const at = (o: DatabaseOutputConfig) => o.origin.split('.').map((p) => (/^\d+$/.test(p) ? Number(p) : p));
  if (raw.credential_ttl !== undefined && raw.certificate_ttl !== undefined)
    issues.push({
      path: ['certificate_ttl'],
      message: 'give credential_ttl or its older name certificate_ttl, not both',
    });
  if (raw.ca_pins?.length && raw.onboarding.ca_path)
    issues.push({
      path: ['onboarding', 'ca_path'],
      message: 'ca_pins and onboarding.ca_path are mutually exclusive, as in tbot; give one',
    });
  if (raw.onboarding.ca_pins?.length && raw.onboarding.ca_path)
    issues.push({
      path: ['onboarding', 'ca_path'],
      message: 'onboarding.ca_pins and onboarding.ca_path are mutually exclusive, as in tbot; give one',
    });
  // tbot warns; a bot in AWS mode (the project's own shape: iam join or Secrets Manager storage) runs on a
  // schedule with nobody to read a warning, and its consumers would read expired secrets, so it is refused.
  const awsMode = cfg.onboarding.join_method === 'iam' || cfg.storage.type === 'secretsmanager';
  const slow = (ttl: number, interval: number, where: string) => {
    if (cfg.oneshot || interval < ttl) return;
    const what = `renewal_interval (${formatDuration(interval)})`;
    if (awsMode)
      issues.push({
        path: where.split('.').map((p) => (/^\d+$/.test(p) ? Number(p) : p)),
        message: `${what} must be shorter than credential_ttl (${formatDuration(ttl)}), or certificates expire before they are renewed`,
      });
    else
      warnings.push(
        `${where}: ${what} is not shorter than credential_ttl (${formatDuration(ttl)}): certificates expire before they are renewed; shorten renewal_interval or lengthen credential_ttl`,
      );
  };
  slow(cfg.credential_ttl, cfg.renewal_interval, 'renewal_interval');
  for (const o of cfg.outputs) {
    if ((o.credential_ttl === undefined) !== (o.renewal_interval === undefined))
      issues.push({
        path: [...at(o), o.credential_ttl === undefined ? 'renewal_interval' : 'credential_ttl'],
        message:
          'an output sets credential_ttl and renewal_interval together or neither, as in tbot; add the other one',
      });
    else if (o.credential_ttl !== undefined && o.renewal_interval !== undefined)
      slow(o.credential_ttl, o.renewal_interval, `${o.origin}.renewal_interval`);
    if (o.destination.type === 'directory') {
      if (o.destination.acls === 'required')
        issues.push({
          path: [...at(o), 'destination', 'acls'],
          message:
            "required: this broker sets no filesystem ACLs, and tbot refuses `required` where it cannot set them; use acls: try or off, and readers: group for a reader in the directory's group",
        });
      else if (o.destination.aclReaders.length > 0 && o.destination.acls !== 'off')
        warnings.push(
          `${o.origin}.destination.readers: ACL readers are not set by this broker (as tbot does where ACLs are unavailable, they are left out); use readers: group for a reader in the directory's group`,
        );
    }
  }
  // Two writers of one place: tbot logs an error and goes on; a Secrets Manager secret is the project's own
  // destination, and two writers there would fight over its version stages, so that stays refused.
  const seen = new Map<string, string>();
  if (cfg.storage.type === 'directory') seen.set(`dir:${path.resolve(cfg.storage.path)}`, 'storage');
  for (const o of cfg.outputs) {
    const d = o.destination;
    const id =
      d.type === 'directory'
        ? `dir:${path.resolve(d.path)}`
        : d.type === 'secretsmanager'
          ? `sm:${d.name}`
          : undefined;
    if (id === undefined) continue;
    const other = seen.get(id);
    if (other !== undefined) {
      if (d.type === 'secretsmanager')
        issues.push({
          path: [...at(o), 'destination'],
          message: `two outputs write to the same destination (also ${other})`,
        });
      else
        warnings.push(
          `${o.origin}.destination: ${other} uses the same directory; identical destinations can produce unusable results (tbot logs the same)`,
        );
    }
    seen.set(id, o.origin);
  }
  return { issues, warnings };
}

export function secretWriteIssues(cfg: BotConfig): ConfigIssue[] {
  // Secrets Manager's version quota: each secretsmanager output is written once per its own interval;
  // a secretsmanager storage once per cycle, and a cycle comes every shortest interval.
  const issues: ConfigIssue[] = [];
  const flagged = new Set<string>();
  const tooOften = (interval: number, at: (string | number)[], what: string) => {
    if (interval >= SECRET_WRITE_MIN_INTERVAL_MS || flagged.has(at.join('.'))) return;
    flagged.add(at.join('.'));
    issues.push({
      path: at,
      message: `renewal_interval (${formatDuration(interval)}) writes ${what} more often than every 10m0s: ${SECRET_WRITE_GUIDANCE}; use at least 10m, or a directory destination`,
    });
  };
  const ownPath = (o: DatabaseOutputConfig) =>
    o.renewal_interval === undefined
      ? ['renewal_interval']
      : [...o.origin.split('.').map((p) => (/^\d+$/.test(p) ? Number(p) : p)), 'renewal_interval'];
  for (const o of cfg.outputs)
    if (o.destination.type === 'secretsmanager')
      tooOften(
        o.renewal_interval ?? cfg.renewal_interval,
        ownPath(o),
        `secret ${JSON.stringify(o.destination.name)}`,
      );
  if (cfg.storage.type === 'secretsmanager') {
    const storage = `the identity to storage secret ${JSON.stringify(cfg.storage.name)} (once per cycle)`;
    tooOften(cfg.renewal_interval, ['renewal_interval'], storage);
    for (const o of cfg.outputs)
      if (o.renewal_interval !== undefined) tooOften(o.renewal_interval, ownPath(o), storage);
  }
  return issues;
}
