/**
 * XEP-0198 Stream Management on server-to-server streams, acknowledgements only (no resumption:
 * Prosody does not resume s2s streams either). Prosody offers it on s2s once a stream is
 * authenticated by SASL (its post-authentication features), on its incoming and its outgoing
 * streams alike.
 *
 *  - Receiving side: we advertise `<sm xmlns='urn:xmpp:sm:3'/>` in the features after SASL
 *    success; the peer sends `<enable/>`, we answer `<enabled/>` and from then on count the
 *    stanzas we handled (delivered or bounced: both are final for the peer) and answer each
 *    `<r/>` with `<a h='count'/>` (XEP-0198 section 4).
 *  - Initiating side: when the features after SASL success offer it, we send `<enable/>`; once
 *    `<enabled/>` arrives, our delivery barriers (routing/delivery-barriers.ts) become `<r/>`
 *    requests and the peer's `<a h/>` confirms every stanza up to h. `<failed/>` leaves the
 *    barriers as XEP-0199 pings.
 *
 * h is a 32-bit counter that wraps (XEP-0198 section 4: "h ... MUST be reset to zero when it
 * reaches 2^32").
 *
 * References: XEP-0198 v1.6 sections 3 (enabling), 4 (acks), 5 (resumption: not offered).
 */
import { Element } from '../xml/ltx.js';

export const NS_SM = 'urn:xmpp:sm:3';

/** The stream feature advertised after SASL success. */
export function smFeature(): Element {
  return new Element('sm', { xmlns: NS_SM });
}

export const SM_ENABLE = `<enable xmlns='${NS_SM}'/>`;
export const SM_ENABLED = `<enabled xmlns='${NS_SM}'/>`;
export const SM_REQUEST = `<r xmlns='${NS_SM}'/>`;

/** `<a h='…'/>` for `handled` stanzas (mod 2^32). */
export function smAnswer(handled: number): string {
  return `<a xmlns='${NS_SM}' h='${handled >>> 0}'/>`;
}

/** `<failed/>` with a stanza error condition (XEP-0198 section 3). */
export function smFailed(condition: 'unexpected-request' | 'service-unavailable'): string {
  return `<failed xmlns='${NS_SM}'><${condition} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>`;
}

/** The `h` of an `<a/>`, or null when it is not a valid unsigned 32-bit integer. */
export function parseH(value: string | undefined): number | null {
  if (value === undefined || !/^\d{1,10}$/.test(value)) return null;
  const h = Number(value);
  return h <= 0xffff_ffff ? h : null;
}

/**
 * How many stanzas an `<a h/>` newly confirms, given how many were confirmed before (both mod
 * 2^32); null when h claims more than was sent (XEP-0198 section 4: `undefined-condition`).
 */
export function newlyAcked(h: number, confirmedBefore: number, sent: number): number | null {
  const n = (h - confirmedBefore) >>> 0;
  const outstanding = (sent - confirmedBefore) >>> 0;
  return n <= outstanding ? n : null;
}
