/**
 * The allowed-partner record: property names, types and defaults follow the Lync / Skype for
 * Business `New-CsXmppAllowedPartner` cmdlet (Microsoft's cmdlet documentation), so an admin can read one from the
 * other. The same PascalCase names are used in partners.yaml, in JSON output and on the command
 * line (`-TlsNegotiation` / `--tls-negotiation`).
 */

export const TLS_NEGOTIATION = ['Required', 'Optional', 'NotSupported'] as const;
export const SASL_NEGOTIATION = ['Required', 'Optional', 'NotSupported'] as const;
export const PARTNER_TYPE = ['Federated', 'PublicVerified', 'PublicUnverified'] as const;

export type Negotiation = (typeof TLS_NEGOTIATION)[number];
export type PartnerType = (typeof PARTNER_TYPE)[number];

export interface PartnerRecord {
  /** Primary domain (A-label, lowercase). Unique across all partners' domains. */
  readonly Identity: string;
  /** More domains of the same partner; exact names, no implicit subdomains. */
  readonly AdditionalDomains: readonly string[];
  /** Streams per direction across all the partner's domains; null ⇒ gateway's partnerConnectionLimit. */
  readonly ConnectionLimit: number | null;
  readonly Description: string | null;
  readonly EnableKeepAlive: boolean;
  readonly PartnerType: PartnerType;
  /** host[:port] used instead of DNS SRV for outbound and dialback verification connections. */
  readonly ProxyFqdn: string | null;
  readonly SaslNegotiation: Negotiation;
  readonly SupportDialbackNegotiation: boolean;
  readonly TlsNegotiation: Negotiation;
}

export type PropertyName = keyof PartnerRecord;

/** Canonical property order: Identity first, then alphabetical, as PowerShell lists them. */
export const PROPERTY_NAMES: readonly PropertyName[] = [
  'Identity',
  'AdditionalDomains',
  'ConnectionLimit',
  'Description',
  'EnableKeepAlive',
  'PartnerType',
  'ProxyFqdn',
  'SaslNegotiation',
  'SupportDialbackNegotiation',
  'TlsNegotiation',
];

/** Defaults documented on the New-CsXmppAllowedPartner page. */
export const RECORD_DEFAULTS: Omit<PartnerRecord, 'Identity'> = Object.freeze({
  AdditionalDomains: Object.freeze([]) as readonly string[],
  ConnectionLimit: null,
  Description: null,
  EnableKeepAlive: true,
  PartnerType: 'PublicUnverified',
  ProxyFqdn: null,
  SaslNegotiation: 'Required',
  SupportDialbackNegotiation: true,
  TlsNegotiation: 'Required',
});

/** Largest ConnectionLimit: the cmdlet's type is System.UInt32. */
export const UINT32_MAX = 4_294_967_295;

/** How AdditionalDomains is changed: PowerShell's PSListModifier (replace, @{Add=}, @{Remove=}, $Null). */
export type ListModifier =
  | { readonly replace: readonly string[] }
  | { readonly add: readonly string[]; readonly remove: readonly string[] };

/** A typed, validated set of property changes (what New/Set were asked to do). */
export interface PartnerChanges {
  AdditionalDomains?: ListModifier;
  ConnectionLimit?: number | null;
  Description?: string | null;
  EnableKeepAlive?: boolean;
  PartnerType?: PartnerType;
  ProxyFqdn?: string | null;
  SaslNegotiation?: Negotiation;
  SupportDialbackNegotiation?: boolean;
  TlsNegotiation?: Negotiation;
}

export function partnerDomains(record: PartnerRecord): string[] {
  return [record.Identity, ...record.AdditionalDomains];
}
