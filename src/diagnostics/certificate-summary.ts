/**
 * One line about a certificate for the diagnostic commands: chain, which RFC 6125 identifier
 * names the domain (identity.ts), and the validity period.
 */
import type { PeerCertificateResult } from '../tls/peer-certificate.js';

const DAY_MS = 86_400_000;
const VIA: Record<string, string> = { 'dns-id': 'DNS-ID', 'srv-id': 'SRV-ID', 'xmpp-addr': 'XmppAddr', cn: 'CN-ID' };

export interface CertificateSummary {
  /** The certificate could authenticate the domain (chain trusted and a name matches). */
  readonly ok: boolean;
  readonly detail: string;
  /** Whole days until it expires (negative: expired), when there is a certificate. */
  readonly daysLeft: number | null;
}

export function certificateSummary(check: PeerCertificateResult, domain: string, now = new Date()): CertificateSummary {
  if (!check.cert) return { ok: false, detail: `no certificate presented (${check.chainError ?? 'none'})`, daysLeft: null };
  const validTo = new Date(check.cert.validTo);
  const daysLeft = Math.floor((validTo.getTime() - now.getTime()) / DAY_MS);
  const chain = check.chainValid
    ? `chain trusted${check.purposeIgnored ? ' (serverAuth-only purpose accepted)' : ''}`
    : `chain not trusted (${check.chainError ?? 'unknown error'})`;
  const name = check.identity.ok ? `${domain} matched by ${VIA[check.identity.via] ?? check.identity.via} (RFC 6125)` : check.identity.reason;
  const expiry = daysLeft < 0 ? `expired ${validTo.toISOString().slice(0, 10)}` : `valid until ${validTo.toISOString().slice(0, 10)} (${daysLeft} days)`;
  return { ok: check.chainValid && check.identity.ok, detail: `${chain}; ${name}; ${expiry}; issuer ${firstLine(check.cert.issuer)}`, daysLeft };
}

function firstLine(dn: string): string {
  return dn.split('\n').filter((l) => l !== '').join(', ');
}
