/**
 * What a stream needs from the running gateway, passed in explicitly (no globals): the policy
 * snapshot, TLS material, limits, the dialback secret, and the services streams call into.
 * gateway.ts builds the one instance.
 */
import type { GatewayConfig } from './config/schema.js';
import type { Logger } from './log.js';
import type { PartnerList } from './policy/partner-list.js';
import type { ApprovalCheck } from './routing/decide.js';
import type { Realm } from './routing/realm.js';
import type { StanzaErrorCondition } from './routing/stanza-errors.js';
import type { ConnectionLimits } from './stream/connection-limits.js';
import type { S2SStream } from './stream/s2s-stream.js';
import type { StreamAuth } from './stream/stream-info.js';
import type { TlsContexts } from './tls/tls-contexts.js';
import type { TlsServerUpgrade } from './tls/server-upgrade.js';
import type { Element } from './xml/ltx.js';

/** Events a stream reports; gateway.ts turns them into logs and metrics, per partner. */
export interface StreamEvents {
  opened(stream: S2SStream): void;
  /** A refusal (stream error, SASL failure or dialback error) and the rule that caused it. */
  refused(stream: S2SStream, partner: string | null, rule: string, condition: string, text: string): void;
  /** The hot-path decision answered a stanza with an error instead of delivering it. */
  stanzaRefused(stream: S2SStream, partner: string, rule: string, condition: string, text: string): void;
  authenticated(stream: S2SStream, partner: string, domain: string, method: StreamAuth): void;
  closed(stream: S2SStream): void;
}

/** Verifies a dialback key with the partner's authoritative server (XEP-0220 section 2.1.2). */
export interface DialbackVerification {
  verify(request: {
    /** The realm of the stream that asks: its record says where the authoritative server is. */
    realm: Realm;
    localDomain: string;
    remoteDomain: string;
    streamId: string;
    key: string;
    /** Aborted when the stream that asked closes: the verification connection is dropped then. */
    signal?: AbortSignal;
  }): Promise<{ result: 'valid' | 'invalid' } | { result: 'error'; condition: 'remote-server-not-found' | 'remote-connection-failed' | 'remote-server-timeout' | 'resource-constraint' | 'policy-violation'; text: string }>;
}

/**
 * Where authenticated stanzas go once the hot-path decision let them through (routing/router.ts
 * relays them; routing/local-responder.ts answers them when no internal server is configured).
 */
export interface InboundStanzaSink {
  /** `raw` is the stanza's exact source text when it can be forwarded unchanged. */
  deliver(stanza: Element, raw: string | undefined, from: string, to: string, stream: S2SStream): void;
  /** The decision refused the stanza: answer its sender with a stanza error. */
  bounce(stanza: Element, from: string, to: string, condition: StanzaErrorCondition, text: string, stream: S2SStream): void;
}

export interface GatewayContext {
  readonly config: GatewayConfig;
  /** The partner snapshot in force; read once per decision, never cached across awaits. */
  partners(): PartnerList;
  readonly localDomains: ReadonlySet<string>;
  readonly tls: TlsContexts;
  /** Server-side STARTTLS handshakes (client certificates verified by OpenSSL). */
  readonly tlsUpgrade: TlsServerUpgrade;
  readonly dialbackSecret: string;
  readonly limits: ConnectionLimits;
  readonly events: StreamEvents;
  readonly log: Logger;
  readonly verifier: DialbackVerification;
  /** Trust-tier approvals (docs/design.md section 5 step 4), read on the hot path. */
  readonly approvals: ApprovalCheck;
  /** Domains whose servers advertised dialback `<errors/>` (XEP-0220 section 2.4.2) to us. */
  readonly dialbackErrorsSupported: Set<string>;
}
