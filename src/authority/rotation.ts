/**
 * CA rotation as a state machine over one CA record, with Teleport's phases (lib/auth/rotate.go):
 *
 * - `init`: a new key is added as trusted only; the old key still signs. Every trust bundle (bot outputs,
 *   `auth sign --format=db` client CA files, `ca-bundles`) now holds both, so parties learn the new key
 *   before anything is signed with it.
 * - `update_clients`: the new key signs; the old key stays trusted, so certificates it signed keep working.
 * - `update_servers`: nothing changes in the record; it is the phase in which servers (databases, the
 *   authority's listener) take certificates from the new key. Both stay trusted.
 * - `standby` (from `update_servers`): the old key is removed from the record and so from every bundle.
 * - `rollback` (from `init`, `update_clients` or `update_servers`): the old key signs again and the new one
 *   stays trusted until `standby`, which then removes the new key.
 *
 * Pure: the caller supplies the time, the new key and the id, and writes the result.
 */
import type { CaKey, CaRecord } from '../pki/ca.js';
import type { CaRotation, RotationMode, RotationPhase, RotationSchedule } from '../pki/ca-rotation.js';
import { RotationError } from './errors.js';

/** What a phase change asks for. */
export interface PhaseChange {
  to: RotationPhase;
  now: Date;
  /** `init` only: the key that will take over. */
  newKey?: CaKey;
  /** `init` only. */
  mode?: RotationMode;
  /** `init` in auto mode only: the phases are spread evenly over it, as Teleport does. */
  gracePeriodMs?: number;
  /** `init` only: the rotation's id. */
  id?: string;
}

/** A phase change worked out: the record to write, and the key leaving it (at `standby`). */
export interface PhaseTransition {
  from: RotationPhase;
  to: RotationPhase;
  record: CaRecord;
  /** The key no longer trusted after this change: the old one after a rotation, the new one after a rollback. */
  retired?: CaKey;
  /** False when the CA already is in the requested phase (a retry): nothing to write. */
  changed: boolean;
}

/** The phase a record is in (`standby` when it was never rotated). */
export function phaseOf(record: CaRecord): RotationPhase {
  return record.rotation?.phase ?? 'standby';
}

/** Which phases may follow which (Teleport's processRotationRequest). */
const ALLOWED_FROM: Record<RotationPhase, readonly RotationPhase[]> = {
  init: ['standby'],
  update_clients: ['init'],
  update_servers: ['update_clients'],
  rollback: ['init', 'update_clients', 'update_servers'],
  standby: ['update_servers', 'rollback'],
};

/** What to run to reach `to` from `from`, for refusals. */
function nextSteps(from: RotationPhase): string {
  switch (from) {
    case 'standby':
      return 'start one with --phase init';
    case 'init':
      return 'the next phase is update_clients (or rollback)';
    case 'update_clients':
      return 'the next phase is update_servers (or rollback)';
    case 'update_servers':
      return 'the next phase is standby (or rollback)';
    case 'rollback':
      return 'the next phase is standby, which completes the rollback';
  }
}

/** Works out the record after moving `record` (named `what` in messages) to `change.to`. */
export function transition(record: CaRecord, what: string, change: PhaseChange): PhaseTransition {
  const from = phaseOf(record);
  const { to, now } = change;
  const rotation = record.rotation ?? { phase: 'standby' };
  if (from === to && to !== 'init' && to !== 'standby') return { from, to, record, changed: false };
  if (!ALLOWED_FROM[to].includes(from))
    throw new RotationError(
      from === 'standby'
        ? `${what} is not being rotated, so it cannot move to ${to}; ${nextSteps(from)}`
        : `${what} is in phase ${from} of a rotation and cannot move to ${to}; ${nextSteps(from)}`,
    );
  const at = now.toISOString();
  const keys = record.keys;
  const [first, second] = keys;
  if (!first) throw new RotationError(`${what} holds no key`);
  switch (to) {
    case 'init': {
      if (keys.length !== 1)
        throw new RotationError(
          `${what} holds ${keys.length} keys outside a rotation; it must hold one to start a rotation`,
        );
      if (!change.newKey || !change.id) throw new RotationError(`rotating ${what} needs a new key`);
      if (
        change.newKey.certificatePem === first.certificatePem ||
        (change.newKey.kmsKeyId !== undefined && change.newKey.kmsKeyId === first.kmsKeyId)
      )
        throw new RotationError(
          `the new key of ${what} is the key it already has${first.kmsKeyId ? ` (KMS key ${first.kmsKeyId}): the stack must create a new one` : ''}`,
        );
      const mode = change.mode ?? 'manual';
      const next: CaRotation = {
        ...keep(rotation, 'lastRotated'),
        phase: 'init',
        mode,
        id: change.id,
        started: at,
        phaseEntered: at,
      };
      if (mode === 'auto') {
        const grace = change.gracePeriodMs;
        if (!(grace !== undefined && grace > 0))
          throw new RotationError('an automatic rotation needs a grace period longer than zero');
        next.gracePeriodMs = grace;
        next.schedule = scheduleOf(now, grace);
      }
      return { from, to, changed: true, record: { ...record, keys: [first, change.newKey], rotation: next } };
    }
    case 'update_clients':
      return {
        from,
        to,
        changed: true,
        record: { ...record, keys: swap(keys, what), rotation: { ...rotation, phase: to, phaseEntered: at } },
      };
    case 'update_servers':
      return {
        from,
        to,
        changed: true,
        record: { ...record, rotation: { ...rotation, phase: to, phaseEntered: at } },
      };
    case 'rollback': {
      // From init the old key still signs; later phases hand signing back to it.
      const rolled = from === 'init' ? keys : swap(keys, what);
      const { schedule: _s, gracePeriodMs: _g, ...rest } = rotation;
      return {
        from,
        to,
        changed: true,
        record: {
          ...record,
          keys: rolled,
          rotation: { ...rest, phase: to, mode: 'manual', phaseEntered: at },
        },
      };
    }
    case 'standby':
      return {
        from,
        to,
        changed: true,
        record: { ...record, keys: [first], rotation: { phase: 'standby', lastRotated: at } },
        ...(second ? { retired: second } : {}),
      };
  }
}

/** The phase an automatic rotation is due to enter at `now`, if any. */
export function duePhase(record: CaRecord, now: Date): RotationPhase | undefined {
  const r = record.rotation;
  if (r?.mode !== 'auto' || !r.schedule) return undefined;
  const t = now.getTime();
  if (r.phase === 'init' && t >= Date.parse(r.schedule.updateClients)) return 'update_clients';
  if (r.phase === 'update_clients' && t >= Date.parse(r.schedule.updateServers)) return 'update_servers';
  if (r.phase === 'update_servers' && t >= Date.parse(r.schedule.standby)) return 'standby';
  return undefined;
}

/** Teleport's GenerateSchedule: the three later phases at a third, two thirds and all of the grace period. */
export function scheduleOf(start: Date, gracePeriodMs: number): RotationSchedule {
  const at = (fraction: number) =>
    new Date(start.getTime() + Math.floor(gracePeriodMs * fraction)).toISOString();
  return { updateClients: at(1 / 3), updateServers: at(2 / 3), standby: at(1) };
}

function swap(keys: readonly CaKey[], what: string): CaKey[] {
  const [a, b] = keys;
  if (!a || !b || keys.length !== 2)
    throw new RotationError(`${what} should hold two keys during a rotation`);
  return [b, a];
}

function keep(rotation: CaRotation, field: 'lastRotated'): Partial<CaRotation> {
  return rotation[field] === undefined ? {} : { [field]: rotation[field] };
}
