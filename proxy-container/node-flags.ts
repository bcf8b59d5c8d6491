/**
 * V8 flags for the proxy sidecar, for the image's ENTRYPOINT (`node <flags> /app/proxy.mjs`) or NODE_OPTIONS.
 *
 * `--max-semi-space-size=1` caps each of V8's young-generation semi-spaces at 1 MiB (default 16 MiB on
 * 64-bit): the proxy's per-chunk garbage is small and short-lived, so scavenges stay cheap, and a burst of
 * connections cannot grow the young generation by tens of MB that stay resident afterwards. bench/proxy runs
 * the proxy with exactly these flags.
 *
 * `--expose-gc` lets the proxy collect once when it has started (src/cli/proxy-commands.ts): the garbage of
 * loading and of the first bundle goes back to the system at once instead of after V8's memory reducer's
 * delay (about 10 s), so an idle sidecar is at its settled size from its first second.
 *
 * `--v8-pool-size=1` gives V8 one background thread (concurrent marking and sweeping, parallel scavenges,
 * background compiles) instead of four: a sidecar has a core or two, and each of those threads keeps its own
 * malloc arena, which a burst of handshakes fills and which stays resident. With 1,000 open tunnelled
 * connections the proxy's RSS is about 1.5 MB lower (bench/proxy, memory).
 */
export const SIDECAR_NODE_FLAGS: readonly string[] = [
  '--max-semi-space-size=1',
  '--expose-gc',
  '--v8-pool-size=1',
];
