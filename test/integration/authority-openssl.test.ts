/**
 * What openssl makes of what the authority issues: CA certificates, bot identities, database client and
 * server certificates, verified for their purposes by the real `openssl` CLI. The rest of the authority's
 * behaviour is unit-tested in test/unit/authority.test.ts.
 */
import { createPublicKey, X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryAuditLog } from '../../src/authority/audit.js';
import { Authority } from '../../src/authority/authority.js';
import { ManualClock } from '../../src/clock.js';
import { splitPemBundle } from '../../src/credentials/pem.js';
import { CA_TYPES, type CaType } from '../../src/pki/ca.js';
import { OID_BOT_GENERATION, OID_BOT_NAME, OID_CERT_ROLE } from '../../src/pki/oids.js';
import { caPin, parseCertificate } from '../../src/pki/parse.js';
import { MemoryStateStore } from '../../src/state/memory-store.js';
import { joinBot, testAuthority } from '../support/authority.js';
import {
  EXAMPLE,
  exampleResourcesYaml,
  HOUR as H,
  INTERNAL_DB_URI,
  MINUTE as MIN,
  nowSeconds,
  EXAMPLE_ROUTE as ROUTE,
  testKeyPair,
} from '../support/fixtures.js';
import { opensslText, opensslVerify } from '../support/openssl.js';
import { makeTempDir, removeTempDirs } from '../support/temp.js';

const SEED = exampleResourcesYaml({ db: { uri: INTERNAL_DB_URI, serverName: 'db.internal' }, bots: [] });

/** Start the manual clock at the real time, so openssl can verify what the authority issues. */
const START = nowSeconds();

let initialized: { authority: Authority; audit: MemoryAuditLog };
let dir: string;

beforeAll(async () => {
  const audit = new MemoryAuditLog();
  const authority = new Authority({ store: new MemoryStateStore(), audit, clock: new ManualClock(START) });
  await authority.initialize('unit');
  initialized = { authority, audit };
  dir = await makeTempDir();
});
afterAll(removeTempDirs);

const setup = () => testAuthority({ start: START, resources: SEED });

async function joined() {
  const ctx = await setup();
  await joinBot(ctx.authority, { roles: [EXAMPLE.role] });
  return ctx;
}

describe('Authority.initialize', () => {
  it('creates the bot, db-client and db-server CAs, each a distinct self-signed CA', async () => {
    const { authority, audit } = initialized;
    const pins = new Set<string>();
    for (const type of CA_TYPES) {
      const bundle = await authority.caBundle(type);
      const certs = splitPemBundle(bundle);
      expect(certs).toHaveLength(1);
      const info = parseCertificate(certs[0] as string);
      expect(info.isCA).toBe(true);
      expect(info.subjectCommonName).toBe(`unit ${type} CA`);
      expect(info.issuerCommonName).toBe(`unit ${type} CA`);
      expect(info.notAfter.getTime() - START.getTime()).toBeGreaterThan(5 * 365 * 24 * H);
      expect(bundle).not.toMatch(/PRIVATE KEY/);
      const verified = await opensslVerify(dir, bundle, bundle);
      expect(verified.code, verified.stderr).toBe(0);
      pins.add(caPin(bundle));
    }
    expect(pins.size).toBe(3);
    expect(audit.events.filter((e) => e.event === 'ca.create').map((e) => [e.name, e.outcome])).toEqual(
      CA_TYPES.map((t) => [t, 'success']),
    );
  });
});

