import { describe, expect, it } from 'vitest';
import { GatewayMetrics, MetricsRegistry, NEGOTIATION_BUCKETS, escapeLabelValue, formatNumber } from '../../src/admin/metrics.js';
import type { StreamInfo } from '../../src/stream/stream-info.js';

const lines = (...l: string[]) => `${l.join('\n')}\n`;

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

describe('MetricsRegistry.render (text format 0.0.4)', () => {
  it('renders a small registry exactly', () => {
    const r = new MetricsRegistry();
    const c = r.counter('gw_test_total', 'A test counter.', ['partner', 'direction']);
    c.inc({ direction: 'inbound', partner: 'a.example' });
    c.labels('a.example', 'inbound').inc(2);
    c.inc(['b.example', 'outbound'], 5);
    const g = r.gauge('gw_level', 'A level.');
    g.set(3);
    g.dec();
    const h = r.histogram('gw_wait_seconds', 'Waits.', ['partner'], [0.25, 1]);
    h.observe(['a'], 0.25);
    h.observe({ partner: 'a' }, 0.5);
    h.labels('a').observe(7);
    r.counter('gw_unused_total', 'Never incremented.', ['partner']);

    expect(r.render()).toBe(
      lines(
        '# HELP gw_test_total A test counter.',
        '# TYPE gw_test_total counter',
        'gw_test_total{partner="a.example",direction="inbound"} 3',
        'gw_test_total{partner="b.example",direction="outbound"} 5',
        '# HELP gw_level A level.',
        '# TYPE gw_level gauge',
        'gw_level 2',
        '# HELP gw_wait_seconds Waits.',
        '# TYPE gw_wait_seconds histogram',
        'gw_wait_seconds_bucket{partner="a",le="0.25"} 1',
        'gw_wait_seconds_bucket{partner="a",le="1"} 2',
        'gw_wait_seconds_bucket{partner="a",le="+Inf"} 3',
        'gw_wait_seconds_sum{partner="a"} 7.75',
        'gw_wait_seconds_count{partner="a"} 3',
        '# HELP gw_unused_total Never incremented.',
        '# TYPE gw_unused_total counter',
      ),
    );
  });

  it('escapes label values (backslash, quote, newline) and HELP text (backslash, newline)', () => {
    expect(escapeLabelValue('plain.example')).toBe('plain.example');
    expect(escapeLabelValue('a\\b"c\nd')).toBe('a\\\\b\\"c\\nd');
    const r = new MetricsRegistry();
    r.counter('gw_x_total', 'first line\nsecond \\ "quoted"', ['rule']).inc(['say "hi"\\\n']);
    expect(r.render()).toBe(
      lines(
        '# HELP gw_x_total first line\\nsecond \\\\ "quoted"',
        '# TYPE gw_x_total counter',
        'gw_x_total{rule="say \\"hi\\"\\\\\\n"} 1',
      ),
    );
  });

  it('histogram buckets are inclusive upper bounds, cumulative, with +Inf, _sum and _count', () => {
    const r = new MetricsRegistry();
    const h = r.histogram('gw_h_seconds', 'h', [], [1, 2, 5]);
    for (const v of [0, 1, 1.5, 2, 2.0000001, 5, 100, Number.NaN]) h.observe(v);
    expect(r.render()).toBe(
      lines(
        '# HELP gw_h_seconds h',
        '# TYPE gw_h_seconds histogram',
        'gw_h_seconds_bucket{le="1"} 2',
        'gw_h_seconds_bucket{le="2"} 4',
        'gw_h_seconds_bucket{le="5"} 6',
        'gw_h_seconds_bucket{le="+Inf"} 7',
        `gw_h_seconds_sum ${0 + 1 + 1.5 + 2 + 2.0000001 + 5 + 100}`,
        'gw_h_seconds_count 7',
      ),
    );
  });

  it('renders label-less metrics at zero before any event, and a trailing +Inf bucket is not doubled', () => {
    const r = new MetricsRegistry();
    r.counter('gw_c_total', 'c');
    r.histogram('gw_h_seconds', 'h', [], [0.5, Number.POSITIVE_INFINITY]);
    expect(r.render()).toBe(
      lines(
        '# HELP gw_c_total c', '# TYPE gw_c_total counter', 'gw_c_total 0',
        '# HELP gw_h_seconds h', '# TYPE gw_h_seconds histogram',
        'gw_h_seconds_bucket{le="0.5"} 0', 'gw_h_seconds_bucket{le="+Inf"} 0', 'gw_h_seconds_sum 0', 'gw_h_seconds_count 0',
      ),
    );
    expect(new MetricsRegistry().render()).toBe('');
  });

  it('formats special values as Go does', () => {
    expect([Infinity, -Infinity, NaN, 0.005, 3].map(formatNumber)).toEqual(['+Inf', '-Inf', 'NaN', '0.005', '3']);
    const r = new MetricsRegistry();
    const g = r.gauge('gw_g', 'g', ['k']);
    g.set(['inf'], Infinity);
    g.set({ k: 'nan' }, NaN);
    expect(r.render()).toContain('gw_g{k="inf"} +Inf\ngw_g{k="nan"} NaN\n');
  });
});

