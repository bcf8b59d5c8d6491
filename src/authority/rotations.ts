import { randomUUID } from 'node:crypto';
import type { CaKey, CaRecord, CaType } from '../pki/ca.js';
import type { RotationMode, RotationPhase } from '../pki/ca-rotation.js';
import { ConflictError } from '../state/errors.js';
import type { Versioned } from '../state/store.js';
import type { AuthorityContext } from './context.js';
import { NotFoundError, RotationError } from './errors.js';
import { duePhase, type PhaseTransition, phaseOf, transition } from './rotation.js';
import { type StateKey, stateKeys } from './state-keys.js';

/**
 * Teleport's default grace period is 30 h; the broker's is 36 h so that `update_clients` to `standby` (two
 * thirds of it) outlasts the 24 h cap on every certificate: each certificate the old key signed has expired
 * or been renewed before the old key leaves the bundles.
 */
export const DEFAULT_GRACE_PERIOD_MS = 36 * 3_600_000;

/** Why only the bot CA rotates on a schedule: the databases are configured by hand at each phase. */
export const AUTO_REFUSED =
  'only the bot CA rotates automatically: a database trusts client CAs and presents server certificates an ' +
  'operator installs, so each phase of a db-client or db-server rotation waits for that operator; add ' +
  '--manual and follow the steps each phase prints';

/** `broker auth rotate`: which CA, to which phase, how. */
export interface RotateRequest {
  type: CaType;
  /** db-client only: one database service's client CA. Without it, every db-client CA moves together. */
  service?: string | undefined;
  /** Default `init`. */
  phase?: RotationPhase | undefined;
  mode: RotationMode;
  /** Auto mode: default DEFAULT_GRACE_PERIOD_MS. */
  gracePeriodMs?: number | undefined;
  /** `init` in AWS mode: the KMS key the stack created to be this CA's next key. */
  kmsKeyId?: string | undefined;
}

/** What happened to one CA. */
export interface RotationOutcome {
  /** `bot`, `db-server`, `db-client` (the shared one) or `db-client/<service>`. */
  ca: string;
  from: RotationPhase;
  to: RotationPhase;
  changed: boolean;
  record: CaRecord;
  /** What was done with the key that left the CA (e.g. its KMS deletion scheduled), or why that failed. */
  retired?: string;
}

/**
 * A RotationOutcome as the AWS rotation action answers it (functions/authority-rotate.ts) and
 * `broker auth rotate --function` reads it (src/cli/auth-aws.ts): the CA's keys by pin and KMS key id, no
 * certificates.
 */
export interface RotationOutcomeSummary {
  ca: string;
  from: string;
  to: string;
  changed: boolean;
  retired?: string;
  keys: { pin: string; kmsKeyId?: string }[];
}

interface Target {
  key: StateKey<CaRecord>;
  ca: string;
  type: CaType;
  service?: string;
}

/** A placeholder that lets a request be checked against every CA before any new key is made. */
const PENDING_KEY: CaKey = { certificatePem: '(the new key)' };

/** Rotates CAs phase by phase (src/authority/rotation.ts), writing each CA with one conditional write and auditing it. */
export class Rotations {
  constructor(private readonly ctx: AuthorityContext) {}

  /** Moves the CAs `request` names to its phase; every CA is checked before any is changed. */
  async rotate(request: RotateRequest): Promise<RotationOutcome[]> {
    const to = request.phase ?? 'init';
    const targets = await this.targets(request);
    if (request.mode === 'auto' && request.type !== 'bot' && to !== 'rollback')
      return this.refuse(targets, to, AUTO_REFUSED);
    if (request.kmsKeyId !== undefined && (to !== 'init' || targets.length !== 1))
      return this.refuse(
        targets,
        to,
        'a KMS key id names the new key of one CA: give it with --phase init and one CA',
      );
    const items: Versioned<CaRecord>[] = [];
    for (const target of targets) {
      const item = await this.ctx.state.get(target.key);
      if (!item) throw new NotFoundError(`the ${target.ca} CA does not exist`);
      try {
        transition(item.value, `the ${target.ca} CA`, {
          to,
          now: this.ctx.clock.now(),
          newKey: PENDING_KEY,
          id: '-',
        });
      } catch (err) {
        if (err instanceof RotationError) return this.refuse([target], to, err.message);
        throw err;
      }
      items.push(item);
    }
    const id = randomUUID();
    const outcomes: RotationOutcome[] = [];
    for (const [i, target] of targets.entries()) {
      const item = items[i] as Versioned<CaRecord>;
      const newKey =
        to === 'init' && phaseOf(item.value) !== 'init'
          ? await this.ctx.rotationKeyFactory({
              type: target.type,
              service: target.service,
              clusterName: await this.clusterName(),
              kmsKeyId: request.kmsKeyId,
            })
          : undefined;
      let moved: PhaseTransition;
      try {
        moved = transition(item.value, `the ${target.ca} CA`, {
          to,
          now: this.ctx.clock.now(),
          mode: request.mode,
          id,
          ...(newKey ? { newKey } : {}),
          ...(request.mode === 'auto'
            ? { gracePeriodMs: request.gracePeriodMs ?? DEFAULT_GRACE_PERIOD_MS }
            : {}),
        });
      } catch (err) {
        if (err instanceof RotationError) return this.refuse([target], to, err.message);
        throw err;
      }
      outcomes.push(await this.commit(target, item, moved));
    }
    return outcomes;
  }

