/**
 * The rotation state a CA record carries: Teleport's phases (`tctl auth rotate`), stored with the keys they
 * order so one conditional write moves both.
 */

/** Where a rotation stands. `standby`: no rotation in progress. */
export const ROTATION_PHASES = ['standby', 'init', 'update_clients', 'update_servers', 'rollback'] as const;
export type RotationPhase = (typeof ROTATION_PHASES)[number];

/** `manual`: the operator sets every phase; `auto`: the authority walks them on a schedule. */
export type RotationMode = 'manual' | 'auto';

/** When an automatic rotation enters each later phase (ISO times), evenly split over its grace period. */
export interface RotationSchedule {
  updateClients: string;
  updateServers: string;
  standby: string;
}

/**
 * A CA's rotation. During one, the record holds two keys: in `init` and `rollback` the old key signs and the
 * new one is only trusted; in `update_clients` and `update_servers` the new key signs and the old one is
 * still trusted. `standby` keeps the signing key alone.
 */
export interface CaRotation {
  phase: RotationPhase;
  /** Set while a rotation is in progress. */
  mode?: RotationMode;
  /** Random id of the rotation in progress (audit lines carry it). */
  id?: string;
  /** When the rotation in progress started. */
  started?: string;
  /** When the current phase was entered. */
  phaseEntered?: string;
  /** Auto mode only. */
  gracePeriodMs?: number;
  schedule?: RotationSchedule;
  /** When the last rotation (or rollback) completed. */
  lastRotated?: string;
}
