/**
 * The proxy's one dialer on loopback: current credentials → TCP → mutual TLS, against a TLS server that
 * requires a client certificate from the bundle's CA, as a database configured for certificates does.
 */
import { once } from 'node:events';
import net from 'node:net';
import tls from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { CredentialBundle } from '../../../src/credentials/bundle.js';
import { freePort } from '../../../src/devdb/postgres.js';
import { buildCertificate } from '../../../src/pki/certificate.js';
import { CredentialCache } from '../../../src/proxy/credential-cache.js';
import { CredentialDialer } from '../../../src/proxy/dialer.js';
import { outcomeOf } from '../../../src/proxy/outcome.js';
import { HOUR, nowSeconds, testBundle, testCa, testKeyPair } from '../../support/fixtures.js';
import { FakeSource, memoryLogger } from '../../support/proxy.js';

const CA = 'dialer test CA';
const SERVER_NAME = 'db.test';

let serverContext: tls.SecureContextOptions;
const closers: (() => void)[] = [];
afterEach(() => {
  for (const close of closers.splice(0)) close();
});

beforeAll(async () => {
  const ca = await testCa(CA);
  const keys = await testKeyPair(3);
  const issuedAt = nowSeconds();
  const { certificatePem } = await buildCertificate(
    {
      subject: { commonName: SERVER_NAME },
      publicKeyPem: keys.publicKeyPem,
      issuedAt,
      notAfter: new Date(issuedAt.getTime() + HOUR),
      profile: 'server',
      sans: [SERVER_NAME],
    },
    ca.issuer,
  );
  serverContext = { cert: certificatePem, key: keys.privateKeyPem, ca: ca.certificatePem };
});

/** A listening server on 127.0.0.1, closed with its connections after the test. */
async function listen(server: net.Server): Promise<number> {
  const sockets = new Set<net.Socket>();
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return (server.address() as net.AddressInfo).port;
}

/** A mutual-TLS server that answers each connection with the serial of the client certificate it saw. */
function tlsServer(): Promise<number> {
  return listen(
    tls.createServer({ ...serverContext, requestCert: true, rejectUnauthorized: true }, (socket) =>
      socket.end(socket.getPeerCertificate().serialNumber ?? ''),
    ),
  );
}

/** A dialer over a cache holding `bundle`, recording the dial latencies it reports. */
async function dialerFor(bundle: CredentialBundle) {
  const source = new FakeSource();
  source.next = bundle;
  const credentials = new CredentialCache(source, { log: memoryLogger().log });
  await credentials.refresh();
  const dials: number[] = [];
  const dialer = new CredentialDialer({
    credentials,
    timeoutMs: 5_000,
    onDial: (seconds) => dials.push(seconds),
  });
  return { dialer, dials, source, credentials };
}

const bundleAt = (port: number, serverName = SERVER_NAME) =>
  testBundle({ ca: CA, endpoint: `127.0.0.1:${port}`, serverName });

/** Everything `socket` receives until the peer ends. */
async function readAll(socket: net.Socket): Promise<string> {
  let text = '';
  socket.on('data', (d: Buffer) => {
    text += d.toString('latin1');
  });
  await once(socket, 'end');
  return text;
}

describe('CredentialDialer', () => {
  it('current() is the newest credentials of the cache', async () => {
    const first = await bundleAt(1);
    const { dialer, source, credentials } = await dialerFor(first);
    expect(dialer.current().serial).toBe(first.serial);
    const next = await testBundle({ ca: CA, issuedAt: new Date(nowSeconds().getTime() + 60_000) });
    source.next = next;
    await credentials.refresh();
    expect(dialer.current().serial).toBe(next.serial);
  });

  it("dialTls presents the bundle's certificate and verifies the server by the bundle's server name", async () => {
    const bundle = await bundleAt(await tlsServer());
    const { dialer, dials } = await dialerFor(bundle);
    const secure = await dialer.dialTls(dialer.current());
    closers.push(() => secure.destroy());
    expect(secure.authorized).toBe(true);
    expect(BigInt(`0x${await readAll(secure)}`)).toBe(BigInt(`0x${bundle.serial}`));
    expect(dials).toHaveLength(1);
  });

  it('refuses a server whose certificate carries another name than the bundle expects', async () => {
    const { dialer } = await dialerFor(await bundleAt(await tlsServer(), 'other.test'));
    const err = await dialer.dialTls(dialer.current()).catch((e: unknown) => e);
    expect(outcomeOf(err)).toBe('upstream_cert_invalid');
  });

  it('dialTls runs afterTcp on the plain connection first, and closes it when afterTcp fails', async () => {
    const seen = { data: '', closed: false };
    let closed: () => void = () => undefined;
    const serverSawClose = new Promise<void>((resolve) => {
      closed = resolve;
    });
    const port = await listen(
      net.createServer((s) => {
        s.on('data', (d: Buffer) => {
          seen.data += d.toString('latin1');
        });
        s.on('close', () => {
          seen.closed = true;
          closed();
        });
      }),
    );
    const { dialer } = await dialerFor(await bundleAt(port));
    const refused = new Error('the database said no');
    const err = await dialer
      .dialTls(dialer.current(), async (socket) => {
        await new Promise<void>((resolve) => socket.write('please', () => resolve()));
        throw refused;
      })
      .catch((e: unknown) => e);
    expect(err).toBe(refused);
    await serverSawClose;
    expect(seen).toEqual({ data: 'please', closed: true });
  });

  it('reports the latency of a failed dial too, and fails with the errno the outcome names', async () => {
    const { dialer, dials } = await dialerFor(await bundleAt(await freePort()));
    const err = await dialer.dialTcp(dialer.current()).catch((e: unknown) => e);
    expect(outcomeOf(err)).toBe('upstream_refused');
    expect(dials).toHaveLength(1);
    expect(dials[0]).toBeGreaterThanOrEqual(0);
  });
});
