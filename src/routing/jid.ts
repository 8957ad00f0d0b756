/**
 * The domain part of a JID, as the hot path needs it: `user@domain/resource` ⇒ `domain`,
 * lowercased. RFC 7622 section 3.2: the domainpart follows the first `@` (if any, before the first
 * `/`) and ends at the first `/`. Full PRECIS/IDNA preparation is left to the receiving server;
 * the gateway only compares domains, which arrive as A-labels from conforming servers.
 * Returns '' for an unusable JID.
 */
export function jidDomain(jid: string | undefined): string {
  if (!jid) return '';
  // One slice (none for a bare domain JID): this runs twice per relayed stanza.
  let end = jid.indexOf('/');
  if (end < 0) end = jid.length;
  let at = jid.indexOf('@');
  if (at >= end) at = -1;
  const domain = at < 0 && end === jid.length ? jid : jid.slice(at + 1, end);
  if (domain === '' || domain.length > 1023) return '';
  let lower = domain;
  for (let i = 0; i < domain.length; i++) {
    const c = domain.charCodeAt(i);
    if (c >= 65 && c <= 90) {
      lower = domain.toLowerCase();
      break;
    }
  }
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

/** True when the JID is a bare domain (no local part, no resource). */
export function isDomainJid(jid: string | undefined): boolean {
  return !!jid && jid.indexOf('@') < 0 && jid.indexOf('/') < 0;
}
