/**
 * The proxy's Prometheus metrics, kept as plain numbers and rendered as the text exposition format only when
 * /metrics is scraped. The data path adds to a number per chunk; nothing is looked up by label, allocated or
 * formatted until someone asks (a metrics library would cost a labelled update per chunk and about 11 MB of
 * heap for a process that may never be scraped).
 */

const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** Upper bounds of the dial-latency histogram, seconds. */
const DIAL_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5] as const;

/** What the scrape adds from outside the proxy: credential refreshes and the current certificate's expiry. */
export interface ScrapeExtras {
  refreshes?: { successes: number; failures: number };
  /** Seconds until the current certificate expires; absent before one is loaded. */
  certExpirySeconds?: number;
}

/** A counter with one label, in the shape Prometheus clients report it (`values[].labels`, `values[].value`). */
export class LabelledCounter {
  private readonly counts = new Map<string, number>();

  constructor(readonly label: string) {}

  inc(labelValue: string, n = 1): void {
    this.counts.set(labelValue, (this.counts.get(labelValue) ?? 0) + n);
  }

  get(): { values: { labels: Record<string, string>; value: number }[] } {
    return {
      values: [...this.counts].map(([v, value]) => ({ labels: { [this.label]: v }, value })),
    };
  }

  entries(): [string, number][] {
    return [...this.counts];
  }

  /** Adds every count of `entries` (another loop's counter). */
  addAll(entries: readonly [string, number][]): void {
    for (const [v, n] of entries) this.inc(v, n);
  }
}

/** Observations counted per bucket (cumulative only when rendered). */
class PlainHistogram {
  private readonly counts = new Array<number>(DIAL_BUCKETS.length).fill(0);
  count = 0;
  sum = 0;

  observe(value: number): void {
    this.count++;
    this.sum += value;
    const i = DIAL_BUCKETS.findIndex((le) => value <= le);
    if (i >= 0) this.counts[i] = (this.counts[i] ?? 0) + 1;
  }

  /** The counts per bucket (not cumulative), for summing loops. */
  snapshot(): { counts: number[]; count: number; sum: number } {
    return { counts: [...this.counts], count: this.count, sum: this.sum };
  }

  add(other: { counts: readonly number[]; count: number; sum: number }): void {
    other.counts.forEach((n, i) => {
      this.counts[i] = (this.counts[i] ?? 0) + n;
    });
    this.count += other.count;
    this.sum += other.sum;
  }

  lines(name: string): string[] {
    let cumulative = 0;
    const out = DIAL_BUCKETS.map((le, i) => {
      cumulative += this.counts[i] ?? 0;
      return `${name}_bucket{le="${le}"} ${cumulative}`;
    });
    out.push(
      `${name}_bucket{le="+Inf"} ${this.count}`,
      `${name}_sum ${this.sum}`,
      `${name}_count ${this.count}`,
    );
    return out;
  }
}

function family(name: string, type: string, help: string, samples: string[]): string {
  return [`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...samples].join('\n');
}

/** One event loop's metrics as plain data, to post to the thread that serves /metrics. */
export interface MetricsSnapshot {
  openConnections: number;
  connections: [string, number][];
  bytes: { clientToServer: number; serverToClient: number };
  dialSeconds: { counts: number[]; count: number; sum: number };
}

/** One per proxy instance (per event loop with `--workers`; the scrape sums them). */
export class ProxyMetrics {
  /** Client connections open now. */
  openConnections = 0;
  /** Client connections accepted, by how they ended. */
  readonly connections = new LabelledCounter('outcome');
  /** Bytes relayed, by direction: plain fields the relay adds to. */
  readonly bytes = { clientToServer: 0, serverToClient: 0 };
  /** Time to open the upstream TCP connection. */
  readonly dialSeconds = new PlainHistogram();

  snapshot(): MetricsSnapshot {
    return {
      openConnections: this.openConnections,
      connections: this.connections.entries(),
      bytes: { ...this.bytes },
      dialSeconds: this.dialSeconds.snapshot(),
    };
  }

  /** New metrics holding the sum of `snapshots` (every loop's). */
  static sum(snapshots: readonly MetricsSnapshot[]): ProxyMetrics {
    return new ProxyMetrics().plus(snapshots);
  }

  /**
   * New metrics holding these and `others` summed (the main loop's with its workers'); for callers that hold
   * an instance and would rather not import this module.
   */
  plus(others: readonly MetricsSnapshot[]): ProxyMetrics {
    const total = new ProxyMetrics();
    for (const s of [this.snapshot(), ...others]) {
      total.openConnections += s.openConnections;
      total.connections.addAll(s.connections);
      total.bytes.clientToServer += s.bytes.clientToServer;
      total.bytes.serverToClient += s.bytes.serverToClient;
      total.dialSeconds.add(s.dialSeconds);
    }
    return total;
  }

  /** The Prometheus text exposition of every metric. */
  render(extras: ScrapeExtras = {}): string {
    const families = [
      family('broker_proxy_open_connections', 'gauge', 'Client connections open now', [
        `broker_proxy_open_connections ${this.openConnections}`,
      ]),
      family(
        'broker_proxy_connections_total',
        'counter',
        'Client connections accepted, by how they ended',
        this.connections.entries().map(([o, n]) => `broker_proxy_connections_total{outcome="${o}"} ${n}`),
      ),
      family('broker_proxy_bytes_total', 'counter', 'Bytes relayed, by direction', [
        `broker_proxy_bytes_total{direction="client_to_server"} ${this.bytes.clientToServer}`,
        `broker_proxy_bytes_total{direction="server_to_client"} ${this.bytes.serverToClient}`,
      ]),
      family(
        'broker_proxy_upstream_dial_seconds',
        'histogram',
        'Time to open the upstream TCP connection',
        this.dialSeconds.lines('broker_proxy_upstream_dial_seconds'),
      ),
    ];
    if (extras.refreshes)
      families.push(
        family('broker_proxy_credential_refreshes_total', 'counter', 'Credential bundle reads, by result', [
          `broker_proxy_credential_refreshes_total{result="success"} ${extras.refreshes.successes}`,
          `broker_proxy_credential_refreshes_total{result="failure"} ${extras.refreshes.failures}`,
        ]),
      );
    families.push(
      family(
        'broker_proxy_certificate_expiry_seconds',
        'gauge',
        'Seconds until the current database certificate expires (negative when expired, absent before one is loaded)',
        extras.certExpirySeconds === undefined
          ? []
          : [`broker_proxy_certificate_expiry_seconds ${extras.certExpirySeconds}`],
      ),
    );
    return `${families.join('\n')}\n`;
  }

  /** The content type and text a Prometheus registry would give, for callers written against one. */
  readonly registry = {
    contentType: CONTENT_TYPE,
    metrics: async (): Promise<string> => this.render(),
  };
}

export const METRICS_CONTENT_TYPE = CONTENT_TYPE;
