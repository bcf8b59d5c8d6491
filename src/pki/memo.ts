/**
 * Remembers the results of a pure function of one text (a PEM) for the last `limit` distinct texts: a bot
 * signs every request with the same identity key and the authority checks the same identity certificate on
 * every request of a cycle, and parsing a PEM costs more than the signature itself. Errors are not
 * remembered; the oldest entry goes first.
 */
export function memoByText<T>(limit: number, fn: (text: string) => T): (text: string) => T {
  const cache = new Map<string, T>();
  return (text) => {
    const hit = cache.get(text);
    if (hit !== undefined) return hit;
    const value = fn(text);
    if (cache.size >= limit) cache.delete(cache.keys().next().value as string);
    cache.set(text, value);
    return value;
  };
}
