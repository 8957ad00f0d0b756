import { describe, expect, it } from 'vitest';
import { GatewayMetrics, MetricsRegistry, NEGOTIATION_BUCKETS, METRICS_CONTENT_TYPE } from '../../src/admin/metrics.js';
import type { StreamInfo } from '../../src/stream/stream-info.js';

function stream(over: Partial<StreamInfo>): StreamInfo {
  return {
    id: 's1', partner: 'a.example', direction: 'inbound', purpose: 'stream', localDomain: 'gw.example',
    remoteDomain: 'a.example', authenticatedDomains: ['a.example'], tls: 'TLSv1.3', auth: 'sasl-external',
    remoteAddress: '127.0.0.1:40000', ageSeconds: 1, stanzasIn: 0, stanzasOut: 0, bytesIn: 0, bytesOut: 0,
    ...over,
  };
}

function errorCode(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
}

/** The sample lines of the exposition (no comments, no blank lines). */
const samples = (text: string) => text.split('\n').filter((l) => l !== '' && !l.startsWith('#'));

describe('MetricsRegistry (prom-client exposition)', () => {
  it('renders counters and histograms in text format 0.0.4, labels in labelNames order, le last', async () => {
    const r = new MetricsRegistry();
    const c = r.counter('gw_test_total', 'A test counter.', ['partner', 'direction']);
    c.inc({ direction: 'inbound', partner: 'a.example' });
    c.labels('a.example', 'inbound').inc(2);
    c.inc(['b.example', 'outbound'], 5);
    const h = r.histogram('gw_wait_seconds', 'Waits.', ['partner'], [0.25, 1]);
    h.observe(['a'], 0.25);
    h.observe({ partner: 'a' }, 0.5);
    h.labels('a').observe(7);
    r.counter('gw_unused_total', 'Never incremented.', ['partner']);
    const text = await r.render();
    expect(text).toContain('# HELP gw_test_total A test counter.\n# TYPE gw_test_total counter\n');
    expect(samples(text)).toEqual([
      'gw_test_total{partner="a.example",direction="inbound"} 3',
      'gw_test_total{partner="b.example",direction="outbound"} 5',
      'gw_wait_seconds_bucket{partner="a",le="0.25"} 1',
      'gw_wait_seconds_bucket{partner="a",le="1"} 2',
      'gw_wait_seconds_bucket{partner="a",le="+Inf"} 3',
      'gw_wait_seconds_sum{partner="a"} 7.75',
      'gw_wait_seconds_count{partner="a"} 3',
    ]);
    expect(text).toContain('# TYPE gw_wait_seconds histogram');
    expect(text).toContain('# TYPE gw_unused_total counter');
    expect(METRICS_CONTENT_TYPE).toBe('text/plain; version=0.0.4; charset=utf-8');
  });

  it('escapes label values (backslash, quote, newline)', async () => {
    const r = new MetricsRegistry();
    r.counter('gw_x_total', 'x', ['rule']).inc(['say "hi"\\\n']);
    expect(samples(await r.render())).toEqual(['gw_x_total{rule="say \\"hi\\"\\\\\\n"} 1']);
  });

  it('a label-less counter is exposed at zero before any event', async () => {
    const r = new MetricsRegistry();
    r.counter('gw_c_total', 'c');
    expect(samples(await r.render())).toEqual(['gw_c_total 0']);
  });
});

