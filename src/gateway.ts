/**
 * The composition root: `xmpp-gateway serve`. The order of start-up is visible here:
 * config ⇒ TLS material (dev certificates created on first start) ⇒ partner list (watched) ⇒
 * limits, metrics, services ⇒ s2s listeners ⇒ admin listener ⇒ timers and signals.
 */
import { access } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import type { Socket } from 'node:net';
import { GatewayMetrics, NO_PARTNER } from './admin/metrics.js';
import { startAdminServer, type AdminServer } from './admin/admin-server.js';
import { loadGatewayConfig } from './config/load.js';
import type { GatewayConfig } from './config/schema.js';
import { ConfigError, StreamError } from './errors.js';
import type { GatewayContext, StreamEvents } from './gateway-context.js';
import { createLogger, type Logger } from './log.js';
import { DialbackVerifier } from './negotiation/dialback-verifier.js';
import { listen, type Listener } from './net/listener.js';
import { Resolver } from './net/resolver.js';
import { PartnerReloader } from './policy/partner-reloader.js';
import { PartnerStore } from './policy/partner-store.js';
import { LocalResponder } from './routing/local-responder.js';
import { OutboundPool } from './routing/outbound-pool.js';
import { ConnectionLimits } from './stream/connection-limits.js';
import { InboundStream } from './stream/inbound-stream.js';
import { now, type S2SStream } from './stream/s2s-stream.js';
import { StreamSupervisor } from './stream/stream-supervisor.js';
import { ensureDevCertificates } from './tls/cert-factory.js';
import { TlsContexts } from './tls/tls-contexts.js';
import { TlsServerUpgrade } from './tls/server-upgrade.js';
import { randomBytes } from 'node:crypto';

/** How long peers get to answer our closing tag at shutdown before their sockets are destroyed. */
const SHUTDOWN_GRACE_MS = 500;

export interface Gateway {
  readonly config: GatewayConfig;
  readonly listeners: readonly Listener[];
  readonly admin: AdminServer | null;
  readonly streams: ReadonlySet<S2SStream>;
  readonly reloader: PartnerReloader;
  readonly metrics: GatewayMetrics;
  close(): Promise<void>;
}

