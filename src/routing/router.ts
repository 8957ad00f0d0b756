/**
 * The relay (docs/design.md sections 1 and 5): stanzas that passed the hot-path decision move between
 * the partner realm and the internal realm, each way over the other realm's outbound pool.
 *
 *  - partner → internal server: forwarded as received (the partner's bytes, when the parser could
 *    keep them) on a stream on which we speak as the partner's domain;
 *  - internal server → partner: a local user's message or subscription first opens the
 *    PublicUnverified gate for its addressee (docs/design.md section 5 step 4), then it is forwarded on
 *    the partner's outbound stream.
 *
 * Nothing accepted is dropped silently: a stanza that cannot be delivered (peer unreachable,
 * queue full or timed out, stream failed while it waited) is answered to its sender with a
 * stanza error over the reverse pool (RFC 6120 section 8.3). Errors and iq results are never
 * answered with errors; when a bounce itself cannot be delivered it is logged and counted.
 *
 * Backpressure: when the stream a stanza went to is congested, the stream it came from stops
 * reading until that stream drains (a slow receiver never grows our memory without bound).
 */
import type { InboundStanzaSink } from '../gateway-context.js';
import type { Logger } from '../log.js';
import type { S2SStream } from '../stream/s2s-stream.js';
import type { Element } from '../xml/ltx.js';
import { opensGate } from './decide.js';
import type { DeliveryBarriers } from './delivery-barriers.js';
import { jidDomain } from './jid.js';
import type { OutboundPool, Undeliverable, UndeliverableCondition } from './outbound-pool.js';
import { errorReply, mayBounce, stanzaHead, type StanzaErrorCondition } from './stanza-errors.js';

/** Records the trust-tier approvals a local user's outbound stanza grants (policy/approvals.ts). */
export interface ApprovalRecorder {
  record(localBare: string, remoteBare: string): void;
}

/** Counters the router moves (admin/metrics.ts binds them to gw_* metrics). */
export interface RelayCounters {
  /** A stanza answered with an error to its sender; `realm` is where the sender is. */
  bounced(realm: 'partners' | 'internal', condition: string): void;
  /** A bounce that could not reach the sender either. */
  lost(realm: 'partners' | 'internal', condition: string): void;
}

export class Router {
  /** Sink of the partner realm's inbound streams. */
  readonly fromPartner: InboundStanzaSink;
  /** Sink of the internal realm's inbound streams. */
  readonly fromInternal: InboundStanzaSink;

  /**
   * What a relayed stanza that cannot be delivered runs, one function per direction rather than
   * a closure per stanza: the Element would otherwise stay alive (and be promoted by the GC)
   * until a barrier confirms its text. The rare bounce re-reads the stanza's head from the text.
   */
  private readonly undeliverableToInternal: Undeliverable;
  private readonly undeliverableToPartners: Undeliverable;

  constructor(
    private readonly partners: OutboundPool,
    private readonly internal: OutboundPool,
    private readonly approvals: ApprovalRecorder,
    private readonly barriers: DeliveryBarriers,
    private readonly counters: RelayCounters,
    private readonly log: Logger,
    /** A congested stream that does not drain within this closes, so its sources read again. */
    private readonly drainTimeoutMs: number,
  ) {
    // A stanza bound for the internal server is bounced to its partner sender, and vice versa.
    this.undeliverableToInternal = (condition, text, stanza) => this.bounceText(this.partners, stanza, condition, text);
    this.undeliverableToPartners = (condition, text, stanza) => this.bounceText(this.internal, stanza, condition, text);
    this.fromPartner = {
      deliver: (stanza, raw, from, to, stream) => {
        if (stanza.name === 'iq' && this.barriers.answer(stanza.attrs.type, stanza.attrs.id)) return;
        this.forward(this.internal, this.undeliverableToInternal, stanza, raw, from, to, stream);
      },
      bounce: (stanza, from, to, condition, text) => this.bounce(this.partners, stanza, from, to, condition, text),
    };
    this.fromInternal = {
      deliver: (stanza, raw, from, to, stream) => {
        if (stanza.name === 'iq' && this.barriers.answer(stanza.attrs.type, stanza.attrs.id)) return;
        // The store keys approvals by bare JID itself (policy/bare-jid.ts): full JIDs go in as received.
        if (opensGate(stanza)) this.approvals.record(stanza.attrs.from!, stanza.attrs.to!);
        this.forward(this.partners, this.undeliverableToPartners, stanza, raw, from, to, stream);
      },
      bounce: (stanza, from, to, condition, text) => this.bounce(this.internal, stanza, from, to, condition, text),
    };
  }

  /**
   * Sends `stanza` (from domain `from` to domain `to`) over `target`; a failure runs
   * `undeliverable`, which bounces it over the pool that reaches the sender.
   */
  private forward(target: OutboundPool, undeliverable: Undeliverable, stanza: Element, raw: string | undefined, from: string, to: string, source: S2SStream): void {
    // On the target realm's stream we speak as the sender's domain, towards the addressee's.
    const writable = target.send(from, to, raw ?? stanza.toString(), undeliverable);
    if (!writable) {
      const reason = `${target.realm.name}:${from}>${to}`;
      if (!source.pauseReading(reason)) return;
      // A slow receiver that makes progress is waited for; one that takes nothing for
      // drainTimeoutMs is closed (its unconfirmed stanzas go out again on a new stream).
      let drained = target.streamTo(from, to)?.bytesDrained ?? 0;
      const check = (): void => {
        const now = target.streamTo(from, to)?.bytesDrained;
        if (now !== undefined && now > drained) {
          drained = now;
          timer = setTimeout(check, this.drainTimeoutMs).unref();
        } else target.closeCongested(from, to, this.drainTimeoutMs);
      };
      let timer = setTimeout(check, this.drainTimeoutMs).unref();
      target.whenWritable(from, to, () => {
        clearTimeout(timer);
        source.resumeReading(reason);
      });
    }
  }

  /** `bounce` for a relayed stanza known only by its text (its head is all an error reply needs). */
  private bounceText(reverse: OutboundPool, text: string, condition: UndeliverableCondition, errText: string): void {
    const head = stanzaHead(text);
    this.bounce(reverse, head, jidDomain(head.attrs.from), jidDomain(head.attrs.to), condition, errText);
  }

  /** Answers `stanza`'s sender with a stanza error over `reverse` (we speak as the addressee's domain). */
  private bounce(reverse: OutboundPool, stanza: Element, from: string, to: string, condition: StanzaErrorCondition | UndeliverableCondition, text: string): void {
    if (!mayBounce(stanza)) return;
    const realm = reverse.realm.name;
    this.counters.bounced(realm, condition);
    const reply = errorReply(stanza, condition, text).toString();
    reverse.send(to, from, reply, (lostCondition, lostText) => {
      this.counters.lost(realm, lostCondition);
      this.log.warn('relay.bounce-undeliverable', { realm, to: from, condition, lostCondition, text: lostText });
    });
  }
}
