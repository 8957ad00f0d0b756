/**
 * Timers and policy re-checks over all live streams, from one sweep instead of a timer per
 * stream (cheap with thousands of streams; all deadlines are configurable down to a second):
 *  - streamEstablishmentTimeoutSeconds: header to authenticated, else `connection-timeout`;
 *  - EnableKeepAlive partners must show traffic (a whitespace ping counts) within
 *    keepAliveIntervalSeconds, else `connection-timeout`; we whitespace-ping our idle outbound
 *    streams to them at a third of that interval (docs/design.md section 2);
 *  - other partners' streams close after streamInactivityTimeoutSeconds without traffic;
 *  - after a partner-list reload, streams of removed partners, streams that no longer satisfy a
 *    tightened rule, and the newest streams above a lowered ConnectionLimit are closed
 *    (docs/design.md section 6). Nothing else is disturbed.
 */
import { StreamError } from '../errors.js';
import type { GatewayConfig } from '../config/schema.js';
import { streamStillAllowed } from '../negotiation/partner-policy.js';
import type { PartnerList } from '../policy/partner-list.js';
import type { PartnerRecord } from '../policy/types.js';
import { INTERNAL_PEER } from '../routing/realm.js';
import type { ConnectionLimits } from './connection-limits.js';
import { InboundStream } from './inbound-stream.js';
import { OutboundStream } from './outbound-stream.js';
import { now, type S2SStream } from './s2s-stream.js';

export const SWEEP_INTERVAL_MS = 250;