/** `xmpp-gateway serve`: runs until SIGINT/SIGTERM; SIGHUP reloads the partner list. */
export async function serve(configPath: string): Promise<number> {
  const log = createLogger();
  const config = await loadGatewayConfig(configPath, (msg) => log.warn('config.warning', { message: msg }));
  const gateway = await startGateway(config, log);
  process.on('SIGHUP', () => {
    log.info('partners.reload-requested', { by: 'SIGHUP' });
    void gateway.reloader.reload(true);
  });
  return new Promise((resolve) => {
    const stop = (signal: string) => {
      log.info('gateway.stopping', { signal });
      void gateway.close().then(() => resolve(0));
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
}

export async function startGateway(config: GatewayConfig, log: Logger = createLogger()): Promise<Gateway> {
  await ensureCertificates(config, log);
  const tls = await TlsContexts.load(config);

  const store = new PartnerStore(config.partners);
  const reloader = new PartnerReloader(store, config.localStore, config.reloadDebounceMs);
  await reloader.start();

  const streams = new Set<S2SStream>();
  const liveStreams = { list: () => [...streams].filter((s) => !s.closed).map((s) => s.info()) };
  const metrics = new GatewayMetrics({ streams: liveStreams });
  const limits = new ConnectionLimits({
    connectionLimit: config.connectionLimit,
    partnerConnectionLimit: config.partnerConnectionLimit,
    maxUnauthenticatedPerAddress: config.maxUnauthenticatedConnectionsPerAddress,
    maxDialbackVerifications: config.maxDialbackVerifications,
    maxUnauthenticated: config.maxUnauthenticatedConnections,
    shed: (oldest, rule, text) => {
      if (oldest instanceof InboundStream) oldest.refuse(oldest.partner?.Identity ?? null, 'policy-violation', rule, text);
    },
  });
  const resolver = new Resolver({ ...(config.dns.servers ? { servers: [...config.dns.servers] } : {}), routes: { ...config.dns.routes } });
  const events = streamEvents(streams, metrics, log);

  let pool: OutboundPool;
  const ctx: GatewayContext = {
    config,
    partners: () => reloader.current,
    localDomains: new Set(config.localDomains.map((d) => d.domain)),
    tls,
    tlsUpgrade: new TlsServerUpgrade(tls),
    dialbackSecret: config.dialbackSecret ?? randomBytes(32).toString('hex'),
    limits,
    events,
    log,
    verifier: new DialbackVerifier(() => ctx, resolver, () => config.streamEstablishmentTimeoutSeconds * 1000),
    inbound: new LocalResponder(() => pool, log),
    dialbackErrorsSupported: new Set(),
  };
  pool = new OutboundPool(ctx, resolver);

  const supervisor = new StreamSupervisor(streams, config, limits, events.refused);
  metrics.partners.set(reloader.current.size);
  reloader.on('reloaded', (list) => {
    metrics.reloads.inc(['ok']);
    metrics.partners.set(list.size);
    log.info('partners.reloaded', { partners: list.size });
    supervisor.recheck(list);
  });
  reloader.on('failed', (err) => {
    metrics.reloads.inc(['error']);
    // The previous list stays in force (design.md section 6); the message names file, line, field.
    log.error('partners.reload-failed', { error: err.message });
  });

  const listeners: Listener[] = [];
  let admin: AdminServer | null = null;
  try {
    for (const l of config.listen) {
      listeners.push(await listen(l.host, l.port, (socket: Socket) => new InboundStream(socket, ctx, l.directTls)));
      log.info('gateway.listening', { host: l.host, port: listeners[listeners.length - 1]!.port, directTls: l.directTls, domains: [...ctx.localDomains] });
    }
    admin = await startAdmin();
  } catch (err) {
    // A port that cannot be bound must not leave the others open (the process would hang).
    reloader.stop();
    await Promise.all(listeners.map((l) => l.close()));
    throw err instanceof Error && 'code' in err && (err as NodeJS.ErrnoException).code === 'EADDRINUSE'
      ? new ConfigError(`cannot listen: ${(err as Error).message}`, config.file, undefined, 'listen')
      : err;
  }

  function startAdmin(): Promise<AdminServer> | null {
    return config.admin
    ? startAdminServer({
        host: config.admin.listen.host,
        port: config.admin.listen.port,
        streams: liveStreams,
        metrics,
        partnersInfo: () => ({ count: reloader.current.size, file: config.partners, lastReloadError: reloader.lastError?.message ?? null }),
        reload: async () => {
          await reloader.reload(true);
          return reloader.lastError ? { ok: false, error: reloader.lastError.message } : { ok: true };
        },
      })
    : null;
  }
  if (admin) log.info('admin.listening', { host: admin.host, port: admin.port });
  supervisor.start();

  return {
    config,
    listeners,
    admin,
    streams,
    reloader,
    metrics,
    async close() {
      supervisor.stop();
      reloader.stop();
      // Stop accepting, then end every stream (RFC 6120 section 4.9.3.17 system-shutdown); the
      // listeners finish closing once their connections are gone.
      const stopped = Promise.all(listeners.map((l) => l.close()));
      // Outbound streams are in `streams` too (registered when they open).
      for (const s of streams) s.close(new StreamError('system-shutdown', 'the gateway is shutting down'));
      const grace = setTimeout(() => {
        for (const s of streams) s.destroy();
      }, SHUTDOWN_GRACE_MS);
      await stopped;
      clearTimeout(grace);
      await admin?.close();
    },
  };
}

/** Streams report here; logs and metrics are labelled by partner (never by an unvetted domain). */
function streamEvents(streams: Set<S2SStream>, metrics: GatewayMetrics, log: Logger): StreamEvents {
  const events: StreamEvents = {
    opened(stream) {
      streams.add(stream);
      // Drops the transport decides (unread output, failed TLS handshake) are refusals too.
      stream.reportRefusal = (rule, condition, text) => events.refused(stream, stream.info().partner, rule, condition, text);
    },
    refused(stream, partner, rule, condition, text) {
      metrics.refusals.inc([partner ?? NO_PARTNER, rule, condition]);
      log.info('stream.refused', { stream: stream.connectionId, direction: stream.direction, partner, rule, condition, text });
    },
    authenticated(stream, partner, domain, method) {
      metrics.negotiation.labels(partner, stream.direction).observe((now() - stream.createdAt) / 1000);
      if (!stream.meters) {
        stream.meters = { stanzas: metrics.stanzas.labels(partner, stream.direction), bytes: metrics.bytes.labels(partner, stream.direction) };
        stream.meters.bytes.inc(stream.direction === 'inbound' ? stream.bytesIn : stream.bytesOut);
      }
      log.info('stream.authenticated', { stream: stream.connectionId, direction: stream.direction, partner, domain, method, tls: stream.tlsVersion });
    },
    closed(stream) {
      streams.delete(stream);
      const info = stream.info();
      metrics.streamsClosed.inc([info.partner ?? NO_PARTNER, stream.direction, stream.closeReason?.condition ?? 'none']);
      log.debug('stream.closed', { stream: stream.connectionId, partner: info.partner, condition: stream.closeReason?.condition });
    },
  };
  return events;
}

/**
 * Dev certificates on first start (issue 2): a local domain whose certificate and key are both
 * missing, and whose paths are `<dir>/<domain>.crt|.key`, gets one from a dev CA in `<dir>`.
 */
async function ensureCertificates(config: GatewayConfig, log: Logger): Promise<void> {
  for (const local of config.localDomains) {
    const [hasCert, hasKey] = await Promise.all([exists(local.certificate), exists(local.privateKey)]);
    if (hasCert && hasKey) continue;
    const dir = dirname(local.certificate);
    const conventional = basename(local.certificate) === `${local.domain}.crt` && local.privateKey === `${dir}/${local.domain}.key`;
    if (hasCert || hasKey || !conventional) {
      throw new ConfigError(`${hasCert ? local.privateKey : local.certificate} not found`, config.file, undefined, 'localDomains');
    }
    const created = await ensureDevCertificates(dir, [local.domain]);
    log.warn('tls.dev-certificate-created', { domain: local.domain, dir, created: created.created, caCreated: created.caCreated, note: 'development certificate from a local dev CA; replace it for production' });
  }
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(() => true, () => false);
}
