/**
 * The role subset of a certificate request (src/authority/issuance.ts, the `roles` of issue-db-cert)
 * attacked as a caller would: a captured signed request replayed with another subset, without its subset,
 * or as it is under a new request id; role names that look like the bot's (case, spaces, NUL, a comma that
 * would read as two roles in the certificate); more names than the protocol takes. And what Teleport does
 * with a deny rule in a role the request left out: the certificate's roles are what count (Teleport
 * evaluates the roles a certificate impersonates, not all the user holds), so the deny does not apply.
 */
import { describe, expect, it } from 'vitest';
import { AuthorityClient, type AuthorityTransport } from '../../src/api/client.js';
import type { ApiRequest, ApiResponse } from '../../src/api/protocol.js';
import { InProcessTransport } from '../../src/api/transports.js';
import type { BotIdentity } from '../../src/credentials/identity.js';
import { OID_CERT_ROLES } from '../../src/pki/oids.js';
import { parseCertificate } from '../../src/pki/parse.js';
import { testAuthority } from '../support/authority.js';
import { EXAMPLE_ROUTE, exampleDbYaml, testKeyPair } from '../support/fixtures.js';

const START = '2026-03-01T12:00:00Z';

const role = (name: string, body: string) =>
  `kind: role\nversion: v6\nmetadata: { name: ${name} }\nspec:\n${body}---\n`;
const allowAlice = `  allow:\n    db_labels: { '*': '*' }\n    db_users: [${EXAMPLE_ROUTE.username}]\n    db_names: [${EXAMPLE_ROUTE.database}]\n`;

/** A bot `example` holding `roles`, joined; a client whose every request is recorded before it is sent. */
async function world(roles: Record<string, string>) {
  const resources = [
    ...Object.entries(roles).map(([name, body]) => role(name, body)),
    exampleDbYaml(),
    '---\n',
    `kind: bot\nversion: v1\nmetadata: { name: example }\nspec: { roles: [${Object.keys(roles).join(', ')}] }\n`,
  ].join('');
  const { authority, clock, audit } = await testAuthority({ start: START, resources });
  const inner = new InProcessTransport(authority);
  const sent: ApiRequest[] = [];
  const recording: AuthorityTransport = {
    description: inner.description,
    send: (request) => {
      sent.push(JSON.parse(JSON.stringify(request)) as ApiRequest);
      return inner.send(request);
    },
  };
  const client = new AuthorityClient(recording, clock);
  const botKeys = await testKeyPair(0);
  const joined = await client.joinWithToken(
    (await authority.addToken('example')).token,
    botKeys.publicKeyPem,
    3_600_000,
  );
  const identity: BotIdentity = {
    certificatePem: joined.certificatePem,
    privateKeyPem: botKeys.privateKeyPem,
    generation: 1,
    expires: joined.expires,
    botCaPem: joined.botCaPem,
  };
  const workload = await testKeyPair(1);
  const issue = (subset?: string[]) =>
    client.issueDatabaseCertificate(identity, EXAMPLE_ROUTE, workload.publicKeyPem, { roles: subset });
  const rolesOf = (certificatePem: string) =>
    parseCertificate(certificatePem).privateExtensions[OID_CERT_ROLES];
  return { authority, audit, sent, inner, issue, rolesOf };
}

type IssueRequest = Extract<ApiRequest, { type: 'issue-db-cert' }>;

describe('a captured signed request cannot be replayed with another subset', () => {
  it('another subset, no subset, or the same request under a new id: all refused, no certificate', async () => {
    // Both roles allow the route: a refusal can come only from the signature or the replay check.
    const { sent, inner, issue, rolesOf, audit } = await world({ reader: allowAlice, writer: allowAlice });
    const first = await issue(['reader']);
    expect(rolesOf(first.certificatePem)).toBe('reader');
    const captured = sent.at(-1) as IssueRequest;
    const successes = () =>
      audit.events.filter((e) => e.event === 'db_cert.issue' && e.outcome === 'success');
    expect(successes()).toHaveLength(1);

    const variants: IssueRequest[] = [
      { ...captured, requestId: 'tamper-0001', params: { ...captured.params, roles: ['writer'] } },
      { ...captured, requestId: 'tamper-0002', params: { ...captured.params, roles: ['reader', 'writer'] } },
      { ...captured, requestId: 'tamper-0003', params: { ...captured.params, roles: [] } },
      {
        ...captured,
        requestId: 'tamper-0004',
        params: { route: captured.params.route, publicKeyPem: captured.params.publicKeyPem },
      },
      { ...captured, requestId: 'tamper-0005' },
    ];
    for (const request of variants) {
      const response = (await inner.send(request)) as ApiResponse & { ok: boolean };
      expect(response, JSON.stringify(request.params.roles)).toMatchObject({
        ok: false,
        error: {
          code: 'access_denied',
          message: request.requestId.endsWith('5')
            ? expect.stringMatching(/already received .* a replayed request is refused/)
            : 'the request signature does not match the identity key',
        },
      });
      expect(JSON.stringify(response)).not.toContain('BEGIN CERTIFICATE');
    }
    expect(successes()).toHaveLength(1);
  });
});

describe('role names that are not the bot’s', () => {
  for (const name of ['Reader', 'reader ', ' reader', 'reader\0', 'reader,writer', 'READER', 'reader\n'])
    it(`${JSON.stringify(name)} is refused by name, nothing issued`, async () => {
      const { issue, audit } = await world({ reader: allowAlice, writer: allowAlice });
      await expect(issue([name])).rejects.toThrow(/was requested, but bot "example" does not have it/);
      expect(audit.events.filter((e) => e.outcome === 'success' && e.event === 'db_cert.issue')).toEqual([]);
    });

  it('one real role beside one the bot lacks: refused, not narrowed to the real one', async () => {
    const { issue } = await world({ reader: allowAlice });
    await expect(issue(['reader', 'admin'])).rejects.toThrow(/role "admin" was requested/);
  });

  it('a repeated role is written once; more than 64 names are refused by the protocol', async () => {
    const { issue, rolesOf } = await world({ reader: allowAlice, writer: allowAlice });
    expect(rolesOf((await issue(['writer', 'writer', 'writer'])).certificatePem)).toBe('writer');
    await expect(issue(Array.from({ length: 65 }, () => 'reader'))).rejects.toThrow(/roles/);
  });
});

describe('a deny in a role the request leaves out (Teleport: the certificate’s roles are what count)', () => {
  const guard = `  deny:\n    db_labels: { '*': '*' }\n    db_users: [${EXAMPLE_ROUTE.username}]\n`;

  it('applies with all the bot’s roles, and with the subset that names it', async () => {
    const { issue } = await world({ reader: allowAlice, guard });
    await expect(issue()).rejects.toThrow(/denied/);
    await expect(issue([])).rejects.toThrow(/denied/);
    await expect(issue(['reader', 'guard'])).rejects.toThrow(/denied/);
  });

  it('does not apply to a subset without it, as in Teleport; the certificate and audit name the subset', async () => {
    const { issue, rolesOf, audit } = await world({ reader: allowAlice, guard });
    const issued = await issue(['reader']);
    expect(rolesOf(issued.certificatePem)).toBe('reader');
    expect(audit.events.at(-1)).toMatchObject({ outcome: 'success', roles: ['reader'] });
  });
});