describe('metric children (hot path)', () => {
  it('labels() returns one child per label set, whose inc is a field increment', () => {
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
  });

  it('label value tuples that join alike stay distinct series', () => {
    const c = new MetricsRegistry().counter('gw_t_total', 't', ['a', 'b']);
    c.inc(['x,y', 'z']);
    c.inc(['x', 'y,z'], 2);
    expect(c.get(['x,y', 'z'])).toBe(1);
    expect(c.get(['x', 'y,z'])).toBe(2);
  });

  it('gauge children set, inc and dec; remove() drops a series', () => {
    const r = new MetricsRegistry();
    const g = r.gauge('gw_q', 'q', ['partner']);
    const a = g.labels('a');
    a.set(10);
    a.inc(5);
    a.dec();
    g.inc(['b']);
    g.dec({ partner: 'b' }, 3);
    expect(g.get(['a'])).toBe(14);
    expect(g.get(['b'])).toBe(-2);
    g.remove(['a']);
    expect(r.render()).toBe(lines('# HELP gw_q q', '# TYPE gw_q gauge', 'gw_q{partner="b"} -2'));
  });

  it('refuses malformed use with GW_ERR_METRIC', () => {
    const r = new MetricsRegistry();
    const c = r.counter('gw_e_total', 'e', ['partner', 'rule']);
    expect(errorCode(() => c.labels('only-one'))).toBe('GW_ERR_METRIC');
    expect(errorCode(() => c.inc({ partner: 'a' }))).toBe('GW_ERR_METRIC');
    expect(errorCode(() => c.inc({ partner: 'a', rule: 'r', extra: 'x' }))).toBe('GW_ERR_METRIC');
    expect(errorCode(() => c.inc(['a', 'r'], -1))).toBe('GW_ERR_METRIC');
    expect(errorCode(() => c.inc(['a', 'r'], NaN))).toBe('GW_ERR_METRIC');
    expect(errorCode(() => r.counter('gw_e_total', 'again'))).toBe('GW_ERR_METRIC');
    expect(errorCode(() => r.counter('gw-bad', 'bad name'))).toBe('GW_ERR_METRIC');
    expect(errorCode(() => r.counter('gw_l_total', 'bad label', ['bad-label']))).toBe('GW_ERR_METRIC');
    expect(errorCode(() => r.counter('gw_l2_total', 'reserved label', ['__x']))).toBe('GW_ERR_METRIC');
    expect(errorCode(() => r.histogram('gw_le_seconds', 'le', ['le']))).toBe('GW_ERR_METRIC');
    expect(errorCode(() => r.histogram('gw_b_seconds', 'b', [], [1, 1]))).toBe('GW_ERR_METRIC');
    r.histogram('gw_n_seconds', 'n');
    expect(errorCode(() => r.counter('gw_n_seconds_count', 'clashes with the histogram'))).toBe('GW_ERR_METRIC');
    expect(c.get(['a', 'r'])).toBe(0);
  });
});

describe('GatewayMetrics', () => {
  it('counts live streams at scrape time by partner, direction and auth; gone streams disappear', () => {
    let live: StreamInfo[] = [
      stream({ id: '1' }),
      stream({ id: '2' }),
      stream({ id: '3', direction: 'outbound', auth: 'dialback' }),
      stream({ id: '4', partner: null, auth: 'none' }),
    ];
    const m = new GatewayMetrics({ streams: { list: () => live } });
    const block = (text: string) => text.split('\n').filter((l) => l.startsWith('gw_streams{'));
    expect(block(m.render())).toEqual([
      'gw_streams{partner="a.example",direction="inbound",auth="sasl-external"} 2',
      'gw_streams{partner="a.example",direction="outbound",auth="dialback"} 1',
      'gw_streams{partner="",direction="inbound",auth="none"} 1',
    ]);
    live = [stream({ id: '5', partner: 'b.example' })];
    expect(block(m.render())).toEqual(['gw_streams{partner="b.example",direction="inbound",auth="sasl-external"} 1']);
    const other = new GatewayMetrics();
    expect(block(other.render())).toEqual([]);
    other.attachStreams({ list: () => live });
    expect(block(other.render())).toHaveLength(1);
  });

  it('creates the gw_ metrics with the documented types and label order', () => {
    const m = new GatewayMetrics();
    m.refusals.labels('a.example', 'tls-required', 'policy-violation').inc();
    m.stanzas.labels('a.example', 'inbound').inc(3);
    m.bytes.inc({ partner: 'a.example', direction: 'outbound' }, 512);
    m.negotiation.labels('a.example', 'inbound').observe(0.2);
    m.reloads.inc(['error']);
    m.partners.set(4);
    m.streamsClosed.labels('a.example', 'inbound', 'connection-timeout').inc();
    m.stanzaRefusals.labels('b.example', 'trust-tier', 'service-unavailable').inc();
    const text = m.render();
    const types = [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((x) => `${x[1]} ${x[2]}`);
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
  });
});
