/**
 * The database-tunnel's just-in-time certificate (src/cli/bot-tunnels.ts) attacked by a local client: with
 * the certificate expired and the authority failing, a flood of new connections must not become a flood of
 * issuance requests (each one a Lambda invocation and an audit line in AWS mode), and no connection may go
 * upstream with the expired certificate: the client is told why, over the PostgreSQL protocol.
 *
 * No database is needed: the service's endpoint is a closed port, so a connection that went upstream would
 * fail with a connection error, not with the tunnel's own message.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/devdb/postgres.js';
import { type JitTunnelWorld, jitTunnelWorld } from '../support/jit-tunnel-world.js';

let world: JitTunnelWorld;
let issueAttempts = 0;
let authorityDown = false;

/** One client connection through the tunnel; the error it ends with. */
async function connectError(): Promise<Error> {
  const client = world.client();
  try {
    await client.connect();
  } catch (err) {
    return err as Error;
  } finally {
    await client.end().catch(() => undefined);
  }
  throw new Error('the connection went through with an expired certificate');
}

beforeAll(async () => {
  world = await jitTunnelWorld({
    dbPort: await freePort(),
    description: 'in process (failing on demand)',
    intercept(request) {
      if (request.type === 'issue-db-cert') {
        issueAttempts++;
        if (authorityDown) throw new Error('connect ECONNREFUSED (the authority is down)');
      }
    },
  });
}, 120_000);

afterAll(async () => {
  await world?.stop();
});

describe('database-tunnel under a flood of connections while the authority is down', () => {
  it('issues at most once per few seconds, never goes upstream with the expired certificate, and tries again later', async () => {
    const { clock } = world;
    clock.set(new Date()); // the certificate (10 minutes, issued 20 minutes ago) has expired
    authorityDown = true;
    const before = issueAttempts;
    const errors: Error[] = [];
    // Sequential connections: each arrives after the previous one's issuance attempt has failed.
    for (let i = 0; i < 20; i++) errors.push(await connectError());
    // Connections arriving together.
    errors.push(...(await Promise.all(Array.from({ length: 20 }, () => connectError()))));
    for (const err of errors)
      expect(err.message).toMatch(/broker proxy: the database certificate .* expired/);
    expect(issueAttempts - before).toBeLessThanOrEqual(2);

    // Later, the tunnel asks again: the flood holds issuance back, it does not stop it.
    clock.set(new Date(clock.now().getTime() + 10_000));
    const later = issueAttempts;
    await connectError();
    expect(issueAttempts - later).toBe(1);
  }, 120_000);
});
