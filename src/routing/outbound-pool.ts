/**
 * Outbound streams of one realm, one per (our domain, peer domain) pair, opened on demand and
 * reused: to partners (partner realm) or to the internal server (internal realm). Stanzas wait in
 * a queue bounded in count and bytes while the stream negotiates; if it fails, each queued
 * stanza's `undeliverable` callback runs with the stanza error to bounce (docs/protocol.md 1.3:
 * remote-server-not-found before any stream existed, remote-server-timeout after).
 *
 * Failed connection attempts back off per peer domain, exponentially with jitter (no reconnect
 * storm: a peer that is down costs one attempt per backoff step however many stanzas arrive),
 * and while a peer is known to be down its stanzas bounce at once.
 *
 * The gateway never connects out to a domain its realm does not accept as a peer.
 */
import { GatewayError, StreamError } from '../errors.js';
import type { GatewayContext } from '../gateway-context.js';
import { connectToDomain } from '../net/connector.js';
import type { Resolver } from '../net/resolver.js';
import { OutboundFailure, OutboundStream } from '../stream/outbound-stream.js';
import { SM_REQUEST } from '../negotiation/stream-management.js';
import { barrierPing, type BarrierOwner, type DeliveryBarriers } from './delivery-barriers.js';
import type { Realm } from './realm.js';

export type UndeliverableCondition = 'remote-server-not-found' | 'remote-server-timeout' | 'resource-constraint' | 'policy-violation';
/**
 * Runs when a stanza cannot be delivered; `stanza` is the text that was handed to `send`, so a
 * caller can pass one shared function instead of a closure per stanza (the hot path keeps
 * nothing per stanza alive but that text while it waits for a barrier).
 */
export type Undeliverable = (condition: UndeliverableCondition, text: string, stanza: string) => void;

interface Pending {
  readonly text: string;
  readonly undeliverable: Undeliverable | undefined;
  /** How often a dying stream left it unconfirmed (it is bounced after MAX_RESENDS). */
  resends?: number;
}

/**
 * A stanza sent again this often without confirmation is bounced: a peer that closes the stream
 * because of one stanza must not make the gateway resend it (and what came before it) forever.
 */
export const MAX_RESENDS = 3;

/** Queue bounds and backoff steps; gateway.yaml `queues` (config/schema.ts documents each). */
export interface PoolLimits {
  /** Stanzas queued per pair while its stream negotiates (Prosody caps at 32k; we bounce earlier). */
  readonly maxQueuedStanzas: number;
  /** UTF-16 code units (≈ bytes for XML) queued per pair. */
  readonly maxQueuedBytes: number;
  /** First backoff after a failed attempt; doubles per failure. */
  readonly reconnectMinMs: number;
  readonly reconnectMaxMs: number;
  /** A delivery barrier (delivery-barriers.ts) after this many stanzas on a stream... */
  readonly confirmEveryStanzas: number;
  /** ...or this long after the first unconfirmed one. */
  readonly confirmIntervalMs: number;
  /** An unanswered barrier gives up after this long (its stanzas count as unconfirmed). */
  readonly confirmTimeoutMs: number;
  /**
   * Unconfirmed stanzas kept per pair; past it the oldest barrier's are released (counted as
   * unconfirmed). Not backpressure: barrier answers arrive on the streams a pause would stop.
   */
  readonly maxUnconfirmed: number;
}

export const DEFAULT_POOL_LIMITS: PoolLimits = {
  maxQueuedStanzas: 10_000,
  maxQueuedBytes: 8 * 1024 * 1024,
  reconnectMinMs: 1_000,
  reconnectMaxMs: 60_000,
  confirmEveryStanzas: 100,
  confirmIntervalMs: 250,
  confirmTimeoutMs: 30_000,
  maxUnconfirmed: 5_000,
};

class Link implements BarrierOwner {
  stream: OutboundStream | undefined;
  /** A connection attempt is under way: stanzas only queue (one stream per pair, not per stanza). */
  opening = false;
  queue: Pending[] = [];
  queuedBytes = 0;
  /** Sent on the current stream after the last answered barrier, oldest first. */
  unconfirmed: Pending[] = [];
  /** Stanzas sent on the current stream, and how many of them a barrier answer confirmed. */
  sent = 0;
  confirmed = 0;
  /** Barriers in flight: each confirms the stanzas sent before it (`upTo`). */
  barriers: { id: string; upTo: number; sentAt: number }[] = [];
  barrierTimer: NodeJS.Timeout | undefined;
  /** When the current stream became able to carry stanzas (an unanswered `<enable/>` times out from here). */
  establishedAt = 0;
  /** Callers waiting for the unconfirmed backlog to shrink. */
  writableWaiters: (() => void)[] = [];
  constructor(readonly localDomain: string, readonly remoteDomain: string, private readonly onAnswer: (link: Link, id: string) => void) {}
  barrierAnswered(id: string): void {
    this.onAnswer(this, id);
  }
}

