/**
 * Identity check of a peer's certificate against an XMPP domain, for server-to-server streams.
 *
 * References:
 *   RFC 6120 section 13.7.2 (certificate validation for XMPP: reference identifier = the peer's
 *     domain; DNS-ID, SRV-ID and XmppAddr as presented identifiers)
 *   RFC 6125 section 6 (matching rules: 6.2 domain names and IDNA, 6.4.3 wildcards, 6.4.4 CN-ID
 *     only as a last resort), section 7.2 (wildcard risks)
 *   RFC 4985 (SRV-ID: id-on-dnsSRV, "_Service.Name")
 *   XEP-0178 section 3 (s2s: the reference identifier is the `from` of the stream header)
 *   RFC 9525 (successor of RFC 6125; removes CN-ID entirely, hence CN is opt-in here)
 *
 * Node renders `X509Certificate.subjectAltName` as a `, `-separated list (verified on Node 20.20):
 *   DNS:example.org, DNS:*.example.org, othername:XmppAddr:example.org,
 *   othername:SRVName:_xmpp-server.example.org, URI:xmpp:example.org, IP Address:127.0.0.1
 * Since CVE-2021-44532 (Node 17.3 / 16.14 / 12.22.9) a value with a character that would make the
 * list ambiguous (`,` `"` `\` `'`, control characters) is printed as a JSON string; for otherName the
 * JSON string includes the kind: `DNS:"a\u002cb.example"`, `othername:"XmppAddr:q\"x.example"`.
 * An otherName of a kind or string type Node does not know prints as `othername:<unsupported>`.
 */
import type { X509Certificate } from 'node:crypto';
import { domainToASCII } from 'node:url';

/** The identifiers a certificate presents, grouped by RFC 6125 type. */
export interface CertificateNames {
  /** SAN dNSName values, as presented (possibly with a `*.` wildcard label). */
  readonly dnsIds: string[];
  /** SAN SRVName values for the `_xmpp-server` service, without the `_xmpp-server.` prefix. */
  readonly srvIds: string[];
  /** SAN XmppAddr values that are bare domains (no `@`, no `/`). */
  readonly xmppAddrs: string[];
  /** Subject CN values (all of them, in certificate order). */
  readonly commonNames: string[];
  /**
   * Identifiers of the RFC 6125 section 6.4.4 kinds that can never match an XMPP server domain:
   * SRV-IDs of other services (`_xmpp-client.example.org`), XmppAddrs of users or resources, URI-IDs.
   * Kept because their mere presence rules out the CN fallback.
   */
  readonly otherIds: string[];
}

export type IdentityVia = 'dns-id' | 'srv-id' | 'xmpp-addr' | 'cn';

export type IdentityResult =
  | { readonly ok: true; readonly via: IdentityVia }
  | { readonly ok: false; readonly reason: string };

export interface MatchOptions {
  /**
   * Accept the subject CN when the certificate has no DNS-ID, SRV-ID, URI-ID or XmppAddr at all
   * (RFC 6125 section 6.4.4). Off by default: RFC 9525 forbids CN-IDs and Prosody dropped them in 2024.
   */
  allowCommonName?: boolean;
}

/** RFC 6120 section 13.7.1.2.1 / RFC 4985: the service label that may authenticate a *server*. */
const XMPP_SERVER_SERVICE = '_xmpp-server';

const LDH_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

