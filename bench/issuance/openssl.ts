import { spawn } from 'node:child_process';

export interface OpensslSpeed {
  signPerSecond: number;
  verifyPerSecond: number;
  /** The command line that ran. */
  command: string;
}

/**
 * Runs `openssl speed rsa2048` and returns its sign/s. `processes` > 1 adds `-multi N` (OpenSSL then sums
 * the children's rates). `elapsed` adds `-elapsed`: divide by wall-clock time, as the broker's rates are,
 * instead of the default user CPU time of the openssl process.
 */
export async function opensslSpeedRsa2048(options: {
  seconds: number;
  processes: number;
  elapsed: boolean;
}): Promise<OpensslSpeed> {
  const args = ['speed'];
  if (options.elapsed) args.push('-elapsed');
  if (options.processes > 1) args.push('-multi', String(options.processes));
  args.push('-seconds', String(Math.max(1, Math.round(options.seconds))), 'rsa2048');
  const command = `openssl ${args.join(' ')}`;
  const output = await new Promise<string>((resolve, reject) => {
    const child = spawn('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    child.stdout.on('data', (chunk: Buffer) => {
      text += chunk.toString('utf8');
    });
    child.stderr.on('data', (chunk: Buffer) => {
      text += chunk.toString('utf8');
    });
    child.on('error', (err) =>
      reject(new Error(`could not run ${command}: ${err.message} (is the openssl command installed?)`)),
    );
    child.on('close', (code) =>
      code === 0 ? resolve(text) : reject(new Error(`${command} exited with ${code}:\n${text}`)),
    );
  });
  return { ...parseOpensslSpeed(output), command };
}

/**
 * Reads the summary line of `openssl speed rsa2048`:
 *
 *                       sign    verify    sign/s verify/s
 *     rsa 2048 bits 0.000284s 0.000018s   3519.2  56882.3
 */
export function parseOpensslSpeed(output: string): { signPerSecond: number; verifyPerSecond: number } {
  const m = /^rsa\s+2048\s+bits\s+\S+s\s+\S+s\s+([\d.]+)\s+([\d.]+)\s*$/m.exec(output);
  if (!m)
    throw new Error(`no "rsa 2048 bits ... sign/s verify/s" line in the openssl speed output:\n${output}`);
  return { signPerSecond: Number(m[1]), verifyPerSecond: Number(m[2]) };
}
