/**
 * Answers stanzas addressed to the gateway itself while no internal server is configured
 * (docs/design.md section 1): XEP-0199 ping and XEP-0030 disco#info to a local domain get results;
 * every other stanza that may be bounced gets `service-unavailable` (RFC 6120 section 8.3.3.19).
 * Replies travel over an outbound stream to the sender's domain, negotiated per the partner's
 * record: an inbound s2s stream is one-way (RFC 6120 section 2.5).
 */
import type { InboundStanzaSink } from '../gateway-context.js';
import type { Logger } from '../log.js';
import type { S2SStream } from '../stream/s2s-stream.js';
import { Element } from '../xml/ltx.js';
import { NS_DISCO_INFO, NS_PING } from '../xml/namespaces.js';
import { isDomainJid } from './jid.js';
import type { DeliveryBarriers } from './delivery-barriers.js';
import type { OutboundPool } from './outbound-pool.js';
import { errorReply, mayBounce, type StanzaErrorCondition } from './stanza-errors.js';

export const GATEWAY_FEATURES = [NS_DISCO_INFO, NS_PING] as const;

export class LocalResponder implements InboundStanzaSink {
  constructor(
    private readonly pool: () => OutboundPool,
    private readonly barriers: DeliveryBarriers,
    private readonly log: Logger,
  ) {}

  deliver(stanza: Element, _raw: string | undefined, fromDomain: string, toDomain: string, stream: S2SStream): void {
    // Answers to our own delivery barriers (delivery-barriers.ts) end here.
    if (stanza.name === 'iq' && this.barriers.answer(stanza.attrs.type, stanza.attrs.id)) return;
    const reply = this.answer(stanza);
    if (!reply) return;
    this.pool().send(toDomain, fromDomain, reply.toString(), (condition, text) => {
      // The reply itself cannot reach the partner: nothing to bounce it to, so log it.
      this.log.warn('reply.undeliverable', { to: fromDomain, condition, text, stream: stream.connectionId });
    });
  }

  bounce(stanza: Element, fromDomain: string, toDomain: string, condition: StanzaErrorCondition, text: string, stream: S2SStream): void {
    if (!mayBounce(stanza)) return;
    this.pool().send(toDomain, fromDomain, errorReply(stanza, condition, text).toString(), (lost, lostText) => {
      this.log.warn('reply.undeliverable', { to: fromDomain, condition: lost, text: lostText, stream: stream.connectionId });
    });
  }

  private answer(stanza: Element): Element | null {
    const to = stanza.attrs.to;
    if (stanza.name === 'iq' && isDomainJid(to)) {
      const type = stanza.attrs.type;
      const child = stanza.children.find((c): c is Element => typeof c !== 'string');
      if (type === 'get' && child?.name === 'ping' && child.attrs.xmlns === NS_PING) return this.result(stanza);
      if (type === 'get' && child?.name === 'query' && child.attrs.xmlns === NS_DISCO_INFO && !child.attrs.node) {
        const reply = this.result(stanza);
        const query = reply.c('query', { xmlns: NS_DISCO_INFO });
        query.c('identity', { category: 'server', type: 'im', name: 'XMPP federation gateway' });
        for (const feature of GATEWAY_FEATURES) query.c('feature', { var: feature });
        return reply;
      }
    }
    if (stanza.name === 'presence' && stanza.attrs.type === 'unavailable') return null;
    return mayBounce(stanza) ? errorReply(stanza, 'service-unavailable') : null;
  }

  private result(iq: Element): Element {
    return new Element('iq', { type: 'result', from: iq.attrs.to, to: iq.attrs.from, id: iq.attrs.id ?? '' });
  }
}
