/**
 * Bare JIDs (`localpart@domainpart`, RFC 7622) as the approvals store compares them.
 *
 * Comparison is case-insensitive on the whole bare JID: the domainpart is lowercased (DNS names
 * are case-insensitive), and so is the localpart, because PRECIS UsernameCaseMapped (RFC 8265
 * section 3.3, which RFC 7622 section 3.3 uses for localparts) maps it to lowercase, so
 * `Alice@Corp.Example` and `alice@corp.example` are one user. The gateway does not run the rest of
 * PRECIS or IDNA (width mapping, NFC, U-label to A-label): conforming servers send JIDs already
 * prepared, and the other gateway code compares domains as received (src/routing/jid.ts).
 */
import { UsageError } from '../errors.js';

/**
 * The comparison form of a bare JID, for the hot path: lowercased, a trailing `/resource`
 * ignored. Allocates only when the input has an uppercase letter or a resource. No validation.
 */
export function normalizeBareJid(jid: string): string {
  const slash = jid.indexOf('/');
  const bare = slash < 0 ? jid : jid.slice(0, slash);
  for (let i = 0; i < bare.length; i++) {
    const c = bare.charCodeAt(i);
    // A-Z, or anything outside ASCII (whose case mapping toLowerCase knows).
    if ((c >= 65 && c <= 90) || c > 127) return bare.toLowerCase();
  }
  return bare;
}

/** Longest bare JID accepted from people: RFC 7622 section 3 allows 1023 bytes per part. */
const MAX_BARE_JID_LENGTH = 2047;

/**
 * Checks a user's bare JID typed by a person (CLI, admin endpoint): `localpart@domainpart`, both
 * non-empty, no resource, no whitespace or control characters. Returns the comparison form;
 * throws a UsageError naming `field` otherwise.
 */
export function checkBareJid(value: unknown, field: string): string {
  if (typeof value !== 'string' || value === '') throw new UsageError(`${field}: a bare JID (user@domain) is required`, field);
  const shown = JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}...` : value);
  if (value.length > MAX_BARE_JID_LENGTH) throw new UsageError(`${field}: ${shown} is longer than ${MAX_BARE_JID_LENGTH} characters`, field);
  // eslint-disable-next-line no-control-regex
  if (/[\s\u0000-\u001f\u007f]/.test(value)) throw new UsageError(`${field}: ${shown} contains whitespace or control characters`, field);
  if (value.includes('/')) throw new UsageError(`${field}: ${shown} has a resource; give the bare JID (user@domain)`, field);
  const at = value.indexOf('@');
  if (at <= 0 || at === value.length - 1 || value.indexOf('@', at + 1) >= 0) {
    throw new UsageError(`${field}: ${shown} is not a bare JID of the form user@domain`, field);
  }
  return normalizeBareJid(value);
}
