/**
 * A stored role made ready for one bot: Teleport's per-version defaults (applied by the caller with
 * roleWithDefaults, RoleV6.CheckAndSetDefaults) and the bot's traits expanded into db_names, db_users and
 * db_labels (ApplyTraits in lib/services/role.go; db_labels_expression is not templated, it reads the traits
 * when evaluated).
 */
import type { LabelMatchers } from './labels.js';
import { matchesDefaultNamespace, type Rule } from './rules.js';
import { applyLabelsTraits, applyValueTraitsSlice, type Traits } from './templates.js';

/** One side of a role as stored (the fields the decision reads). */
export interface StoredConditions {
  namespaces?: readonly string[] | undefined;
  db_labels?: Readonly<Record<string, string | readonly string[]>> | undefined;
  db_labels_expression?: string | undefined;
  db_names?: readonly string[] | undefined;
  db_users?: readonly string[] | undefined;
  rules?: readonly Rule[] | undefined;
}

/** One side of a role after templating. */
export interface PreparedSide {
  /** MatchNamespace for the default namespace. */
  namespace: boolean;
  labels: LabelMatchers;
  names: string[];
  users: string[];
  rules: readonly Rule[];
}

export interface PreparedRole {
  name: string;
  allow: PreparedSide;
  deny: PreparedSide;
}

/** A bot's `spec.traits`: Teleport merges entries with the same name. */
export function mergeTraits(
  list: readonly { name: string; values: readonly string[] }[] | undefined,
): Traits {
  const out: Record<string, string[]> = {};
  for (const { name, values } of list ?? []) {
    const merged = Object.hasOwn(out, name) ? (out[name] as string[]) : [];
    for (const v of values) if (!merged.includes(v)) merged.push(v);
    out[name] = merged;
  }
  return out;
}

function prepareSide(c: StoredConditions | undefined, traits: Traits): PreparedSide {
  return {
    namespace: matchesDefaultNamespace(c?.namespaces),
    labels: {
      labels: c?.db_labels ? applyLabelsTraits(c.db_labels, traits) : [],
      expression: c?.db_labels_expression,
    },
    names: applyValueTraitsSlice(c?.db_names ?? [], traits),
    users: applyValueTraitsSlice(c?.db_users ?? [], traits),
    rules: c?.rules ?? [],
  };
}

/** ApplyTraits for the fields database access reads, on both sides of the role. */
export function prepareRole(
  role: { name: string; allow?: StoredConditions | undefined; deny?: StoredConditions | undefined },
  traits: Traits,
): PreparedRole {
  return { name: role.name, allow: prepareSide(role.allow, traits), deny: prepareSide(role.deny, traits) };
}