describe('metric children (hot path: plain numbers, read at scrape time)', () => {
  it('labels() returns one child per label set, whose inc is a field increment', async () => {
    const r = new MetricsRegistry();
    const c = r.counter('gw_s_total', 's', ['partner', 'direction']);
    const child = c.labels('a.example', 'inbound');
    expect(c.labels('a.example', 'inbound')).toBe(child);
    expect(c.labels('a.example', 'outbound')).not.toBe(child);
    for (let i = 0; i < 1000; i++) child.inc();
    child.inc(24);
    expect(child.value).toBe(1024);
    expect(c.get(['a.example', 'inbound'])).toBe(1024);
    expect(c.get({ partner: 'a.example', direction: 'outbound' })).toBe(0);
    expect(samples(await r.render())).toContain('gw_s_total{partner="a.example",direction="inbound"} 1024');
    // A later increment shows at the next scrape (collect() reads the field again).
    child.inc(1);
    expect(samples(await r.render())).toContain('gw_s_total{partner="a.example",direction="inbound"} 1025');
  });

  it('label value tuples that join alike stay distinct series', () => {
    const c = new MetricsRegistry().counter('gw_t_total', 't', ['a', 'b']);
    c.inc(['x,y', 'z']);
    c.inc(['x', 'y,z'], 2);
    expect(c.get(['x,y', 'z'])).toBe(1);
    expect(c.get(['x', 'y,z'])).toBe(2);
  });

  it('refuses malformed use with GW_ERR_METRIC', () => {
    const r = new MetricsRegistry();
    const c = r.counter('gw_e_total', 'e', ['partner', 'rule']);
    expect(errorCode(() => c.labels('only-one'))).toBe('GW_ERR_METRIC');
    expect(errorCode(() => c.inc({ partner: 'a' }))).toBe('GW_ERR_METRIC');
    expect(errorCode(() => c.inc({ partner: 'a', rule: 'r', extra: 'x' }))).toBe('GW_ERR_METRIC');
    expect(errorCode(() => c.inc(['a', 'r'], -1))).toBe('GW_ERR_METRIC');
    expect(errorCode(() => c.inc(['a', 'r'], NaN))).toBe('GW_ERR_METRIC');
    expect(errorCode(() => r.histogram('gw_le_seconds', 'le', ['le']))).toBe('GW_ERR_METRIC');
    expect(errorCode(() => r.histogram('gw_b_seconds', 'b', [], [1, 1]))).toBe('GW_ERR_METRIC');
    expect(() => r.counter('gw_e_total', 'again')).toThrow(/already been registered/);
    expect(c.get(['a', 'r'])).toBe(0);
  });
});

