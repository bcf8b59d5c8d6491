/**
 * The bot recognises the authority over HTTPS (DESIGN.md §2, "the authority is not a bot"): an impostor
 * serving a bot's own identity, or any certificate from the pinned CA that is not the authority's serving
 * certificate for the host in `auth_server`, is refused before a request leaves the bot, so no join token
 * reaches it. The pure certificate check is unit-tested in test/unit/authority-certificate.test.ts.
 */
import type { AddressInfo } from 'node:net';
import { networkInterfaces } from 'node:os';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuthorityClient } from '../../src/api/client.js';
import { AuthorityUnavailableError } from '../../src/api/errors.js';
import { type RunningAuthorityServer, startAuthorityServer } from '../../src/api/server.js';
import { HttpTransport } from '../../src/api/transports.js';
import { stateKeys } from '../../src/authority/state-keys.js';
import { systemClock } from '../../src/clock.js';
import type { CaRecord } from '../../src/pki/ca.js';
import { buildCertificate, type CertificateProfile } from '../../src/pki/certificate.js';
import { OID_CERT_ROLE } from '../../src/pki/oids.js';
import { caPin } from '../../src/pki/parse.js';
import { LocalSigner } from '../../src/pki/signer.js';
import { joinBot, type TestAuthority, testAuthority } from '../support/authority.js';
import {
  EXAMPLE,
  exampleResourcesYaml,
  HOUR,
  nowSeconds,
  testCa,
  testKeyPair,
  testLeafCertificate,
} from '../support/fixtures.js';

/** Start at the real time: the bot checks validity against its own clock. */
const START = nowSeconds();

let ctx: TestAuthority;
let pins: string[];
let botCaPem: string;
const servers: { close(): Promise<void> }[] = [];

