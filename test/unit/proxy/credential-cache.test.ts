import { X509Certificate } from 'node:crypto';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { ManualClock } from '../../../src/clock.js';
import type { CredentialBundle } from '../../../src/credentials/bundle.js';
import { BrokerError } from '../../../src/errors.js';
import { CredentialCache, CredentialsUnavailableError } from '../../../src/proxy/credential-cache.js';
import { type LoadedCredentials, loadCredentials } from '../../../src/proxy/loaded-credentials.js';
import { HOUR as H, MINUTE as MIN, nowSeconds, testBundle, testKeyPair } from '../../support/fixtures.js';
import { FakeSource, memoryLogger } from '../../support/proxy.js';

let start: Date;
/** Valid 1 h from `start`. */
let current: CredentialBundle;
/** Issued 10 minutes later, valid 1 h: expires after `current`. */
let newer: CredentialBundle;
/** Issued at `start`, valid 30 minutes: expires before `current`. */
let older: CredentialBundle;
/** A PEM private key that belongs to none of the certificates. */
let otherKeyPem: string;

beforeAll(async () => {
  start = nowSeconds();
  current = await testBundle({ issuedAt: start, ttlMs: H });
  older = await testBundle({ issuedAt: start, ttlMs: 30 * MIN });
  newer = await testBundle({ issuedAt: new Date(start.getTime() + 10 * MIN), ttlMs: H });
  otherKeyPem = (await testKeyPair(1)).privateKeyPem;
});

/** `bundle` with some files replaced (undefined removes one). */
function withFiles(bundle: CredentialBundle, files: Record<string, string | undefined>): CredentialBundle {
  const next = { ...bundle.files, ...files };
  for (const [name, text] of Object.entries(files)) if (text === undefined) delete next[name];
  return { ...bundle, files: next as Record<string, string> };
}

function loadError(bundle: CredentialBundle): BrokerError {
  try {
    loadCredentials(bundle);
  } catch (err) {
    return err as BrokerError;
  }
  throw new Error('loadCredentials accepted the bundle');
}