/** Per peer domain: consecutive failures and until when the peer counts as down. */
interface Backoff {
  failures: number;
  downUntil: number;
  reason: string;
}

export class OutboundPool {
  /** local domain ⇒ peer domain ⇒ link; nested so the per-stanza lookup builds no key string. */
  private readonly links = new Map<string, Map<string, Link>>();
  private readonly backoff = new Map<string, Backoff>();

  constructor(
    readonly realm: Realm,
    private readonly ctx: GatewayContext,
    private readonly resolver: Resolver,
    /** Delivery confirmation by ping barriers; null turns it off (tests of the bare pool). */
    private readonly barriers: DeliveryBarriers | null,
    private readonly limits: PoolLimits = DEFAULT_POOL_LIMITS,
    private readonly counters: { unconfirmed(n: number): void; resent(n: number): void } = { unconfirmed() {}, resent() {} },
    private readonly clock: () => number = Date.now,
  ) {}

  /**
   * Sends a serialised stanza from `localDomain` to `remoteDomain`; returns false when the
   * stream it went to is congested (the caller pauses its source until `whenWritable`).
   */
  send(localDomain: string, remoteDomain: string, text: string, undeliverable?: Undeliverable): boolean {
    let link = this.links.get(localDomain)?.get(remoteDomain);
    // Straight onto an established stream, unless earlier stanzas still wait to be flushed (order).
    if (link?.stream?.authenticated && !link.stream.closed && link.queue.length === 0) {
      return this.transmit(link, link.stream, { text, undeliverable });
    }
    if (this.shutDown) {
      // Shutting down: established streams still carry (bounces among them), nothing new opens.
      undeliverable?.('remote-server-timeout', 'the gateway is shutting down', text);
      return true;
    }
    const peer = this.realm.peerFor(remoteDomain);
    if (!peer) {
      undeliverable?.('remote-server-not-found', this.realm.notAPeer(remoteDomain).text, text);
      return true;
    }
    const down = this.backoff.get(remoteDomain);
    if (down && this.clock() < down.downUntil && !link?.opening) {
      undeliverable?.('remote-server-timeout', `${remoteDomain} is unreachable (retry in ${Math.ceil((down.downUntil - this.clock()) / 1000)} s): ${down.reason}`, text);
      return true;
    }
    if (!link) {
      link = new Link(localDomain, remoteDomain, this.onBarrierAnswer);
      let byRemote = this.links.get(localDomain);
      if (!byRemote) this.links.set(localDomain, (byRemote = new Map()));
      byRemote.set(remoteDomain, link);
    }
    if (link.queue.length >= this.limits.maxQueuedStanzas || link.queuedBytes + text.length > this.limits.maxQueuedBytes) {
      undeliverable?.('resource-constraint', `the queue for ${remoteDomain} is full (${link.queue.length} stanzas, ${link.queuedBytes} bytes)`, text);
      return true;
    }
    link.queue.push({ text, undeliverable });
    link.queuedBytes += text.length;
    if (!link.opening && (!link.stream || link.stream.closed)) {
      link.opening = true;
      const opened = link;
      void this.open(opened).finally(() => (opened.opening = false));
    }
    // Past half the queue's bounds the source is asked to pause, long before anything bounces.
    return !this.queueHalfFull(link);
  }

  private queueHalfFull(link: Link): boolean {
    return link.queue.length >= this.limits.maxQueuedStanzas / 2 || link.queuedBytes >= this.limits.maxQueuedBytes / 2;
  }

  /**
   * Runs `cb` once the pair can take more: its queue below half its bounds and its stream
   * drained (at once when there is nothing to wait for).
   */
  whenWritable(localDomain: string, remoteDomain: string, cb: () => void): void {
    const link = this.links.get(localDomain)?.get(remoteDomain);
    if (!link) return cb();
    const again = () => this.whenWritable(localDomain, remoteDomain, cb);
    if (this.queueHalfFull(link)) {
      link.writableWaiters.push(again);
      return;
    }
    const stream = link.stream;
    if (!stream || stream.closed) return cb();
    stream.whenDrained(cb);
  }

