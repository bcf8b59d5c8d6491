/**
 * Trust is scoped per database service (issue 13, finding 4): every database service has its own client CA,
 * issuance for service S signs with S's CA only, and `auth sign --format=db` for S hands out S's CA as the
 * one thing that database trusts. So a certificate issued for the dev database, for a user the prod database
 * also has, does not chain to anything the prod database trusts.
 */
import { X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { handleApiRequest } from '../../src/api/handler.js';
import { MemoryAuditLog } from '../../src/authority/audit.js';
import type { Authority } from '../../src/authority/authority.js';
import { bootstrapAuthority } from '../../src/authority/aws-bootstrap.js';
import { stateKeys, TypedState } from '../../src/authority/state-keys.js';
import { ManualClock } from '../../src/clock.js';
import { splitPemBundle } from '../../src/credentials/pem.js';
import { MemoryStateStore } from '../../src/state/memory-store.js';
import { createKmsKey, testAuthority } from '../support/authority.js';
import { KmsDouble } from '../support/aws/kms.js';
import { exampleDbYaml, nowSeconds, testKeyPair } from '../support/fixtures.js';

const START = nowSeconds();

/** Two database services with the same user and database; the bot may reach only the dev one. */
const RESOURCES = [
  exampleDbYaml({ name: 'dev-db', uri: 'dev.internal:5432' }),
  exampleDbYaml({ name: 'prod-db', uri: 'prod.internal:5432' }).replace('env: dev', 'env: prod'),
  `kind: role
version: v6
metadata: { name: dev-only }
spec:
  allow:
    db_labels: { env: dev }
    db_names: [example]
    db_users: [alice]
`,
  'kind: bot\nversion: v1\nmetadata: { name: dev-bot }\nspec: { roles: [dev-only] }\n',
].join('---\n');

const ROUTE = { service: 'dev-db', database: 'example', username: 'alice' } as const;

/** Whether `leafPem` is signed by one of the certificates of `bundlePem` (what a database's CA file does). */
function chainsTo(leafPem: string, bundlePem: string): boolean {
  const leaf = new X509Certificate(leafPem);
  return splitPemBundle(bundlePem).some((caPem) => {
    const ca = new X509Certificate(caPem);
    return leaf.checkIssued(ca) && leaf.verify(ca.publicKey);
  });
}

async function setup(): Promise<{ authority: Authority; store: TypedState }> {
  const { authority, store } = await testAuthority({ start: START, resources: RESOURCES });
  return { authority, store: new TypedState(store) };
}

async function issueForDev(authority: Authority): Promise<string> {
  const { publicKeyPem } = await testKeyPair(1);
  return (await authority.issueDatabaseCertificate('dev-bot', ROUTE, publicKeyPem)).certificatePem;
}

describe('database trust is scoped per service', () => {
  it("a certificate issued for dev-db does not chain to what prod-db's database trusts", async () => {
    const { authority } = await setup();
    const prod = await authority.signDatabaseServer(['prod.internal'], { service: 'prod-db' });
    const dev = await authority.signDatabaseServer(['dev.internal'], { service: 'dev-db' });
    const cert = await issueForDev(authority);
    expect(chainsTo(cert, dev.clientCaPem)).toBe(true);
    expect(chainsTo(cert, prod.clientCaPem)).toBe(false);
    // Nor does it chain to the shared client CA an older setup trusts.
    expect(chainsTo(cert, await authority.caBundle('db-client'))).toBe(false);
  });

  it('issuance creates the service CA when it is first needed and reuses it afterwards', async () => {
    const { authority } = await setup();
    const first = await issueForDev(authority);
    const second = await issueForDev(authority);
    const bundle = await authority.dbClientCaBundle('dev-db');
    expect(splitPemBundle(bundle)).toHaveLength(1);
    expect(chainsTo(first, bundle) && chainsTo(second, bundle)).toBe(true);
    // auth sign for the service afterwards hands out that same CA.
    expect((await authority.signDatabaseServer(['dev.internal'], { service: 'dev-db' })).clientCaPem).toBe(
      bundle,
    );
    expect(new X509Certificate(bundle).subject).toContain('CN=dev-db');
  });

  it('stores each service CA under servicecas/<service> (a stored format: existing state is kept there)', () => {
    expect([stateKeys.dbClientCa('dev-db'), stateKeys.dbClientCas]).toEqual([
      'servicecas/dev-db',
      'servicecas',
    ]);
  });

  it('status lists each service CA with its pin', async () => {
    const { authority } = await setup();
    await issueForDev(authority);
    const status = await authority.status();
    expect(status.serviceCas).toEqual([expect.objectContaining({ service: 'dev-db', keys: 1 })]);
    expect(status.serviceCas[0]?.pin).toMatch(/^sha256:/);
  });

  it('concurrent first issuances agree on one CA', async () => {
    const { authority } = await setup();
    const certs = await Promise.all([issueForDev(authority), issueForDev(authority), issueForDev(authority)]);
    const bundle = await authority.dbClientCaBundle('dev-db');
    for (const cert of certs) expect(chainsTo(cert, bundle)).toBe(true);
  });

  it('each service CA is a distinct self-signed CA, so no trust store admits another service', async () => {
    const { authority } = await setup();
    const dev = (await authority.signDatabaseServer(['dev.internal'], { service: 'dev-db' })).clientCaPem;
    const prod = (await authority.signDatabaseServer(['prod.internal'], { service: 'prod-db' })).clientCaPem;
    const shared = await authority.caBundle('db-client');
    const subjects = [dev, prod, shared].map((pem) => new X509Certificate(pem));
    for (const ca of subjects) {
      expect(ca.ca).toBe(true);
      expect(ca.checkIssued(ca)).toBe(true); // self-signed: a root, not an intermediate under a shared root
    }
    expect(new Set(subjects.map((c) => c.subject)).size).toBe(3);
    expect(new Set(subjects.map((c) => c.fingerprint256)).size).toBe(3);
  });

  it('a refused issuance creates no CA (callers cannot grow the state)', async () => {
    const { authority, store } = await setup();
    const { publicKeyPem } = await testKeyPair(1);
    await expect(
      authority.issueDatabaseCertificate('dev-bot', { ...ROUTE, service: 'prod-db' }, publicKeyPem),
    ).rejects.toThrow(/denied/);
    await expect(
      authority.issueDatabaseCertificate('dev-bot', { ...ROUTE, service: 'nope' }, publicKeyPem),
    ).rejects.toThrow(/denied/);
    expect(await store.get(stateKeys.dbClientCa('prod-db'))).toBeUndefined();
    expect(await store.get(stateKeys.dbClientCa('nope'))).toBeUndefined();
    await expect(authority.dbClientCaBundle('prod-db')).rejects.toThrow(
      /auth sign --format=db --service prod-db/,
    );
  });

  it('keeps every active key of a service CA in its bundle, the first signing (rotation as for the other CAs)', async () => {
    const { authority, store } = await setup();
    await issueForDev(authority);
    const record = (await store.get(stateKeys.dbClientCa('dev-db')))?.value;
    if (!record) throw new Error('no service CA record');
    expect(record).toMatchObject({ type: 'db-client', service: 'dev-db' });
    const older = (await store.get(stateKeys.ca('db-client')))?.value.keys[0];
    if (!older) throw new Error('no shared CA');
    // A second key (here the shared CA's, standing in for a rotated-out key) stays trusted; the first signs.
    await store.put(stateKeys.dbClientCa('dev-db'), { ...record, keys: [...record.keys, older] });
    const bundle = await authority.dbClientCaBundle('dev-db');
    expect(splitPemBundle(bundle)).toHaveLength(2);
    const cert = await issueForDev(authority);
    expect(
      new X509Certificate(cert).checkIssued(new X509Certificate(record.keys[0]?.certificatePem ?? '')),
    ).toBe(true);
  });

  it('refuses a service name that is not a resource name', async () => {
    const { authority } = await setup();
    await expect(authority.signDatabaseServer(['db.internal'], { service: '../x' })).rejects.toThrow(
      /service/,
    );
  });

  it('the ca-bundles API serves a service client CA that exists, and creates none for an unauthenticated caller', async () => {
    const { authority, store } = await setup();
    const request = (service: string) => ({
      v: 1,
      type: 'ca-bundles',
      requestId: `ca-bundles-${service}`,
      params: { service },
    });
    const dev = (await authority.signDatabaseServer(['dev.internal'], { service: 'dev-db' })).clientCaPem;
    const served = await handleApiRequest(authority, request('dev-db'));
    expect(served).toMatchObject({ ok: true, result: { dbClient: dev } });
    const missing = await handleApiRequest(authority, request('prod-db'));
    expect(missing).toMatchObject({ ok: false, error: { code: 'not_found' } });
    expect(await store.get(stateKeys.dbClientCa('prod-db'))).toBeUndefined();
  });
});

describe('AWS mode: each service client CA is its own KMS key', () => {
  it('bootstraps one CA per service key at cold start, signs each service with its key, refuses a service without one', async () => {
    const kms = new KmsDouble();
    const client = kms.client();
    try {
      const caKeyIds = {
        bot: await createKmsKey(client),
        'db-client': await createKmsKey(client),
        'db-server': await createKmsKey(client),
      };
      const dbClientCaKeyIds = { 'dev-db': await createKmsKey(client) };
      const store = new MemoryStateStore();
      const authority = await bootstrapAuthority({
        store,
        kms: client,
        caKeyIds,
        dbClientCaKeyIds,
        resourcesYaml: RESOURCES,
        clusterName: 'aws-unit',
        audit: new MemoryAuditLog(),
        clock: new ManualClock(START),
      });
      // Made at cold start from its key (no private key in the state), before any issuance.
      const record = (await new TypedState(store).get(stateKeys.dbClientCa('dev-db')))?.value;
      expect(record).toMatchObject({
        type: 'db-client',
        service: 'dev-db',
        keys: [{ kmsKeyId: dbClientCaKeyIds['dev-db'] }],
      });
      expect(record?.keys[0]?.privateKeyPem).toBeUndefined();
      const cert = await issueForDev(authority);
      expect(chainsTo(cert, await authority.dbClientCaBundle('dev-db'))).toBe(true);
      expect(chainsTo(cert, await authority.caBundle('db-client'))).toBe(false);
      // prod-db has no key in this deployment: auth sign for it is refused and no CA appears.
      await expect(authority.signDatabaseServer(['prod.internal'], { service: 'prod-db' })).rejects.toThrow(
        /no KMS key for the client CA of database service "prod-db"/,
      );
      expect(await store.get(stateKeys.dbClientCa('prod-db'))).toBeUndefined();
    } finally {
      client.destroy();
      await kms.close();
    }
  });
});
