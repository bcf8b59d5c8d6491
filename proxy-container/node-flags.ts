/**
 * V8 flags for the proxy sidecar, for the image's ENTRYPOINT (`node <flags> /app/proxy.mjs`) or NODE_OPTIONS.
 *
 * `--max-semi-space-size=1` caps each of V8's young-generation semi-spaces at 1 MiB (default 16 MiB on
 * 64-bit): the proxy's per-chunk garbage is small and short-lived, so scavenges stay cheap, and a burst of
 * connections cannot grow the young generation by tens of MB that stay resident afterwards. bench/proxy runs
 * the proxy with exactly these flags.
 */
export const SIDECAR_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1'];
