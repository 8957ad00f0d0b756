/**
 * Ordering of SRV records for connection attempts.
 *
 * References:
 *   RFC 2782 (DNS SRV): priority/weight semantics, the weighted selection algorithm, and Target "." meaning
 *     "service decidedly not available at this domain"
 *   XEP-0368 (SRV records for XMPP over TLS): `_xmpps-server` and `_xmpp-server` records are merged and
 *     ordered as one set, so this module is generic over the record type and carries extra fields through
 *   RFC 6120 section 3.2 (XMPP resolves `_xmpp-server._tcp` with RFC 2782 processing)
 */

/**
 * One SRV record. `target` is dns2's field name and `name` is node:dns `resolveSrv()`'s; either is accepted
 * so records from both resolvers can be ordered without copying.
 */
export interface SrvRecord {
  readonly priority: number;
  readonly weight: number;
  readonly port: number;
  readonly target?: string;
  readonly name?: string;
}

export interface SrvOrder<T extends SrvRecord> {
  /** Records in the order to try them. Empty when `unavailable`. */
  readonly records: T[];
  /** RFC 2782: the answer was a single record with Target "." (service explicitly not offered). */
  readonly unavailable: boolean;
}

/** The record's target host name without a trailing dot; '' for the root name ".". */
export function srvTarget(record: SrvRecord): string {
  const raw = record.target ?? record.name ?? '';
  return raw.endsWith('.') ? raw.slice(0, -1) : raw;
}

/**
 * Order SRV records per RFC 2782: ascending priority; within one priority, repeated weighted random
 * selection. `random` returns a number in [0, 1) like `Math.random` and is injectable for tests.
 *
 * Unlike xmpp.js's `sortSrv` (which sorts by weight, deterministically sending all traffic to the heaviest
 * target) this spreads connections in proportion to weight, as Prosody's net/resolvers/service.lua does.
 */
export function orderSrv<T extends SrvRecord>(
  records: readonly T[],
  random: () => number = Math.random,
): SrvOrder<T> {
  // RFC 2782: 'A Target of "." means that the service is decidedly not available at this domain.' It is
  // only meaningful as the sole record; the caller must then not fall back to A/AAAA, which would
  // override the domain owner's explicit statement.
  if (records.length === 1 && srvTarget(records[0]!) === '') {
    return { records: [], unavailable: true };
  }
  // A "." mixed with real records is malformed; there is nothing to connect to there, so drop it.
  const usable = records.filter((r) => srvTarget(r) !== '');

  const byPriority = new Map<number, T[]>();
  for (const r of usable) {
    const group = byPriority.get(r.priority);
    if (group) group.push(r);
    else byPriority.set(r.priority, [r]);
  }

  const ordered: T[] = [];
  // RFC 2782 Priority: 'A client MUST attempt to contact the target host with the lowest-numbered
  // priority it can reach'.
  for (const priority of [...byPriority.keys()].sort((a, b) => a - b)) {
    ordered.push(...weightedOrder(byPriority.get(priority)!, random));
  }
  return { records: ordered, unavailable: false };
}

/**
 * RFC 2782 Weight, the selection algorithm: 'arrange all SRV RRs (that have not been ordered yet) in any
 * order, except that all those with weight 0 are placed at the beginning of the list. Compute the sum of
 * the weights of those RRs, and with each RR associate the running sum in the selected order. Then choose
 * a uniform random number between 0 and the sum computed (inclusive), and select the RR whose running sum
 * value is the first in the selected order which is greater than or equal to the random number selected.'
 * Repeat until every RR is ordered.
 *
 * The inclusive 0 is there so weight-0 records (which sit first, with running sum 0) get 'a very small
 * chance of being selected'. When the remaining set has no weight-0 record, drawing 0 would only hand the
 * first record an extra 1/(sum+1) share (weights 1:3 would come out 2:3), so then the draw is from
 * 1..sum, which is exactly proportional (as Go's net.byPriorityWeight effectively does).
 */
function weightedOrder<T extends SrvRecord>(group: readonly T[], random: () => number): T[] {
  // Stable arrangement: weight-0 records first, the rest in answer order ("any order" is allowed).
  const remaining = [...group.filter((r) => r.weight === 0), ...group.filter((r) => r.weight !== 0)];
  const out: T[] = [];
  while (remaining.length > 0) {
    const sum = remaining.reduce((s, r) => s + Math.max(0, r.weight), 0);
    const low = remaining[0]!.weight === 0 ? 0 : 1;
    const span = sum - low + 1;
    // Clamp: a `random` returning exactly 1 (or more) must not overshoot the sum.
    const pick = low + Math.min(span - 1, Math.floor(random() * span));
    let running = 0;
    let chosen = remaining.length - 1;
    for (let i = 0; i < remaining.length; i++) {
      running += Math.max(0, remaining[i]!.weight);
      if (running >= pick) {
        chosen = i;
        break;
      }
    }
    out.push(remaining.splice(chosen, 1)[0]!);
  }
  return out;
}
