/** The real `openssl` CLI as a second opinion on what the broker issues (integration tests only). */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { type RunResult, run } from './run.js';

/** Runs `openssl` in `cwd` (giving up after 20 s). */
export function openssl(args: readonly string[], cwd: string): Promise<RunResult> {
  return run('openssl', args, { cwd, timeoutMs: 20_000 });
}

/** Writes PEM files into `dir` (name → content). */
export async function writeFiles(dir: string, files: Record<string, string>): Promise<void> {
  await Promise.all(Object.entries(files).map(([name, text]) => writeFile(path.join(dir, name), text)));
}

/** `openssl x509 -noout -text` of a PEM certificate. */
export async function opensslText(dir: string, pem: string, name = 'cert-text.pem'): Promise<string> {
  await writeFiles(dir, { [name]: pem });
  const result = await openssl(['x509', '-noout', '-text', '-in', name], dir);
  if (result.code !== 0) throw new Error(`openssl x509 failed: ${result.stderr}`);
  return result.stdout;
}

/** `openssl verify` of `leafPem` against the CA bundle `caPem`; resolves to the exit code and output. */
export async function opensslVerify(
  dir: string,
  caPem: string,
  leafPem: string,
  extraArgs: readonly string[] = [],
): Promise<RunResult> {
  const tag = Math.random().toString(36).slice(2);
  await writeFiles(dir, { [`ca-${tag}.pem`]: caPem, [`leaf-${tag}.pem`]: leafPem });
  return openssl(['verify', ...extraArgs, '-CAfile', `ca-${tag}.pem`, `leaf-${tag}.pem`], dir);
}

/** Pulls the hex key identifier printed under an extension header in `openssl x509 -text` output. */
export function keyIdFromText(
  text: string,
  header: 'Subject Key Identifier' | 'Authority Key Identifier',
): string {
  const match = new RegExp(`X509v3 ${header}:\\s*\\n\\s*(?:keyid:)?([0-9A-F:]+)`).exec(text);
  if (!match) throw new Error(`no ${header} in openssl output`);
  return (match[1] as string).replace(/:/g, '').toLowerCase();
}
