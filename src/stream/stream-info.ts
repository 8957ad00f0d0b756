/**
 * The status contract: what the gateway tells the admin endpoint (and `xmpp-gateway status`)
 * about one live s2s stream. The stream registry produces these snapshots; the admin server
 * serialises them as they are, so field names here are the JSON keys of `GET /status`
 * (`{"streams":[{"partner":"a.example","direction":"inbound","localDomain":"gw.example",...}]}`).
 * Keep the names; add fields rather than renaming them.
 */

/** s2s streams are one-way (RFC 6120 section 2.5): inbound = the peer connected to us. */
export type StreamDirection = 'inbound' | 'outbound';

/** How the stream's remote domain was authenticated; 'none' until it is (or for verify-only streams). */
export type StreamAuth = 'sasl-external' | 'dialback' | 'none';

export interface StreamInfo {
  /** Gateway-local stream id (stable for the stream's life; not the XMPP stream id). */
  id: string;
  /** Identity (primary domain) of the allowed partner, 'internal' for the internal server, or null before it is known. */
  partner: string | null;
  /** 'partners': a stream with a partner server; 'internal': with the organisation's own server. */
  realm: 'partners' | 'internal';
  direction: StreamDirection;
  /** 'dialback-verify': a short-lived stream that only carries `db:verify` (XEP-0220 section 2.3). */
  purpose: 'stream' | 'dialback-verify';
  /** Our side's domain: the header `to` (inbound) or `from` (outbound). */
  localDomain: string | null;
  /** The peer's domain: the header `from` (inbound) or `to` (outbound). */
  remoteDomain: string | null;
  /** Every remote domain authenticated on this stream (a partner's AdditionalDomains each authenticate). */
  authenticatedDomains: string[];
  /** Negotiated TLS protocol version, e.g. 'TLSv1.3'; null on plain TCP. */
  tls: string | null;
  auth: StreamAuth;
  /** XEP-0198 acknowledgements are enabled on this stream. */
  acks: boolean;
  /** Peer address as `host:port` (`[v6]:port` for IPv6). */
  remoteAddress: string;
  ageSeconds: number;
  stanzasIn: number;
  stanzasOut: number;
  bytesIn: number;
  bytesOut: number;
}

/** What the admin server and the metrics need from the live stream registry: a snapshot. */
export interface StreamRegistryView {
  list(): StreamInfo[];
}
