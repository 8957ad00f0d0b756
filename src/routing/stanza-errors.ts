/**
 * Stanza error replies (RFC 6120 section 8.3): the original stanza with `from`/`to` swapped,
 * `type='error'` and an `<error/>` child. Error stanzas are never answered with errors
 * (RFC 6120 section 8.3.1), and neither are iq results.
 */
import { Element } from '../xml/ltx.js';
import { NS_STANZAS } from '../xml/namespaces.js';

export type StanzaErrorCondition =
  | 'service-unavailable' | 'item-not-found' | 'remote-server-not-found' | 'remote-server-timeout'
  | 'feature-not-implemented' | 'resource-constraint' | 'policy-violation' | 'jid-malformed';

const ERROR_TYPES: Record<StanzaErrorCondition, 'cancel' | 'wait' | 'modify'> = {
  'service-unavailable': 'cancel',
  'item-not-found': 'cancel',
  'remote-server-not-found': 'cancel',
  'remote-server-timeout': 'wait',
  'feature-not-implemented': 'cancel',
  'resource-constraint': 'wait',
  'policy-violation': 'modify',
  'jid-malformed': 'modify',
};

/** Whether a stanza may be answered with an error (not an error itself, not an iq result). */
export function mayBounce(stanza: Element): boolean {
  const type = stanza.attrs.type;
  return type !== 'error' && !(stanza.name === 'iq' && type === 'result');
}

/** The error reply to `stanza`; the original payload is kept for iq (RFC 6120 section 8.3.1 allows it). */
export function errorReply(stanza: Element, condition: StanzaErrorCondition, text?: string): Element {
  const reply = new Element(stanza.name, {
    from: stanza.attrs.to,
    to: stanza.attrs.from,
    type: 'error',
    ...(stanza.attrs.id !== undefined ? { id: stanza.attrs.id } : {}),
  });
  const error = reply.c('error', { type: ERROR_TYPES[condition] });
  error.c(condition, { xmlns: NS_STANZAS });
  if (text) error.c('text', { xmlns: NS_STANZAS, 'xml:lang': 'en' }).t(text);
  return reply;
}
