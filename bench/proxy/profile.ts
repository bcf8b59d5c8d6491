/**
 * Where the proxy's CPU time goes: a `.cpuprofile` written by `node --cpu-prof`, summed by self time per
 * function and per part of the runtime (the relay's own code, Node's streams, net and TLS layers, the garbage
 * collector, native work V8 cannot attribute to a JavaScript function).
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  startTime: number;
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  file: string;
  /** Sampled time the process was not idle, ms. */
  busyMs: number;
  /** Share of busy time by part, largest first. */
  parts: { part: string; share: number }[];
  /** The functions with the most self time, largest first. */
  top: { name: string; where: string; share: number }[];
}

/** Which part of the runtime a frame belongs to. */
function partOf(frame: ProfileNode['callFrame']): string {
  const { functionName: fn, url } = frame;
  if (fn === '(garbage collector)') return 'garbage collector';
  if (fn === '(program)') return 'native, not attributed to a function (libuv, OpenSSL record work, V8)';
  if (fn === '(root)') return 'native, not attributed to a function (libuv, OpenSSL record work, V8)';
  if (url.includes('_tls_wrap') || url.includes('node:tls') || url.includes('internal/tls'))
    return 'Node TLS layer (_tls_wrap: encrypt/decrypt calls)';
  if (url.includes('internal/streams')) return 'Node stream machinery (Readable/Writable)';
  if (url.includes('node:net') || url.includes('stream_base_commons'))
    return 'Node net layer (socket reads and writes)';
  if (url === '') return 'native calls from JavaScript (socket writes, TLS reads and writes, V8 builtins)';
  if (url.includes('node:')) return 'other Node internals (events, timers, process)';
  if (url.includes('proxy.mjs') || url.includes('/chunks/'))
    return 'the proxy bundle (relay, tunnel, logging)';
  return 'other';
}

/**
 * Reads the newest .cpuprofile in `dir` and summarises the samples taken after `skipMs` from the start of the
 * profile (the process's start-up and warm-up are not what is being asked about).
 */
export function summarizeProfile(dir: string, skipMs = 0): ProfileSummary {
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  const file = files.sort().at(-1);
  if (!file) throw new Error(`no .cpuprofile in ${dir}: did the proxy exit cleanly?`);
  const profile = JSON.parse(readFileSync(path.join(dir, file), 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  let elapsedUs = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    elapsedUs += dt;
    if (elapsedUs >= skipMs * 1000) selfUs.set(id, (selfUs.get(id) ?? 0) + dt);
  });
  const parts = new Map<string, number>();
  const functions = new Map<string, { name: string; where: string; us: number }>();
  let busy = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node || node.callFrame.functionName === '(idle)') continue;
    busy += us;
    const part = partOf(node.callFrame);
    parts.set(part, (parts.get(part) ?? 0) + us);
    const where = node.callFrame.url
      ? `${node.callFrame.url.replace(/^.*\//, '')}:${node.callFrame.lineNumber + 1}`
      : '';
    const name = node.callFrame.functionName || '(anonymous)';
    const key = `${name}@${where}`;
    const f = functions.get(key) ?? { name, where, us: 0 };
    f.us += us;
    functions.set(key, f);
  }
  const share = (us: number) => (busy > 0 ? us / busy : 0);
  return {
    file,
    busyMs: busy / 1000,
    parts: [...parts].map(([part, us]) => ({ part, share: share(us) })).sort((a, b) => b.share - a.share),
    top: [...functions.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, 12)
      .map((f) => ({ name: f.name, where: f.where, share: share(f.us) })),
  };
}