describe('loadCredentials', () => {
  it('prepares a real bundle: serial, expiry from the certificate, PEMs, endpoint and a TLS context', () => {
    const c = loadCredentials(current);
    expect(c.bundle).toBe(current);
    expect(c.serial).toBe(current.serial);
    expect(c.expiresAt.toISOString()).toBe(current.expiresAt);
    expect(c.expiresAt.getTime()).toBe(start.getTime() + H);
    expect(c.certificatePem).toBe(current.files.tlscert);
    expect(c.keyPem).toBe(current.files.key);
    expect(c.caPem).toBe(current.files['teleport-host-ca.crt']);
    expect(new X509Certificate(c.certificatePem).subject).toContain('CN=alice');
    expect({ host: c.host, port: c.port }).toEqual({ host: 'db.internal', port: 5432 });
    expect(c.secureContext).toBeDefined();
  });

  it('checks the bundle with the one bundle validation: both CA files are required, as every format writes them', () => {
    const err = loadError(withFiles(current, { 'teleport-host-ca.crt': undefined }));
    expect(err.code).toBe('bad_bundle');
    expect(err.message).toContain('files.teleport-host-ca.crt');
  });

  it('refuses a key that does not match the certificate, without quoting the key', () => {
    const err = loadError(withFiles(current, { key: otherKeyPem }));
    expect(err).toBeInstanceOf(BrokerError);
    expect(err.code).toBe('bad_bundle');
    expect(err.message).toContain('files.key does not match the certificate in files.tlscert');
    expect(err.message).not.toContain('PRIVATE KEY');
  });

  it.each([
    ['tlscert', { tlscert: undefined }],
    ['key', { key: undefined }],
    ['both CA files', { 'teleport-host-ca.crt': undefined, 'teleport-database-ca.crt': undefined }],
    ['an empty certificate', { tlscert: '' }],
  ])('refuses a bundle without %s', (_what, files) => {
    const err = loadError(withFiles(current, files));
    expect(err.code).toBe('bad_bundle');
    expect(err.message).toMatch(
      /is not a version 1 database-credentials bundle: files\.(tlscert|key|teleport-host-ca\.crt)/,
    );
  });

  it('refuses a certificate that does not parse', () => {
    const err = loadError(
      withFiles(current, { tlscert: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n' }),
    );
    expect(err.code).toBe('bad_bundle');
    expect(err.message).toContain('files.tlscert does not parse as an X.509 certificate');
  });

  it('refuses a key that does not parse as a bad bundle, without quoting it', () => {
    const garbled = '-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n';
    const err = loadError(withFiles(current, { key: garbled }));
    expect(err).toBeInstanceOf(BrokerError);
    expect(err.code).toBe('bad_bundle');
    expect(err.message).toContain('key does not parse');
    expect(err.message).not.toContain('bm90IGEga2V5');
  });

  it.each([
    'db.internal',
    'db.internal:',
    'db.internal:0',
    'db.internal:65536',
    ':5432',
    'db.internal:abc',
    'db.internal:54.32',
    '',
    '[::1]',
  ])('refuses the endpoint %j, naming it', (endpoint) => {
    const err = loadError({ ...current, endpoint });
    expect(err.code).toBe('bad_bundle');
    expect(err.message).toContain('endpoint');
    expect(err.message).toContain(JSON.stringify(endpoint));
  });

  it.each([
    ['[::1]:5432', '::1', 5432],
    ['[fd00::5]:26257', 'fd00::5', 26257],
    ['10.0.0.5:65535', '10.0.0.5', 65535],
    ['db-1.internal:1', 'db-1.internal', 1],
  ])('reads the endpoint %j as %s port %i', (endpoint, host, port) => {
    expect(loadCredentials({ ...current, endpoint })).toMatchObject({ host, port });
  });
});

describe('CredentialCache', () => {
  let source: FakeSource;
  let clock: ManualClock;
  let logged: ReturnType<typeof memoryLogger>;
  let changes: LoadedCredentials[];
  let cache: CredentialCache;

  const setup = () => {
    source = new FakeSource();
    clock = new ManualClock(start);
    logged = memoryLogger();
    changes = [];
    cache = new CredentialCache(source, { log: logged.log, clock, onChange: (c) => changes.push(c) });
  };

  afterEach(() => {
    cache?.stop();
    vi.useRealTimers();
    vi.restoreAllMocks();
  });

  const unavailable = (): CredentialsUnavailableError => {
    try {
      cache.current();
    } catch (err) {
      expect(err).toBeInstanceOf(CredentialsUnavailableError);
      return err as CredentialsUnavailableError;
    }
    throw new Error('current() returned credentials');
  };

  it('before any load: not ready, and current() says nothing was loaded from the source', async () => {
    setup();
    expect(cache.ready).toBe(false);
    expect(cache.loaded).toBeUndefined();
    const err = unavailable();
    expect(err.code).toBe('credentials_unavailable');
    expect(err.message).toContain('no credentials loaded yet from fake source test-bundles');

    // An empty source is a failed refresh, not a crash.
    expect(await cache.refresh()).toBe(false);
    expect(cache.stats).toEqual({ successes: 0, failures: 1 });
    expect(unavailable().message).toContain('no credentials loaded yet');
  });

  it('loads a bundle: ready, current() returns it, onChange fires once', async () => {
    setup();
    source.next = current;
    expect(await cache.refresh()).toBe(true);
    expect(cache.ready).toBe(true);
    expect(cache.current().serial).toBe(current.serial);
    expect(changes.map((c) => c.serial)).toEqual([current.serial]);
    expect(cache.stats).toEqual({ successes: 1, failures: 0 });

    // The same serial again is a successful read with nothing to change.
    expect(await cache.refresh()).toBe(true);
    expect(changes).toHaveLength(1);
    expect(cache.stats).toEqual({ successes: 2, failures: 0 });
  });

  it('after expiry: not ready, and current() names the serial, the expiry and the source', async () => {
    setup();
    source.next = current;
    await cache.refresh();
    const expires = new Date(current.expiresAt);

    clock.set(new Date(expires.getTime() - 1));
    expect(cache.ready).toBe(true);
    expect(cache.current().serial).toBe(current.serial);

    clock.set(expires);
    expect(cache.ready).toBe(false);
    const err = unavailable();
    expect(err.message).toContain(`serial ${current.serial}`);
    expect(err.message).toContain(`expired at ${current.expiresAt}`);
    expect(err.message).toContain('fake source test-bundles');
    // Still loaded (for /readyz to show), but never handed out.
    expect(cache.loaded?.serial).toBe(current.serial);

    // Re-reading the same expired bundle succeeds as a read but does not make the cache ready.
    expect(await cache.refresh()).toBe(false);
    expect(cache.ready).toBe(false);
  });

  it('keeps the valid bundle when the source throws, counting the failure', async () => {
    setup();
    source.next = current;
    await cache.refresh();
    source.next = new Error('AccessDeniedException: secretsmanager:GetSecretValue');
    expect(await cache.refresh()).toBe(true);
    expect(cache.stats).toEqual({ successes: 1, failures: 1 });
    expect(cache.current().serial).toBe(current.serial);
    expect(changes).toHaveLength(1);
    const warning = logged.lines.find((l) => String(l.msg).startsWith('credential refresh failed'));
    expect(warning).toMatchObject({ level: 40, failures: 1, source: 'fake source test-bundles' });
    expect(warning?.msg).toContain('AccessDeniedException');
  });

  it.each([
    ['a key that does not match', () => withFiles(newer, { key: otherKeyPem })],
    ['no certificate', () => withFiles(newer, { tlscert: undefined })],
    ['a bad endpoint', () => ({ ...newer, endpoint: 'db.internal' })],
  ])('keeps the valid bundle when the source returns a newer bundle with %s', async (_what, corrupt) => {
    setup();
    source.next = current;
    await cache.refresh();
    source.next = corrupt();
    expect(await cache.refresh()).toBe(true);
    expect(cache.stats.failures).toBe(1);
    expect(cache.current().serial).toBe(current.serial);
    expect(changes).toHaveLength(1);
    expect(logged.text()).not.toContain('PRIVATE KEY');
  });

  it('a failed refresh after expiry leaves the cache unready', async () => {
    setup();
    source.next = current;
    await cache.refresh();
    clock.set(current.expiresAt);
    source.next = new Error('ENOENT');
    expect(await cache.refresh()).toBe(false);
    expect(cache.stats.failures).toBe(1);
  });

  it('a newer bundle replaces the current one, and makes an expired cache ready again', async () => {
    setup();
    source.next = current;
    await cache.refresh();
    clock.set(current.expiresAt);
    expect(cache.ready).toBe(false);

    source.next = newer;
    expect(await cache.refresh()).toBe(true);
    expect(cache.ready).toBe(true);
    expect(cache.current().serial).toBe(newer.serial);
    expect(changes.map((c) => c.serial)).toEqual([current.serial, newer.serial]);
    const info = logged.lines.find(
      (l) => l.msg === 'loaded database credentials' && l.serial === newer.serial,
    );
    expect(info).toMatchObject({ previous: current.serial, source: 'fake source test-bundles' });
  });

  it('ignores a bundle that expires before the one it holds', async () => {
    setup();
    source.next = current;
    await cache.refresh();
    source.next = older;
    expect(await cache.refresh()).toBe(true);
    expect(cache.current().serial).toBe(current.serial);
    expect(changes).toHaveLength(1);
    expect(cache.stats).toEqual({ successes: 2, failures: 0 });
    expect(logged.lines.find((l) => l.msg === 'ignoring a bundle older than the one in use')).toMatchObject({
      serial: older.serial,
      held: current.serial,
    });
  });

  it('start() reads at once, retries failures with doubling back-off, then polls, and stop() ends it', async () => {
    setup();
    vi.useFakeTimers();
    vi.spyOn(Math, 'random').mockReturnValue(0); // the jitter factor is then exactly 0.5
    source.next = new Error('not yet');
    await cache.start();
    expect(source.loads).toBe(1);

    // Failures 1, 2, 3: waits of 1 s, 2 s, 4 s, each halved by the jitter.
    for (const wait of [500, 1000, 2000]) {
      const before = source.loads;
      await vi.advanceTimersByTimeAsync(wait - 1);
      expect(source.loads).toBe(before);
      await vi.advanceTimersByTimeAsync(1);
      expect(source.loads).toBe(before + 1);
    }
    expect(cache.stats.failures).toBe(4);

    // The next read (after 4 s) succeeds; then the poll interval (10 s) applies.
    source.next = current;
    await vi.advanceTimersByTimeAsync(4000);
    expect(cache.ready).toBe(true);
    const before = source.loads;
    await vi.advanceTimersByTimeAsync(9999);
    expect(source.loads).toBe(before);
    await vi.advanceTimersByTimeAsync(1);
    expect(source.loads).toBe(before + 1);

    // Close to expiry it reads every third of the time left (here 6 s left: every 2 s).
    clock.set(new Date(new Date(current.expiresAt).getTime() - 6000));
    await vi.advanceTimersByTimeAsync(10_000);
    const near = source.loads;
    await vi.advanceTimersByTimeAsync(1999);
    expect(source.loads).toBe(near);
    await vi.advanceTimersByTimeAsync(1);
    expect(source.loads).toBe(near + 1);

    cache.stop();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(source.loads).toBe(near + 1);
  });
});
