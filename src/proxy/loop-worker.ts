import { parentPort, workerData } from 'node:worker_threads';
import type { CredentialBundle } from '../credentials/bundle.js';
import { createJsonLogger } from '../json-log.js';
import { CredentialCache } from './credential-cache.js';
import type { FromLoop, LoopWorkerData, ToLoop } from './loops.js';
import { DatabaseProxy } from './proxy.js';
import { mysqlTunnel } from './tunnels/mysql.js';

/**
 * One worker event loop of `broker proxy db --workers N` (loops.ts): serves the main thread's listening
 * socket with the bundles the main thread posts. Built as its own entry (proxy-loop.mjs) beside the bundle
 * that runs the main thread.
 */

/** The bundles the main thread posted, read by this loop's credential cache as its source. */
class PostedBundles {
  latest: CredentialBundle | undefined;
  constructor(readonly description: string) {}
  async load(): Promise<CredentialBundle | undefined> {
    return this.latest;
  }
}

async function serveLoop(data: LoopWorkerData, port: NonNullable<typeof parentPort>): Promise<void> {
  const post = (m: FromLoop) => port.postMessage(m);
  const log = createJsonLogger({ base: { ...data.logBase, loop: data.loop } });
  const bundles = new PostedBundles(data.sourceDescription);
  // The main thread already logged each bundle it loaded; this cache says only what goes wrong.
  const creds = new CredentialCache(bundles, {
    log: createJsonLogger({ level: 'warn', base: { ...data.logBase, loop: data.loop } }),
  });
  const proxy = new DatabaseProxy({
    creds,
    log,
    tunnel: data.tunnel,
    listen: { fd: data.fd },
    maxConnections: data.maxConnections,
    sharedOpen: new Int32Array(data.sharedOpen),
    idleTimeoutMs: data.idleTimeoutMs,
    handlers: { mysql: mysqlTunnel },
  });
  let started = false;
  let stopped = false;
  const serve = () => {
    // A loop serves only once it has credentials: before that the main loop answers alone. Never after a
    // stop: the main loop has closed the listener by then. A listener that cannot start ends this thread
    // (an unhandled rejection), which the main loop treats as a loop lost.
    if (stopped || started) return;
    started = true;
    void proxy.start().then(() => post({ type: 'serving' }));
  };
  port.on('message', (m: ToLoop) => {
    if (m.type === 'bundle') {
      bundles.latest = m.bundle;
      void creds.refresh().then((ok) => {
        if (ok || creds.loaded) serve();
      });
    } else if (m.type === 'metrics') {
      post({ type: 'metrics', id: m.id, snapshot: proxy.metrics.snapshot() });
    } else if (m.type === 'stop') {
      stopped = true;
      void proxy.stop(m.drainMs).then((drained) => post({ type: 'stopped', drained }));
    }
  });
  if (data.bundle) {
    bundles.latest = data.bundle;
    await creds.refresh();
    if (creds.loaded) serve();
  }
}

if (parentPort) await serveLoop(workerData as LoopWorkerData, parentPort);
