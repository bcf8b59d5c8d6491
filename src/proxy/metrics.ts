import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** The proxy's Prometheus metrics, in a registry of its own (one per proxy instance). */
export class ProxyMetrics {
  readonly registry = new Registry();
  readonly openConnections = new Gauge({
    name: 'broker_proxy_open_connections',
    help: 'Client connections open now',
    registers: [this.registry],
  });
  readonly connections = new Counter({
    name: 'broker_proxy_connections_total',
    help: 'Client connections accepted, by how they ended',
    labelNames: ['outcome'],
    registers: [this.registry],
  });
  readonly bytes = new Counter({
    name: 'broker_proxy_bytes_total',
    help: 'Bytes relayed, by direction',
    labelNames: ['direction'],
    registers: [this.registry],
  });
  readonly dialSeconds = new Histogram({
    name: 'broker_proxy_upstream_dial_seconds',
    help: 'Time to open the upstream TCP connection',
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });
  readonly refreshes = new Counter({
    name: 'broker_proxy_credential_refreshes_total',
    help: 'Credential bundle reads, by result',
    labelNames: ['result'],
    registers: [this.registry],
  });
  readonly certExpirySeconds = new Gauge({
    name: 'broker_proxy_certificate_expiry_seconds',
    help: 'Seconds until the current database certificate expires (negative when expired, absent before one is loaded)',
    registers: [this.registry],
  });
}
