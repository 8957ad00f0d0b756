/**
 * What the panel shows per partner besides its record: recent stream refusals (rule and text, as
 * logged) and a small traffic history (stanzas per 5-second step, both directions) for the
 * sparkline. Refusals are observed by wrapping the gateway's stream events; traffic is sampled
 * from the per-partner stanza counters on a timer, so the relay pays nothing for it.
 */
import type { StreamEvents } from '../../gateway-context.js';

export interface Refusal {
  readonly time: string;
  readonly partner: string | null;
  readonly direction: string;
  readonly rule: string;
  readonly condition: string;
  readonly text: string;
}

const REFUSALS_PER_PARTNER = 20;
const REFUSALS_TOTAL = 200;
export const TRAFFIC_STEP_MS = 5_000;
const TRAFFIC_POINTS = 60;

export class PanelFeed {
  private readonly refusals: Refusal[] = [];
  private readonly traffic = new Map<string, number[]>();
  private last = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;

  /** `totals()`: stanzas so far per partner (both directions), read at each step. */
  constructor(private readonly totals: () => ReadonlyMap<string, number>) {}

  /** Wraps `events.refused` so that every refusal is also kept here. */
  watch(events: StreamEvents): void {
    const refused = events.refused.bind(events);
    events.refused = (stream, partner, rule, condition, text) => {
      refused(stream, partner, rule, condition, text);
      this.refused({ time: new Date().toISOString(), partner, direction: stream.direction, rule, condition, text });
    };
  }

  refused(r: Refusal): void {
    this.refusals.push(r);
    if (this.refusals.length > REFUSALS_TOTAL) this.refusals.shift();
  }

  /** The most recent refusals, newest first; of one partner (`null`: of unknown senders) when given. */
  recentRefusals(partner?: string | null): Refusal[] {
    const all = partner === undefined ? this.refusals : this.refusals.filter((r) => r.partner === partner);
    return all.slice(-REFUSALS_PER_PARTNER).reverse();
  }

  /** Stanzas per step for the partner, oldest first (at most 60 steps of 5 s). */
  trafficOf(partner: string): number[] {
    return [...(this.traffic.get(partner) ?? [])];
  }

  start(): void {
    this.sample();
    this.timer = setInterval(() => this.sample(), TRAFFIC_STEP_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One step: the increase of each partner's counter since the last step. */
  sample(): void {
    const now = this.totals();
    for (const [partner, total] of now) {
      const series = this.traffic.get(partner) ?? [];
      const before = this.last.get(partner);
      series.push(before === undefined ? 0 : Math.max(0, total - before));
      if (series.length > TRAFFIC_POINTS) series.shift();
      this.traffic.set(partner, series);
    }
    this.last = new Map(now);
  }
}