/** Extracts the presented identifiers from a certificate. */
export function certificateNames(cert: X509Certificate): CertificateNames {
  const names: CertificateNames = { dnsIds: [], srvIds: [], xmppAddrs: [], commonNames: [], otherIds: [] };
  for (const { kind, value } of parseSubjectAltName(cert.subjectAltName ?? '')) {
    if (kind === 'DNS') {
      names.dnsIds.push(value);
    } else if (kind === 'othername') {
      const colon = value.indexOf(':');
      const type = colon < 0 ? value : value.slice(0, colon);
      const v = colon < 0 ? '' : value.slice(colon + 1);
      if (type === 'SRVName') {
        // RFC 4985 section 2: "_Service.Name"; the service label is compared case-insensitively (it is a DNS label).
        const dot = v.indexOf('.');
        if (dot > 0 && v.slice(0, dot).toLowerCase() === XMPP_SERVER_SERVICE) names.srvIds.push(v.slice(dot + 1));
        else names.otherIds.push(`SRVName:${v}`);
      } else if (type === 'XmppAddr') {
        // RFC 6120 section 13.7.1.4 allows any JID here; only a bare domain names a *server*.
        if (v.includes('@') || v.includes('/')) names.otherIds.push(`XmppAddr:${v}`);
        else names.xmppAddrs.push(v);
      }
      // `<unsupported>` and other otherName kinds (UPN, SmtpUTF8Mailbox, ...) are not RFC 6125 identifiers.
    } else if (kind === 'URI') {
      names.otherIds.push(`URI:${value}`);
    }
    // email, IP Address, DirName, Registered ID: not identifiers RFC 6125 section 6.4.4 counts.
  }
  names.commonNames.push(...subjectCommonNames(cert));
  return names;
}

/**
 * Splits Node's SAN rendering into (kind, value) pairs, decoding the JSON-quoted form. Parsing stops at
 * the first entry it cannot read: everything after it could be misaligned, and a name we fail to see
 * only ever makes a match *fail*.
 * @internal exported for tests
 */
export function parseSubjectAltName(text: string): { kind: string; value: string }[] {
  const out: { kind: string; value: string }[] = [];
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(':', i);
    if (colon < 0) break;
    const kind = text.slice(i, colon);
    let value: string;
    let end: number;
    if (text[colon + 1] === '"') {
      end = endOfJsonString(text, colon + 1);
      if (end < 0) break;
      try {
        value = JSON.parse(text.slice(colon + 1, end)) as string;
      } catch {
        break;
      }
    } else {
      // Unquoted values never contain ',' (Node quotes those), so ", " is an unambiguous separator.
      const sep = text.indexOf(', ', colon + 1);
      end = sep < 0 ? text.length : sep;
      value = text.slice(colon + 1, end);
    }
    out.push({ kind, value });
    if (end >= text.length) break;
    if (text.slice(end, end + 2) !== ', ') break;
    i = end + 2;
  }
  return out;
}

/** Index just past the closing quote of the JSON string starting at `start`, or -1. */
function endOfJsonString(text: string, start: number): number {
  for (let j = start + 1; j < text.length; j++) {
    const c = text[j];
    if (c === '\\') j++;
    else if (c === '"') return j + 1;
  }
  return -1;
}

function subjectCommonNames(cert: X509Certificate): string[] {
  // toLegacyObject() reads the X509_NAME entries directly (no string escaping to undo) and turns a
  // repeated attribute into an array.
  const cn = (cert.toLegacyObject().subject as unknown as Record<string, unknown> | undefined)?.['CN'];
  if (typeof cn === 'string') return [cn];
  if (Array.isArray(cn)) return cn.filter((v): v is string => typeof v === 'string');
  return [];
}

/**
 * Lowercase A-label form of a domain (RFC 6125 section 6.2.1: compare after IDNA ToASCII,
 * case-insensitively), or null when the text is not a plausible DNS domain name.
 * ASCII input is only lowercased: the WHATWG host parser behind `domainToASCII` would also
 * percent-decode and rewrite IPv4-looking names (`ex%61mple.org`, `0x7f.1`), and a presented
 * identifier must not match through such rewriting.
 */
export function toALabel(name: string): string | null {
  const text = name.endsWith('.') ? name.slice(0, -1) : name; // RFC 7622 section 3.2: a final dot is not significant
  let ascii: string;
  if (/^[\x00-\x7f]*$/.test(text)) {
    ascii = text.toLowerCase();
  } else {
    if (/[\x00-\x2c\x2f\x3a-\x40\x5b-\x60\x7b-\x7f]/.test(text)) return null; // ASCII other than LDH and '.'
    ascii = domainToASCII(text);
  }
  if (ascii === '' || ascii.length > 253) return null;
  const labels = ascii.split('.');
  if (!labels.every((l) => LDH_LABEL.test(l))) return null;
  // RFC 3696 section 2: an all-numeric last label is an IP address, not a domain.
  if (/^[0-9]+$/.test(labels[labels.length - 1] ?? '')) return null;
  return ascii;
}

