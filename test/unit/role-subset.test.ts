/**
 * An output's (or a database-tunnel's) `roles`, as tbot reads them: the subset of the bot's roles a
 * certificate is issued under. The authority evaluates only those roles, puts only them in the certificate,
 * audits them, and refuses a role the bot does not have, naming it. Driven through the API (the bot's
 * client, the handler, the signed request) with Teleport's own fixtures that name roles.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { AuthorityClient } from '../../src/api/client.js';
import { InProcessTransport } from '../../src/api/transports.js';
import { requestedRoles } from '../../src/authority/issuance.js';
import { Bot } from '../../src/bot/bot.js';
import { type BotConfig, parseBotConfig } from '../../src/bot/config.js';
import { MemoryIdentityStore } from '../../src/bot/identity-store.js';
import { prepareTunnels } from '../../src/cli/bot-tunnels.js';
import { MemoryDestination } from '../../src/destinations/memory.js';
import { OID_CERT_ROLES } from '../../src/pki/oids.js';
import { parseCertificate } from '../../src/pki/parse.js';
import { testAuthority } from '../support/authority.js';
import { REPO_ROOT, testKeyPair } from '../support/fixtures.js';

const fixture = (name: string): BotConfig =>
  parseBotConfig(readFileSync(path.join(REPO_ROOT, 'test/support/tbot', name), 'utf8'), name);

/** A role allowing `users` on databases `names` of every service. */
const role = (name: string, users: string[], names: string[]) => `kind: role
version: v6
metadata: { name: ${name} }
spec:
  allow:
    db_labels: { '*': '*' }
    db_users: [${users.join(', ')}]
    db_names: [${names.join(', ')}]
`;

async function world(options: { service: string; roles: Record<string, string>; botRoles: string[] }) {
  const resources = [
    ...Object.values(options.roles),
    `kind: db
version: v3
metadata: { name: ${options.service} }
spec: { protocol: postgres, uri: db.internal:5432 }
`,
    `kind: bot
version: v1
metadata: { name: example }
spec: { roles: [${options.botRoles.join(', ')}] }
`,
  ].join('---\n');
  const { authority, clock, audit } = await testAuthority({ start: '2026-03-01T12:00:00Z', resources });
  const botFor = (config: BotConfig, destinations = new Map<unknown, MemoryDestination>()) => {
    let slot = 0;
    return new Bot({
      config,
      client: new AuthorityClient(new InProcessTransport(authority), clock),
      identityStore: new MemoryIdentityStore(),
      destinationFor: (o) => destinations.get(o) ?? new MemoryDestination(),
      joinToken: async () => (await authority.addToken('example')).token,
      clock,
      log: pino({ level: 'silent' }),
      generateKeyPair: () => testKeyPair(slot++ % 4),
    });
  };
  return { authority, audit, botFor };
}

describe('requestedRoles', () => {
  it('no roles asked for (or an empty list): all the bot has', () => {
    expect(requestedRoles('b', ['a', 'c'], undefined)).toEqual({ roles: ['a', 'c'] });
    expect(requestedRoles('b', ['a', 'c'], [])).toEqual({ roles: ['a', 'c'] });
  });
  it('a subset: only those, once each', () => {
    expect(requestedRoles('b', ['a', 'c'], ['c', 'c'])).toEqual({ roles: ['c'] });
  });
  it('a role the bot does not have: refused, naming it and the bot', () => {
    expect(requestedRoles('b', ['a', 'c'], ['a', 'x'])).toEqual({
      refused: expect.stringMatching(
        /^role "x" was requested, but bot "b" does not have it \(its roles: a, c\)/,
      ),
    });
  });
});

