/**
 * CA rotation (`broker auth rotate`) with Teleport's phases: the new key enters every trust bundle before it
 * signs, signing moves to it only at update_clients, the old key leaves only at standby, rollback works from
 * every phase before standby, every phase change and every refusal is audited, and an automatic rotation
 * moves itself on the schedule its grace period gives.
 */
import { X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { MemoryAuditLog } from '../../src/authority/audit.js';
import type { Authority, RotationKeyFactory } from '../../src/authority/authority.js';
import { RotationError } from '../../src/authority/errors.js';
import { scheduleOf, transition } from '../../src/authority/rotation.js';
import type { ManualClock } from '../../src/clock.js';
import { splitPemBundle } from '../../src/credentials/pem.js';
import { type CaRecord, caSubject } from '../../src/pki/ca.js';
import type { RotationPhase } from '../../src/pki/ca-rotation.js';
import { buildCertificate } from '../../src/pki/certificate.js';
import { createProof } from '../../src/pki/proof.js';
import { LocalSigner } from '../../src/pki/signer.js';
import { joinBot, testAuthority } from '../support/authority.js';
import {
  EXAMPLE,
  EXAMPLE_ROUTE,
  exampleResourcesYaml,
  HOUR,
  nowSeconds,
  testKeyPair,
} from '../support/fixtures.js';

const START = nowSeconds();
const SERVICE_CA = `db-client/${EXAMPLE.service}`;

function chainsTo(leafPem: string, caPem: string): boolean {
  const leaf = new X509Certificate(leafPem);
  const ca = new X509Certificate(caPem);
  return leaf.checkIssued(ca) && leaf.verify(ca.publicKey);
}

/** New CA keys from the run's key pool (one RSA key generated per rotation would cost more than the test). */
const rotationKeyFactory: RotationKeyFactory = async ({ type, service, clusterName }) => {
  const keys = await testKeyPair(5);
  const { certificatePem } = await buildCertificate(
    {
      subject: caSubject(type, clusterName, service),
      publicKeyPem: keys.publicKeyPem,
      issuedAt: new Date(START),
      notAfter: new Date(START.getTime() + 365 * 24 * HOUR),
      profile: 'ca',
    },
    { signer: new LocalSigner(keys.privateKeyPem) },
  );
  return { certificatePem, privateKeyPem: keys.privateKeyPem };
};

async function setup(): Promise<{ authority: Authority; audit: MemoryAuditLog; clock: ManualClock }> {
  const t = await testAuthority({
    start: START,
    resources: exampleResourcesYaml(),
    with: { rotationKeyFactory },
  });
  // The service's client CA exists from the first issuance on.
  await issue(t.authority);
  t.audit.events.length = 0;
  return t;
}

async function issue(authority: Authority): Promise<string> {
  const { publicKeyPem } = await testKeyPair(1);
  return (await authority.issueDatabaseCertificate(EXAMPLE.bot, EXAMPLE_ROUTE, publicKeyPem)).certificatePem;
}

async function serverCa(authority: Authority): Promise<string[]> {
  const { publicKeyPem } = await testKeyPair(1);
  const issued = await authority.issueDatabaseCertificate(EXAMPLE.bot, EXAMPLE_ROUTE, publicKeyPem);
  return splitPemBundle(issued.serverCaPem);
}

const rotate = (authority: Authority, type: 'db-client' | 'db-server' | 'bot', phase: RotationPhase) =>
  authority.rotateCa({
    type,
    ...(type === 'db-client' ? { service: EXAMPLE.service } : {}),
    phase,
    mode: 'manual',
  });

describe('rotating a database client CA, phase by phase', () => {
  it('adds the new key to the bundle first, signs with it at update_clients, drops the old key at standby', async () => {
    const { authority, audit } = await setup();
    const [oldCa] = splitPemBundle(await authority.dbClientCaBundle(EXAMPLE.service));
    const oldCert = await issue(authority);

    await rotate(authority, 'db-client', 'init');
    const both = splitPemBundle(await authority.dbClientCaBundle(EXAMPLE.service));
    expect(both).toHaveLength(2);
    expect(both[0]).toBe(oldCa);
    const newCa = both[1] as string;
    // Trusted, not yet signing: a database given `both` accepts old and new certificates alike.
    expect(chainsTo(await issue(authority), oldCa as string)).toBe(true);

    await rotate(authority, 'db-client', 'update_clients');
    const switched = await issue(authority);
    expect(chainsTo(switched, newCa)).toBe(true);
    expect(splitPemBundle(await authority.dbClientCaBundle(EXAMPLE.service))).toEqual([newCa, oldCa]);

    await rotate(authority, 'db-client', 'update_servers');
    expect(chainsTo(await issue(authority), newCa)).toBe(true);

    const [done] = await rotate(authority, 'db-client', 'standby');
    expect(done?.record.keys).toHaveLength(1);
    expect(splitPemBundle(await authority.dbClientCaBundle(EXAMPLE.service))).toEqual([newCa]);
    const after = await issue(authority);
    expect(chainsTo(after, newCa)).toBe(true);
    expect(chainsTo(after, oldCa as string)).toBe(false);
    expect(chainsTo(oldCert, newCa)).toBe(false);

    const phases = audit.events
      .filter((e) => e.event === 'ca.rotate')
      .map((e) => [e.name, e.outcome, e.reason]);
    expect(phases).toEqual([
      [
        SERVICE_CA,
        'success',
        expect.stringMatching(/^phase standby -> init \(manual rotation [0-9a-f-]{36}\)$/),
      ],
      [SERVICE_CA, 'success', expect.stringMatching(/^phase init -> update_clients /)],
      [SERVICE_CA, 'success', expect.stringMatching(/^phase update_clients -> update_servers /)],
      [SERVICE_CA, 'success', 'phase update_servers -> standby (rotation complete)'],
    ]);
    const status = await authority.status();
    const svc = status.serviceCas.find((c) => c.service === EXAMPLE.service);
    expect(svc?.phase).toBe('standby');
    expect(svc?.rotation?.lastRotated).toBeDefined();
  });

  it('rolls back from every phase before standby: the old key signs again and the new one is dropped', async () => {
    for (const reached of ['init', 'update_clients', 'update_servers'] as const) {
      const { authority, audit } = await setup();
      const [oldCa] = splitPemBundle(await authority.dbClientCaBundle(EXAMPLE.service));
      const path: RotationPhase[] = ['init', 'update_clients', 'update_servers'];
      for (const p of path.slice(0, path.indexOf(reached) + 1)) await rotate(authority, 'db-client', p);

      await rotate(authority, 'db-client', 'rollback');
      // Both are still trusted during rollback, so certificates from either keep working.
      expect(splitPemBundle(await authority.dbClientCaBundle(EXAMPLE.service))).toHaveLength(2);
      expect(chainsTo(await issue(authority), oldCa as string)).toBe(true);
      const status = await authority.status();
      expect(status.serviceCas[0]?.activeKeys.map((k) => k.role)).toEqual(['signing', 'trusted (new)']);

      await rotate(authority, 'db-client', 'standby');
      expect(splitPemBundle(await authority.dbClientCaBundle(EXAMPLE.service))).toEqual([oldCa]);
      expect(audit.events.at(-1)?.reason, reached).toBe('phase rollback -> standby (rollback complete)');
    }
  });

  it('refuses phases out of order, says what comes next and audits the refusal', async () => {
    const { authority, audit } = await setup();
    await expect(rotate(authority, 'db-client', 'update_clients')).rejects.toThrow(
      /is not being rotated, so it cannot move to update_clients; start one with --phase init/,
    );
    await rotate(authority, 'db-client', 'init');
    await expect(rotate(authority, 'db-client', 'standby')).rejects.toThrow(
      /is in phase init of a rotation and cannot move to standby; the next phase is update_clients/,
    );
    await expect(rotate(authority, 'db-client', 'init')).rejects.toBeInstanceOf(RotationError);
    await rotate(authority, 'db-client', 'update_clients');
    await rotate(authority, 'db-client', 'update_servers');
    await rotate(authority, 'db-client', 'standby');
    await expect(rotate(authority, 'db-client', 'rollback')).rejects.toThrow(/not being rotated/);
    const denied = audit.events.filter((e) => e.outcome === 'denied');
    expect(denied.map((e) => [e.event, e.name])).toEqual([
      ['ca.rotate', SERVICE_CA],
      ['ca.rotate', SERVICE_CA],
      ['ca.rotate', SERVICE_CA],
      ['ca.rotate', SERVICE_CA],
    ]);
  });

  it('a repeated request for the phase a CA is already in changes nothing', async () => {
    const { authority, audit } = await setup();
    await rotate(authority, 'db-client', 'init');
    await rotate(authority, 'db-client', 'update_clients');
    const before = audit.events.length;
    const [again] = await rotate(authority, 'db-client', 'update_clients');
    expect(again?.changed).toBe(false);
    expect(audit.events.length).toBe(before);
  });

  it('without --service, moves the shared db-client CA and every service CA together', async () => {
    const { authority } = await setup();
    const outcomes = await authority.rotateCa({ type: 'db-client', phase: 'init', mode: 'manual' });
    expect(outcomes.map((o) => o.ca)).toEqual(['db-client', SERVICE_CA]);
  });

  it('refuses an automatic rotation of a database CA: each phase waits for the databases', async () => {
    const { authority, audit } = await setup();
    for (const type of ['db-client', 'db-server'] as const)
      await expect(authority.rotateCa({ type, mode: 'auto' })).rejects.toThrow(
        /only the bot CA rotates automatically.*add --manual/,
      );
    expect(audit.events.map((e) => e.outcome)).toEqual(['denied', 'denied', 'denied']);
    expect((await authority.status()).cas.every((c) => c.phase === 'standby')).toBe(true);
  });
});

describe('rotating the database server CA', () => {
  it('clients get both keys at init; auth sign --format=db signs with the new key from update_clients', async () => {
    const { authority } = await setup();
    const [oldCa] = await serverCa(authority);
    await rotate(authority, 'db-server', 'init');
    const both = await serverCa(authority);
    expect(both).toHaveLength(2);
    const newCa = both[1] as string;
    const duringInit = await authority.signDatabaseServer(['localhost'], { service: EXAMPLE.service });
    expect(chainsTo(duringInit.certificatePem, oldCa as string)).toBe(true);

    await rotate(authority, 'db-server', 'update_clients');
    const signed = await authority.signDatabaseServer(['localhost'], { service: EXAMPLE.service });
    expect(chainsTo(signed.certificatePem, newCa)).toBe(true);
    await rotate(authority, 'db-server', 'update_servers');
    await rotate(authority, 'db-server', 'standby');
    expect(await serverCa(authority)).toEqual([newCa]);
  });
});

describe('rotating the bot CA', () => {
  it('an identity from the old key renews until standby; after standby an identity the old key signed is refused', async () => {
    const { authority, clock } = await setup();
    const renewing = await joinBot(authority);
    const idle = await joinBot(authority, { bot: 'idle-bot', roles: [EXAMPLE.role], slot: 2 });
    await rotate(authority, 'bot', 'init');
    await rotate(authority, 'bot', 'update_clients');
    const newCa = splitPemBundle(await authority.caBundle('bot'))[0] as string;
    expect(chainsTo(renewing.identityPem, newCa)).toBe(false);
    // Still trusted: the old key's identity renews, and the renewal comes from the new key.
    const next = await testKeyPair(3);
    const params = { publicKeyPem: next.publicKeyPem };
    const renewed = await authority.renewIdentity({
      identityPem: renewing.identityPem,
      proof: createProof('bot.renew', params, renewing.keys.privateKeyPem, clock.now()),
      params,
    });
    expect(chainsTo(renewed.certificatePem, newCa)).toBe(true);
    expect(splitPemBundle(renewed.botCaPem)).toHaveLength(2);
    await rotate(authority, 'bot', 'update_servers');
    await rotate(authority, 'bot', 'standby');
    expect(splitPemBundle(await authority.caBundle('bot'))).toEqual([newCa]);
    // The bot that never renewed during the rotation holds an identity nobody trusts any more.
    const idleParams = { publicKeyPem: (await testKeyPair(4)).publicKeyPem };
    await expect(
      authority.renewIdentity({
        identityPem: idle.identityPem,
        proof: createProof('bot.renew', idleParams, idle.keys.privateKeyPem, clock.now()),
        params: idleParams,
      }),
    ).rejects.toThrow(/not issued by this authority/);
  });

  it('an automatic rotation walks its phases at a third, two thirds and all of the grace period', async () => {
    const { authority, clock, audit } = await setup();
    const [started] = await authority.rotateCa({ type: 'bot', mode: 'auto', gracePeriodMs: 3 * HOUR });
    expect(started?.record.rotation?.schedule).toEqual(scheduleOf(clock.now(), 3 * HOUR));
    const phase = async () => (await authority.status()).cas.find((c) => c.type === 'bot')?.phase;
    expect(await phase()).toBe('init');
    clock.advance(HOUR - 1000);
    expect(await phase()).toBe('init');
    clock.advance(1000);
    expect(await phase()).toBe('update_clients');
    clock.advance(HOUR);
    expect(await phase()).toBe('update_servers');
    clock.advance(HOUR);
    expect(await phase()).toBe('standby');
    expect(splitPemBundle(await authority.caBundle('bot'))).toHaveLength(1);
    expect(audit.events.filter((e) => e.event === 'ca.rotate').map((e) => e.reason)).toEqual([
      expect.stringMatching(/^phase standby -> init \(auto rotation /),
      expect.stringMatching(/^phase init -> update_clients \(auto rotation /),
      expect.stringMatching(/^phase update_clients -> update_servers \(auto rotation /),
      'phase update_servers -> standby (rotation complete)',
    ]);
  });
});

describe('the phase machine', () => {
  const record = (keys: number): CaRecord => ({
    type: 'db-server',
    keys: Array.from({ length: keys }, (_, i) => ({ certificatePem: `cert ${i}` })),
  });

  it('refuses to start a rotation of a CA holding more than one key', () => {
    expect(() =>
      transition(record(2), 'the db-server CA', {
        to: 'init',
        now: new Date(START),
        newKey: { certificatePem: 'new' },
        id: 'x',
      }),
    ).toThrow(/holds 2 keys outside a rotation/);
  });

  it('an automatic rotation needs a grace period', () => {
    expect(() =>
      transition(record(1), 'the bot CA', {
        to: 'init',
        now: new Date(START),
        newKey: { certificatePem: 'new' },
        id: 'x',
        mode: 'auto',
        gracePeriodMs: 0,
      }),
    ).toThrow(/grace period longer than zero/);
  });
});
