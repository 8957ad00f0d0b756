/**
 * XML namespace names used on s2s streams.
 *
 * References: RFC 6120 (streams, TLS, SASL, stream and stanza errors), XEP-0220 (dialback),
 * XEP-0199 (ping), XEP-0030 (disco#info), Namespaces in XML 1.0 (the `xml` prefix).
 */

/** Stream namespace; qualifies `<stream:stream>`, `<stream:features>`, `<stream:error>`. */
export const NS_STREAMS = 'http://etherx.jabber.org/streams';
/** Content namespace of server-to-server streams (the default namespace on the header). */
export const NS_SERVER = 'jabber:server';
/** Server Dialback elements (`db:result`, `db:verify`), bound to the `db` prefix on the header. */
export const NS_DIALBACK = 'jabber:server:dialback';
/** Dialback stream feature (`<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>`). */
export const NS_DIALBACK_FEATURE = 'urn:xmpp:features:dialback';
export const NS_TLS = 'urn:ietf:params:xml:ns:xmpp-tls';
export const NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl';
/** Stream error conditions and `<text/>`. */
export const NS_STREAM_ERRORS = 'urn:ietf:params:xml:ns:xmpp-streams';
/** Stanza error conditions and `<text/>`. */
export const NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';
/** Application error conditions such as `<stanza-too-big/>` (Prosody adds it to policy-violation). */
export const NS_XMPP_ERRORS = 'urn:xmpp:errors';
export const NS_PING = 'urn:xmpp:ping';
export const NS_DISCO_INFO = 'http://jabber.org/protocol/disco#info';
/** Namespace of the always-bound `xml` prefix (`xml:lang`). */
export const NS_XML = 'http://www.w3.org/XML/1998/namespace';
/** Namespace of the reserved `xmlns` prefix; nothing may be bound to it. */
export const NS_XMLNS = 'http://www.w3.org/2000/xmlns/';
