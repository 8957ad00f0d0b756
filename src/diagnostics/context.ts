/**
 * The gateway's own machinery, assembled for one diagnostic run (`probe`, `explain`) instead of
 * for `serve`: the same TLS contexts, trust anchors, resolver, limits and dialback verifier, the
 * partner realm over a given partner list, and stream events that the command records instead
 * of logging. Streams built on it negotiate exactly as the running gateway's do.
 */
import { randomBytes } from 'node:crypto';
import type { GatewayConfig } from '../config/schema.js';
import type { GatewayContext, StreamEvents } from '../gateway-context.js';
import { createLogger, type Logger } from '../log.js';
import { DialbackVerifier } from '../negotiation/dialback-verifier.js';
import { Resolver } from '../net/resolver.js';
import { PartnerList } from '../policy/partner-list.js';
import { partnerRealm, type Realm } from '../routing/realm.js';
import { ConnectionLimits } from '../stream/connection-limits.js';
import { TlsContexts } from '../tls/tls-contexts.js';
import { TlsServerUpgrade } from '../tls/server-upgrade.js';

export interface DiagnosticContext {
  readonly ctx: GatewayContext;
  readonly realm: Realm;
  readonly resolver: Resolver;
}

/** The resolver `serve` builds from gateway.yaml (`dns.servers`, `dns.routes`). */
export function configuredResolver(config: GatewayConfig, opts: { routes?: boolean } = {}): Resolver {
  return new Resolver({
    ...(config.dns.servers ? { servers: [...config.dns.servers] } : {}),
    routes: opts.routes === false ? {} : { ...config.dns.routes },
    maxCacheTtlMs: 0,
  });
}

const SILENT: StreamEvents = { opened() {}, refused() {}, stanzaRefused() {}, authenticated() {}, closed() {} };

export async function diagnosticContext(
  config: GatewayConfig,
  partners: PartnerList,
  opts: { events?: StreamEvents; log?: Logger; dialbackSecret?: string } = {},
): Promise<DiagnosticContext> {
  const tls = await TlsContexts.load(config);
  const resolver = configuredResolver(config);
  const ctx: GatewayContext = {
    config,
    partners: () => partners,
    localDomains: new Set(config.localDomains.map((d) => d.domain)),
    tls,
    tlsUpgrade: new TlsServerUpgrade(tls),
    dialbackSecret: opts.dialbackSecret ?? config.dialbackSecret ?? randomBytes(32).toString('hex'),
    limits: new ConnectionLimits({
      connectionLimit: config.connectionLimit,
      partnerConnectionLimit: config.partnerConnectionLimit,
      maxUnauthenticatedPerAddress: config.maxUnauthenticatedConnectionsPerAddress,
      maxDialbackVerifications: config.maxDialbackVerifications,
    }),
    events: opts.events ?? SILENT,
    log: opts.log ?? createLogger('error', () => {}),
    verifier: new DialbackVerifier(() => ctx, resolver, () => config.streamEstablishmentTimeoutSeconds * 1000),
    approvals: { has: () => false },
    dialbackErrorsSupported: new Set(),
  };
  const sink = { deliver() {}, bounce() {} };
  const realm = partnerRealm({ localDomains: ctx.localDomains, partners: ctx.partners, defaultDomain: tls.defaultDomain, sink });
  return { ctx, realm, resolver };
}