describe('Authority.addBot and joinWithToken', () => {
  it('issues generation 1 of a bot identity for the key the bot sent', async () => {
    const { authority, clock } = await setup();
    const { token } = await authority.addBot('example', ['example-role']);
    const keys = await testKeyPair(0);
    const identity = await authority.joinWithToken({ token, publicKeyPem: keys.publicKeyPem });
    expect(identity.generation).toBe(1);
    const info = parseCertificate(identity.certificatePem);
    expect(info.subjectCommonName).toBe('example');
    expect(info.publicKeyPem).toBe(keys.publicKeyPem);
    expect(info.serial).toBe(identity.serial);
    expect(info.privateExtensions).toMatchObject({
      [OID_CERT_ROLE]: 'bot-identity',
      [OID_BOT_NAME]: 'example',
      [OID_BOT_GENERATION]: '1',
    });
    expect(info.notBefore.getTime()).toBe(clock.now().getTime() - MIN);
    expect(info.notAfter.getTime()).toBe(clock.now().getTime() + H);
    expect(identity.expires).toBe(info.notAfter.toISOString());
    expect(identity.botCaPem).toBe(await authority.caBundle('bot'));
    const verified = await opensslVerify(dir, identity.botCaPem, identity.certificatePem, [
      '-purpose',
      'sslclient',
    ]);
    expect(verified.code, verified.stderr).toBe(0);
    expect((await authority.listBots())[0]?.status).toEqual({
      generation: 1,
      identityExpires: identity.expires,
    });
  });
});

describe('Authority.issueDatabaseCertificate', () => {
  it("verifies with openssl against its service's client CA bundle only, for client authentication", async () => {
    const { authority } = await joined();
    const cert = await authority.issueDatabaseCertificate(
      'example',
      ROUTE,
      (await testKeyPair(3)).publicKeyPem,
    );
    const ok = await opensslVerify(
      dir,
      await authority.dbClientCaBundle(ROUTE.service),
      cert.certificatePem,
      ['-purpose', 'sslclient'],
    );
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    for (const other of ['db-client', 'db-server', 'bot'] as CaType[]) {
      const bad = await opensslVerify(dir, await authority.caBundle(other), cert.certificatePem);
      expect(bad.code).not.toBe(0);
    }
    const text = await opensslText(dir, cert.certificatePem);
    expect(text).toContain('TLS Web Client Authentication');
    expect(text).not.toContain('TLS Web Server Authentication');
  });
});

describe('Authority.signDatabaseServer', () => {
  it("signs a server certificate for the hosts plus localhost and 127.0.0.1 and returns the service's client CA", async () => {
    const { authority, clock } = await setup();
    const signed = await authority.signDatabaseServer(['db.internal', '10.0.0.5'], {
      service: 'example-server',
    });
    const x509 = new X509Certificate(signed.certificatePem);
    const info = parseCertificate(signed.certificatePem);
    expect(info.subjectCommonName).toBe('db.internal');
    expect(info.sans).toEqual(['db.internal', '10.0.0.5', 'localhost', '127.0.0.1']);
    expect(x509.checkHost('db.internal')).toBe('db.internal');
    expect(x509.checkHost('localhost')).toBe('localhost');
    expect(x509.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(x509.checkIP('10.0.0.5')).toBe('10.0.0.5');
    expect(signed.clientCaPem).toBe(await authority.dbClientCaBundle('example-server'));
    expect(info.publicKeyPem).toBe(
      createPublicKey(signed.privateKeyPem).export({ type: 'spki', format: 'pem' }),
    );
    expect(new Date(signed.expires).getTime() - clock.now().getTime()).toBe(2190 * H);
    expect(info.serial).toBe(signed.serial);

    const ok = await opensslVerify(dir, await authority.caBundle('db-server'), signed.certificatePem, [
      '-purpose',
      'sslserver',
      '-verify_hostname',
      'db.internal',
    ]);
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    const viaProxy = await opensslVerify(dir, await authority.caBundle('db-server'), signed.certificatePem, [
      '-verify_ip',
      '127.0.0.1',
    ]);
    expect(viaProxy.code, viaProxy.stdout + viaProxy.stderr).toBe(0);
    const wrongCa = await opensslVerify(dir, await authority.caBundle('db-client'), signed.certificatePem);
    expect(wrongCa.code).not.toBe(0);
  });
});
