/**
 * A small Prometheus registry (no dependency): counters, gauges (set directly or computed at
 * scrape time), histograms, rendered in the text exposition format 0.0.4.
 *
 * References: Prometheus "Exposition formats" (text format 0.0.4); Prometheus naming
 * conventions (base units, `_total` for counters, `_seconds` for durations).
 *
 * The hot path (docs/design.md section 5: every stanza, synchronous, O(1)) binds its labels once,
 * when a stream is authenticated, and then only increments a field:
 *
 *   const stanzasIn = metrics.stanzas.labels(partner, 'inbound');   // once per stream
 *   stanzasIn.inc();                                                // per stanza: `value += 1`
 *
 * `labels()` returns the same child for the same values, so binding twice is harmless; the
 * `inc(labels, n)` form resolves the child on every call and is meant for rare events.
 */
import { GatewayError } from '../errors.js';
import type { StreamRegistryView } from '../stream/stream-info.js';

/** Label values by name (`{partner: 'a.example'}`) or by position, in the metric's labelNames order. */
export type LabelValues = Readonly<Record<string, string>> | readonly string[];

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function metricError(message: string): GatewayError {
  return new GatewayError('GW_ERR_METRIC', message);
}

/** Label value escaping (text format 0.0.4): backslash, double quote and line feed. */
export function escapeLabelValue(value: string): string {
  return /[\\"\n]/.test(value) ? value.replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`)) : value;
}

/** HELP text escaping (text format 0.0.4): backslash and line feed only. */
function escapeHelp(help: string): string {
  return help.replace(/[\\\n]/g, (c) => (c === '\n' ? '\\n' : '\\\\'));
}

/** Sample values and `le` bounds: Go's float syntax for the special values. */
export function formatNumber(v: number): string {
  if (v === Number.POSITIVE_INFINITY) return '+Inf';
  if (v === Number.NEGATIVE_INFINITY) return '-Inf';
  if (Number.isNaN(v)) return 'NaN';
  return String(v);
}

/** `a="x",b="y"` (no braces); computed once per child, not per scrape. */
function labelText(names: readonly string[], values: readonly string[]): string {
  let out = '';
  for (let i = 0; i < names.length; i++) {
    if (i > 0) out += ',';
    out += `${names[i]}="${escapeLabelValue(values[i]!)}"`;
  }
  return out;
}

interface Child {
  readonly labelValues: readonly string[];
}

type MetricType = 'counter' | 'gauge' | 'histogram';

abstract class Metric<C extends Child> {
  abstract readonly type: MetricType;
  protected readonly childMap = new Map<string, C>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
  ) {
    if (!METRIC_NAME.test(name)) throw metricError(`'${name}' is not a valid metric name`);
    const seen = new Set<string>();
    for (const label of labelNames) {
      if (!LABEL_NAME.test(label) || label.startsWith('__')) throw metricError(`${name}: '${label}' is not a valid label name`);
      if (seen.has(label)) throw metricError(`${name}: label '${label}' is listed twice`);
      seen.add(label);
    }
    this.labelNames = Object.freeze([...labelNames]);
  }

  protected abstract createChild(values: readonly string[], text: string): C;

  /** The child for these label values (positional, in labelNames order); created on first use and kept. */
  labels(...values: string[]): C {
    const key = values.length === 0 ? '' : values.length === 1 ? values[0]! : JSON.stringify(values);
    let child = this.childMap.get(key);
    if (child === undefined) {
      if (values.length !== this.labelNames.length) {
        throw metricError(`${this.name}: expected ${this.labelNames.length} label values (${this.labelNames.join(', ')}), got ${values.length}`);
      }
      for (const v of values) {
        if (typeof v !== 'string') throw metricError(`${this.name}: label values must be strings`);
      }
      const frozen = Object.freeze([...values]);
      child = this.createChild(frozen, labelText(this.labelNames, frozen));
      this.childMap.set(key, child);
    }
    return child;
  }

  /** Resolves `{name: value}` or positional label values to the child. */
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

  /** Drops one series (e.g. a removed partner's); pre-bound children of it stop being rendered. */
  remove(labels: LabelValues): void {
    const child = this.child(labels);
    for (const [key, c] of this.childMap) if (c === child) this.childMap.delete(key);
    if (this.labelNames.length === 0) this.reset();
  }

  /** Drops every series (a label-less metric keeps its single series, at zero). */
  reset(): void {
    this.childMap.clear();
    if (this.labelNames.length === 0) this.labels();
  }

  /** Sample lines (no HELP/TYPE) appended to `out`. */
  abstract renderSamples(out: string[]): void;

  /** Sample names this metric produces (for collision checks in the registry). */
  sampleNames(): string[] {
    return [this.name];
  }
}

function sampleLine(name: string, text: string, value: number): string {
  return text === '' ? `${name} ${formatNumber(value)}` : `${name}{${text}} ${formatNumber(value)}`;
}

