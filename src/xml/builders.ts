/**
 * Hand-built stream framing. ltx cannot emit an unclosed `<stream:stream ...>`, so headers,
 * stream errors and the closing tag are strings.
 *
 * References: RFC 6120 §4.7 (stream attributes), §4.9 (stream errors), §4.8.5 (the `stream`
 * prefix), XEP-0220 §2.4.1 (`xmlns:db` advertises dialback), XEP-0288 is not used here.
 */
import type { StreamCondition } from '../errors.js';
import { Element, escapeXML, escapeXMLText } from './ltx.js';
import {
  NS_DIALBACK,
  NS_DIALBACK_FEATURE,
  NS_SASL,
  NS_SERVER,
  NS_STREAM_ERRORS,
  NS_STREAMS,
  NS_TLS,
} from './namespaces.js';

/** Closes the stream document; nothing may be written after it. */
export const STREAM_CLOSE = '</stream:stream>';

/** The XML declaration we send before every header (RFC 6120 §11.5: SHOULD; Prosody does too). */
export const XML_DECLARATION = "<?xml version='1.0'?>";

export interface StreamHeaderOptions {
  /** Sender domain; omitted when empty or undefined. */
  from?: string | undefined;
  /** Target domain; omitted when empty or undefined. */
  to?: string | undefined;
  /** Stream id (responder only, fresh per header); omitted when empty or undefined. */
  id?: string | undefined;
  /** `'1.0'` normally; omitted when empty or undefined (reply to a pre-1.0 peer). */
  version?: string | undefined;
  /** `xml:lang`; omitted when empty or undefined. */
  lang?: string | undefined;
  /** Declare `xmlns:db` (XEP-0220 §2.4.1); do it on every header while dialback is allowed. */
  dialback: boolean;
}

/**
 * `<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream=... [xmlns:db=...]
 * [from] [to] [id] [version] [xml:lang]>`, unclosed. Attribute values are escaped and any
 * character XML cannot carry is replaced by U+FFFD, so the result is always well-formed.
 */
export function streamHeader(opts: StreamHeaderOptions): string {
  let s = `${XML_DECLARATION}<stream:stream xmlns='${NS_SERVER}' xmlns:stream='${NS_STREAMS}'`;
  if (opts.dialback) s += ` xmlns:db='${NS_DIALBACK}'`;
  s += attr('from', opts.from);
  s += attr('to', opts.to);
  s += attr('id', opts.id);
  s += attr('version', opts.version);
  s += attr('xml:lang', opts.lang);
  return s + '>';
}

/** An application-specific condition added to a stream error (RFC 6120 §4.9.4). */
export interface AppCondition {
  name: string;
  ns: string;
}

/**
 * `<stream:error><condition xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>[<text xml:lang='en'>…</text>]
 * [<app-condition xmlns=…/>]</stream:error>`. Does not include `</stream:stream>`; send
 * {@link STREAM_CLOSE} after it. Never throws: illegal characters in `text` become U+FFFD.
 */
export function streamError(condition: StreamCondition, text?: string, app?: AppCondition): string {
  let s = `<stream:error><${condition} xmlns='${NS_STREAM_ERRORS}'/>`;
  if (text !== undefined && text !== '') {
    s += `<text xmlns='${NS_STREAM_ERRORS}' xml:lang='en'>${escapeXMLText(sanitize(text))}</text>`;
  }
  if (app !== undefined) s += `<${app.name} xmlns='${escapeXML(sanitize(app.ns))}'/>`;
  return s + '</stream:error>';
}

/**
 * `<stream:features>` with the given children (Elements are serialised, strings are taken as
 * already-serialised XML). An empty list gives `<stream:features/>` (post-SASL, RFC 6120 §6.4.6).
 */
export function streamFeatures(children: ReadonlyArray<Element | string>): string {
  if (children.length === 0) return '<stream:features/>';
  let s = '<stream:features>';
  for (const c of children) s += typeof c === 'string' ? c : c.toString();
  return s + '</stream:features>';
}

/** `<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>[<required/>]</starttls>` feature child. */
export function starttlsFeature(required: boolean): Element {
  const el = new Element('starttls', { xmlns: NS_TLS });
  if (required) el.c('required');
  return el;
}

/** `<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>…</mechanism>…</mechanisms>`. */
export function saslMechanismsFeature(mechanisms: readonly string[]): Element {
  const el = new Element('mechanisms', { xmlns: NS_SASL });
  for (const m of mechanisms) el.c('mechanism').t(m);
  return el;
}

/** `<dialback xmlns='urn:xmpp:features:dialback'>[<errors/>]</dialback>` (XEP-0220 §2.4.2). */
export function dialbackFeature(errors: boolean): Element {
  const el = new Element('dialback', { xmlns: NS_DIALBACK_FEATURE });
  if (errors) el.c('errors');
  return el;
}

function attr(name: string, value: string | undefined): string {
  return value === undefined || value === '' ? '' : ` ${name}='${escapeXML(sanitize(value))}'`;
}

// XML 1.0 Char production: no C0 controls but TAB/LF/CR, no U+FFFE/U+FFFF, no lone surrogates.
// eslint-disable-next-line no-control-regex
const ILLEGAL_XML_CHARS = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** Replace characters XML 1.0 cannot carry with U+FFFD. */
export function sanitize(s: string): string {
  ILLEGAL_XML_CHARS.lastIndex = 0;
  return ILLEGAL_XML_CHARS.test(s) ? s.replace(ILLEGAL_XML_CHARS, '\uFFFD') : s;
}
