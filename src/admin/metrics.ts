/**
 * The gateway's Prometheus metrics, exposed with prom-client (text format 0.0.4, its escaping and
 * registry, and its default process metrics: CPU, memory, event-loop lag, GC, handles).
 *
 * The hot path (docs/design.md section 5: every stanza, synchronous, O(1)) never calls into
 * prom-client. Counters keep one plain number per series, bound once when a stream is
 * authenticated, and only that field is incremented per stanza:
 *
 *   const stanzasIn = metrics.stanzas.labels(partner, 'inbound');   // once per stream
 *   stanzasIn.inc();                                                // per stanza: `value += 1`
 *
 * prom-client reads those numbers in each metric's `collect()`, at scrape time, so the relay pays
 * nothing for the exposition. `labels()` returns the same child for the same values, so binding
 * twice is harmless; the `inc(labels, n)` form resolves the child on every call and is meant for
 * rare events.
 */
import { Counter as PromCounter, Gauge as PromGauge, Registry, collectDefaultMetrics, type MetricValue } from 'prom-client';
import { GatewayError } from '../errors.js';
import type { StreamRegistryView } from '../stream/stream-info.js';

/** Label values by name (`{partner: 'a.example'}`) or by position, in the metric's labelNames order. */
export type LabelValues = Readonly<Record<string, string>> | readonly string[];

function metricError(message: string): GatewayError {
  return new GatewayError('GW_ERR_METRIC', message);
}

/** `{partner: 'a', direction: 'inbound'}` in labelNames order (the order they are exposed in). */
function labelObject(names: readonly string[], values: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < names.length; i++) out[names[i]!] = values[i]!;
  return out;
}

interface Child {
  readonly labelValues: readonly string[];
}

/** Series by label values, with the checks the old hand-written registry made (GW_ERR_METRIC). */
abstract class Series<C extends Child> {
  private readonly childMap = new Map<string, C>();

  constructor(
    readonly name: string,
    readonly labelNames: readonly string[],
  ) {}

  protected abstract createChild(values: readonly string[]): C;

  /** The child for these label values (positional, in labelNames order); created on first use and kept. */
  labels(...values: string[]): C {
    const key = values.length === 0 ? '' : values.length === 1 ? values[0]! : JSON.stringify(values);
    let child = this.childMap.get(key);
    if (child === undefined) {
      if (values.length !== this.labelNames.length) {
        throw metricError(`${this.name}: expected ${this.labelNames.length} label values (${this.labelNames.join(', ')}), got ${values.length}`);
      }
      for (const v of values) if (typeof v !== 'string') throw metricError(`${this.name}: label values must be strings`);
      child = this.createChild(Object.freeze([...values]));
      this.childMap.set(key, child);
    }
    return child;
  }

  protected child(labels: LabelValues | undefined): C {
    if (labels === undefined) return this.labels();
    if (Array.isArray(labels)) return this.labels(...(labels as readonly string[]));
    const record = labels as Readonly<Record<string, string>>;
    const values: string[] = [];
    for (const name of this.labelNames) {
      const v = record[name];
      if (v === undefined) throw metricError(`${this.name}: label '${name}' is missing`);
      values.push(v);
    }
    const extra = Object.keys(record).find((k) => !this.labelNames.includes(k));
    if (extra !== undefined) throw metricError(`${this.name}: unknown label '${extra}'`);
    return this.labels(...values);
  }

  /** Every series' child, in creation order. */
  children(): IterableIterator<C> {
    return this.childMap.values();
  }
}

export class CounterChild implements Child {
  value = 0;
  constructor(readonly labelValues: readonly string[]) {}

  /** Hot path: a plain field increment. `n` must be >= 0 (not checked here; Counter.inc checks). */
  inc(n = 1): void {
    this.value += n;
  }
}

/** A counter whose series are plain numbers, exposed through a prom-client Counter at scrape time. */
export class Counter extends Series<CounterChild> {
  constructor(registry: Registry, name: string, help: string, labelNames: readonly string[]) {
    super(name, labelNames);
    const series = this;
    new PromCounter({
      name, help, labelNames: [...labelNames], registers: [registry],
      collect() {
        this.reset();
        for (const c of series.children()) this.inc(labelObject(labelNames, c.labelValues), c.value);
      },
    });
    if (labelNames.length === 0) this.labels();
  }

  protected createChild(values: readonly string[]): CounterChild {
    return new CounterChild(values);
  }