  /** Wakes whoever waits for the link to take more (they re-check and may wait again). */
  private wakeWriters(link: Link): void {
    if (link.writableWaiters.length === 0) return;
    const waiters = link.writableWaiters;
    link.writableWaiters = [];
    for (const cb of waiters) cb();
  }

  /** The stream to `remoteDomain` and how much it has drained so far (undefined: none open). */
  streamTo(localDomain: string, remoteDomain: string): OutboundStream | undefined {
    const stream = this.links.get(localDomain)?.get(remoteDomain)?.stream;
    return stream && !stream.closed ? stream : undefined;
  }

  /** Closes the stream to `remoteDomain` if it is still congested (a peer that stopped reading). */
  closeCongested(localDomain: string, remoteDomain: string, waitedMs: number): void {
    const link = this.links.get(localDomain)?.get(remoteDomain);
    const stream = link?.stream;
    if (!link || !stream || stream.closed || !stream.congested) return;
    const text = `${remoteDomain} did not read its stream for ${waitedMs} ms (queues.drainTimeoutMs)`;
    this.ctx.events.refused(stream, stream.partner.Identity, 'drainTimeoutMs', 'resource-constraint', text);
    stream.close(new StreamError('resource-constraint', text));
  }

  /** Bounces everything queued for the peer domains `which` selects (a removed partner). */
  drop(which: (localDomain: string, remoteDomain: string) => boolean, condition: UndeliverableCondition, text: string): void {
    for (const byRemote of this.links.values()) {
      for (const link of [...byRemote.values()]) if (which(link.localDomain, link.remoteDomain)) this.failAll(link, new OutboundFailure(condition, text));
    }
  }

  private shutDown = false;

  /**
   * Shutdown: bounces every queued stanza; from now on nothing queues and no stream opens, but
   * established streams still carry what is sent to them until they close.
   */
  shutdown(text: string): void {
    this.shutDown = true;
    for (const byRemote of [...this.links.values()]) {
      for (const link of [...byRemote.values()]) this.failAll(link, new OutboundFailure('remote-server-timeout', text));
    }
  }

  private async open(link: Link): Promise<void> {
    const { localDomain, remoteDomain } = link;
    const peer = this.realm.peerFor(remoteDomain);
    if (!peer) return this.failAll(link, new OutboundFailure('remote-server-not-found', this.realm.notAPeer(remoteDomain).text));
    // The domain we would speak as may have gone with a reload (a removed partner, internal realm).
    if (!this.realm.speaksAs(localDomain)) return this.failAll(link, new OutboundFailure('remote-server-not-found', `${localDomain} is no longer served by this gateway`));
    const total = this.ctx.limits.openConnection();
    if (!total.ok) return this.failAll(link, new OutboundFailure('resource-constraint', total.text));
    // A stream that closed but whose socket is not gone yet: what it left unconfirmed goes first.
    if (link.stream?.closed) this.requeueUnconfirmed(link);
    let stream: OutboundStream;
    try {
      const { socket, target } = await connectToDomain(this.resolver, remoteDomain, peer.ProxyFqdn);
      stream = new OutboundStream(socket, this.ctx, this.realm, { localDomain, remoteDomain, partner: peer, purpose: 'stream' }, target.directTls);
    } catch (err) {
      this.ctx.limits.closeConnection();
      const text = err instanceof GatewayError ? err.message : String(err);
      this.markDown(remoteDomain, text);
      return this.failAll(link, new OutboundFailure('remote-server-not-found', text));
    }
    // Shut down, or the link dropped (a removed partner), while we connected: nobody wants it now.
    if (this.shutDown || this.links.get(localDomain)?.get(remoteDomain) !== link) {
      stream.close(new StreamError('system-shutdown', 'no longer needed'));
      stream.onRelease(() => this.ctx.limits.closeConnection());
      return this.failAll(link, new OutboundFailure('remote-server-timeout', 'the gateway is shutting down or the peer was removed'));
    }
    link.stream = stream;
    // XEP-0198 acks, when the peer enables them, confirm like answered barriers: h counts the
    // stream's stanzas from the first (<enable/> goes out before any), so it is absolute here.
    stream.onAcked = (h) => {
      if (link.stream === stream) this.confirmUpTo(link, Math.max(link.confirmed, h));
    };
    stream.onRelease(() => {
      this.ctx.limits.closeConnection();
      if (link.stream === stream) {
        link.stream = undefined;
        this.requeueUnconfirmed(link);
      }
      if (this.shutDown) this.failAll(link, new OutboundFailure('remote-server-timeout', 'the gateway is shutting down'));
      else if (link.queue.length === 0 && !link.stream && !link.opening) this.forget(link);
      else if (link.queue.length > 0 && !link.opening) {
        link.opening = true;
        void this.open(link).finally(() => (link.opening = false));
      }
    });
    try {
      await stream.ready;
    } catch (err) {
      if (link.stream === stream) link.stream = undefined;
      this.markDown(remoteDomain, (err as Error).message);
      return this.failAll(link, err as OutboundFailure);
    }
    if (stream.closed) {
      // Closed in the same read that established it: bounce rather than write into the void.
      if (link.stream === stream) link.stream = undefined;
      return this.failAll(link, stream.failure ?? new OutboundFailure('remote-server-timeout', 'stream closed right after authentication'));
    }
    if (this.shutDown || link.stream !== stream) {
      stream.close(new StreamError('system-shutdown', 'no longer needed'));
      return this.failAll(link, new OutboundFailure('remote-server-timeout', 'the gateway is shutting down or the peer was removed'));
    }
    this.backoff.delete(remoteDomain);
    link.establishedAt = this.clock();
    this.flushQueue(link, stream);
  }

