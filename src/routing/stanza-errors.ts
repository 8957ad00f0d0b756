/**
 * Stanza error replies (RFC 6120 section 8.3): the original stanza with `from`/`to` swapped,
 * `type='error'` and an `<error/>` child. Error stanzas are never answered with errors
 * (RFC 6120 section 8.3.1), and neither are iq results.
 */
import { Element, unescapeXML } from '../xml/ltx.js';
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

/**
 * The name and attributes of a serialised stanza's start tag, as an Element without children:
 * what `mayBounce` and `errorReply` read. Only for text that already passed the stream parser
 * (well-formed, so every attribute value is quoted and `>` can only end the tag outside quotes).
 */
export function stanzaHead(text: string): Element {
  let i = text.indexOf('<') + 1;
  let j = i;
  while (j < text.length && !isSpace(text.charCodeAt(j)) && text[j] !== '>' && text[j] !== '/') j++;
  const name = text.slice(i, j);
  const attrs: Record<string, string> = {};
  i = j;
  for (;;) {
    while (i < text.length && isSpace(text.charCodeAt(i))) i++;
    if (i >= text.length || text[i] === '>' || text[i] === '/') break;
    const eq = text.indexOf('=', i);
    if (eq < 0) break;
    const key = text.slice(i, eq).trim();
    let q = eq + 1;
    while (q < text.length && isSpace(text.charCodeAt(q))) q++;
    const quote = text[q];
    const end = quote === "'" || quote === '"' ? text.indexOf(quote, q + 1) : -1;
    if (end < 0) break;
    attrs[key] = unescapeXML(text.slice(q + 1, end));
    i = end + 1;
  }
  return new Element(name, attrs);
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
}