  /** `inc()` / `inc(n)` for a label-less counter; `inc(labels, n = 1)` otherwise. */
  inc(labels?: LabelValues | number, n = 1): void {
    if (typeof labels === 'number') {
      n = labels;
      labels = undefined;
    }
    if (!(n >= 0)) throw metricError(`${this.name}: a counter only goes up (got ${n})`);
    this.child(labels).value += n;
  }

  get(labels?: LabelValues): number {
    return this.child(labels).value;
  }
}

/** Prometheus client defaults, in seconds. */
export const DEFAULT_BUCKETS: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class HistogramChild implements Child {
  /** Per-bucket (not cumulative) counts; the last slot is the +Inf overflow. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(
    readonly labelValues: readonly string[],
    private readonly upperBounds: readonly number[],
  ) {
    this.counts = new Float64Array(upperBounds.length + 1);
  }

  /** Buckets are inclusive upper bounds (`le`). NaN is ignored. */
  observe(v: number): void {
    if (v !== v) return;
    const bounds = this.upperBounds;
    let i = 0;
    while (i < bounds.length && v > bounds[i]!) i++;
    this.counts[i]! += 1;
    this.sum += v;
    this.count += 1;
  }
}

/**
 * A histogram of plain numbers, registered with prom-client as a collector of its own (prom-client's
 * Histogram would put `le` first; the gateway's series keep their labels first, as always).
 */
export class Histogram extends Series<HistogramChild> {
  readonly buckets: readonly number[];

  constructor(registry: Registry, name: string, help: string, labelNames: readonly string[], buckets: readonly number[] = DEFAULT_BUCKETS) {
    super(name, labelNames);
    if (labelNames.includes('le')) throw metricError(`${name}: 'le' is reserved for histogram buckets`);
    const bounds = buckets.at(-1) === Number.POSITIVE_INFINITY ? buckets.slice(0, -1) : [...buckets];
    for (let i = 0; i < bounds.length; i++) {
      if (!Number.isFinite(bounds[i]!)) throw metricError(`${name}: bucket bounds must be finite numbers`);
      if (i > 0 && !(bounds[i]! > bounds[i - 1]!)) throw metricError(`${name}: bucket bounds must increase`);
    }
    this.buckets = Object.freeze(bounds);
    const series = this;
    registry.registerMetric({
      name, help, type: 'histogram', aggregator: 'sum',
      get: async () => ({ name, help, type: 'histogram', aggregator: 'sum', values: series.values() }),
      reset: () => undefined,
    } as never);
    if (labelNames.length === 0) this.labels();
  }

  protected createChild(values: readonly string[]): HistogramChild {
    return new HistogramChild(values, this.buckets);
  }

  /** `observe(v)` for a label-less histogram; `observe(labels, v)` otherwise. */
  observe(labels: LabelValues | number, v?: number): void {
    if (typeof labels === 'number') this.child(undefined).observe(labels);
    else if (v === undefined) throw metricError(`${this.name}: observe(labels, value) needs a value`);
    else this.child(labels).observe(v);
  }

  private values(): MetricValue<string>[] {
    const out: MetricValue<string>[] = [];
    const le = [...this.buckets.map(String), '+Inf'];
    for (const c of this.children()) {
      const labels = labelObject(this.labelNames, c.labelValues);
      let cumulative = 0;
      for (let i = 0; i < le.length; i++) {
        cumulative += c.counts[i]!;
        out.push({ metricName: `${this.name}_bucket`, labels: { ...labels, le: le[i]! }, value: cumulative } as MetricValue<string>);
      }
      out.push({ metricName: `${this.name}_sum`, labels, value: c.sum } as MetricValue<string>);
      out.push({ metricName: `${this.name}_count`, labels, value: c.count } as MetricValue<string>);
    }
    return out;
  }
}

/** Content-Type of the exposition (text format 0.0.4). */
export const METRICS_CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE;

/** A prom-client registry with the gateway's kinds of metrics; `render()` is the body of `GET /metrics`. */
export class MetricsRegistry {
  readonly prom = new Registry();

  counter(name: string, help: string, labelNames: readonly string[] = []): Counter {
    return new Counter(this.prom, name, help, labelNames);
  }

  histogram(name: string, help: string, labelNames: readonly string[] = [], buckets: readonly number[] = DEFAULT_BUCKETS): Histogram {
    return new Histogram(this.prom, name, help, labelNames, buckets);
  }

  render(): Promise<string> {
    return this.prom.metrics();
  }
}

