/**
 * Shared fixtures for the unit tests.
 *
 * Every key and CA here is a throwaway test key generated at test time and kept in memory (or in a temp
 * directory that is removed afterwards); none is ever committed. Key pairs are cached per test file because
 * RSA-2048 generation costs 50-100 ms each.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildCertificate } from '../../src/pki/certificate.js';
import { generateRsaKeyPair, type KeyPairPem } from '../../src/pki/keys.js';
import { LocalSigner } from '../../src/pki/signer.js';

/** Absolute path of the repository root (for child processes that import `src/` through tsx). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** The current time truncated to whole seconds, as X.509 validity times carry no milliseconds. */
export function nowSeconds(): Date {
  return new Date(Math.floor(Date.now() / 1000) * 1000);
}

const keyCache = new Map<number, Promise<KeyPairPem>>();

/** A cached RSA-2048 test key pair; the same `slot` returns the same key within one test file. */
export function testKeyPair(slot = 0): Promise<KeyPairPem> {
  let keys = keyCache.get(slot);
  if (!keys) {
    keys = generateRsaKeyPair();
    keyCache.set(slot, keys);
  }
  return keys;
}

export interface TestCa {
  certificatePem: string;
  keys: KeyPairPem;
  issuer: { certificatePem: string; signer: LocalSigner };
}

const caCache = new Map<string, Promise<TestCa>>();

/** A cached self-signed test CA (valid from a minute ago for 30 days) named `name`. */
export function testCa(name = 'unit test CA'): Promise<TestCa> {
  let ca = caCache.get(name);
  if (!ca) {
    ca = (async () => {
      const keys = await generateRsaKeyPair();
      const signer = new LocalSigner(keys.privateKeyPem);
      const issuedAt = nowSeconds();
      const { certificatePem } = await buildCertificate(
        {
          subject: { commonName: name, organization: 'unit tests' },
          publicKeyPem: keys.publicKeyPem,
          issuedAt,
          notAfter: new Date(issuedAt.getTime() + 30 * 24 * 3_600_000),
          profile: 'ca',
        },
        { signer },
      );
      return { certificatePem, keys, issuer: { certificatePem, signer } };
    })();
    caCache.set(name, ca);
  }
  return ca;
}

const tempDirs: string[] = [];

/** Creates a fresh directory under the OS temp dir; `removeTempDirs` deletes every one created. */
export async function makeTempDir(prefix = 'broker-unit-'): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

export async function removeTempDirs(): Promise<void> {
  await Promise.all(tempDirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command without a shell and reports its exit code instead of throwing. */
export function run(
  file: string,
  args: readonly string[],
  options: { cwd?: string; timeoutMs?: number } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      { cwd: options.cwd, timeout: options.timeoutMs ?? 20_000, encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') {
          reject(err);
          return;
        }
        resolve({ code: err ? (err.code as number) : 0, stdout, stderr });
      },
    );
  });
}

/** Runs the real `openssl` CLI in `cwd`. */
export function openssl(args: readonly string[], cwd: string): Promise<RunResult> {
  return run('openssl', args, { cwd });
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
