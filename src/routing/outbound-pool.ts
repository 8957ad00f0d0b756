/**
 * Outbound streams of one realm, one per (our domain, peer domain) pair, opened on demand and
 * reused: to partners (partner realm) or to the internal server (internal realm). Stanzas wait in
 * a queue bounded in count and bytes while the stream negotiates; if it fails, each queued
 * stanza's `undeliverable` callback runs with the stanza error to bounce (protocol.md 1.3:
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
import type { Realm } from './realm.js';

export type UndeliverableCondition = 'remote-server-not-found' | 'remote-server-timeout' | 'resource-constraint' | 'policy-violation';
export type Undeliverable = (condition: UndeliverableCondition, text: string) => void;

interface Pending {
  readonly text: string;
  readonly undeliverable: Undeliverable | undefined;
}

/** Queue bounds and backoff steps; gateway.yaml `queues` (config/schema.ts documents each). */
export interface PoolLimits {
  /** Stanzas queued per pair while its stream negotiates (Prosody caps at 32k; we bounce earlier). */
  readonly maxQueuedStanzas: number;
  /** UTF-16 code units (≈ bytes for XML) queued per pair. */
  readonly maxQueuedBytes: number;
  /** First backoff after a failed attempt; doubles per failure. */
  readonly reconnectMinMs: number;
  readonly reconnectMaxMs: number;
}

export const DEFAULT_POOL_LIMITS: PoolLimits = {
  maxQueuedStanzas: 10_000,
  maxQueuedBytes: 8 * 1024 * 1024,
  reconnectMinMs: 1_000,
  reconnectMaxMs: 60_000,
};

class Link {
  stream: OutboundStream | undefined;
  /** A connection attempt is under way: stanzas only queue (one stream per pair, not per stanza). */
  opening = false;
  queue: Pending[] = [];
  queuedBytes = 0;
  constructor(readonly localDomain: string, readonly remoteDomain: string) {}
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
    private readonly limits: PoolLimits = DEFAULT_POOL_LIMITS,
    private readonly clock: () => number = Date.now,
  ) {}

  /**
   * Sends a serialised stanza from `localDomain` to `remoteDomain`; returns false when the
   * stream it went to is congested (the caller pauses its source until `whenWritable`).
   */
  send(localDomain: string, remoteDomain: string, text: string, undeliverable?: Undeliverable): boolean {
    if (this.shutDown) {
      undeliverable?.('remote-server-timeout', 'the gateway is shutting down');
      return true;
    }
    let link = this.links.get(localDomain)?.get(remoteDomain);
    // Straight onto an established stream, unless earlier stanzas still wait to be flushed (order).
    if (link?.stream?.authenticated && !link.stream.closed && link.queue.length === 0) {
      return link.stream.sendStanza(text);
    }
    const peer = this.realm.peerFor(remoteDomain);
    if (!peer) {
      undeliverable?.('remote-server-not-found', this.realm.notAPeer(remoteDomain).text);
      return true;
    }
    const down = this.backoff.get(remoteDomain);
    if (down && this.clock() < down.downUntil && !link?.opening) {
      undeliverable?.('remote-server-timeout', `${remoteDomain} is unreachable (retry in ${Math.ceil((down.downUntil - this.clock()) / 1000)} s): ${down.reason}`);
      return true;
    }
    if (!link) {
      link = new Link(localDomain, remoteDomain);
      let byRemote = this.links.get(localDomain);
      if (!byRemote) this.links.set(localDomain, (byRemote = new Map()));
      byRemote.set(remoteDomain, link);
    }
    if (link.queue.length >= this.limits.maxQueuedStanzas || link.queuedBytes + text.length > this.limits.maxQueuedBytes) {
      undeliverable?.('resource-constraint', `the queue for ${remoteDomain} is full (${link.queue.length} stanzas, ${link.queuedBytes} bytes)`);
      return true;
    }
    link.queue.push({ text, undeliverable });
    link.queuedBytes += text.length;
    if (!link.opening && (!link.stream || link.stream.closed)) {
      link.opening = true;
      const opened = link;
      void this.open(opened).finally(() => (opened.opening = false));
    }
    return true;
  }

  /** Runs `cb` once the stream to `remoteDomain` has drained (at once if there is none or it is not congested). */
  whenWritable(localDomain: string, remoteDomain: string, cb: () => void): void {
    const stream = this.links.get(localDomain)?.get(remoteDomain)?.stream;
    if (!stream || stream.closed) cb();
    else stream.whenDrained(cb);
  }

  /** Closes the stream to `remoteDomain` if it is still congested (a peer that stopped reading). */
  closeCongested(localDomain: string, remoteDomain: string, waitedMs: number): void {
    const stream = this.links.get(localDomain)?.get(remoteDomain)?.stream;
    if (!stream || stream.closed || !stream.congested) return;
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

  /** Shutdown: bounces every queued stanza; from now on nothing queues and no stream opens. */
  drainAll(text: string): void {
    this.shutDown = true;
    for (const byRemote of [...this.links.values()]) {
      for (const link of [...byRemote.values()]) this.failAll(link, new OutboundFailure('remote-server-timeout', text));
    }
  }

  /** Stanzas waiting in queues (status, metrics). */
  get queued(): number {
    let n = 0;
    for (const byRemote of this.links.values()) for (const link of byRemote.values()) n += link.queue.length;
    return n;
  }

  private async open(link: Link): Promise<void> {
    const { localDomain, remoteDomain } = link;
    const peer = this.realm.peerFor(remoteDomain);
    if (!peer) return this.failAll(link, new OutboundFailure('remote-server-not-found', this.realm.notAPeer(remoteDomain).text));
    const total = this.ctx.limits.openConnection();
    if (!total.ok) return this.failAll(link, new OutboundFailure('resource-constraint', total.text));
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
    link.stream = stream;
    stream.onRelease(() => {
      this.ctx.limits.closeConnection();
      if (link.stream === stream) link.stream = undefined;
      if (link.queue.length === 0 && !link.stream && !link.opening) this.forget(link);
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
    this.backoff.delete(remoteDomain);
    const queued = link.queue;
    link.queue = [];
    link.queuedBytes = 0;
    for (const p of queued) stream.sendStanza(p.text);
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
    for (const p of queued) p.undeliverable?.(err.condition, err.message);
  }
}
