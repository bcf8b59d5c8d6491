/**
 * The real `openssl` refuses database certificates from another authority or tampered at any kind of
 * position, as the database's own check does. The rest of the trust-model attacks are unit-tested in
 * test/unit/security.test.ts.
 */
import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { joinBot, type TestAuthority, testAuthority } from '../support/authority.js';
import {
  exampleResourcesYaml,
  INTERNAL_DB_URI,
  nowSeconds,
  EXAMPLE_ROUTE as ROUTE,
  testKeyPair,
} from '../support/fixtures.js';
import { opensslVerify } from '../support/openssl.js';
import { der, flipped, replaced, tbsRange } from '../support/tamper.js';
import { makeTempDir, removeTempDirs } from '../support/temp.js';

afterAll(removeTempDirs);

/** Start at the real time (whole seconds), so openssl accepts what the authorities issue. */
const START = nowSeconds();
const RESOURCES = exampleResourcesYaml({ role: { maxSessionTtl: null }, db: { uri: INTERNAL_DB_URI } });

/** A fresh authority holding the CAs of authority `which` (0 or 1), with the example bot joined. */
async function joined(which: number): Promise<TestAuthority> {
  const ctx = await testAuthority({
    start: START,
    clusterName: 'broker',
    instance: which,
    resources: RESOURCES,
  });
  await joinBot(ctx.authority);
  return ctx;
}

describe('database certificates from a foreign CA, or tampered', () => {
  let here: TestAuthority;
  let dir: string;
  let good: { certificatePem: string };
  let stranger: { certificatePem: string };

  beforeAll(async () => {
    dir = await makeTempDir('broker-security-');
    here = await joined(0);
    const foreign = await joined(1);
    const keys = await testKeyPair(2);
    good = {
      certificatePem: (await here.authority.issueDatabaseCertificate('example', ROUTE, keys.publicKeyPem))
        .certificatePem,
    };
    stranger = {
      certificatePem: (await foreign.authority.issueDatabaseCertificate('example', ROUTE, keys.publicKeyPem))
        .certificatePem,
    };
  });

  it('openssl verify accepts the genuine certificate and refuses a foreign or tampered one', async () => {
    const clientCa = await here.authority.dbClientCaBundle(ROUTE.service);
    const verify = (pem: string) => opensslVerify(dir, clientCa, pem, ['-purpose', 'sslclient']);
    expect((await verify(good.certificatePem)).code).toBe(0);
    const bytes = der(good.certificatePem);
    const [start, end] = tbsRange(bytes);
    const cases: Record<string, string> = {
      'a foreign authority': stranger.certificatePem,
      'a flipped signature byte': flipped(good.certificatePem, bytes.length - 5),
      'the user changed in the subject': replaced(good.certificatePem, 'alice', 'alicf'),
      'a byte flipped inside the signed part': flipped(
        good.certificatePem,
        Math.floor((start + end) / 2),
        0x10,
      ),
    };
    for (const [what, pem] of Object.entries(cases)) {
      const result = await verify(pem);
      expect(result.code, what).not.toBe(0);
      // The database's own check (what PostgreSQL does) agrees with openssl.
      const ca = new X509Certificate(clientCa);
      let verifies = false;
      try {
        verifies = new X509Certificate(pem).verify(ca.publicKey);
      } catch {
        verifies = false;
      }
      expect(verifies, what).toBe(false);
    }
  });
});