describe('GatewayMetrics', () => {
  it('counts live streams at scrape time by partner, direction and auth; gone streams disappear', async () => {
    let live: StreamInfo[] = [
      stream({ id: '1' }),
      stream({ id: '2' }),
      stream({ id: '3', direction: 'outbound', auth: 'dialback' }),
      stream({ id: '4', partner: null, auth: 'none' }),
    ];
    const m = new GatewayMetrics({ streams: { list: () => live }, processMetrics: false });
    const block = (text: string) => text.split('\n').filter((l) => l.startsWith('gw_streams{'));
    expect(block(await m.render())).toEqual([
      'gw_streams{partner="a.example",direction="inbound",auth="sasl-external"} 2',
      'gw_streams{partner="a.example",direction="outbound",auth="dialback"} 1',
      'gw_streams{partner="",direction="inbound",auth="none"} 1',
    ]);
    live = [stream({ id: '5', partner: 'b.example' })];
    expect(block(await m.render())).toEqual(['gw_streams{partner="b.example",direction="inbound",auth="sasl-external"} 1']);
    const other = new GatewayMetrics({ processMetrics: false });
    expect(block(await other.render())).toEqual([]);
    other.attachStreams({ list: () => live });
    expect(block(await other.render())).toHaveLength(1);
  });

  it('creates the gw_ metrics with the documented types and label order', async () => {
    const m = new GatewayMetrics();
    m.refusals.labels('a.example', 'tls-required', 'policy-violation').inc();
    m.stanzas.labels('a.example', 'inbound').inc(3);
    m.bytes.inc({ partner: 'a.example', direction: 'outbound' }, 512);
    m.negotiation.labels('a.example', 'inbound').observe(0.2);
    m.reloads.inc(['error']);
    m.partners.set(4);
    m.streamsClosed.labels('a.example', 'inbound', 'connection-timeout').inc();
    m.stanzaRefusals.labels('b.example', 'trust-tier', 'service-unavailable').inc();
    const text = await m.render();
    const types = [...text.matchAll(/^# TYPE (gw_\S+) (\S+)$/gm)].map((x) => `${x[1]} ${x[2]}`);
    expect(types).toEqual([
      'gw_streams gauge',
      'gw_stream_refusals_total counter',
      'gw_stanzas_total counter',
      'gw_bytes_total counter',
      'gw_negotiation_seconds histogram',
      'gw_partner_reloads_total counter',
      'gw_partners gauge',
      'gw_streams_closed_total counter',
      'gw_relay_bounces_total counter',
      'gw_relay_lost_total counter',
      'gw_relay_resent_total counter',
      'gw_relay_unconfirmed_total counter',
      'gw_stanza_refusals_total counter',
    ]);
    expect(text).toContain('gw_stream_refusals_total{partner="a.example",rule="tls-required",condition="policy-violation"} 1\n');
    expect(text).toContain('gw_stanzas_total{partner="a.example",direction="inbound"} 3\n');
    expect(text).toContain('gw_bytes_total{partner="a.example",direction="outbound"} 512\n');
    expect(text).toContain('gw_negotiation_seconds_bucket{partner="a.example",direction="inbound",le="0.25"} 1\n');
    expect(text).toContain('gw_negotiation_seconds_bucket{partner="a.example",direction="inbound",le="0.1"} 0\n');
    expect(text).toContain(`gw_negotiation_seconds_bucket{partner="a.example",direction="inbound",le="${NEGOTIATION_BUCKETS.at(-1)}"} 1\n`);
    expect(text).toContain('gw_partner_reloads_total{result="error"} 1\n');
    expect(text).toContain('gw_partners 4\n');
    expect(text).toContain('gw_streams_closed_total{partner="a.example",direction="inbound",condition="connection-timeout"} 1\n');
    expect(text).toContain('gw_stanza_refusals_total{partner="b.example",rule="trust-tier",condition="service-unavailable"} 1\n');
    // prom-client's default process metrics come with them.
    expect(text).toMatch(/^# TYPE process_cpu_seconds_total counter$/m);
    expect(text).toMatch(/^process_resident_memory_bytes \d+/m);
    expect(text).toMatch(/^# TYPE nodejs_eventloop_lag_seconds gauge$/m);
    expect(m.stanzaTotalsByPartner()).toEqual(new Map([['a.example', 3]]));
  });

  it('in a pool: every series carries the node label, and the pool\'s own metrics appear', async () => {
    const m = new GatewayMetrics({ streams: { list: () => [stream({})] }, node: 'gw2' });
    m.stanzas.labels('a.example', 'inbound').inc(3);
    m.negotiation.labels('a.example', 'inbound').observe(0.2);
    const view = { online: true, knownNodes: 3 as number | null, unregistered: 0 };
    const pool = m.attachPool(view);
    expect(m.attachPool(view)).toBe(pool);
    pool.admission('admitted', 0.004);
    pool.admission('local-refused', 0.0001);
    let text = await m.render();
    const series = samples(text);
    // Every sample of every metric, process metrics included, names the node.
    expect(series.filter((l) => !/\bnode="gw2"/.test(l))).toEqual([]);
    expect(text).toContain('gw_stanzas_total{partner="a.example",direction="inbound",node="gw2"} 3\n');
    expect(text).toContain('gw_streams{partner="a.example",direction="inbound",auth="sasl-external",node="gw2"} 1\n');
    expect(text).toContain('gw_negotiation_seconds_bucket{partner="a.example",direction="inbound",le="0.25",node="gw2"} 1\n');
    expect(text).toContain('gw_pool_admissions_total{result="admitted",node="gw2"} 1\n');
    expect(text).toContain('gw_pool_admissions_total{result="local-refused",node="gw2"} 1\n');
    expect(text).toContain('gw_pool_admission_seconds_count{node="gw2"} 2\n');
    expect(text).toContain('gw_pool_online{node="gw2"} 1\n');
    expect(text).toContain('gw_pool_nodes{node="gw2"} 3\n');
    expect(text).toContain('gw_pool_unregistered_streams{node="gw2"} 0\n');
    Object.assign(view, { online: false, knownNodes: null, unregistered: 2 });
    text = await m.render();
    expect(text).toContain('gw_pool_online{node="gw2"} 0\n');
    expect(text).toContain('gw_pool_nodes{node="gw2"} 0\n');
    expect(text).toContain('gw_pool_unregistered_streams{node="gw2"} 2\n');
  });

  it('without a pool: no node label and no pool metrics', async () => {
    const text = await new GatewayMetrics({ streams: { list: () => [stream({})] } }).render();
    expect(text).not.toMatch(/node="/);
    expect(text).not.toMatch(/gw_pool_/);
  });
});
