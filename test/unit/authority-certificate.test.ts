/**
 * How a bot recognises the authority's serving certificate (src/pki/authority-server.ts), on parsed
 * certificates: a pinned CA signed it, it is a server certificate (serverAuth, no clientAuth) marked
 * `authority-server`, and it names the host of `auth_server`. A bot identity never passes. The same attacks
 * over real HTTPS connections are in test/integration/authority-impostor.test.ts.
 */
import { X509Certificate } from 'node:crypto';
import { hostname } from 'node:os';
import { beforeAll, describe, expect, it } from 'vitest';
import { stateKeys } from '../../src/authority/state-keys.js';
import { ConfigError } from '../../src/config/errors.js';
import {
  AUTHORITY_SERVER_ROLE,
  authorityServerNames,
  checkAuthorityCertificate,
} from '../../src/pki/authority-server.js';
import type { CaRecord, CaType } from '../../src/pki/ca.js';
import { buildCertificate, type CertificateProfile } from '../../src/pki/certificate.js';
import { OID_CERT_ROLE } from '../../src/pki/oids.js';
import { caPin } from '../../src/pki/parse.js';
import { LocalSigner } from '../../src/pki/signer.js';
import { joinBot, type TestAuthority, testAuthority } from '../support/authority.js';
import { exampleResourcesYaml, HOUR, testKeyPair } from '../support/fixtures.js';

const START = new Date('2030-01-01T00:00:00Z');
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

let ctx: TestAuthority;
let botCa: X509Certificate;
let pins: string[];

beforeAll(async () => {
  ctx = await testAuthority({ start: START, resources: exampleResourcesYaml() });
  const bundle = await ctx.authority.caBundle('bot');
  botCa = new X509Certificate(bundle);
  pins = [caPin(bundle)];
});

/** The check as the bot runs it against `host`, with the bot CA sent after the leaf (as the authority does). */
function check(certificatePem: string, host = '127.0.0.1', options: { pins?: string[]; now?: Date } = {}) {
  return checkAuthorityCertificate(new X509Certificate(certificatePem), [botCa], {
    pins: options.pins ?? pins,
    host,
    now: options.now ?? START,
  });
}

/** What `authority serve --listen 127.0.0.1:…` signs for itself. */
async function authorityCertificate(sans = authorityServerNames('127.0.0.1')): Promise<string> {
  const keys = await testKeyPair(1);
  return ctx.authority.signAuthorityServer(sans, keys.publicKeyPem, HOUR);
}

/** A certificate signed with the key of one of the authority's CAs, as only the authority could make it. */
async function signedBy(
  type: CaType,
  options: { profile: CertificateProfile; role?: string; sans?: string[]; commonName?: string },
): Promise<string> {
  const record = (await ctx.store.get(stateKeys.ca(type)))?.value as CaRecord;
  const key = record.keys[0] as { certificatePem: string; privateKeyPem: string };
  const { certificatePem } = await buildCertificate(
    {
      subject: { commonName: options.commonName ?? 'broker authority', organization: 'broker' },
      publicKeyPem: (await testKeyPair(2)).publicKeyPem,
      issuedAt: START,
      notAfter: new Date(START.getTime() + HOUR),
      profile: options.profile,
      sans: options.sans ?? ['localhost', '127.0.0.1'],
      privateExtensions: options.role ? { [OID_CERT_ROLE]: options.role } : {},
    },
    { certificatePem: key.certificatePem, signer: new LocalSigner(key.privateKeyPem) },
  );
  return certificatePem;
}

