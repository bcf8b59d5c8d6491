/**
 * State keys are a stored format: existing state directories and DynamoDB tables hold items under these
 * spellings, so a change here strands them. And they are spelled in one module only.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { shortLivedPrefixes, stateKeys } from '../../src/authority/state-keys.js';
import { assertValidKey } from '../../src/state/store.js';

const SRC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src');

describe('state keys', () => {
  it('keep the spellings existing state is stored under', () => {
    expect([
      stateKeys.ca('db-client'),
      stateKeys.cluster,
      stateKeys.appliedResources,
      stateKeys.role('r'),
      stateKeys.db('d'),
      stateKeys.bot('b'),
      stateKeys.resource('bot', 'b'),
      stateKeys.botState('b'),
      stateKeys.token('abc'),
      stateKeys.lock('b'),
      stateKeys.challenge('c'),
      stateKeys.challengeKey,
      stateKeys.nonce('n'),
      stateKeys.request('id.digest'),
    ]).toEqual([
      'cas/db-client',
      'config/cluster',
      'config/resources',
      'roles/r',
      'dbs/d',
      'bots/b',
      'bots/b',
      'botstate/b',
      'tokens/abc',
      'locks/b',
      'challenges/c',
      'config/challenge-key',
      'nonces/n',
      'requests/id.digest',
    ]);
    expect([
      stateKeys.roles,
      stateKeys.dbs,
      stateKeys.bots,
      stateKeys.tokens,
      stateKeys.locks,
      stateKeys.requests(),
      stateKeys.challenges,
      stateKeys.nonces,
    ]).toEqual(['roles', 'dbs', 'bots', 'tokens', 'locks', 'requests', 'challenges', 'nonces']);
    // What the authority prunes and DynamoDB expires by TTL: every value there has an ISO `expires`.
    expect(shortLivedPrefixes).toEqual(['challenges', 'requests', 'nonces']);
    for (const key of [stateKeys.ca('bot'), stateKeys.cluster, stateKeys.botState('example')])
      expect(() => assertValidKey(key)).not.toThrow();
  });

  it('are spelled nowhere under src/ but the state-keys module', () => {
    const spelled = /['"`](cas|config|roles|dbs|bots|botstate|tokens|locks|challenges|nonces|requests)\//;
    const walk = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
        e.isDirectory()
          ? walk(path.join(dir, e.name))
          : e.name.endsWith('.ts')
            ? [path.join(dir, e.name)]
            : [],
      );
    const offenders = walk(SRC)
      .filter((f) => !f.endsWith(path.join('authority', 'state-keys.ts')))
      .flatMap((f) =>
        readFileSync(f, 'utf8')
          .split('\n')
          .map((line, i) => ({ line, at: `${path.relative(SRC, f)}:${i + 1}` }))
          .filter(({ line }) => spelled.test(line) && !/^\s*(\/\/|\*|\/\*)/.test(line))
          .map(({ at }) => at),
      );
    expect(offenders).toEqual([]);
  });
});
