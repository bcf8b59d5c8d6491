/**
 * Label selectors (`db_labels`) and their combination with `db_labels_expression`. Mirrors
 * lib/services/role.go: MatchLabelGetter (empty selector matches nothing, `'*': '*'` matches everything,
 * every other key must be present and one of its values match; `*` among the values matches any value)
 * and CheckLabelsMatch (deny is greedy: labels or expression; allow needs both of those that are set).
 */
import { labelExpression } from './expression.js';
import { sliceMatchesRegex } from './regex.js';
import type { LabelPairs, Traits } from './templates.js';

export type Condition = 'allow' | 'deny';

/** Whether a selector matches, and a word on why (for explanations). */
export interface LabelMatch {
  match: boolean;
  why: string;
}

const WILDCARD = '*';

function pairMatches(
  labels: Readonly<Record<string, string>>,
  key: string,
  values: readonly string[],
): boolean {
  if (!Object.hasOwn(labels, key)) return false;
  if (values.includes(WILDCARD)) return true;
  return sliceMatchesRegex(labels[key] as string, values);
}

/**
 * MatchLabelGetter over a selector after templating. Two template keys can expand to the same key; Go keeps
 * one of them at random, so an allow matches only if it would whichever is kept, and a deny matches if it
 * would for any of them. Without such duplicates this is Teleport's function exactly. Throws PatternError for
 * an invalid regular expression (Teleport returns an error, which denies).
 */
export function matchLabels(
  selector: LabelPairs,
  labels: Readonly<Record<string, string>>,
  condition: Condition,
): LabelMatch {
  if (selector.length === 0) return { match: false, why: 'empty selector' };
  const stars = selector.filter(([k]) => k === WILDCARD);
  const isShortcut = (values: readonly string[]) => values.length === 1 && values[0] === WILDCARD;
  const shortcut =
    condition === 'allow'
      ? stars.length > 0 && stars.every(([, v]) => isShortcut(v))
      : stars.some(([, v]) => isShortcut(v));
  if (shortcut) return { match: true, why: "'*': '*'" };
  // Every pair is evaluated (Go visits map keys in random order), so an invalid pattern always surfaces.
  const results = selector.map(([key, values]) => ({ key, ok: pairMatches(labels, key, values) }));
  const keys = [...new Set(selector.map(([k]) => k))];
  const failed = keys.find((key) => {
    const forKey = results.filter((r) => r.key === key);
    return condition === 'allow' ? forKey.some((r) => !r.ok) : forKey.every((r) => !r.ok);
  });
  if (failed === undefined) return { match: true, why: 'every label matched' };
  return {
    match: false,
    why: Object.hasOwn(labels, failed)
      ? `label ${failed}=${JSON.stringify(labels[failed])} matches none of its values`
      : `no label ${JSON.stringify(failed)}`,
  };
}

/** `db_labels` and `db_labels_expression` of one side of a role, after templating. */
export interface LabelMatchers {
  labels: LabelPairs;
  expression?: string | undefined;
}

/**
 * CheckLabelsMatch: neither set matches nothing; for deny either matching is a match (the expression is not
 * evaluated when the labels already match); for allow every one that is set must match, and the expression
 * is evaluated even when the labels did not match, so its errors surface as in Teleport.
 */
export function checkLabelsMatch(
  condition: Condition,
  matchers: LabelMatchers,
  env: { labels: Readonly<Record<string, string>>; traits: Traits },
): LabelMatch {
  if (matchers.labels.length === 0 && !matchers.expression)
    return { match: false, why: 'no db_labels or db_labels_expression' };
  let labelsOk = true;
  const why: string[] = [];
  if (matchers.labels.length > 0) {
    const m = matchLabels(matchers.labels, env.labels, condition);
    if (condition === 'deny' && m.match) return { match: true, why: `db_labels: ${m.why}` };
    labelsOk = m.match;
    why.push(`db_labels: ${m.why}`);
  }
  if (matchers.expression) {
    const match = labelExpression(matchers.expression).evaluate(env);
    why.push(`db_labels_expression ${match ? 'matched' : 'did not match'}`);
    if (condition === 'deny') return { match, why: why.join('; ') };
    return { match: labelsOk && match, why: why.join('; ') };
  }
  return { match: condition === 'deny' ? false : labelsOk, why: why.join('; ') };
}
