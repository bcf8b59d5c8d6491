/**
 * A `database-tunnel` service checks its certificate on every new connection, as tbot's tunnel does: a
 * connection that finds it expired gets a fresh one issued first, and connections that arrive together
 * share one issuance. Against a real PostgreSQL that verifies client certificates with the wall clock, so
 * a connection that went up with the expired certificate would be refused.
 *
 * The authority, the bot and the tunnel share a clock that starts 20 minutes in the past; the role caps
 * database certificates at 10 minutes, so the tunnel's first certificate has really expired when the clock
 * is set to now, while the bot's identity (1 h) is still valid.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, type StartedPostgres, startPostgres } from '../../src/devdb/postgres.js';
import { type JitTunnelWorld, jitTunnelWorld } from '../support/jit-tunnel-world.js';
import { requirePostgres } from '../support/postgres.js';
import { tempDir } from '../support/temp.js';

let work: Awaited<ReturnType<typeof tempDir>>;
let postgres: StartedPostgres;
let world: JitTunnelWorld;
/** `issue-db-cert` requests the bot sent. */
let issued = 0;

async function currentUser(): Promise<string> {
  const client = world.client();
  await client.connect();
  try {
    return (await client.query<{ u: string }>('SELECT current_user AS u')).rows[0]!.u;
  } finally {
    await client.end();
  }
}

beforeAll(async () => {
  await requirePostgres();
  work = await tempDir('tunnel-jit');
  const dbPort = await freePort();
  world = await jitTunnelWorld({
    dbPort,
    description: 'in process (counting)',
    intercept(request) {
      if (request.type === 'issue-db-cert') issued++;
    },
  });
  const server = await world.authority.signDatabaseServer(['localhost', '127.0.0.1'], {
    service: 'example-server',
  });
  postgres = await startPostgres({
    baseDir: path.join(work.dir, 'pg'),
    port: dbPort,
    tls: {
      serverCertPem: server.certificatePem,
      serverKeyPem: server.privateKeyPem,
      clientCaPem: server.clientCaPem,
    },
    users: ['alice'],
    databases: ['example'],
  });
}, 180_000);

afterAll(async () => {
  await world?.stop();
  await postgres?.stop();
  await work?.cleanup();
});

describe('database-tunnel: a certificate just in time for each new connection', () => {
  it('connections after the certificate expired get a fresh one, issued once for all of them, and reach PostgreSQL', async () => {
    const { tunnel, clock } = world;
    const expired = tunnel.creds.loaded!;
    clock.set(new Date()); // the certificate issued 20 minutes ago for 10 minutes has expired, really
    expect(expired.expiresAt.getTime()).toBeLessThan(Date.now());
    const before = issued;
    const users = await Promise.all(Array.from({ length: 6 }, () => currentUser()));
    expect(users).toEqual(Array(6).fill('alice'));
    expect(issued - before).toBe(1);
    const fresh = tunnel.creds.loaded!;
    expect(fresh.serial).not.toBe(expired.serial);
    expect(fresh.expiresAt.getTime()).toBeGreaterThan(Date.now());
    // The next connection finds the fresh certificate valid: nothing more is issued.
    expect(await currentUser()).toBe('alice');
    expect(issued - before).toBe(1);
  });
});