describe("the authority's serving certificate", () => {
  it('is accepted for every name it carries', async () => {
    const pem = await authorityCertificate();
    for (const host of ['127.0.0.1', 'localhost', '::1']) expect(check(pem, host), host).toBeUndefined();
  });

  it('is a server certificate only, marked authority-server', async () => {
    const cert = new X509Certificate(await authorityCertificate());
    expect(cert.keyUsage).toEqual([SERVER_AUTH]);
    expect(cert.ca).toBe(false);
  });

  it('is refused for a host it does not name, the subject CN never standing in for one', async () => {
    const pem = await authorityCertificate();
    for (const host of ['10.0.0.7', 'authority.example', '127.0.0.2'])
      expect(check(pem, host), host).toMatch(new RegExp(`not for ${host.replace(/\./g, '\\.')}`));
    const cnOnly = await signedBy('bot', {
      profile: 'server',
      role: AUTHORITY_SERVER_ROLE,
      commonName: 'authority.example',
      sans: ['127.0.0.1'],
    });
    expect(check(cnOnly, 'authority.example')).toMatch(/not for authority\.example/);
  });

  it('is refused when no pinned CA signed it, or the CA is not sent', async () => {
    const pem = await authorityCertificate();
    const otherPin = caPin(await ctx.authority.caBundle('db-server'));
    expect(check(pem, '127.0.0.1', { pins: [otherPin] })).toMatch(/ca_pins/);
    const bare = checkAuthorityCertificate(new X509Certificate(pem), [], {
      pins,
      host: '127.0.0.1',
      now: START,
    });
    expect(bare).toMatch(/ca_pins/);
  });

  it('is refused outside its validity period', async () => {
    const pem = await authorityCertificate();
    expect(check(pem, '127.0.0.1', { now: new Date(START.getTime() + 2 * HOUR) })).toMatch(/validity/);
  });
});

describe('a certificate posing as the authority', () => {
  it("a bot's identity, from the same CA, is never accepted as the server", async () => {
    const joined = await joinBot(ctx.authority, { slot: 3 });
    const identity = new X509Certificate(joined.identityPem);
    // Bot identities are client certificates only.
    expect(identity.keyUsage).toEqual([CLIENT_AUTH]);
    expect(identity.verify(botCa.publicKey)).toBe(true);
    for (const host of ['127.0.0.1', 'localhost'])
      expect(check(joined.identityPem, host), host).toMatch(/not the authority's serving certificate/);
  });

  it('is refused without serverAuth, with clientAuth, or without the authority-server role', async () => {
    const forged = {
      'client, marked authority-server': { profile: 'client', role: AUTHORITY_SERVER_ROLE },
      'client and server, marked authority-server': { profile: 'client-server', role: AUTHORITY_SERVER_ROLE },
      'server, marked bot-identity': { profile: 'server', role: 'bot-identity' },
      'server, marked db-server': { profile: 'server', role: 'db-server' },
      'server, unmarked': { profile: 'server' },
      'a CA certificate, marked authority-server': { profile: 'ca', role: AUTHORITY_SERVER_ROLE },
    } as const;
    for (const [what, options] of Object.entries(forged)) {
      const pem = await signedBy('bot', options);
      expect(check(pem), what).toMatch(/not the authority's serving certificate/);
    }
  });

  it('a database server certificate is refused even when its CA is pinned', async () => {
    const pem = await signedBy('db-server', { profile: 'server', role: 'db-server' });
    const dbServerCa = await ctx.authority.caBundle('db-server');
    const verdict = checkAuthorityCertificate(new X509Certificate(pem), [new X509Certificate(dbServerCa)], {
      pins: [caPin(dbServerCa)],
      host: '127.0.0.1',
      now: START,
    });
    expect(verdict).toMatch(/not the authority's serving certificate/);
  });
});

describe('authorityServerNames', () => {
  it('names loopback and the listen address', () => {
    expect(authorityServerNames('127.0.0.1')).toEqual(['localhost', '127.0.0.1', '::1']);
    expect(authorityServerNames('10.1.2.3')).toEqual(['localhost', '127.0.0.1', '::1', '10.1.2.3']);
    expect(authorityServerNames('authority.internal', ['authority.example.com', '192.0.2.9'])).toEqual([
      'localhost',
      '127.0.0.1',
      '::1',
      'authority.internal',
      'authority.example.com',
      '192.0.2.9',
    ]);
  });

  it('on a wildcard listen, names this host and its addresses, never the wildcard', () => {
    for (const wildcard of ['0.0.0.0', '::']) {
      const names = authorityServerNames(wildcard);
      expect(names).not.toContain(wildcard);
      if (/^[a-zA-Z0-9.-]+$/.test(hostname())) expect(names).toContain(hostname());
      expect(names.every((n) => !n.includes('%'))).toBe(true);
    }
  });

  it('refuses a public address that is not a host name or an IP address', () => {
    for (const bad of ['authority.example:3025', 'https://authority.example', 'a b', '*.example.com', ''])
      expect(() => authorityServerNames('127.0.0.1', [bad]), bad).toThrow(ConfigError);
  });
});
