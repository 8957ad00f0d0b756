/**
 * The hot-path decision (docs/design.md section 5, steps 1 to 4): for one stanza received on an
 * authenticated stream, deliver it, bounce it to its sender with a stanza error, or close the
 * stream. Pure and synchronous: no I/O, no await, O(1) in the number of partners; every rule
 * that can refuse a stanza lives here and nowhere else.
 *
 *  1. the `from` domain was authenticated on this stream, else `invalid-from` (RFC 6120 section
 *     4.9.3.9; XEP-0220 section 2.4 for multiplexed pairs);
 *  2. the `to` domain is one the stream authenticated towards, else the stream is closed
 *     (`host-unknown` for a domain we do not serve at all: there is nobody to send an error from;
 *     `improper-addressing` for one of ours that this stream did not negotiate), except on the
 *     internal realm, where a domain that stopped being a partner is bounced
 *     `remote-server-not-found` to the local sender;
 *  3. size: enforced by the stream parser before the stanza exists (maxStanzaBytes);
 *  4. trust tier: a PublicUnverified partner's `<message>` or `<presence type='subscribe'>` reaches
 *     a local user only after that user reached out to the remote user first (an approval),
 *     else `service-unavailable` (RFC 6120 section 8.3.3.19: the same answer as for a user who
 *     does not exist, so the gate reveals nothing).
 */
import type { StreamCondition } from '../errors.js';
import type { PartnerRecord } from '../policy/types.js';
import type { Element } from '../xml/ltx.js';
import { normalizeBareJid } from '../policy/bare-jid.js';
import type { Realm } from './realm.js';
import type { StanzaErrorCondition } from './stanza-errors.js';

/** The approvals the trust tier reads (policy/approvals.ts keeps them across restarts). */
export interface ApprovalCheck {
  /**
   * The local user has reached out to the remote user through the gateway. Takes the JIDs as
   * the stanza carries them, bare or full: the store compares their bare forms itself
   * (policy/bare-jid.ts normalizeBareJid), so the hot path builds no bare JID strings first.
   */
  has(local: string, remote: string): boolean;
}

export type Decision =
  | { readonly kind: 'deliver' }
  | { readonly kind: 'bounce'; readonly condition: StanzaErrorCondition; readonly rule: string; readonly text: string }
  | { readonly kind: 'close'; readonly condition: StreamCondition; readonly rule: string; readonly text: string };

const DELIVER: Decision = Object.freeze({ kind: 'deliver' });

/**
 * @param pairs the stream's authenticated (remote domain ⇒ our domains) pairs
 * @param fromDomain the stanza's `from` domain ('' when missing or unusable)
 * @param toDomain the stanza's `to` domain ('' when missing or unusable)
 */
export function decide(
  pairs: ReadonlyMap<string, ReadonlySet<string>>,
  realm: Pick<Realm, 'name' | 'speaksAs'>,
  peer: PartnerRecord,
  approvals: ApprovalCheck,
  stanza: Element,
  fromDomain: string,
  toDomain: string,
): Decision {
  if (fromDomain === '' || toDomain === '') {
    return close('improper-addressing', 'stanza', "stanza without a valid 'from' or 'to'");
  }
  const targets = pairs.get(fromDomain);
  if (!targets) return close('invalid-from', 'stanza', `${fromDomain} is not authenticated on this stream`);
  if (!targets.has(toDomain)) {
    if (!realm.speaksAs(toDomain)) {
      if (realm.name === 'internal') {
        return { kind: 'bounce', condition: 'remote-server-not-found', rule: 'AllowedPartner', text: `${toDomain} is not an allowed partner of this gateway` };
      }
      return close('host-unknown', 'stanza', `${toDomain} is not a domain served by this gateway`);
    }
    return close('improper-addressing', 'stanza', `${fromDomain} is not authenticated towards ${toDomain} on this stream`);
  }
  if (realm.name === 'partners' && peer.PartnerType === 'PublicUnverified' && isUnsolicitedRequest(stanza)) {
    if (!approvals.has(stanza.attrs.to!, stanza.attrs.from!)) {
      return {
        kind: 'bounce',
        condition: 'service-unavailable',
        rule: 'PartnerType',
        text: `partner ${peer.Identity} is PublicUnverified: ${normalizeBareJid(stanza.attrs.to!)} has not contacted ${normalizeBareJid(stanza.attrs.from!)} first`,
      };
    }
  }
  return DELIVER;
}

/** What a PublicUnverified partner's user may not send a local user out of the blue (docs/design.md section 5.4). */
function isUnsolicitedRequest(stanza: Element): boolean {
  const type = stanza.attrs.type;
  if (stanza.name === 'message') return type !== 'error';
  return stanza.name === 'presence' && type === 'subscribe';
}

/**
 * Whether a local user's outbound stanza opens the gate for its addressee: a message, a
 * subscription request or approval, or directed presence to a full JID (joining a chat room,
 * whose messages then come back).
 */
export function opensGate(stanza: Element): boolean {
  const type = stanza.attrs.type;
  if (stanza.name === 'message') return type !== 'error';
  if (stanza.name !== 'presence') return false;
  if (type === 'subscribe' || type === 'subscribed') return true;
  return type === undefined && (stanza.attrs.to?.includes('/') ?? false);
}

function close(condition: StreamCondition, rule: string, text: string): Decision {
  return { kind: 'close', condition, rule, text };
}
