/**
 * ECDSA P-256 keys: generated for bot identities and outputs as `key_algorithm` says, accepted by the
 * authority, certified by RSA and by ECDSA CAs (local and KMS), with the signature algorithm and key usage
 * each needs. What openssl and the database engines make of them is in
 * test/integration/ecdsa-engines.test.ts.
 */
import { createPrivateKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import type { KMSClient } from '@aws-sdk/client-kms';
import { CreateKeyCommand } from '@aws-sdk/client-kms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuthorityClient } from '../../src/api/client.js';
import { InProcessTransport } from '../../src/api/transports.js';
import { MemoryAuditLog } from '../../src/authority/audit.js';
import { Authority } from '../../src/authority/authority.js';
import { parseResources } from '../../src/authority/resources.js';
import { Bot } from '../../src/bot/bot.js';
import { parseBotConfig } from '../../src/bot/config.js';
import { MemoryIdentityStore } from '../../src/bot/identity-store.js';
import { openAuthority } from '../../src/cli/authority-commands.js';
import { buildProgram } from '../../src/cli/main.js';
import { ManualClock } from '../../src/clock.js';
import { ConfigError } from '../../src/config/errors.js';
import { MemoryDestination } from '../../src/destinations/memory.js';
import { BrokerError } from '../../src/errors.js';
import { createLocalCa } from '../../src/pki/ca.js';
import { buildCertificate, verifyIssuedBy } from '../../src/pki/certificate.js';
import {
  generateEcdsaKeyPair,
  generateKeyPairOf,
  type KeyAlgorithm,
  keyAlgorithmOf,
  tryParsePublicKey,
} from '../../src/pki/keys.js';
import { createKmsCa, KMS_ECDSA_SIGNING_ALGORITHM, KmsSigner } from '../../src/pki/kms-signer.js';
import { parseCertificate } from '../../src/pki/parse.js';
import { LocalSigner } from '../../src/pki/signer.js';
import { MemoryStateStore } from '../../src/state/memory-store.js';
import { KmsDouble } from '../support/aws/kms.js';
import { exampleResourcesYaml, INTERNAL_DB_URI, testKeyPair } from '../support/fixtures.js';
import { makeTempDir, removeTempDirs } from '../support/temp.js';

const START = new Date('2026-03-01T12:00:00Z');
const RESOURCES = exampleResourcesYaml({ role: { maxSessionTtl: null }, db: { uri: INTERNAL_DB_URI } });
const ROUTE = { service: 'example-server', database: 'example', username: 'alice' };
/** DER of the AlgorithmIdentifier ecdsa-with-SHA256 (no parameters, RFC 5758 §3.2). */
const ECDSA_WITH_SHA256 = Buffer.from('300a06082a8648ce3d040302', 'hex');
const SHA256_WITH_RSA = Buffer.from('300d06092a864886f70d01010b0500', 'hex');

afterAll(removeTempDirs);

/** The signatureAlgorithm field of a certificate: the AlgorithmIdentifier right after the TBS. */
function signatureAlgorithmDer(pem: string): Buffer {
  const der = new X509Certificate(pem).raw;
  // Certificate SEQUENCE header, then the TBS SEQUENCE (tag 30, length in long form for any real certificate).
  const outerHeader = 2 + ((der[1] as number) & 0x7f);
  const tbsLenBytes = (der[outerHeader + 1] as number) & 0x7f;
  let tbsLen = 0;
  for (let i = 0; i < tbsLenBytes; i++) tbsLen = tbsLen * 256 + (der[outerHeader + 2 + i] as number);
  const algStart = outerHeader + 2 + tbsLenBytes + tbsLen;
  return der.subarray(algStart, algStart + 2 + (der[algStart + 1] as number));
}

async function authorityWith(caKeyAlgorithm: KeyAlgorithm) {
  const authority = new Authority({
    store: new MemoryStateStore(),
    audit: new MemoryAuditLog(),
    clock: new ManualClock(START),
    caKeyAlgorithm,
  });
  await authority.initialize('unit');
  await authority.createResources(parseResources(RESOURCES, 'resources.yaml'));
  return authority;
}

describe('keys', () => {
  it('generates ECDSA P-256 key pairs in PKCS#8 and SPKI PEM, and names each algorithm', async () => {
    const ec = await generateEcdsaKeyPair();
    expect(ec.privateKeyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    expect(ec.publicKeyPem).toMatch(/^-----BEGIN PUBLIC KEY-----\n/);
    const key = tryParsePublicKey(ec.publicKeyPem);
    expect(key?.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(keyAlgorithmOf(key!)).toBe('ecdsa-p256');
    expect(keyAlgorithmOf(tryParsePublicKey((await testKeyPair(1)).publicKeyPem)!)).toBe('rsa2048');
    expect(keyAlgorithmOf(tryParsePublicKey((await generateKeyPairOf('ecdsa-p256')).publicKeyPem)!)).toBe(
      'ecdsa-p256',
    );
  });

  it('leaves other curves, Ed25519 and short RSA keys unnamed', () => {
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey;
    const ed = generateKeyPairSync('ed25519').publicKey;
    const rsa1024 = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey;
    expect([p384, ed, rsa1024].map(keyAlgorithmOf)).toEqual([undefined, undefined, undefined]);
  });
});

describe('certificates for ECDSA keys', () => {
  it('an RSA CA certifies an ECDSA key: sha256WithRSAEncryption, digitalSignature only', async () => {
    const authority = await authorityWith('rsa2048');
    const keys = await generateEcdsaKeyPair();
    const issued = await authority.issueDatabaseCertificate('example', ROUTE, keys.publicKeyPem);
    expect(signatureAlgorithmDer(issued.certificatePem)).toEqual(SHA256_WITH_RSA);
    const info = parseCertificate(issued.certificatePem);
    expect(info.publicKeyPem).toBe(keys.publicKeyPem);
    expect(info.subjectCommonName).toBe('alice');
    expect(Object.values(info.privateExtensions)).toContain('example-server');
    const ca = await authority.dbClientCaBundle('example-server');
    expect(verifyIssuedBy(issued.certificatePem, ca, new Date(START.getTime() + 1000))).toBe(true);
    // The key's certificate works as a TLS client certificate with the key beside it.
    const x509 = new X509Certificate(issued.certificatePem);
    expect(x509.checkPrivateKey(createPrivateKey(keys.privateKeyPem))).toBe(true);
  });

  it('an ECDSA CA signs with ecdsa-with-SHA256 (no parameters) for ECDSA and RSA subject keys alike', async () => {
    const authority = await authorityWith('ecdsa-p256');
    for (const keys of [await generateEcdsaKeyPair(), await testKeyPair(2)]) {
      const issued = await authority.issueDatabaseCertificate('example', ROUTE, keys.publicKeyPem);
      const ca = await authority.dbClientCaBundle('example-server');
      expect(new X509Certificate(ca).publicKey.asymmetricKeyType).toBe('ec');
      expect(signatureAlgorithmDer(issued.certificatePem)).toEqual(ECDSA_WITH_SHA256);
      expect(verifyIssuedBy(issued.certificatePem, ca, new Date(START.getTime() + 1000))).toBe(true);
      // The server CA the output carries is EC as well.
      expect(new X509Certificate(issued.serverCaPem).publicKey.asymmetricKeyType).toBe('ec');
    }
  });

  it('a self-signed ECDSA CA verifies itself and carries CA:TRUE', async () => {
    const ca = await createLocalCa('bot', 'unit', new ManualClock(START), { keyAlgorithm: 'ecdsa-p256' });
    const x509 = new X509Certificate(ca.certificatePem);
    expect(x509.ca).toBe(true);
    expect(x509.verify(x509.publicKey)).toBe(true);
    expect(new LocalSigner(ca.privateKeyPem!).signatureAlgorithm).toBe('ecdsa-with-SHA256');
  });

  it('the authority refuses subject keys it does not issue for, naming what it accepts', async () => {
    const authority = await authorityWith('rsa2048');
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' })
      .publicKey.export({ type: 'spki', format: 'pem' })
      .toString();
    const refused = authority.issueDatabaseCertificate('example', ROUTE, p384);
    await expect(refused).rejects.toThrow(BrokerError);
    await expect(refused).rejects.toThrow(/RSA key of at least 2048 bits or an ECDSA P-256 key/);
  });
});

describe('ECDSA CAs of an embedded authority', () => {
  it('keys made after initialize follow the CAs the authority was initialised with', async () => {
    const store = new MemoryStateStore();
    const first = new Authority({
      store,
      audit: new MemoryAuditLog(),
      clock: new ManualClock(START),
      caKeyAlgorithm: 'ecdsa-p256',
    });
    await first.initialize('unit');
    await first.createResources(parseResources(RESOURCES, 'resources.yaml'));
    // Opened again as `broker` opens a state directory: no key algorithm given.
    const reopened = new Authority({ store, audit: new MemoryAuditLog(), clock: new ManualClock(START) });
    await reopened.issueDatabaseCertificate('example', ROUTE, (await generateEcdsaKeyPair()).publicKeyPem);
    const serviceCa = await reopened.dbClientCaBundle('example-server');
    expect(new X509Certificate(serviceCa).publicKey.asymmetricKeyType).toBe('ec');
  });

  it('broker init --ca-key-algorithm ecdsa-p256 makes ECDSA CAs; another value is refused before anything is written', async () => {
    const dir = await makeTempDir('broker-ecdsa-init-');
    const run = (args: string[]) =>
      buildProgram(() => {}).parseAsync(['node', 'broker', '--state-dir', path.join(dir, 'state'), ...args]);
    await expect(run(['init', '--ca-key-algorithm', 'ed25519'])).rejects.toThrow(
      /--ca-key-algorithm "ed25519" is not a key algorithm; use rsa2048 or ecdsa-p256/,
    );
    await expect(stat(path.join(dir, 'state'))).rejects.toThrow(/ENOENT/);
    await run(['init', '--ca-key-algorithm', 'ecdsa-p256']);
    const authority = await openAuthority(path.join(dir, 'state'));
    for (const ca of (await authority.status()).cas) expect(ca.pin).toMatch(/^sha256:/);
    const bot = await authority.ca('bot');
    expect(new X509Certificate(bot.keys[0]!.certificatePem).publicKey.asymmetricKeyType).toBe('ec');
  });
});

describe('key_algorithm in the bot configuration', () => {
  const config = (top: string, output = '') =>
    parseBotConfig(
      `version: v2
auth_server: unix:///unused.sock
onboarding: { join_method: token, token: env://UNUSED }
storage: { type: memory }
${top}
outputs:
  - type: database
    destination: { type: memory }
    service: example-server
    database: example
    username: alice
  - type: database
    destination: { type: memory }
    service: example-server
    database: example
    username: alice
${output}
`,
      'bot.yaml',
    );

  it('is read for the bot and per output; an output without one follows the bot', () => {
    const cfg = config('key_algorithm: ecdsa-p256', '    key_algorithm: rsa2048');
    expect(cfg.key_algorithm).toBe('ecdsa-p256');
    expect(cfg.outputs.map((o) => o.key_algorithm)).toEqual([undefined, 'rsa2048']);
  });

  it('refuses an unknown algorithm, naming the file, the path and what is allowed', () => {
    expect(() => config('key_algorithm: ed25519')).toThrow(ConfigError);
    expect(() => config('key_algorithm: ed25519')).toThrow(/bot\.yaml.*key_algorithm.*rsa2048.*ecdsa-p256/s);
    expect(() => config('', '    key_algorithm: rsa4096')).toThrow(/outputs\.1\.key_algorithm/);
  });

  it('the bot generates the identity key and each output key with the configured algorithm', async () => {
    const authority = await authorityWith('rsa2048');
    const { token } = await authority.addToken('example');
    const cfg = config('key_algorithm: ecdsa-p256', '    key_algorithm: rsa2048');
    const asked: KeyAlgorithm[] = [];
    const destinations = cfg.outputs.map(() => new MemoryDestination());
    const clock = new ManualClock(START);
    const bot = new Bot({
      config: cfg,
      client: new AuthorityClient(new InProcessTransport(authority), clock),
      identityStore: new MemoryIdentityStore(),
      destinationFor: (o) => destinations[cfg.outputs.indexOf(o)]!,
      joinToken: async () => token,
      clock,
      log: (await import('pino')).default({ level: 'silent' }),
      generateKeyPair: async (algorithm) => {
        asked.push(algorithm);
        return algorithm === 'rsa2048' ? testKeyPair(asked.length % 4) : generateEcdsaKeyPair();
      },
    });
    const results = await bot.runCycle();
    expect(results.every((r) => r.ok)).toBe(true);
    // The join's identity key, then the outputs in order.
    expect(asked).toEqual(['ecdsa-p256', 'ecdsa-p256', 'rsa2048']);
    const keyType = (d: MemoryDestination) =>
      createPrivateKey(d.bundle?.files.key as string).asymmetricKeyType;
    expect(destinations.map(keyType)).toEqual(['ec', 'rsa']);
  });
});

describe('KMS CA keys of KeySpec ECC_NIST_P256', () => {
  let kms: KmsDouble;
  let client: KMSClient;
  beforeAll(() => {
    kms = new KmsDouble();
    client = kms.client();
  });
  afterAll(async () => {
    client.destroy();
    await kms.close();
  });

  it('sign certificate digests with ECDSA_SHA_256 (MessageType DIGEST) that verify with the CA key', async () => {
    const created = await client.send(
      new CreateKeyCommand({ KeySpec: 'ECC_NIST_P256', KeyUsage: 'SIGN_VERIFY' }),
    );
    const keyId = created.KeyMetadata?.KeyId as string;
    const ca = await createKmsCa('db-client', {
      clusterName: 'unit',
      kmsClient: client,
      keyId,
      clock: new ManualClock(START),
    });
    expect(new X509Certificate(ca.certificatePem).publicKey.asymmetricKeyType).toBe('ec');
    expect(signatureAlgorithmDer(ca.certificatePem)).toEqual(ECDSA_WITH_SHA256);

    const signer = KmsSigner.withPublicKey(client, keyId, parseCertificate(ca.certificatePem).publicKeyPem);
    expect(signer.signatureAlgorithm).toBe('ecdsa-with-SHA256');
    const before = kms.requests.length;
    const leaf = await buildCertificate(
      {
        subject: { commonName: 'alice' },
        publicKeyPem: (await generateEcdsaKeyPair()).publicKeyPem,
        issuedAt: START,
        notAfter: new Date(START.getTime() + 3_600_000),
        profile: 'client',
      },
      { certificatePem: ca.certificatePem, signer },
    );
    const sign = kms.requests.slice(before).find((r) => r.operation === 'Sign');
    expect(sign?.body).toMatchObject({
      MessageType: 'DIGEST',
      SigningAlgorithm: KMS_ECDSA_SIGNING_ALGORITHM,
    });
    expect(verifyIssuedBy(leaf.certificatePem, ca.certificatePem, new Date(START.getTime() + 1000))).toBe(
      true,
    );
  });

  it('a key of another spec is refused with the specs that work', async () => {
    await expect(
      client.send(new CreateKeyCommand({ KeySpec: 'ECC_NIST_P384', KeyUsage: 'SIGN_VERIFY' })),
    ).rejects.toThrow(/ECC_NIST_P256/);
  });
});