  /**
   * Sends what queued while the stream negotiated, in order, as fast as the peer takes it: a
   * congested stream is waited for (the queue keeps later stanzas behind, so order holds).
   */
  private flushQueue(link: Link, stream: OutboundStream): void {
    if (link.stream !== stream || stream.closed) return;
    const queue = link.queue;
    let i = 0;
    let writable = true;
    while (i < queue.length && writable) {
      const p = queue[i++]!;
      link.queuedBytes -= p.text.length;
      writable = this.transmit(link, stream, p);
    }
    link.queue = i === queue.length ? [] : queue.slice(i);
    this.wakeWriters(link);
    if (link.queue.length === 0) return;
    stream.whenDrained(() => this.flushQueue(link, stream));
  }

  /** Writes one stanza on the link's stream and keeps it until a barrier confirms it. */
  private transmit(link: Link, stream: OutboundStream, p: Pending): boolean {
    const writable = stream.sendStanza(p.text);
    if (!this.barriers) return writable;
    link.unconfirmed.push(p);
    link.sent++;
    if (link.sent - (link.barriers.at(-1)?.upTo ?? link.confirmed) >= this.limits.confirmEveryStanzas) this.sendBarrier(link, stream);
    else link.barrierTimer ??= setTimeout(() => this.barrierTick(link), this.limits.confirmIntervalMs).unref();
    // The backlog is bounded by releasing its oldest barrier, never by pausing sources: barrier
    // answers arrive on inbound streams, which are the very sources a pause would stop.
    if (link.unconfirmed.length > this.limits.maxUnconfirmed) this.giveUp(link, link.barriers[0]?.upTo ?? link.sent, 'the unconfirmed backlog passed queues.maxUnconfirmed');
    return writable;
  }

  private sendBarrier(link: Link, stream: OutboundStream): void {
    if (stream.acksEnabled) {
      // XEP-0198 section 4: an ack request; the peer's <a h/> confirms (stream.onAcked).
      link.barriers.push({ id: '', upTo: link.sent, sentAt: this.clock() });
      stream.send(SM_REQUEST);
    } else if (!stream.acksPending) {
      const id = this.barriers!.next(link);
      link.barriers.push({ id, upTo: link.sent, sentAt: this.clock() });
      stream.send(barrierPing(link.localDomain, link.remoteDomain, id));
    }
    link.barrierTimer ??= setTimeout(() => this.barrierTick(link), this.limits.confirmIntervalMs).unref();
  }

  /** Periodic: a barrier for stragglers, and giving up on barriers nobody answers. */
  private barrierTick(link: Link): void {
    link.barrierTimer = undefined;
    const stream = link.stream;
    if (!stream || stream.closed) return;
    const oldest = link.barriers[0];
    // The peer does not answer (it cannot reach us back?): release what the barrier covered.
    if (oldest && this.clock() - oldest.sentAt > this.limits.confirmTimeoutMs) this.giveUp(link, oldest.upTo, `no answer within queues.confirmTimeoutMs (${this.limits.confirmTimeoutMs} ms)`);
    // XEP-0198 section 3: an <enable/> nobody answers is a failure; pings take over.
    if (stream.acksPending && this.clock() - link.establishedAt > this.limits.confirmTimeoutMs) stream.abandonAcks();
    const covered = link.barriers.at(-1)?.upTo ?? link.confirmed;
    if (link.sent > covered) this.sendBarrier(link, stream);
    else if (link.barriers.length > 0) link.barrierTimer = setTimeout(() => this.barrierTick(link), this.limits.confirmIntervalMs).unref();
  }

