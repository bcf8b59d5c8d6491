import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { CredentialBundle } from '../credentials/bundle.js';
import type { JsonLogger as Logger } from '../json-log.js';
// Types only: a runtime import of a module the entry also loads would split it into a chunk of its own.
import type { MetricsSnapshot, ScrapeExtras } from './metrics.js';
import type { DatabaseProxy, ProxyStatus } from './proxy.js';

/**
 * `--workers N`: the proxy on N event loops. The main thread's DatabaseProxy binds the listener as with one
 * loop; N-1 worker threads each serve the same listening socket (`listen({ fd })`), and the kernel hands each
 * connection to whichever loop accepts first. Why: on a host whose CPU is busy with many threads (a database
 * with a backend per client), the scheduler gives each runnable thread an equal share, so one loop waits on
 * the run queue longer than it computes; more loops get more of the CPU, as a thread-per-connection proxy does.
 *
 * Workers never read the credential source: the main thread posts every bundle it loads (plain data) and a
 * worker starts serving once it has one. One `--max-connections` counts every loop's connections (a shared
 * Int32 changed with Atomics); /readyz and /metrics sum every loop.
 */

/** What a worker loop is started with (`workerData`); plain data only. */
export interface LoopWorkerData {
  loop: number;
  fd: number;
  sharedOpen: SharedArrayBuffer;
  tunnel: boolean;
  maxConnections: number;
  idleTimeoutMs: number;
  /** The credential source's description, for the worker's error messages. */
  sourceDescription: string;
  /** Bound into every log line of the worker (e.g. component, service). */
  logBase: Record<string, unknown>;
  bundle?: CredentialBundle;
}

/** Main thread → worker. */
export type ToLoop =
  | { type: 'bundle'; bundle: CredentialBundle }
  | { type: 'stop'; drainMs: number }
  | { type: 'metrics'; id: number };

/** Worker → main thread. */
export type FromLoop =
  | { type: 'serving' }
  | { type: 'metrics'; id: number; snapshot: MetricsSnapshot }
  | { type: 'stopped'; drained: boolean };

/**
 * The worker entry, built beside the bundle that runs the main thread (scripts/build.mjs): dist/proxy-loop.mjs
 * beside broker.mjs, dist/proxy-container/proxy-loop.mjs beside proxy.mjs (this module may be in chunks/).
 */
export function loopWorkerUrl(): URL {
  for (const relative of ['./proxy-loop.mjs', '../proxy-loop.mjs']) {
    const url = new URL(relative, import.meta.url);
    if (existsSync(url)) return url;
  }
  throw new Error(
    `--workers needs proxy-loop.mjs beside ${fileURLToPath(import.meta.url)} and it is not there; run the built proxy (npm run build)`,
  );
}

/** How long a scrape waits for a worker's metrics before rendering without them. */
const SCRAPE_WAIT_MS = 2000;

interface Loop {
  worker: Worker;
  /** The last snapshot a worker answered with, used when it does not answer in time. */
  last?: MetricsSnapshot;
}

/** The main loop's proxy and its worker loops, seen from /readyz and /metrics as one proxy. */
export class ProxyLoops implements ProxyStatus {
  private readonly loops: Loop[] = [];
  private scrapes = 0;
  private failed: ((err: Error) => void) | undefined;
  private stopping = false;
  /** Rejects when a worker loop dies outside shutdown: the shared listener is gone with it. */
  readonly failure: Promise<never>;

  constructor(
    private readonly main: DatabaseProxy,
    private readonly sharedOpen: Int32Array,
  ) {
    this.failure = new Promise<never>((_, reject) => {
      this.failed = reject;
    });
    this.failure.catch(() => undefined);
  }

  /** Starts `count` worker loops on the main proxy's listener (already bound). */
  startWorkers(
    count: number,
    data: Omit<LoopWorkerData, 'loop' | 'fd' | 'sharedOpen'>,
    options: { log: Logger; workerUrl: URL },
  ): void {
    const fd = this.main.listenerFd;
    for (let i = 1; i <= count; i++) {
      const workerData: LoopWorkerData = {
        ...data,
        loop: i,
        fd,
        sharedOpen: this.sharedOpen.buffer as SharedArrayBuffer,
      };
      const worker = new Worker(options.workerUrl, { workerData });
      const loop: Loop = { worker };
      worker.on('message', (m: FromLoop) => {
        if (m.type === 'metrics') loop.last = m.snapshot;
      });
      worker.on('error', (err) =>
        options.log.error({ loop: i, err }, `event loop ${i} failed: ${err.message}`),
      );
      worker.on('exit', (code) => {
        if (!this.stopping)
          this.failed?.(new Error(`event loop ${i} exited (code ${code}); the proxy cannot go on serving`));
      });
      this.loops.push(loop);
    }
  }

  /** Sends a newly loaded bundle to every worker (each builds its own TLS context from it). */
  postBundle(bundle: CredentialBundle): void {
    for (const { worker } of this.loops) worker.postMessage({ type: 'bundle', bundle } satisfies ToLoop);
  }

  get isDraining(): boolean {
    return this.main.isDraining;
  }

  get openConnections(): number {
    return Atomics.load(this.sharedOpen, 0);
  }

  /** Every loop's metrics summed; a worker that does not answer in time counts with its last answer. */
  async renderMetrics(extras: ScrapeExtras): Promise<string> {
    const snapshots = await Promise.all(this.loops.map((loop) => this.ask(loop)));
    const defined = snapshots.filter((s): s is MetricsSnapshot => s !== undefined);
    return this.main.metrics.plus(defined).render(extras);
  }

  private ask(loop: Loop): Promise<MetricsSnapshot | undefined> {
    const id = ++this.scrapes;
    return new Promise((resolve) => {
      const done = (snapshot: MetricsSnapshot | undefined) => {
        clearTimeout(timer);
        loop.worker.off('message', onMessage);
        resolve(snapshot);
      };
      const onMessage = (m: FromLoop) => {
        if (m.type === 'metrics' && m.id === id) done(m.snapshot);
      };
      const timer = setTimeout(() => done(loop.last), SCRAPE_WAIT_MS);
      loop.worker.on('message', onMessage);
      loop.worker.postMessage({ type: 'metrics', id } satisfies ToLoop);
    });
  }

  /**
   * Every loop stops accepting and drains for up to `drainMs`; true when every connection on every loop
   * finished by itself. The main loop closes the shared listener; the workers are left to end with the
   * process (unref'd): a worker closing its copy would close the descriptor number again, which by then may
   * name another socket.
   */
  async stop(drainMs: number): Promise<boolean> {
    this.stopping = true;
    const workers = this.loops.map(
      ({ worker }) =>
        new Promise<boolean>((resolve) => {
          const onMessage = (m: FromLoop) => {
            if (m.type === 'stopped') resolve(m.drained);
          };
          worker.on('message', onMessage);
          worker.once('exit', () => resolve(false));
          worker.postMessage({ type: 'stop', drainMs } satisfies ToLoop);
        }),
    );
    // Keeps this thread's loop alive while only the workers have work left.
    const keepAlive = setInterval(() => undefined, 1000);
    try {
      const results = await Promise.all([this.main.stop(drainMs), ...workers]);
      return results.every(Boolean);
    } finally {
      clearInterval(keepAlive);
      for (const { worker } of this.loops) worker.unref();
    }
  }
}
