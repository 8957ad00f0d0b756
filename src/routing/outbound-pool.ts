/**
 * Outbound streams to partners, one per (local domain, partner domain) pair, opened on demand and
 * reused. Stanzas wait in a bounded queue while the stream negotiates; if it fails, each queued
 * stanza's `undeliverable` callback runs with the stanza error to bounce (protocol.md 1.3:
 * remote-server-not-found before any stream existed, remote-server-timeout after).
 *
 * The gateway never connects out to a domain that is not an allowed partner.
 */
import { GatewayError } from '../errors.js';
import type { GatewayContext } from '../gateway-context.js';
import { connectToDomain } from '../net/connector.js';
import type { Resolver } from '../net/resolver.js';
import { OutboundFailure, OutboundStream } from '../stream/outbound-stream.js';

export type Undeliverable = (condition: 'remote-server-not-found' | 'remote-server-timeout' | 'resource-constraint' | 'policy-violation', text: string) => void;

interface Pending {
  readonly text: string;
  readonly undeliverable: Undeliverable | undefined;
}

/** Stanzas queued per pair while its stream negotiates (Prosody caps at 32k; we bounce earlier). */
export const MAX_QUEUED_STANZAS = 10_000;

class Link {
  stream: OutboundStream | undefined;
  /** A connection attempt is under way: stanzas only queue (one stream per pair, not per stanza). */
  opening = false;
  queue: Pending[] = [];
  constructor(readonly localDomain: string, readonly remoteDomain: string) {}
}

export class OutboundPool {
  /** local domain ⇒ partner domain ⇒ link; nested so the per-stanza lookup builds no key string. */
  private readonly links = new Map<string, Map<string, Link>>();

  constructor(
    private readonly ctx: GatewayContext,
    private readonly resolver: Resolver,
  ) {}

  send(localDomain: string, remoteDomain: string, text: string, undeliverable?: Undeliverable): void {
    let link = this.links.get(localDomain)?.get(remoteDomain);
    // Straight onto an established stream, unless earlier stanzas still wait to be flushed (order).
    if (link?.stream?.authenticated && !link.stream.closed && link.queue.length === 0) {
      link.stream.sendStanza(text);
      return;
    }
    const partner = this.ctx.partners().partnerFor(remoteDomain);
    if (!partner) {
      undeliverable?.('remote-server-not-found', `${remoteDomain} is not an allowed partner of this gateway`);
      return;
    }
    if (!link) {
      link = new Link(localDomain, remoteDomain);
      let byRemote = this.links.get(localDomain);
      if (!byRemote) this.links.set(localDomain, (byRemote = new Map()));
      byRemote.set(remoteDomain, link);
    }
    if (link.queue.length >= MAX_QUEUED_STANZAS) {
      undeliverable?.('resource-constraint', `more than ${MAX_QUEUED_STANZAS} stanzas waiting for ${remoteDomain}`);
      return;
    }
    link.queue.push({ text, undeliverable });
    if (!link.opening && (!link.stream || link.stream.closed)) {
      link.opening = true;
      void this.open(link).finally(() => (link.opening = false));
    }
  }

  private async open(link: Link): Promise<void> {
    const { localDomain, remoteDomain } = link;
    const partner = this.ctx.partners().partnerFor(remoteDomain)!;
    const total = this.ctx.limits.openConnection();
    if (!total.ok) return this.failAll(link, new OutboundFailure('resource-constraint', total.text));
    let stream: OutboundStream;
    try {
      const { socket, target } = await connectToDomain(this.resolver, remoteDomain, partner.ProxyFqdn);
      stream = new OutboundStream(socket, this.ctx, { localDomain, remoteDomain, partner, purpose: 'stream' }, target.directTls);
    } catch (err) {
      this.ctx.limits.closeConnection();
      const text = err instanceof GatewayError ? err.message : String(err);
      this.ctx.log.info('outbound.connect-failed', { remote: remoteDomain, error: text });
      return this.failAll(link, new OutboundFailure('remote-server-not-found', text));
    }
    link.stream = stream;
    stream.onRelease(() => {
      this.ctx.limits.closeConnection();
      if (link.stream === stream) link.stream = undefined;
      if (link.queue.length === 0 && !link.stream) this.forget(link);
    });
    try {
      await stream.ready;
    } catch (err) {
      if (link.stream === stream) link.stream = undefined;
      return this.failAll(link, err as OutboundFailure);
    }
    if (stream.closed) {
      // Closed in the same read that established it: bounce rather than write into the void.
      if (link.stream === stream) link.stream = undefined;
      return this.failAll(link, stream.failure ?? new OutboundFailure('remote-server-timeout', 'stream closed right after authentication'));
    }
    const queued = link.queue;
    link.queue = [];
    for (const p of queued) stream.sendStanza(p.text);
  }

  private forget(link: Link): void {
    const byRemote = this.links.get(link.localDomain);
    if (byRemote?.get(link.remoteDomain) === link) byRemote.delete(link.remoteDomain);
  }

  private failAll(link: Link, err: OutboundFailure): void {
    const queued = link.queue;
    link.queue = [];
    this.forget(link);
    for (const p of queued) p.undeliverable?.(err.condition, err.message);
  }
}
