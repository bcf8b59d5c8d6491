/**
 * db_labels and db_labels_expression as Teleport combines them (lib/services/role.go: MatchLabelGetter,
 * CheckLabelsMatch): every key of a selector must match, for deny as for allow; only `'*': '*'` exactly is
 * the match-all shortcut; an allow needs the labels and the expression both, a deny either; and the
 * explanation (`broker rbac explain`) says which of them decided.
 */
import { describe, expect, it } from 'vitest';
import { checkLabelsMatch, type LabelMatchers, matchLabels } from '../../src/authority/rbac/labels.js';

const PROD = { env: 'prod', team: 'payments' };
const env = (labels: Record<string, string>) => ({ labels, traits: { teams: ['payments'] } });
const matchers = (labels: LabelMatchers['labels'], expression?: string): LabelMatchers => ({
  labels,
  expression,
});

describe('matchLabels (MatchLabelGetter)', () => {
  it('a deny selector matches only when every one of its keys matches, as an allow selector does', () => {
    const selector: LabelMatchers['labels'] = [
      ['env', ['prod']],
      ['team', ['search']],
    ];
    expect(matchLabels(selector, PROD, 'deny').match).toBe(false);
    expect(matchLabels(selector, PROD, 'allow').match).toBe(false);
    expect(matchLabels(selector, { env: 'prod', team: 'search' }, 'deny').match).toBe(true);
  });

  it("only '*': '*' exactly matches everything; '*' with other values needs a label named '*'", () => {
    expect(matchLabels([['*', ['*']]], {}, 'allow').match).toBe(true);
    expect(matchLabels([['*', ['*', 'prod']]], PROD, 'allow').match).toBe(false);
    expect(matchLabels([['*', ['*', 'prod']]], PROD, 'deny').match).toBe(false);
    expect(matchLabels([['*', ['*', 'prod']]], { '*': 'x' }, 'allow').match).toBe(true);
  });

  it("two templated '*' keys: an allow takes the shortcut only if both are '*': '*', a deny if either is", () => {
    // Go keeps one of two equal map keys at random: an allow must hold whichever is kept, a deny may use either.
    const selector: LabelMatchers['labels'] = [
      ['*', ['*']],
      ['*', ['prod']],
    ];
    expect(matchLabels(selector, PROD, 'allow').match).toBe(false);
    expect(matchLabels(selector, PROD, 'deny').match).toBe(true);
  });

  it('two templated keys that expand to one label: an allow needs both to match, a deny either', () => {
    const selector: LabelMatchers['labels'] = [
      ['env', ['prod']],
      ['env', ['dev']],
    ];
    expect(matchLabels(selector, PROD, 'allow')).toEqual({
      match: false,
      why: 'label env="prod" matches none of its values',
    });
    expect(matchLabels(selector, PROD, 'deny')).toEqual({ match: true, why: 'every label matched' });
    expect(matchLabels(selector, { env: 'test' }, 'deny').match).toBe(false);
  });

  it('explains the outcome: the label that failed, a missing label, or the shortcut', () => {
    expect(matchLabels([], PROD, 'allow')).toEqual({ match: false, why: 'empty selector' });
    expect(matchLabels([['env', ['dev']]], PROD, 'allow').why).toBe(
      'label env="prod" matches none of its values',
    );
    expect(matchLabels([['region', ['eu']]], PROD, 'allow').why).toBe('no label "region"');
    expect(matchLabels([['*', ['*']]], PROD, 'allow').why).toBe("'*': '*'");
  });
});

describe('checkLabelsMatch (CheckLabelsMatch)', () => {
  const labelsMatch: LabelMatchers['labels'] = [['env', ['prod']]];
  const labelsMiss: LabelMatchers['labels'] = [['env', ['dev']]];
  const exprMatch = 'labels["team"] == "payments"';
  const exprMiss = 'labels["team"] == "search"';

  it('neither set matches nothing, for allow and deny', () => {
    for (const condition of ['allow', 'deny'] as const)
      expect(checkLabelsMatch(condition, matchers([]), env(PROD))).toEqual({
        match: false,
        why: 'no db_labels or db_labels_expression',
      });
  });

  it('an allow needs the labels and the expression both', () => {
    const allow = (labels: LabelMatchers['labels'], expression: string) =>
      checkLabelsMatch('allow', matchers(labels, expression), env(PROD));
    expect(allow(labelsMatch, exprMatch)).toEqual({
      match: true,
      why: 'db_labels: every label matched; db_labels_expression matched',
    });
    expect(allow(labelsMatch, exprMiss)).toEqual({
      match: false,
      why: 'db_labels: every label matched; db_labels_expression did not match',
    });
    expect(allow(labelsMiss, exprMatch)).toEqual({
      match: false,
      why: 'db_labels: label env="prod" matches none of its values; db_labels_expression matched',
    });
    expect(allow(labelsMiss, exprMiss).match).toBe(false);
  });

  it('a deny needs either: the labels, or else the expression', () => {
    const deny = (labels: LabelMatchers['labels'], expression: string) =>
      checkLabelsMatch('deny', matchers(labels, expression), env(PROD));
    expect(deny(labelsMatch, exprMiss)).toEqual({ match: true, why: 'db_labels: every label matched' });
    expect(deny(labelsMiss, exprMatch)).toEqual({
      match: true,
      why: 'db_labels: label env="prod" matches none of its values; db_labels_expression matched',
    });
    expect(deny(labelsMiss, exprMiss)).toEqual({
      match: false,
      why: 'db_labels: label env="prod" matches none of its values; db_labels_expression did not match',
    });
  });

  it('the expression alone decides when no db_labels are set', () => {
    for (const condition of ['allow', 'deny'] as const) {
      expect(checkLabelsMatch(condition, matchers([], exprMatch), env(PROD))).toEqual({
        match: true,
        why: 'db_labels_expression matched',
      });
      expect(checkLabelsMatch(condition, matchers([], exprMiss), env(PROD)).match).toBe(false);
    }
  });

  it('the labels alone decide when no expression is set, and the explanation names them', () => {
    expect(checkLabelsMatch('allow', matchers(labelsMatch), env(PROD))).toEqual({
      match: true,
      why: 'db_labels: every label matched',
    });
    expect(checkLabelsMatch('deny', matchers(labelsMiss), env(PROD))).toEqual({
      match: false,
      why: 'db_labels: label env="prod" matches none of its values',
    });
  });

  it("the expression sees the bot's traits", () => {
    const expression = 'contains(user.spec.traits["teams"], labels["team"])';
    expect(checkLabelsMatch('allow', matchers([], expression), env(PROD)).match).toBe(true);
    expect(checkLabelsMatch('allow', matchers([], expression), env({ team: 'search' })).match).toBe(false);
  });
});
