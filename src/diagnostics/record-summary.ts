import type { PartnerRecord } from '../policy/types.js';

/** The negotiation properties of a record, as the diagnostic commands print them. */
export function recordSummary(p: PartnerRecord): string {
  return [
    `TlsNegotiation ${p.TlsNegotiation}`,
    `SaslNegotiation ${p.SaslNegotiation}`,
    `SupportDialbackNegotiation ${p.SupportDialbackNegotiation ? 'True' : 'False'}`,
    ...(p.ProxyFqdn ? [`ProxyFqdn ${p.ProxyFqdn}`] : []),
  ].join(', ');
}
