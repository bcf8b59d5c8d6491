import { checkExpect } from './file-store.js';
import { assertValidKey, type Expect, type StateStore, type Versioned } from './store.js';

/** StateStore in memory: for tests and throwaway authorities. Values are deep-copied in and out. */
export class MemoryStateStore implements StateStore {
  private readonly items = new Map<string, { value: string; version: number }>();

  async get<T>(key: string): Promise<Versioned<T> | undefined> {
    assertValidKey(key);
    const item = this.items.get(key);
    return item ? { key, value: JSON.parse(item.value) as T, version: item.version } : undefined;
  }

  async put(key: string, value: unknown, expect?: Expect): Promise<number> {
    assertValidKey(key);
    const current = this.items.get(key);
    checkExpect(key, current?.version, expect);
    const version = (current?.version ?? 0) + 1;
    this.items.set(key, { value: JSON.stringify(value), version });
    return version;
  }

  async delete(key: string, expect?: Expect): Promise<boolean> {
    assertValidKey(key);
    checkExpect(key, this.items.get(key)?.version, expect);
    return this.items.delete(key);
  }

  async list<T>(prefix: string): Promise<Versioned<T>[]> {
    const base = `${prefix.replace(/\/?$/, '')}/`;
    return [...this.items.entries()]
      .filter(([key]) => key.startsWith(base) && !key.slice(base.length).includes('/'))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([key, item]) => ({ key, value: JSON.parse(item.value) as T, version: item.version }));
  }
}
