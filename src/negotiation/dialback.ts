/**
 * Server Dialback wire elements (XEP-0220 sections 2.1-2.4, 2.6): `db:result` and `db:verify`
 * requests, answers and dialback errors. Elements use the `db` prefix, which we declare on every
 * header we send while dialback is allowed (XEP-0220 section 2.4.1: the traditional advertisement).
 *
 * References: XEP-0220 v1.1.1, XEP-0185 (keys, see dialback-key.ts).
 */
import { escapeXML } from '../xml/ltx.js';
import { NS_STANZAS } from '../xml/namespaces.js';

export type DialbackVerdict = 'valid' | 'invalid';

/** Dialback error conditions (XEP-0220 section 2.6). */
export type DialbackErrorCondition =
  | 'item-not-found' | 'remote-connection-failed' | 'remote-server-not-found' | 'remote-server-timeout'
  | 'policy-violation' | 'not-authorized' | 'forbidden' | 'not-acceptable' | 'resource-constraint';

const a = (v: string) => escapeXML(v);

/**
 * Longest `db:verify` id we answer: the id is echoed in the answer, so a peer pipelining long ids
 * it never reads would make us buffer them (stream ids are 16-40 characters in practice; RFC
 * 6120 section 4.7.3 asks for 128 bits of randomness).
 */
export const MAX_DIALBACK_ID_CHARS = 128;

/** `<db:result from to>key</db:result>`: the initiating server's request (step 1). */
export function dbResultRequest(from: string, to: string, key: string): string {
  return `<db:result from='${a(from)}' to='${a(to)}'>${key}</db:result>`;
}

/** `<db:result from to type/>`: the receiving server's answer (step 4). */
export function dbResultAnswer(from: string, to: string, type: DialbackVerdict): string {
  return `<db:result from='${a(from)}' to='${a(to)}' type='${type}'/>`;
}

/** `<db:verify from to id>key</db:verify>`: the receiving server asks the authoritative one (step 2). */
export function dbVerifyRequest(from: string, to: string, id: string, key: string): string {
  return `<db:verify from='${a(from)}' to='${a(to)}' id='${a(id)}'>${key}</db:verify>`;
}

/** `<db:verify from to id type/>`: the authoritative server's answer (step 3). */
export function dbVerifyAnswer(from: string, to: string, id: string, type: DialbackVerdict): string {
  return `<db:verify from='${a(from)}' to='${a(to)}' id='${a(id)}' type='${type}'/>`;
}

/** A dialback error on `db:result` (XEP-0220 section 2.6), sent only to peers that advertised `<errors/>`. */
export function dbResultError(from: string, to: string, condition: DialbackErrorCondition, text?: string): string {
  const t = text ? `<text xmlns='${NS_STANZAS}' xml:lang='en'>${escapeXML(text)}</text>` : '';
  const type = condition === 'remote-server-timeout' || condition === 'resource-constraint' ? 'wait' : 'cancel';
  return `<db:result from='${a(from)}' to='${a(to)}' type='error'><error type='${type}'><${condition} xmlns='${NS_STANZAS}'/>${t}</error></db:result>`;
}

/** The key carried by a request; XEP examples put it on its own indented line, so trim. */
export function dialbackKeyText(text: string): string {
  return text.trim();
}