  /** Writes one CA's transition (compare-and-swap on the version read), audits it, retires the key it dropped. */
  private async commit(
    target: Target,
    item: Versioned<CaRecord>,
    moved: PhaseTransition,
  ): Promise<RotationOutcome> {
    const outcome: RotationOutcome = {
      ca: target.ca,
      from: moved.from,
      to: moved.to,
      changed: moved.changed,
      record: moved.record,
    };
    if (!moved.changed) return outcome;
    try {
      await this.ctx.state.put(target.key, moved.record, item.version);
    } catch (err) {
      if (err instanceof ConflictError)
        throw new RotationError(
          `the ${target.ca} CA changed while it was being rotated; run the command again`,
        );
      throw err;
    }
    await this.ctx.record(phaseEvent(target.ca, moved));
    if (moved.retired) outcome.retired = await retireKey(this.ctx, target.ca, moved.retired);
    return outcome;
  }

  private async refuse(targets: readonly Target[], to: RotationPhase, message: string): Promise<never> {
    for (const target of targets)
      await this.ctx.record({
        event: 'ca.rotate',
        outcome: 'denied',
        kind: 'ca',
        name: target.ca,
        reason: `to ${to}: ${message}`,
      });
    throw new RotationError(message);
  }

  private async targets(request: RotateRequest): Promise<Target[]> {
    const { type, service } = request;
    if (service !== undefined) {
      if (type !== 'db-client') throw new RotationError('a database service names a db-client CA only');
      const key = stateKeys.dbClientCa(service);
      if (!(await this.ctx.state.has(key)))
        throw new NotFoundError(
          `database service "${service}" has no client CA yet; nothing to rotate (it is created by the first certificate for the service)`,
        );
      return [{ key, ca: `db-client/${service}`, type, service }];
    }
    const shared: Target = { key: stateKeys.ca(type), ca: type, type };
    if (type !== 'db-client') return [shared];
    const services = (await this.ctx.state.values(stateKeys.dbClientCas))
      .map((r) => r.service)
      .filter((s): s is string => s !== undefined);
    return [
      shared,
      ...services.map((s) => ({ key: stateKeys.dbClientCa(s), ca: `db-client/${s}`, type, service: s })),
    ];
  }

  private async clusterName(): Promise<string> {
    return (await this.ctx.state.get(stateKeys.cluster))?.value.name ?? 'broker';
  }
}

/**
 * Moves an automatic rotation on when its next phase is due: called where the CA record is read for a
 * request, so the authority needs no timer of its own (a Lambda has none). Another process moving it first
 * wins; the record it wrote is read again.
 */
export async function advanceDueRotation(
  ctx: AuthorityContext,
  key: StateKey<CaRecord>,
  item: Versioned<CaRecord>,
): Promise<CaRecord> {
  const now = ctx.clock.now();
  const due = duePhase(item.value, now);
  if (!due) return item.value;
  const ca = item.value.service === undefined ? item.value.type : `db-client/${item.value.service}`;
  const moved = transition(item.value, `the ${ca} CA`, { to: due, now });
  try {
    await ctx.state.put(key, moved.record, item.version);
  } catch (err) {
    if (!(err instanceof ConflictError)) throw err;
    return (await ctx.state.get(key))?.value ?? item.value;
  }
  await ctx.record(phaseEvent(ca, moved));
  if (moved.retired) await retireKey(ctx, ca, moved.retired);
  return moved.record;
}

/** Hands a key that left its CA to `retireCaKey` (AWS: schedule the KMS key's deletion) and audits that. */
async function retireKey(ctx: AuthorityContext, ca: string, key: CaKey): Promise<string> {
  if (!ctx.retireCaKey) return 'removed from the CA';
  try {
    const done = await ctx.retireCaKey(key);
    await ctx.record({ event: 'ca.key.retire', outcome: 'success', kind: 'ca', name: ca, reason: done });
    return done;
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    await ctx.record({ event: 'ca.key.retire', outcome: 'error', kind: 'ca', name: ca, reason: why });
    return `removed from the CA, but retiring it failed (${why}); schedule its deletion by hand`;
  }
}

function phaseEvent(ca: string, moved: PhaseTransition) {
  const r = moved.record.rotation;
  const how =
    moved.to === 'standby'
      ? moved.from === 'rollback'
        ? 'rollback complete'
        : 'rotation complete'
      : `${r?.mode ?? 'manual'} rotation ${r?.id ?? ''}`.trim();
  return {
    event: 'ca.rotate',
    outcome: 'success' as const,
    kind: 'ca',
    name: ca,
    reason: `phase ${moved.from} -> ${moved.to} (${how})`,
  };
}
