/**
 * The StateStore contract, shared by every implementation (memory, state directory, DynamoDB): each test file
 * runs `stateStoreContract` with a function that opens a fresh, empty store.
 */
import { describe, expect, it } from 'vitest';
import { ConflictError } from '../../src/state/errors.js';
import type { StateStore } from '../../src/state/store.js';

const INVALID_KEYS = [
  '',
  '/roles/a',
  'roles/',
  'roles//a',
  '../escape',
  'roles/../../escape',
  'roles/..',
  'roles/a b',
  'Roles/a',
  'roles/.hidden',
  'roles/a\\b',
  'roles/a\n',
];

/** Retries a read-increment-write until its compare-and-swap lands; returns how many conflicts it saw. */
export async function casIncrement(store: StateStore, key: string): Promise<number> {
  for (let conflicts = 0; ; conflicts++) {
    const current = await store.get<number>(key);
    try {
      await store.put(key, (current?.value ?? 0) + 1, current ? current.version : 'absent');
      return conflicts;
    } catch (err) {
      if (!(err instanceof ConflictError)) throw err;
    }
  }
}

/** The StateStore contract, shared by every implementation. */
export function stateStoreContract(name: string, open: () => Promise<StateStore>): void {
  describe(`${name}: StateStore contract`, () => {
    it('returns undefined for a missing key', async () => {
      const store = await open();
      expect(await store.get('roles/missing')).toBeUndefined();
    });

    it('stores a value and returns it with its key and version 1', async () => {
      const store = await open();
      const value = { kind: 'role', metadata: { name: 'a' }, list: [1, 'two', null], nested: { deep: true } };
      expect(await store.put('roles/a', value)).toBe(1);
      expect(await store.get('roles/a')).toEqual({ key: 'roles/a', value, version: 1 });
    });

    it('increases the version by one on every write', async () => {
      const store = await open();
      expect(await store.put('bots/b', 'v1')).toBe(1);
      expect(await store.put('bots/b', 'v2')).toBe(2);
      expect(await store.put('bots/b', 'v3')).toBe(3);
      expect(await store.get('bots/b')).toEqual({ key: 'bots/b', value: 'v3', version: 3 });
    });

    it('keeps versions per key', async () => {
      const store = await open();
      await store.put('bots/a', 1);
      await store.put('bots/a', 2);
      expect(await store.put('bots/b', 1)).toBe(1);
    });

    it("expect 'absent' creates a new key and refuses an existing one with ConflictError", async () => {
      const store = await open();
      expect(await store.put('tokens/t', { n: 1 }, 'absent')).toBe(1);
      await expect(store.put('tokens/t', { n: 2 }, 'absent')).rejects.toBeInstanceOf(ConflictError);
      expect(await store.get('tokens/t')).toEqual({ key: 'tokens/t', value: { n: 1 }, version: 1 });
    });

    it('expect <version> replaces only that version', async () => {
      const store = await open();
      await store.put('botstate/b', { generation: 1 });
      expect(await store.put('botstate/b', { generation: 2 }, 1)).toBe(2);
      const stale = store.put('botstate/b', { generation: 3 }, 1);
      await expect(stale).rejects.toBeInstanceOf(ConflictError);
      await expect(store.put('botstate/b', { generation: 3 }, 3)).rejects.toThrow(
        /expected version 3, found 2/,
      );
      expect(await store.get('botstate/b')).toEqual({
        key: 'botstate/b',
        value: { generation: 2 },
        version: 2,
      });
    });

    it('expect <version> on a missing key is a ConflictError and creates nothing', async () => {
      const store = await open();
      await expect(store.put('botstate/none', 1, 1)).rejects.toBeInstanceOf(ConflictError);
      expect(await store.get('botstate/none')).toBeUndefined();
    });

    it('deletes: true for an existing key, false for a missing one', async () => {
      const store = await open();
      await store.put('locks/a', { reason: 'x' });
      expect(await store.delete('locks/a')).toBe(true);
      expect(await store.get('locks/a')).toBeUndefined();
      expect(await store.delete('locks/a')).toBe(false);
    });

    it('delete with expect <version> refuses a stale version and keeps the value', async () => {
      const store = await open();
      await store.put('tokens/t', 'a');
      await store.put('tokens/t', 'b');
      await expect(store.delete('tokens/t', 1)).rejects.toBeInstanceOf(ConflictError);
      expect(await store.get('tokens/t')).toMatchObject({ value: 'b', version: 2 });
      expect(await store.delete('tokens/t', 2)).toBe(true);
      await expect(store.delete('tokens/t', 2)).rejects.toBeInstanceOf(ConflictError);
    });

    it('a deleted key starts again at version 1', async () => {
      const store = await open();
      await store.put('roles/a', 1);
      await store.put('roles/a', 2);
      await store.delete('roles/a');
      expect(await store.put('roles/a', 3, 'absent')).toBe(1);
    });

    it('returns copies: changing a value read or written does not change the stored value', async () => {
      const store = await open();
      const value = { list: [1, 2] };
      await store.put('roles/a', value);
      value.list.push(3);
      const read = await store.get<{ list: number[] }>('roles/a');
      read?.value.list.push(4);
      expect((await store.get('roles/a'))?.value).toEqual({ list: [1, 2] });
    });

    it('lists the direct children of a prefix with their versions, with or without a trailing slash', async () => {
      const store = await open();
      await store.put('roles/b', 'B');
      await store.put('roles/a', 'A');
      await store.put('roles/a', 'A2');
      await store.put('rolesx/c', 'not a role');
      await store.put('bots/a', 'a bot');
      await store.put('roles/sub/deeper', 'nested');
      const expected = [
        { key: 'roles/a', value: 'A2', version: 2 },
        { key: 'roles/b', value: 'B', version: 1 },
      ];
      expect(await store.list('roles')).toEqual(expected);
      expect(await store.list('roles/')).toEqual(expected);
      expect(await store.list('roles/sub')).toEqual([
        { key: 'roles/sub/deeper', value: 'nested', version: 1 },
      ]);
      expect(await store.list('dbs')).toEqual([]);
    });

    it('lists sorted by key', async () => {
      const store = await open();
      for (const k of ['c', 'a', 'e', 'b', 'd']) await store.put(`tokens/${k}`, k);
      expect((await store.list('tokens')).map((i) => i.key)).toEqual([
        'tokens/a',
        'tokens/b',
        'tokens/c',
        'tokens/d',
        'tokens/e',
      ]);
    });

    it('lists sorted by key in code-unit order, whatever the characters', async () => {
      // The order DynamoDB uses for ASCII sort keys, and what Array.prototype.sort gives.
      const store = await open();
      const keys = ['bots/a', 'bots/a-b', 'bots/a.b', 'bots/B', 'bots/A', 'bots/a_b', 'bots/a@x', 'bots/ab'];
      for (const k of keys) await store.put(k, k);
      expect((await store.list('bots')).map((i) => i.key)).toEqual([...keys].sort());
    });

    it.each(INVALID_KEYS)(
      'rejects the invalid key %j for get, put and delete, writing nothing',
      async (key) => {
        const store = await open();
        await expect((async () => store.get(key))()).rejects.toThrow(/invalid state key/);
        await expect((async () => store.put(key, 'x'))()).rejects.toThrow(/invalid state key/);
        await expect((async () => store.delete(key))()).rejects.toThrow(/invalid state key/);
        expect(await store.list('roles')).toEqual([]);
      },
    );

    it('reports an invalid key as a rejected promise, not a synchronous throw', async () => {
      const store = await open();
      for (const call of [() => store.get('../x'), () => store.put('../x', 1), () => store.delete('../x')]) {
        let promise: Promise<unknown> | undefined;
        expect(() => {
          promise = call();
        }).not.toThrow();
        await expect(promise).rejects.toThrow(/invalid state key/);
      }
    });

    it.each([
      'roles/example-role',
      'tokens/0123abcd',
      'config/cluster',
      'bots/bot@example.com',
      'cas/db-client',
      'x',
    ])('accepts the key %j', async (key) => {
      const store = await open();
      expect(await store.put(key, 1)).toBe(1);
      expect(await store.get(key)).toMatchObject({ key, value: 1 });
    });

    it('lands 20 parallel compare-and-swap increments exactly once each', async () => {
      const store = await open();
      await Promise.all(Array.from({ length: 20 }, () => casIncrement(store, 'counters/n')));
      expect(await store.get('counters/n')).toEqual({ key: 'counters/n', value: 20, version: 20 });
    });

    it("lets exactly one of 10 parallel 'absent' creations win", async () => {
      const store = await open();
      const results = await Promise.allSettled(
        Array.from({ length: 10 }, (_, i) => store.put('tokens/once', i, 'absent')),
      );
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(ConflictError);
    });

    it('lets exactly one of 10 parallel deletes of the same version win (one-time tokens)', async () => {
      const store = await open();
      await store.put('tokens/t', 'secret-hash');
      const results = await Promise.allSettled(Array.from({ length: 10 }, () => store.delete('tokens/t', 1)));
      const won = results.filter((r) => r.status === 'fulfilled' && r.value === true);
      expect(won).toHaveLength(1);
      for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(ConflictError);
    });
  });
}