beforeAll(async () => {
  ctx = await testAuthority({ start: START, resources: exampleResourcesYaml() });
  botCaPem = await ctx.authority.caBundle('bot');
  pins = [caPin(botCaPem)];
});
afterAll(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

interface Impostor {
  address: string;
  /** Every byte a client sent it after the TLS handshake (the plaintext of what would be the request). */
  received: Buffer[];
}

/**
 * A TLS server on loopback presenting `certificatePem` (plus the bot CA, as the authority does). It records
 * every byte it receives and answers the first with an HTTP response, as a fake authority would.
 */
async function impostor(certificatePem: string, privateKeyPem: string): Promise<Impostor> {
  const received: Buffer[] = [];
  const answer = JSON.stringify({ v: 1, ok: false, error: { code: 'unavailable', message: 'try later' } });
  const server = tls.createServer(
    { cert: certificatePem + botCaPem, key: privateKeyPem, minVersion: 'TLSv1.2' },
    (socket) => {
      socket.on('error', () => {});
      socket.once('data', () =>
        socket.end(
          `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${answer.length}\r\nconnection: close\r\n\r\n${answer}`,
        ),
      );
      socket.on('data', (c: Buffer) => received.push(c));
    },
  );
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  servers.push({ close: () => new Promise((resolve) => server.close(() => resolve())) });
  return { address: `https://127.0.0.1:${(server.address() as AddressInfo).port}`, received };
}

/** A certificate signed with the bot CA's own key, as only the authority could make it. */
async function fromBotCa(options: {
  profile: CertificateProfile;
  role: string;
  sans: string[];
  publicKeyPem: string;
}): Promise<string> {
  const record = (await ctx.store.get(stateKeys.ca('bot')))?.value as CaRecord;
  const key = record.keys[0] as { certificatePem: string; privateKeyPem: string };
  const now = nowSeconds();
  const { certificatePem } = await buildCertificate(
    {
      subject: { commonName: 'broker authority', organization: 'broker' },
      publicKeyPem: options.publicKeyPem,
      issuedAt: now,
      notAfter: new Date(now.getTime() + HOUR),
      profile: options.profile,
      sans: options.sans,
      privateExtensions: { [OID_CERT_ROLE]: options.role },
    },
    { certificatePem: key.certificatePem, signer: new LocalSigner(key.privateKeyPem) },
  );
  return certificatePem;
}

/** A bot joining through `address` with a fresh token: what it gets back, and whether the token is spent. */
async function joinThrough(address: string): Promise<{ outcome: unknown; tokenSpent: boolean }> {
  const { token, id } = await ctx.authority.addToken(EXAMPLE.bot);
  const keys = await testKeyPair(3);
  const client = new AuthorityClient(new HttpTransport(address, pins), systemClock);
  const outcome = await client.joinWithToken(token, keys.publicKeyPem).catch((e: unknown) => e);
  const tokenSpent = !(await ctx.authority.listTokens()).some((t) => t.id === id);
  return { outcome, tokenSpent };
}

/** Joins through `fake` and expects a refusal with `reason`, the fake having received nothing. */
async function expectRefused(fake: Impostor, reason: RegExp): Promise<void> {
  const { token } = await ctx.authority.addToken(EXAMPLE.bot);
  const keys = await testKeyPair(3);
  const client = new AuthorityClient(new HttpTransport(fake.address, pins), systemClock);
  const refused = await client.joinWithToken(token, keys.publicKeyPem).catch((e: unknown) => e);
  // Not one byte reached the impostor: not the request, so not the token either.
  const sent = Buffer.concat(fake.received).toString('utf8');
  expect(sent).not.toContain(token);
  expect(sent).toBe('');
  expect(refused).toBeInstanceOf(AuthorityUnavailableError);
  expect((refused as Error).message).toContain(fake.address);
  expect((refused as Error).message).toMatch(reason);
}

describe('a fake authority over HTTPS', () => {
  it("serving a bot's own identity certificate and key is refused before any request is sent", async () => {
    const stolen = await joinBot(ctx.authority, { slot: 4 });
    const fake = await impostor(stolen.identityPem, stolen.keys.privateKeyPem);
    await expectRefused(fake, /not the authority's serving certificate|serverAuth/);
  });

  it('serving a certificate from the pinned CA without serverAuth is refused', async () => {
    const keys = await testKeyPair(5);
    const clientOnly = await fromBotCa({
      profile: 'client',
      role: 'authority-server',
      sans: ['127.0.0.1', 'localhost'],
      publicKeyPem: keys.publicKeyPem,
    });
    await expectRefused(await impostor(clientOnly, keys.privateKeyPem), /serverAuth/);
  });

  it('serving a server certificate from the pinned CA that is not marked authority-server is refused', async () => {
    const keys = await testKeyPair(5);
    const unmarked = await fromBotCa({
      profile: 'server',
      role: 'bot-identity',
      sans: ['127.0.0.1', 'localhost'],
      publicKeyPem: keys.publicKeyPem,
    });
    await expectRefused(await impostor(unmarked, keys.privateKeyPem), /authority-server/);
  });

  it("serving the authority's own kind of certificate for another host name is refused", async () => {
    const keys = await testKeyPair(5);
    const elsewhere = await ctx.authority.signAuthorityServer(
      ['authority.elsewhere.example'],
      keys.publicKeyPem,
      HOUR,
    );
    await expectRefused(await impostor(elsewhere, keys.privateKeyPem), /127\.0\.0\.1/);
  });
  it('serving an authority certificate from a CA that is not pinned is refused', async () => {
    const keys = await testKeyPair(5);
    const stranger = await testLeafCertificate(
      {
        subject: { commonName: 'broker authority', organization: 'broker' },
        publicKeyPem: keys.publicKeyPem,
        profile: 'server',
        sans: ['127.0.0.1', 'localhost'],
        privateExtensions: { [OID_CERT_ROLE]: 'authority-server' },
      },
      await testCa('impostor CA'),
    );
    await expectRefused(await impostor(stranger.certificatePem, keys.privateKeyPem), /ca_pins/);
  });
});

describe('the real authority over HTTPS', () => {
  let real: RunningAuthorityServer;
  beforeAll(async () => {
    real = await startAuthorityServer({ authority: ctx.authority, listen: '127.0.0.1:0' });
    servers.push(real);
  });

  it('is trusted by its IP address and by localhost, and the join succeeds', async () => {
    const port = new URL(real.address).port;
    for (const address of [real.address, `https://localhost:${port}`]) {
      const { outcome, tokenSpent } = await joinThrough(address);
      expect(outcome, address).toMatchObject({
        certificatePem: expect.stringContaining('BEGIN CERTIFICATE'),
      });
      expect(tokenSpent, address).toBe(true);
    }
  });

  it('over IPv6 loopback, is trusted at [::1]', async (test) => {
    const v6 = await startAuthorityServer({ authority: ctx.authority, listen: '[::1]:0' }).catch(
      (e: NodeJS.ErrnoException) => {
        if (e.code === 'EADDRNOTAVAIL' || e.code === 'EAFNOSUPPORT') return undefined;
        throw e;
      },
    );
    if (!v6) return test.skip('no IPv6 loopback here');
    servers.push(v6);
    expect(v6.address).toMatch(/^https:\/\/\[::1\]:\d+$/);
    const { outcome, tokenSpent } = await joinThrough(v6.address);
    expect(outcome).toMatchObject({ certificatePem: expect.stringContaining('BEGIN CERTIFICATE') });
    expect(tokenSpent).toBe(true);
  });

  it('listening on every address, is trusted at the addresses of this host', async () => {
    const wide = await startAuthorityServer({
      authority: ctx.authority,
      listen: '0.0.0.0:0',
      unsafeListen: true,
    });
    servers.push(wide);
    const port = new URL(wide.address).port;
    const external = Object.values(networkInterfaces())
      .flat()
      .find((a) => a && a.family === 'IPv4' && !a.internal)?.address;
    for (const host of ['127.0.0.1', ...(external ? [external] : [])]) {
      const { outcome, tokenSpent } = await joinThrough(`https://${host}:${port}`);
      expect(outcome, host).toMatchObject({ certificatePem: expect.stringContaining('BEGIN CERTIFICATE') });
      expect(tokenSpent, host).toBe(true);
    }
  });
});