  /** Releases the first `upTo` stanzas unconfirmed: counted and logged, the one documented loss. */
  private giveUp(link: Link, upTo: number, why: string): void {
    const n = this.confirmUpTo(link, upTo);
    this.counters.unconfirmed(n);
    this.ctx.log.warn('relay.unconfirmed', { realm: this.realm.name, remote: link.remoteDomain, stanzas: n, why });
  }

  private readonly onBarrierAnswer = (link: Link, id: string): void => {
    const barrier = link.barriers.find((b) => b.id === id);
    if (barrier) this.confirmUpTo(link, barrier.upTo);
  };

  /** The first `upTo` stanzas sent on the link's stream are confirmed; returns how many newly. */
  private confirmUpTo(link: Link, upTo: number): number {
    let done = 0;
    while (done < link.barriers.length && link.barriers[done]!.upTo <= upTo) {
      if (link.barriers[done]!.id) this.barriers?.forget(link.barriers[done]!.id);
      done++;
    }
    link.barriers.splice(0, done);
    const n = Math.max(0, Math.min(upTo - link.confirmed, link.unconfirmed.length));
    link.unconfirmed.splice(0, n);
    link.confirmed += n;
    this.wakeWriters(link);
    return n;
  }

  /**
   * The link's stream is gone: what it carried without confirmation goes back to the front of
   * the queue, in order, to be sent again on the next stream (or bounced if there is none).
   */
  private requeueUnconfirmed(link: Link): void {
    if (link.unconfirmed.length === 0 && link.barriers.length === 0 && link.sent === 0) return;
    clearTimeout(link.barrierTimer);
    link.barrierTimer = undefined;
    for (const b of link.barriers) this.barriers?.forget(b.id);
    link.barriers = [];
    link.sent = link.confirmed = 0;
    const unconfirmed: Pending[] = [];
    const exhausted: Pending[] = [];
    for (const p of link.unconfirmed) {
      p.resends = (p.resends ?? 0) + 1;
      (p.resends > MAX_RESENDS ? exhausted : unconfirmed).push(p);
    }
    link.unconfirmed = [];
    if (unconfirmed.length > 0) {
      this.counters.resent(unconfirmed.length);
      this.ctx.log.info('relay.resend', { realm: this.realm.name, remote: link.remoteDomain, stanzas: unconfirmed.length });
      link.queue = unconfirmed.concat(link.queue);
      for (const p of unconfirmed) link.queuedBytes += p.text.length;
    }
    for (const p of exhausted) p.undeliverable?.('remote-server-timeout', `${link.remoteDomain} closed ${MAX_RESENDS + 1} streams without confirming this stanza`, p.text);
  }

  /** Exponential backoff with full jitter (AWS architecture blog's "full jitter"), per peer domain. */
  private markDown(remoteDomain: string, reason: string): void {
    const prev = this.backoff.get(remoteDomain);
    const failures = (prev?.failures ?? 0) + 1;
    const ceiling = Math.min(this.limits.reconnectMaxMs, this.limits.reconnectMinMs * 2 ** (failures - 1));
    const delay = this.limits.reconnectMinMs / 2 + Math.random() * (ceiling - this.limits.reconnectMinMs / 2);
    this.backoff.set(remoteDomain, { failures, downUntil: this.clock() + delay, reason });
    this.ctx.log.info('outbound.peer-down', { realm: this.realm.name, remote: remoteDomain, failures, retryInMs: Math.round(delay), reason });
  }

  private forget(link: Link): void {
    const byRemote = this.links.get(link.localDomain);
    if (byRemote?.get(link.remoteDomain) === link) byRemote.delete(link.remoteDomain);
  }

  private failAll(link: Link, err: OutboundFailure): void {
    const queued = link.queue;
    link.queue = [];
    link.queuedBytes = 0;
    if (!link.stream) this.forget(link);
    for (const p of queued) p.undeliverable?.(err.condition, err.message, p.text);
    this.wakeWriters(link);
  }
}