describe("Teleport's database output fixture (roles: [access]) narrows the certificate", () => {
  const config = () => fixture('database-output-full.yaml');

  it('is issued under access alone, though the bot also has another role; the certificate and audit say so', async () => {
    const { audit, botFor } = await world({
      service: 'my-database-service',
      roles: {
        access: role('access', ['my-username'], ['my-database']),
        wide: role('wide', ['my-username'], ['my-database']),
      },
      botRoles: ['access', 'wide'],
    });
    const dest = new MemoryDestination();
    const cfg = config();
    const bot = botFor(cfg, new Map([[cfg.outputs[0], dest]]));
    const [result] = await bot.runCycle();
    expect(result?.ok, result?.error).toBe(true);
    const cert = parseCertificate((await dest.read())!.files.tlscert as string);
    expect(cert.privateExtensions[OID_CERT_ROLES]).toBe('access');
    const issued = audit.events.filter((e) => e.event === 'db_cert.issue');
    expect(issued.at(-1)).toMatchObject({
      outcome: 'success',
      roles: ['access'],
      reason: 'allowed by role(s) access',
    });
  });

  it('the role that would allow the route is left out: denied, where the bot with all its roles is allowed', async () => {
    const { audit, botFor } = await world({
      service: 'my-database-service',
      roles: {
        access: role('access', ['someone-else'], ['my-database']),
        wide: role('wide', ['my-username'], ['my-database']),
      },
      botRoles: ['access', 'wide'],
    });
    const [narrowed] = await botFor(config()).runCycle();
    expect(narrowed?.ok).toBe(false);
    expect(narrowed?.error).toMatch(
      /^access to my-username@my-database-service\/my-database denied: database user "my-username" is not in allow\.db_users/,
    );
    expect(audit.events.at(-1)).toMatchObject({
      event: 'db_cert.issue',
      outcome: 'denied',
      roles: ['access'],
    });

    // The same output without roles: every role of the bot counts, and wide allows it.
    const all = config();
    delete all.outputs[0]!.roles;
    const [whole] = await botFor(all).runCycle();
    expect(whole?.ok, whole?.error).toBe(true);
    expect(audit.events.at(-1)).toMatchObject({ outcome: 'success', reason: 'allowed by role(s) wide' });
  });

  it('a role the bot does not have is refused with its name', async () => {
    const { audit, botFor } = await world({
      service: 'my-database-service',
      roles: { wide: role('wide', ['my-username'], ['my-database']) },
      botRoles: ['wide'],
    });
    const [result] = await botFor(config()).runCycle();
    expect(result?.ok).toBe(false);
    expect(result?.error).toContain(
      'denied: role "access" was requested, but bot "example" does not have it (its roles: wide)',
    );
    expect(audit.events.at(-1)).toMatchObject({ outcome: 'denied', roles: ['access'] });
  });
});

describe("Teleport's database-tunnel fixture (roles: [role1, role2]) narrows the tunnel's certificate", () => {
  it('is issued under role1 and role2 only; without them (role3 alone allows it) it is denied', async () => {
    const cfg = fixture('database-tunnel-full.yaml');
    const [tunnel] = await prepareTunnels(cfg, { log: pino({ level: 'silent' }), unsafeListen: true });
    const allowing = await world({
      service: 'service',
      roles: {
        role1: role('role1', ['username'], ['database']),
        role2: role('role2', ['nobody'], ['database']),
        role3: role('role3', ['username'], ['database']),
      },
      botRoles: ['role1', 'role2', 'role3'],
    });
    const bot = allowing.botFor({ ...cfg, outputs: [tunnel!.output] }, new Map());
    const result = await bot.renderNow(tunnel!.output);
    expect(result.ok).toBe(true);
    expect(allowing.audit.events.at(-1)).toMatchObject({
      outcome: 'success',
      roles: ['role1', 'role2'],
      reason: 'allowed by role(s) role1',
    });

    const leftOut = await world({
      service: 'service',
      roles: {
        role1: role('role1', ['nobody'], ['database']),
        role2: role('role2', ['nobody'], ['database']),
        role3: role('role3', ['username'], ['database']),
      },
      botRoles: ['role1', 'role2', 'role3'],
    });
    const denied = leftOut.botFor({ ...cfg, outputs: [tunnel!.output] }, new Map());
    await expect(denied.renderNow(tunnel!.output)).rejects.toThrow(
      /access to username@service\/database denied: database user "username" is not in allow\.db_users/,
    );
    tunnel!.creds.stop();
  });
});
