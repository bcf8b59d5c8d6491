/** PEM bundle text helpers. Pure string work: no parsing of the certificates themselves. */

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g;

/** Splits a PEM bundle into its certificates. */
export function splitPemBundle(bundle: string): string[] {
  return (bundle.match(PEM_BLOCK) ?? []).map((pem) => (pem.endsWith('\n') ? pem : `${pem}\n`));
}

/** Joins CA certificates into one bundle file, de-duplicated, each ending in a newline. */
export function joinPemBundle(certs: readonly string[]): string {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const pem of certs.flatMap(splitPemBundle)) {
    const key = pem.trim();
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(pem);
  }
  return out.join('');
}
