import { describe, expect, it } from 'vitest';
import { METRICS_CONTENT_TYPE, ProxyMetrics } from '../../../src/proxy/metrics.js';

const sample = (text: string, name: string) => {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
};

describe('ProxyMetrics', () => {
  it('renders the Prometheus text format with HELP and TYPE for every family', () => {
    const text = new ProxyMetrics().render();
    for (const [name, type] of [
      ['broker_proxy_open_connections', 'gauge'],
      ['broker_proxy_connections_total', 'counter'],
      ['broker_proxy_bytes_total', 'counter'],
      ['broker_proxy_upstream_dial_seconds', 'histogram'],
      ['broker_proxy_certificate_expiry_seconds', 'gauge'],
    ]) {
      expect(text).toMatch(new RegExp(`^# HELP ${name} \\S`, 'm'));
      expect(text).toContain(`# TYPE ${name} ${type}\n`);
    }
    expect(text.endsWith('\n')).toBe(true);
    expect(METRICS_CONTENT_TYPE).toBe('text/plain; version=0.0.4; charset=utf-8');
  });

  it('counts connections by outcome, bytes by direction and the open gauge as plain numbers', async () => {
    const m = new ProxyMetrics();
    m.connections.inc('ok');
    m.connections.inc('ok');
    m.connections.inc('user_mismatch');
    m.bytes.clientToServer += 9;
    m.bytes.serverToClient += 4096;
    m.openConnections = 3;
    const text = m.render();
    expect(sample(text, 'broker_proxy_connections_total{outcome="ok"}')).toBe(2);
    expect(sample(text, 'broker_proxy_connections_total{outcome="user_mismatch"}')).toBe(1);
    expect(sample(text, 'broker_proxy_bytes_total{direction="client_to_server"}')).toBe(9);
    expect(sample(text, 'broker_proxy_bytes_total{direction="server_to_client"}')).toBe(4096);
    expect(sample(text, 'broker_proxy_open_connections')).toBe(3);
    expect(m.connections.get().values).toEqual([
      { labels: { outcome: 'ok' }, value: 2 },
      { labels: { outcome: 'user_mismatch' }, value: 1 },
    ]);
    expect(await m.registry.metrics()).toBe(text);
  });

  it('renders the dial histogram with cumulative buckets, +Inf, sum and count', () => {
    const m = new ProxyMetrics();
    for (const s of [0.0005, 0.003, 0.003, 0.2, 7]) m.dialSeconds.observe(s);
    const text = m.render();
    const bucket = (le: string) => sample(text, `broker_proxy_upstream_dial_seconds_bucket{le="${le}"}`);
    expect(bucket('0.001')).toBe(1);
    expect(bucket('0.005')).toBe(3);
    expect(bucket('0.1')).toBe(3);
    expect(bucket('0.25')).toBe(4);
    expect(bucket('5')).toBe(4);
    expect(bucket('+Inf')).toBe(5);
    expect(sample(text, 'broker_proxy_upstream_dial_seconds_count')).toBe(5);
    expect(sample(text, 'broker_proxy_upstream_dial_seconds_sum')).toBeCloseTo(7.2065, 6);
  });

  it('shows refreshes and the certificate expiry only when the scrape supplies them', () => {
    const m = new ProxyMetrics();
    const bare = m.render();
    expect(bare).not.toContain('broker_proxy_credential_refreshes_total');
    expect(sample(bare, 'broker_proxy_certificate_expiry_seconds')).toBeUndefined();
    const full = m.render({ refreshes: { successes: 4, failures: 1 }, certExpirySeconds: -12.5 });
    expect(sample(full, 'broker_proxy_credential_refreshes_total{result="success"}')).toBe(4);
    expect(sample(full, 'broker_proxy_credential_refreshes_total{result="failure"}')).toBe(1);
    expect(sample(full, 'broker_proxy_certificate_expiry_seconds')).toBe(-12.5);
  });
});

describe('ProxyMetrics.sum (every event loop of --workers)', () => {
  it('adds outcomes, bytes, open connections and the dial histogram of every loop, through plain snapshots', () => {
    const a = new ProxyMetrics();
    const b = new ProxyMetrics();
    a.openConnections = 2;
    b.openConnections = 3;
    a.connections.inc('ok', 4);
    b.connections.inc('ok');
    b.connections.inc('max_connections', 2);
    a.bytes.clientToServer = 100;
    b.bytes.clientToServer = 50;
    b.bytes.serverToClient = 7;
    a.dialSeconds.observe(0.002);
    b.dialSeconds.observe(0.002);
    b.dialSeconds.observe(3);
    // Snapshots cross threads by structured clone: plain data only.
    const snapshots = [a.snapshot(), structuredClone(b.snapshot())];
    const text = ProxyMetrics.sum(snapshots).render();
    expect(sample(text, 'broker_proxy_open_connections')).toBe(5);
    expect(sample(text, 'broker_proxy_connections_total{outcome="ok"}')).toBe(5);
    expect(sample(text, 'broker_proxy_connections_total{outcome="max_connections"}')).toBe(2);
    expect(sample(text, 'broker_proxy_bytes_total{direction="client_to_server"}')).toBe(150);
    expect(sample(text, 'broker_proxy_bytes_total{direction="server_to_client"}')).toBe(7);
    expect(sample(text, 'broker_proxy_upstream_dial_seconds_bucket{le="0.001"}')).toBe(0);
    expect(sample(text, 'broker_proxy_upstream_dial_seconds_bucket{le="0.005"}')).toBe(2);
    expect(sample(text, 'broker_proxy_upstream_dial_seconds_bucket{le="2.5"}')).toBe(2);
    expect(sample(text, 'broker_proxy_upstream_dial_seconds_bucket{le="5"}')).toBe(3);
    expect(sample(text, 'broker_proxy_upstream_dial_seconds_count')).toBe(3);
    expect(sample(text, 'broker_proxy_upstream_dial_seconds_sum')).toBeCloseTo(3.004);
    // The loops' own metrics are untouched.
    expect(a.render()).toContain('broker_proxy_open_connections 2\n');
  });
});