export class StreamSupervisor {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly streams: ReadonlySet<S2SStream>,
    private readonly config: GatewayConfig,
    private readonly limits: ConnectionLimits,
    private readonly onRefusal: (stream: S2SStream, partner: string | null, rule: string, condition: string, text: string) => void,
  ) {}

  start(): void {
    this.timer = setInterval(() => this.sweep(now()), SWEEP_INTERVAL_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  sweep(t: number): void {
    const establishMs = this.config.streamEstablishmentTimeoutSeconds * 1000;
    const keepAliveMs = this.config.keepAliveIntervalSeconds * 1000;
    const idleMs = this.config.streamInactivityTimeoutSeconds * 1000;
    for (const stream of this.streams) {
      if (stream.closed) continue;
      const partner = partnerOf(stream);
      if (!stream.authenticated) {
        if (t - stream.createdAt > establishMs) {
          this.timeout(stream, partner, 'streamEstablishmentTimeoutSeconds', `stream not authenticated within ${this.config.streamEstablishmentTimeoutSeconds} s (streamEstablishmentTimeoutSeconds)`);
        }
        continue;
      }
      if (stream instanceof InboundStream) {
        const quiet = t - stream.lastReceivedAt;
        if (partner?.EnableKeepAlive) {
          if (quiet > keepAliveMs) {
            this.timeout(stream, partner, 'EnableKeepAlive', `no traffic from ${partner.Identity} within keepAliveIntervalSeconds (${this.config.keepAliveIntervalSeconds} s)`);
          }
        } else if (quiet > idleMs) {
          this.timeout(stream, partner, 'streamInactivityTimeoutSeconds', `stream idle for streamInactivityTimeoutSeconds (${this.config.streamInactivityTimeoutSeconds} s)`);
        }
      } else if (stream instanceof OutboundStream && stream.opts.purpose === 'stream') {
        if (partner?.EnableKeepAlive) {
          if (t - stream.lastSentAt > keepAliveMs / 3) stream.send(' ');
        } else if (t - Math.max(stream.lastStanzaAt, stream.lastReceivedAt) > idleMs) {
          stream.close(); // our own idle outbound stream: a polite close, not an error
        }
      }
    }
  }

  /**
   * docs/design.md section 6: apply a reloaded partner list to the live streams. In a pool a
   * lowered ConnectionLimit holds across the pool too (section 11): this node's streams whose
   * slot is at or above the new limit move below it, or close if no slot there is free.
   */
  recheck(list: PartnerList): void {
    const plan = planRecheck(this.streams, list, this.limits);
    for (const { stream, record } of plan.keep) stream.updatePartner(record);
    for (const c of plan.close) this.refuse(c.stream, c.partner, c.rule, c.text);
    const closing = new Set(plan.close.map((c) => c.stream));
    const live = (s: object) => !closing.has(s as S2SStream) && !(s as S2SStream).closed;
    void this.limits.applyPoolLimits(list.records, live)?.then((surplus) => {
      for (const s of surplus) {
        const stream = s.stream as S2SStream;
        if (stream.closed) continue;
        this.refuse(stream, s.partner, 'ConnectionLimit', `${s.limitName} of partner ${s.partner} lowered to ${s.limit} (${s.direction} streams): no slot below it is free across the pool`);
      }
    });
  }

  private timeout(stream: S2SStream, partner: PartnerRecord | null, rule: string, text: string): void {
    this.onRefusal(stream, partner?.Identity ?? null, rule, 'connection-timeout', text);
    stream.close(new StreamError('connection-timeout', text));
  }

  private refuse(stream: S2SStream, partner: string, rule: string, text: string): void {
    this.onRefusal(stream, partner, rule, 'policy-violation', text);
    stream.close(new StreamError('policy-violation', text));
  }
}

/** A live stream that a partner list would close, the rule and the text it would be closed with. */
export interface PlannedClose {
  readonly stream: S2SStream;
  /** The partner the refusal is counted for (INTERNAL_PEER for internal streams). */
  readonly partner: string;
  readonly rule: string;
  readonly text: string;
}

/**
 * The reload re-check rules (docs/design.md section 6) as a pure plan: which live streams `list`
 * would close, with rule and text, and which stay (with the record that now governs them).
 * `recheck` applies it after a reload; the admin panel shows it before a change is saved
 * ("what if"). Nothing is changed here.
 *  - a removed partner's streams close (and, with an internal server, the internal streams on
 *    which we speak as one of its domains: issue 7, both directions);
 *  - streams that no longer meet a tightened rule close;
 *  - a lowered ConnectionLimit closes the newest streams above it, per direction, counting only
 *    the streams that stay open after the rules above.
 */
export function planRecheck(
  streams: Iterable<S2SStream>,
  list: PartnerList,
  limits: Pick<ConnectionLimits, 'partnerStreams' | 'partnerLimit'>,
): { close: PlannedClose[]; keep: { stream: InboundStream | OutboundStream; record: PartnerRecord }[] } {
  const close: PlannedClose[] = [];
  const keep: { stream: InboundStream | OutboundStream; record: PartnerRecord }[] = [];
  const closing = new Set<S2SStream>();
  const refuse = (stream: S2SStream, partner: string, rule: string, text: string) => {
    close.push({ stream, partner, rule, text });
    closing.add(stream);
  };
  for (const stream of streams) {
    if (stream.closed) continue;
    if (isInternal(stream)) {
      // The internal realm speaks as every allowed partner domain (routing/realm.ts speaksAs), read from `list`.
      const ours = stream instanceof InboundStream ? stream.localDomain : stream.opts.localDomain;
      if (ours !== null && list.partnerFor(ours) === undefined) refuse(stream, INTERNAL_PEER, 'AllowedPartner', `${ours} is no longer an allowed partner domain`);
      continue;
    }
    const old = partnerOf(stream);
    if (!old) continue;
    const domains = domainsOf(stream);
    const record = domains.length > 0 ? list.partnerFor(domains[0]!) : list.byIdentity(old.Identity);
    if (!record || domains.some((d) => list.partnerFor(d)?.Identity !== record.Identity)) {
      refuse(stream, old.Identity, 'AllowedPartner', `${old.Identity} was removed from the allowed-partner list`);
      continue;
    }
    if (stream instanceof InboundStream || stream instanceof OutboundStream) keep.push({ stream, record });
    if (stream.authenticated) {
      const tls = stream.tlsVersion !== null;
      const still = streamStillAllowed(record, tls, stream.auth);
      if (!still.ok) refuse(stream, record.Identity, still.rule, `partner record changed: ${still.text}`);
    }
  }
  // A lowered ConnectionLimit closes the newest streams above it, per direction. Streams closed a
  // moment ago (or planned to close above) stay counted until their socket is gone; they must not
  // push the open ones over the new limit.
  for (const record of list.records) {
    for (const direction of ['inbound', 'outbound'] as const) {
      const open = ([...limits.partnerStreams(record, direction)] as S2SStream[]).filter((s) => !s.closed && !closing.has(s));
      const limit = limits.partnerLimit(record);
      if (open.length <= limit) continue;
      const newestFirst = open.sort((a, b) => b.createdAt - a.createdAt);
      for (const stream of newestFirst.slice(0, open.length - limit)) {
        refuse(stream, record.Identity, 'ConnectionLimit', `ConnectionLimit of partner ${record.Identity} lowered to ${limit} (${direction} streams)`);
      }
    }
  }
  return { close, keep };
}

function isInternal(stream: S2SStream): stream is InboundStream | OutboundStream {
  return (stream instanceof InboundStream || stream instanceof OutboundStream) && stream.realm.name === 'internal';
}

function partnerOf(stream: S2SStream): PartnerRecord | null {
  if (stream instanceof InboundStream) return stream.partner;
  if (stream instanceof OutboundStream) return stream.partner;
  return null;
}

function domainsOf(stream: S2SStream): string[] {
  if (stream instanceof InboundStream) {
    const domains = stream.authenticatedDomains;
    if (stream.remoteDomain && !domains.includes(stream.remoteDomain)) domains.push(stream.remoteDomain);
    return domains;
  }
  if (stream instanceof OutboundStream) return [stream.opts.remoteDomain];
  return [];
}
