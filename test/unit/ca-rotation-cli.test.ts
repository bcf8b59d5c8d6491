/**
 * `broker auth rotate` and `broker status` in process on a state directory: each phase prints what it
 * changed and the operator's steps for it, `status` shows the phase and both keys during the rotation, and
 * bad input is refused with what is allowed.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProgram } from '../../src/cli/main.js';
import { makeTempDir, removeTempDirs } from '../support/temp.js';

let dir: string;

async function broker(...args: string[]): Promise<string[]> {
  const lines: string[] = [];
  const program = buildProgram((l) => lines.push(l));
  for (const cmd of program.commands) cmd.exitOverride();
  await program.parseAsync(['--state-dir', path.join(dir, 'state'), ...args], { from: 'user' });
  return lines;
}

beforeAll(async () => {
  dir = await makeTempDir('broker-rotate-cli-');
  await broker('init');
});
afterAll(removeTempDirs);

describe('broker auth rotate', () => {
  it('walks the db-server CA through its phases, printing each phase and its steps', async () => {
    const init = await broker('auth', 'rotate', '--type', 'db-server', '--manual');
    expect(init[0]).toBe('db-server CA: standby -> init');
    expect(init.join('\n')).toMatch(/teleport-database-ca\.crt.*gain the new key/);
    expect(init.at(-1)).toBe('Then: broker auth rotate --type db-server --manual --phase update_clients');

    const status = (await broker('status')).join('\n');
    expect(status).toMatch(
      /db-server\s+init\s+signing\s+\S+\s+sha256:[0-9a-f]{64}\n\s+trusted \(new\)\s+\S+\s+sha256:/,
    );
    expect(status).toMatch(/bot\s+standby\s+signing/);

    await broker('auth', 'rotate', '--type', 'db-server', '--manual', '--phase', 'update_clients');
    const servers = await broker(
      'auth',
      'rotate',
      '--type',
      'db-server',
      '--manual',
      '--phase',
      'update_servers',
    );
    expect(servers.join('\n')).toMatch(
      /broker auth sign --format=db --service SERVICE --host HOST --out PREFIX --overwrite/,
    );
    expect(servers.join('\n')).toMatch(/pg_reload_conf\(\).*FLUSH SSL.*CONFIG SET tls-ca-cert-file/);
    const done = await broker('auth', 'rotate', '--type', 'db-server', '--manual', '--phase', 'standby');
    expect(done[0]).toBe(
      'db-server CA: update_servers -> standby; the key that left it: removed from the CA',
    );
    expect((await broker('status')).join('\n')).toMatch(/db-server\s+standby\s+signing/);
    const audit = (await broker('audit', '-n', '4')).map(
      (l) => JSON.parse(l) as { event: string; reason: string },
    );
    expect(audit.map((e) => [e.event, e.reason.split(' (')[0]])).toEqual([
      ['ca.rotate', 'phase standby -> init'],
      ['ca.rotate', 'phase init -> update_clients'],
      ['ca.rotate', 'phase update_clients -> update_servers'],
      ['ca.rotate', 'phase update_servers -> standby'],
    ]);
  });

  it('refuses an automatic rotation of a database CA, an unknown phase and a phase out of order', async () => {
    await expect(broker('auth', 'rotate', '--type', 'db-client')).rejects.toThrow(/add --manual/);
    await expect(
      broker('auth', 'rotate', '--type', 'db-server', '--manual', '--phase', 'later'),
    ).rejects.toThrow(/--phase must be one of standby, init, update_clients, update_servers, rollback/);
    await expect(
      broker('auth', 'rotate', '--type', 'db-server', '--manual', '--phase', 'standby'),
    ).rejects.toThrow(/not being rotated, so it cannot move to standby; start one with --phase init/);
    await expect(broker('auth', 'rotate', '--type', 'bot', '--service', 'x', '--manual')).rejects.toThrow(
      /--service goes with --type db-client only/,
    );
  });

  it('starts an automatic rotation of the bot CA with its schedule', async () => {
    const out = await broker('auth', 'rotate', '--type', 'bot', '--grace-period', '3h');
    expect(out[0]).toMatch(
      /^bot CA: standby -> init \(automatic: update_clients at \S+, update_servers at \S+, standby at \S+\)$/,
    );
    expect(out.at(-1)).toMatch(/moves the rotation on by itself/);
    await broker('auth', 'rotate', '--type', 'bot', '--phase', 'rollback');
    await broker('auth', 'rotate', '--type', 'bot', '--manual', '--phase', 'standby');
  });
});