/** Negotiation covers TLS, SASL and dialback (which may dial the partner back): up to streamEstablishmentTimeoutSeconds. */
export const NEGOTIATION_BUCKETS: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/**
 * The `partner` label value for events that have no allowed partner (a refused non-partner, a
 * header without `from`). Never put an unvetted remote domain in a label: anyone on the
 * Internet could then create series without bound.
 */
export const NO_PARTNER = '';

/**
 * The gateway's metrics (docs/design.md section 8), labelled by partner Identity (primary domain).
 * Label order is the positional order for `labels(...)` and `inc([...])`.
 */
export class GatewayMetrics {
  readonly registry = new MetricsRegistry();
  private view: StreamRegistryView | null;

  /** gw_streams{partner,direction,auth}: live streams, counted from the stream registry at scrape time. */
  readonly streams: PromGauge<string>;
  /** gw_stream_refusals_total{partner,rule,condition}: streams refused, by policy rule and stream error condition. */
  readonly refusals: Counter;
  /** gw_stanzas_total{partner,direction}: stanzas relayed on authenticated streams. */
  readonly stanzas: Counter;
  /** gw_bytes_total{partner,direction}: bytes read (inbound) / written (outbound) on partner streams. */
  readonly bytes: Counter;
  /** gw_negotiation_seconds{partner,direction}: stream header to authenticated. */
  readonly negotiation: Histogram;
  /** gw_partner_reloads_total{result}: partner list reloads; result 'ok' (applied) or 'error' (kept the previous list). */
  readonly reloads: Counter;
  /** gw_partners: allowed partners in the policy in force. */
  readonly partners: PromGauge<string>;
  /** gw_streams_closed_total{partner,direction,condition}: closed streams; condition is the stream error, or 'none' for a clean close. */
  readonly streamsClosed: Counter;
  /** gw_stanza_refusals_total{partner,rule,condition}: hot-path denials answered with a stanza error (docs/design.md section 5). */
  readonly stanzaRefusals: Counter;
  /** gw_relay_bounces_total{realm,condition}: stanzas answered with an error to their sender, by the sender's realm. */
  readonly bounces: Counter;
  /** gw_relay_lost_total{realm,condition}: bounces that could not reach their sender either (logged). */
  readonly lost: Counter;
  /** gw_relay_resent_total{realm}: stanzas sent again on a new stream because the old one died before confirming them. */
  readonly resent: Counter;
  /** gw_relay_unconfirmed_total{realm}: stanzas whose delivery barrier was never answered (may be lost). */
  readonly unconfirmed: Counter;

  /** The pool's metrics (docs/design.md section 11); null on a single gateway. */
  pool: PoolMetrics | null = null;

  /**
   * `processMetrics` (default true): prom-client's default process and Node.js metrics too.
   * `node`: this node's name in a pool (`cluster.nodeName`), a `node` label on every series, so
   * the pool's nodes can be scraped into one Prometheus and told apart (docs/design.md section 11).
   */
  constructor(opts: { streams?: StreamRegistryView; processMetrics?: boolean; node?: string } = {}) {
    this.view = opts.streams ?? null;
    const r = this.registry;
    // prom-client adds default labels to every series at exposition (ours and its process metrics).
    if (opts.node !== undefined) r.prom.setDefaultLabels({ node: opts.node });
    const metrics = this;
    this.streams = new PromGauge({
      name: 'gw_streams', help: 'Live s2s streams by partner, direction and authentication method.', labelNames: ['partner', 'direction', 'auth'], registers: [r.prom],
      collect() {
        this.reset();
        if (metrics.view === null) return;
        for (const s of metrics.view.list()) this.inc({ partner: s.partner ?? NO_PARTNER, direction: s.direction, auth: s.auth });
      },
    });
    this.refusals = r.counter('gw_stream_refusals_total', 'Streams refused, by partner, policy rule and stream error condition.', ['partner', 'rule', 'condition']);
    this.stanzas = r.counter('gw_stanzas_total', 'Stanzas relayed, by partner and direction.', ['partner', 'direction']);
    this.bytes = r.counter('gw_bytes_total', 'Bytes on partner streams, by partner and direction.', ['partner', 'direction']);
    this.negotiation = r.histogram('gw_negotiation_seconds', 'Time from stream header to authenticated, by partner and direction.', ['partner', 'direction'], NEGOTIATION_BUCKETS);
    this.reloads = r.counter('gw_partner_reloads_total', 'Partner list reloads, by result (ok, error).', ['result']);
    this.partners = new PromGauge({ name: 'gw_partners', help: 'Allowed partners in the partner list in force.', registers: [r.prom] });
    this.streamsClosed = r.counter('gw_streams_closed_total', 'Streams closed, by partner, direction and stream error condition (none: clean close).', ['partner', 'direction', 'condition']);
    this.bounces = r.counter('gw_relay_bounces_total', 'Stanzas answered with a stanza error to their sender, by the sender\'s realm (partners, internal) and condition.', ['realm', 'condition']);
    this.lost = r.counter('gw_relay_lost_total', 'Bounces that could not be delivered to their sender either, by realm and condition.', ['realm', 'condition']);
    this.resent = r.counter('gw_relay_resent_total', 'Stanzas sent again on a new stream because the stream they went out on died before confirming them, by realm.', ['realm']);
    this.unconfirmed = r.counter('gw_relay_unconfirmed_total', 'Stanzas whose delivery was never confirmed by the peer (barrier timed out): they may be lost. By realm.', ['realm']);
    this.stanzaRefusals = r.counter('gw_stanza_refusals_total', 'Stanzas refused with a stanza error, by partner, rule and condition.', ['partner', 'rule', 'condition']);
    if (opts.processMetrics ?? true) collectDefaultMetrics({ register: r.prom });
  }