/**
 * RFC 6125 section 6.4.1 (exact) and 6.4.3 (wildcard) matching of one presented DNS name.
 * The wildcard must be the complete left-most label and stands for exactly one label, so
 * `*.example.org` matches `a.example.org` but neither `example.org` nor `a.b.example.org`;
 * partial-label wildcards (`f*.example.org`) never match (RFC 6125 section 7.2 advises against
 * them, and RFC 9525 section 6.3 forbids them). The part after `*.` must have at least two labels,
 * so a certificate for `*.org` cannot speak for every `.org` domain (RFC 6125 section 7.2).
 */
function dnsNameMatches(presented: string, reference: string, allowWildcard: boolean): boolean {
  if (allowWildcard && presented.startsWith('*.')) {
    const suffix = toALabel(presented.slice(2));
    if (suffix === null || !suffix.includes('.')) return false;
    const dot = reference.indexOf('.');
    return dot > 0 && reference.slice(dot + 1) === suffix;
  }
  return toALabel(presented) === reference;
}

/**
 * Decides whether `names` authenticate `domain` (the peer's XMPP domain, RFC 6120 section 13.7.2.1:
 * the stream header `from` inbound, the domain we connect to outbound; never an SRV target).
 * Order: DNS-ID, SRV-ID, XmppAddr, then CN-ID only if allowed and no SAN identifier exists.
 */
export function matchesDomain(names: CertificateNames, domain: string, opts: MatchOptions = {}): IdentityResult {
  const reference = toALabel(domain);
  if (reference === null) return { ok: false, reason: `'${domain}' is not a valid reference identifier` };

  if (names.dnsIds.some((id) => dnsNameMatches(id, reference, true))) return { ok: true, via: 'dns-id' };
  // RFC 6125 section 6.5.1: the service must be xmpp-server (filtered by certificateNames); the
  // name part follows the DNS-ID rules, wildcard included.
  if (names.srvIds.some((id) => dnsNameMatches(id, reference, true))) return { ok: true, via: 'srv-id' };
  // RFC 6120 section 13.7.1.4: XmppAddr is a JID, compared as a domainpart; no wildcard semantics.
  if (names.xmppAddrs.some((id) => dnsNameMatches(id, reference, false))) return { ok: true, via: 'xmpp-addr' };

  const cnMatches = names.commonNames.some((cn) => dnsNameMatches(cn, reference, false));
  const hasSanIds = names.dnsIds.length + names.srvIds.length + names.xmppAddrs.length + names.otherIds.length > 0;
  if (cnMatches) {
    // RFC 6125 section 6.4.4: a CN-ID may be checked only when the certificate has no DNS-ID, SRV-ID,
    // URI-ID or application-specific identifier; otherwise the CA vouched for those names only.
    if (hasSanIds) {
      return { ok: false, reason: `only the subject CN names ${reference}, and the certificate has subjectAltName identifiers (RFC 6125 6.4.4)` };
    }
    if (opts.allowCommonName === true) return { ok: true, via: 'cn' };
    return { ok: false, reason: `only the subject CN names ${reference}, and CN-IDs are not allowed for this peer` };
  }
  return { ok: false, reason: `certificate does not name ${reference} (${describe(names)})` };
}

function describe(names: CertificateNames): string {
  const parts = [
    names.dnsIds.length ? `DNS: ${names.dnsIds.join(' ')}` : '',
    names.srvIds.length ? `SRV: ${names.srvIds.join(' ')}` : '',
    names.xmppAddrs.length ? `XmppAddr: ${names.xmppAddrs.join(' ')}` : '',
    names.otherIds.length ? `other: ${names.otherIds.join(' ')}` : '',
    names.commonNames.length ? `CN: ${names.commonNames.join(' ')}` : '',
  ].filter((p) => p !== '');
  return parts.length ? parts.join('; ') : 'no names';
}