export class CounterChild implements Child {
  value = 0;
  constructor(
    readonly labelValues: readonly string[],
    readonly labelText: string,
  ) {}

  /** Hot path: a plain field increment. `n` must be >= 0 (not checked here; Counter.inc checks). */
  inc(n = 1): void {
    this.value += n;
  }
}

export class Counter extends Metric<CounterChild> {
  readonly type = 'counter';

  constructor(name: string, help: string, labelNames: readonly string[]) {
    super(name, help, labelNames);
    if (labelNames.length === 0) this.labels();
  }

  protected createChild(values: readonly string[], text: string): CounterChild {
    return new CounterChild(values, text);
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

  renderSamples(out: string[]): void {
    for (const c of this.childMap.values()) out.push(sampleLine(this.name, c.labelText, c.value));
  }
}

export class GaugeChild implements Child {
  value = 0;
  constructor(
    readonly labelValues: readonly string[],
    readonly labelText: string,
  ) {}

  set(v: number): void {
    this.value = v;
  }

  inc(n = 1): void {
    this.value += n;
  }

  dec(n = 1): void {
    this.value -= n;
  }
}

/**
 * Called at every scrape, after the gauge's series were dropped: it sets the current values
 * (`g.inc([partner, direction, auth])` per live stream, say), so series that no longer exist
 * disappear. Do not keep children of a collected gauge: they are replaced at each scrape.
 */
export type GaugeCollect = (gauge: Gauge) => void;

export class Gauge extends Metric<GaugeChild> {
  readonly type = 'gauge';

  constructor(
    name: string,
    help: string,
    labelNames: readonly string[],
    private readonly collect?: GaugeCollect,
  ) {
    super(name, help, labelNames);
    if (labelNames.length === 0) this.labels();
  }

  protected createChild(values: readonly string[], text: string): GaugeChild {
    return new GaugeChild(values, text);
  }

  /** `set(v)` for a label-less gauge; `set(labels, v)` otherwise. */
  set(labels: LabelValues | number, v?: number): void {
    if (typeof labels === 'number') this.child(undefined).value = labels;
    else if (v === undefined) throw metricError(`${this.name}: set(labels, value) needs a value`);
    else this.child(labels).value = v;
  }

  inc(labels?: LabelValues | number, n = 1): void {
    if (typeof labels === 'number') this.child(undefined).value += labels;
    else this.child(labels).value += n;
  }

  dec(labels?: LabelValues | number, n = 1): void {
    if (typeof labels === 'number') this.child(undefined).value -= labels;
    else this.child(labels).value -= n;
  }

  get(labels?: LabelValues): number {
    return this.child(labels).value;
  }

  renderSamples(out: string[]): void {
    if (this.collect) {
      this.reset();
      this.collect(this);
    }
    for (const c of this.childMap.values()) out.push(sampleLine(this.name, c.labelText, c.value));
  }
}

export class HistogramChild implements Child {
  /** Per-bucket (not cumulative) counts; the last slot is the +Inf overflow. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(
    readonly labelValues: readonly string[],
    readonly labelText: string,
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

/** Prometheus client defaults, in seconds. */
export const DEFAULT_BUCKETS: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class Histogram extends Metric<HistogramChild> {
  readonly type = 'histogram';
  readonly buckets: readonly number[];
  private readonly leTexts: readonly string[];

  constructor(name: string, help: string, labelNames: readonly string[], buckets: readonly number[] = DEFAULT_BUCKETS) {
    super(name, help, labelNames);
    if (labelNames.includes('le')) throw metricError(`${name}: 'le' is reserved for histogram buckets`);
    const bounds = buckets.at(-1) === Number.POSITIVE_INFINITY ? buckets.slice(0, -1) : [...buckets];
    for (let i = 0; i < bounds.length; i++) {
      if (!Number.isFinite(bounds[i]!)) throw metricError(`${name}: bucket bounds must be finite numbers`);
      if (i > 0 && !(bounds[i]! > bounds[i - 1]!)) throw metricError(`${name}: bucket bounds must increase`);
    }
    this.buckets = Object.freeze(bounds);
    this.leTexts = Object.freeze([...bounds.map(formatNumber), '+Inf']);
    if (labelNames.length === 0) this.labels();
  }

  protected createChild(values: readonly string[], text: string): HistogramChild {
    return new HistogramChild(values, text, this.buckets);
  }

  /** `observe(v)` for a label-less histogram; `observe(labels, v)` otherwise. */
  observe(labels: LabelValues | number, v?: number): void {
    if (typeof labels === 'number') this.child(undefined).observe(labels);
    else if (v === undefined) throw metricError(`${this.name}: observe(labels, value) needs a value`);
    else this.child(labels).observe(v);
  }

  override sampleNames(): string[] {
    return [this.name, `${this.name}_bucket`, `${this.name}_sum`, `${this.name}_count`];
  }

  renderSamples(out: string[]): void {
    for (const c of this.childMap.values()) {
      const prefix = c.labelText === '' ? '' : `${c.labelText},`;
      let cumulative = 0;
      for (let i = 0; i < this.leTexts.length; i++) {
        cumulative += c.counts[i]!;
        out.push(`${this.name}_bucket{${prefix}le="${this.leTexts[i]}"} ${formatNumber(cumulative)}`);
      }
      out.push(sampleLine(`${this.name}_sum`, c.labelText, c.sum));
      out.push(sampleLine(`${this.name}_count`, c.labelText, c.count));
    }
  }
}

type AnyMetric = Counter | Gauge | Histogram;

/** Metrics in registration order; `render()` is the body of `GET /metrics`. */
export class MetricsRegistry {
  private readonly metrics: AnyMetric[] = [];
  private readonly sampleNames = new Set<string>();

