/**
 * What the panel shows per partner besides its record: recent stream refusals (rule and text, from
 * the gateway's RefusalLog, the one `status` and `explain` read) and a small traffic history
 * (stanzas per 5-second step, both directions) for the sparkline. Traffic is sampled from the
 * per-partner stanza counters on a timer, so the relay pays nothing for it.
 */
import { NON_PARTNERS, type RefusalEntry, type RefusalLog } from '../refusal-log.js';

export interface Refusal extends RefusalEntry {
  /** The partner refused; null for a domain that is not a partner (its name is in `domain`). */
  readonly partner: string | null;
}

export const TRAFFIC_STEP_MS = 5_000;
const TRAFFIC_POINTS = 60;

export class PanelFeed {
  private readonly traffic = new Map<string, number[]>();
  private last = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;

  /** `totals()`: stanzas so far per partner (both directions), read at each step. */
  constructor(
    private readonly totals: () => ReadonlyMap<string, number>,
    private readonly refusals: Pick<RefusalLog, 'toJSON'>,
  ) {}

  /** The most recent refusals, newest first: of one partner (`null`: of domains that are not partners), or of all. */
  recentRefusals(partner?: string | null): Refusal[] {
    const all: Refusal[] = [];
    for (const [key, entries] of Object.entries(this.refusals.toJSON())) {
      const p = key === NON_PARTNERS ? null : key;
      if (partner !== undefined && p !== partner) continue;
      for (const e of entries) all.push({ ...e, partner: p });
    }
    return all.sort((a, b) => (a.time < b.time ? 1 : a.time > b.time ? -1 : 0));
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
