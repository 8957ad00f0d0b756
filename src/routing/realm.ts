/**
 * Realms: the two sides of the gateway, served by the same stream code (docs/design.md section 1).
 *
 *  - The **partner realm** faces the public network: peers are the allowed partners (each under
 *    its own record), we speak as our local domains and answer dialback for them.
 *  - The **internal realm** faces the organisation's own XMPP server: its one peer is that server
 *    (its domains are our local domains), and we speak *as the partners' domains*, answering the
 *    internal server's dialback verifications for them. Its policy is one synthetic record:
 *    dialback only, STARTTLS when offered (required with `internal.requireTls`), never counted
 *    against a partner's ConnectionLimit.
 *
 * A stream asks its realm three questions: may I speak as this domain, which record governs this
 * peer domain, and where do authenticated stanzas go. Nothing else differs between the sides.
 */
import type { InboundStanzaSink } from '../gateway-context.js';
import type { PartnerList } from '../policy/partner-list.js';
import type { PartnerRecord } from '../policy/types.js';

export type RealmName = 'partners' | 'internal';

/** The label internal streams carry in status, logs and metrics instead of a partner Identity. */
export const INTERNAL_PEER = 'internal';

export interface Realm {
  readonly name: RealmName;
  /** Whether streams of this realm may speak as `domain` (our header `from` / the peer's `to`). */
  speaksAs(domain: string): boolean;
  /** The record that governs peer `domain`, or undefined when that domain may not connect here. */
  peerFor(domain: string): PartnerRecord | undefined;
  /** Why `domain` may not be a peer here: the rule and the text of the refusal. */
  notAPeer(domain: string): { readonly rule: string; readonly text: string };
  /** The domain a legacy header without `to` addresses (COMPAT(gmail)); undefined ⇒ refused. */
  readonly defaultDomain: string | undefined;
  /** Whether streams count against the peer record's ConnectionLimit. */
  readonly countsAgainstPartnerLimits: boolean;
  /** Where authenticated stanzas received on this realm's streams go. */
  sink: InboundStanzaSink;
}

/** The public side: allowed partners in, our local domains out. */
export function partnerRealm(opts: {
  localDomains: ReadonlySet<string>;
  partners: () => PartnerList;
  defaultDomain: string;
  sink: InboundStanzaSink;
}): Realm {
  const { localDomains, partners } = opts;
  return {
    name: 'partners',
    speaksAs: (domain) => localDomains.has(domain),
    peerFor: (domain) => (localDomains.has(domain) ? undefined : partners().partnerFor(domain)),
    notAPeer: (domain) =>
      localDomains.has(domain)
        ? { rule: 'from', text: `${domain} is a domain of this gateway, not a partner` }
        : { rule: 'AllowedPartner', text: `${domain} is not an allowed partner of this gateway` },
    defaultDomain: opts.defaultDomain,
    countsAgainstPartnerLimits: true,
    sink: opts.sink,
  };
}

/** The inside: the internal server's domains (our local domains) in, the partners' domains out. */
export function internalRealm(opts: {
  localDomains: ReadonlySet<string>;
  partners: () => PartnerList;
  server: { readonly host: string; readonly port: number };
  requireTls: boolean;
  sink: InboundStanzaSink;
}): Realm {
  const { localDomains, partners } = opts;
  const record: PartnerRecord = Object.freeze({
    Identity: INTERNAL_PEER,
    AdditionalDomains: Object.freeze([]) as readonly string[],
    ConnectionLimit: null,
    Description: 'the internal XMPP server',
    // The internal server is ours: idle streams close after streamInactivityTimeoutSeconds.
    EnableKeepAlive: false,
    PartnerType: 'Federated',
    // Outbound streams and dialback verifications go to internal.server, never to DNS.
    ProxyFqdn: formatHostPort(opts.server.host, opts.server.port),
    // We hold no certificate for the partner domains we speak as: dialback authenticates the link.
    SaslNegotiation: 'NotSupported',
    SupportDialbackNegotiation: true,
    TlsNegotiation: opts.requireTls ? 'Required' : 'Optional',
  });
  return {
    name: 'internal',
    speaksAs: (domain) => !localDomains.has(domain) && partners().partnerFor(domain) !== undefined,
    peerFor: (domain) => (localDomains.has(domain) ? record : undefined),
    notAPeer: (domain) => ({ rule: 'internal', text: `${domain} is not a domain of the internal server` }),
    defaultDomain: undefined,
    countsAgainstPartnerLimits: false,
    sink: opts.sink,
  };
}

function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