  counter(name: string, help: string, labelNames: readonly string[] = []): Counter {
    return this.add(new Counter(name, help, labelNames));
  }

  gauge(name: string, help: string, labelNames: readonly string[] = [], collect?: GaugeCollect): Gauge {
    return this.add(new Gauge(name, help, labelNames, collect));
  }

  histogram(name: string, help: string, labelNames: readonly string[] = [], buckets: readonly number[] = DEFAULT_BUCKETS): Histogram {
    return this.add(new Histogram(name, help, labelNames, buckets));
  }

  private add<M extends AnyMetric>(metric: M): M {
    const names = metric.sampleNames();
    const clash = names.find((n) => this.sampleNames.has(n));
    if (clash !== undefined) throw metricError(`metric '${clash}' is already registered`);
    for (const n of names) this.sampleNames.add(n);
    this.metrics.push(metric);
    return metric;
  }

  /** Text exposition format 0.0.4; serve as `text/plain; version=0.0.4`. */
  render(): string {
    const out: string[] = [];
    for (const m of this.metrics) {
      out.push(`# HELP ${m.name} ${escapeHelp(m.help)}`, `# TYPE ${m.name} ${m.type}`);
      m.renderSamples(out);
    }
    return out.length === 0 ? '' : `${out.join('\n')}\n`;
  }
}

/** Content-Type of `render()`'s output. */
export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

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
  readonly streams: Gauge;
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
  readonly partners: Gauge;
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

  constructor(opts: { streams?: StreamRegistryView } = {}) {
    this.view = opts.streams ?? null;
    const r = this.registry;
    this.streams = r.gauge('gw_streams', 'Live s2s streams by partner, direction and authentication method.', ['partner', 'direction', 'auth'], (g) => {
      if (this.view === null) return;
      for (const s of this.view.list()) g.labels(s.partner ?? NO_PARTNER, s.direction, s.auth).value += 1;
    });
    this.refusals = r.counter('gw_stream_refusals_total', 'Streams refused, by partner, policy rule and stream error condition.', ['partner', 'rule', 'condition']);
    this.stanzas = r.counter('gw_stanzas_total', 'Stanzas relayed, by partner and direction.', ['partner', 'direction']);
    this.bytes = r.counter('gw_bytes_total', 'Bytes on partner streams, by partner and direction.', ['partner', 'direction']);
    this.negotiation = r.histogram('gw_negotiation_seconds', 'Time from stream header to authenticated, by partner and direction.', ['partner', 'direction'], NEGOTIATION_BUCKETS);
    this.reloads = r.counter('gw_partner_reloads_total', 'Partner list reloads, by result (ok, error).', ['result']);
    this.partners = r.gauge('gw_partners', 'Allowed partners in the partner list in force.');
    this.streamsClosed = r.counter('gw_streams_closed_total', 'Streams closed, by partner, direction and stream error condition (none: clean close).', ['partner', 'direction', 'condition']);
    this.bounces = r.counter('gw_relay_bounces_total', 'Stanzas answered with a stanza error to their sender, by the sender\'s realm (partners, internal) and condition.', ['realm', 'condition']);
    this.lost = r.counter('gw_relay_lost_total', 'Bounces that could not be delivered to their sender either, by realm and condition.', ['realm', 'condition']);
    this.resent = r.counter('gw_relay_resent_total', 'Stanzas sent again on a new stream because the stream they went out on died before confirming them, by realm.', ['realm']);
    this.unconfirmed = r.counter('gw_relay_unconfirmed_total', 'Stanzas whose delivery was never confirmed by the peer (barrier timed out): they may be lost. By realm.', ['realm']);
    this.stanzaRefusals = r.counter('gw_stanza_refusals_total', 'Stanzas refused with a stanza error, by partner, rule and condition.', ['partner', 'rule', 'condition']);
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

  /** Sets (or replaces) the stream registry `gw_streams` is counted from. */
  attachStreams(view: StreamRegistryView): void {
    this.view = view;
  }

  render(): string {
    return this.registry.render();
  }
}