  /** Stanzas relayed so far per partner, both directions together (the panel's traffic sparkline). */
  stanzaTotalsByPartner(): Map<string, number> {
    const out = new Map<string, number>();
    for (const child of this.stanzas.children()) {
      const partner = child.labelValues[0]!;
      out.set(partner, (out.get(partner) ?? 0) + child.value);
    }
    return out;
  }

  /** Registers the pool's metrics, read from `view` at scrape time (cluster mode only). */
  attachPool(view: PoolMetricsView): PoolMetrics {
    this.pool ??= new PoolMetrics(this.registry, view);
    return this.pool;
  }

  /** Sets (or replaces) the stream registry `gw_streams` is counted from. */
  attachStreams(view: StreamRegistryView): void {
    this.view = view;
  }

  /** The exposition: the gw_ metrics, then prom-client's process metrics. */
  render(): Promise<string> {
    return this.registry.render();
  }
}

/** What the pool's gauges read at scrape time (cluster/pool-admission.ts, cluster/known-nodes.ts). */
export interface PoolMetricsView {
  /** This node holds a lease in etcd. */
  readonly online: boolean;
  /** The pool's size as this node last saw it (null: never). */
  readonly knownNodes: number | null;
  /** This node's admitted partner streams without slots in etcd (local share, or over the limit). */
  readonly unregistered: number;
}

/** The pool's metrics (docs/design.md section 11). */
export class PoolMetrics {
  /** gw_pool_admissions_total{result}: admitted / refused by etcd; local / local-refused on the node's share while cut off. */
  readonly admissions: Counter;
  /** gw_pool_admission_seconds: how long an admission waited for its decision. */
  readonly admissionSeconds: Histogram;

  constructor(registry: MetricsRegistry, view: PoolMetricsView) {
    this.admissions = registry.counter('gw_pool_admissions_total', 'Stream admissions across the pool, by result: admitted or refused by an etcd transaction; local or local-refused on this node\'s share while cut off from etcd.', ['result']);
    this.admissionSeconds = registry.histogram('gw_pool_admission_seconds', 'Time an authenticated stream waited for the pool\'s admission decision.', [], [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]);
    new PromGauge({
      name: 'gw_pool_online', help: 'Whether this node holds its lease in etcd (1) or is cut off (0).', registers: [registry.prom],
      collect() {
        this.set(view.online ? 1 : 0);
      },
    });
    new PromGauge({
      name: 'gw_pool_nodes', help: 'Nodes in the pool as this node last saw them (0: never reached etcd); the N of the local shares.', registers: [registry.prom],
      collect() {
        this.set(view.knownNodes ?? 0);
      },
    });
    new PromGauge({
      name: 'gw_pool_unregistered_streams', help: 'This node\'s admitted partner streams holding no slot in etcd (admitted on its share while cut off, or over the pool\'s limit).', registers: [registry.prom],
      collect() {
        this.set(view.unregistered);
      },
    });
  }

  /** One admission decided (cluster/pool-admission.ts `observe`). */
  admission(result: string, seconds: number): void {
    this.admissions.inc([result]);
    this.admissionSeconds.observe(seconds);
  }
}
