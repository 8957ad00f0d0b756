/**
 * SASL EXTERNAL for server-to-server streams (XEP-0178 v1.2, RFC 6120 section 6, RFC 4422
 * appendix A): reading `<auth mechanism='EXTERNAL'>` and the replies.
 */
import { NS_SASL } from '../xml/namespaces.js';

/** RFC 6120 section 6.5 failure conditions used here. */
export type SaslFailure =
  | 'encryption-required' | 'incorrect-encoding' | 'invalid-authzid' | 'invalid-mechanism'
  | 'malformed-request' | 'not-authorized' | 'temporary-auth-failure' | 'aborted';

export const SASL_SUCCESS = `<success xmlns='${NS_SASL}'/>`;

export function saslFailure(condition: SaslFailure, text?: string): string {
  const t = text ? `<text xml:lang='en'>${text.replace(/[<&]/g, (c) => (c === '<' ? '&lt;' : '&amp;'))}</text>` : '';
  return `<failure xmlns='${NS_SASL}'><${condition}/>${t}</failure>`;
}

/** `<auth>` body for the initiating side: base64 of our domain as authzid (XEP-0178 section 3, step 8). */
export function externalAuth(authzid: string): string {
  return `<auth xmlns='${NS_SASL}' mechanism='EXTERNAL'>${Buffer.from(authzid, 'utf8').toString('base64')}</auth>`;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * Decodes the authorization identity of an EXTERNAL `<auth>`: `=` (RFC 6120 section 6.4.2:
 * empty response) gives '', otherwise strict base64 (Buffer.from silently skips junk).
 * An absent payload is malformed: we do not run the empty-challenge round trip, as Prosody.
 */
export function decodeAuthzid(text: string): { ok: true; authzid: string } | { ok: false; condition: SaslFailure } {
  const body = text.trim();
  if (body === '') return { ok: false, condition: 'malformed-request' };
  if (body === '=') return { ok: true, authzid: '' };
  if (body.length % 4 !== 0 || !BASE64.test(body)) return { ok: false, condition: 'incorrect-encoding' };
  const authzid = Buffer.from(body, 'base64').toString('utf8');
  if (authzid.includes('\0')) return { ok: false, condition: 'invalid-authzid' };
  return { ok: true, authzid };
}
