/**
 * The composition root: `xmpp-gateway serve`. The order of start-up is visible here:
 * config ⇒ TLS material (dev certificates created on first start) ⇒ partner list (watched) ⇒
 * limits, metrics, services ⇒ s2s listeners ⇒ admin listener ⇒ timers and signals.
 */
import { access } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import type { Socket } from 'node:net';
import { GatewayMetrics, NO_PARTNER } from './admin/metrics.js';
import { PoolNode } from './cluster/pool-node.js';
import { PoolApprovalStore } from './cluster/pool-approvals.js';
import { PoolBarrierAnswers } from './cluster/barrier-answers.js';
import { openDialbackSecret } from './cluster/shared-secret.js';
import { startPoolLimits } from './cluster/pool-limits.js';
import { startAdminServer, type AdminServer } from './admin/admin-server.js';
import { adminExtras, auditReloads, checkAdminTls } from './admin/admin-setup.js';
import { AuditLog } from './admin/audit.js';
import { PanelFeed } from './admin/panel/feed.js';
import { RefusalLog } from './admin/refusal-log.js';
import { loadGatewayConfig } from './config/load.js';
import type { GatewayConfig } from './config/schema.js';
import { ConfigError, StreamError } from './errors.js';
import type { GatewayContext, StreamEvents } from './gateway-context.js';
import { createLogger, type Logger } from './log.js';
import { DialbackVerifier } from './negotiation/dialback-verifier.js';
import { listen, type Listener } from './net/listener.js';
import { DnsView } from './net/dns-view.js';
import { Resolver } from './net/resolver.js';
import { partnerSourceFor } from './cluster/central-source.js';
import { PartnerReloader } from './policy/partner-reloader.js';
import { FileApprovalStore } from './policy/approvals.js';
import { LocalResponder } from './routing/local-responder.js';
import { OutboundPool, type PoolLimits } from './routing/outbound-pool.js';
import { internalRealm, partnerRealm, type Realm } from './routing/realm.js';
import { Router } from './routing/router.js';
import { DeliveryBarriers } from './routing/delivery-barriers.js';
import { ConnectionLimits } from './stream/connection-limits.js';
import { InboundStream } from './stream/inbound-stream.js';
import { now, type S2SStream } from './stream/s2s-stream.js';
import { StreamSupervisor } from './stream/stream-supervisor.js';
import { ensureDevCertificates } from './tls/cert-factory.js';
import { TlsContexts } from './tls/tls-contexts.js';
import { TlsServerUpgrade } from './tls/server-upgrade.js';

/** How long peers get to answer our closing tag at shutdown before their sockets are destroyed. */
const SHUTDOWN_GRACE_MS = 500;

export interface Gateway {
  readonly config: GatewayConfig;
  readonly listeners: readonly Listener[];
  readonly admin: AdminServer | null;
  readonly streams: ReadonlySet<S2SStream>;
  readonly reloader: PartnerReloader;
  readonly metrics: GatewayMetrics;
  /** The internal s2s listener (null without an `internal` section). */
  readonly internalListener: Listener | null;
  /** The internal DNS view (null without `internal.dns`). */
  readonly dnsView: DnsView | null;
  /** This node's pool membership (null without a `cluster` section). */
  readonly pool: PoolNode | null;
  /** The delivery barriers in flight (src/routing/delivery-barriers.ts). */
  readonly barriers: DeliveryBarriers;
  close(): Promise<void>;
}

/** `xmpp-gateway serve`: runs until SIGINT/SIGTERM or `xmpp-gateway stop`; SIGHUP reloads the partner list. */
export async function serve(configPath: string): Promise<number> {
  const log = createLogger();
  const config = await loadGatewayConfig(configPath, (msg) => log.warn('config.warning', { message: msg }));
  let requestStop = (_by: string) => {};
  const gateway = await startGateway(config, log, { onStopRequest: () => requestStop('POST /stop') });
  process.on('SIGHUP', () => {
    log.info('partners.reload-requested', { by: 'SIGHUP' });
    void gateway.reloader.reload(true, { who: 'SIGHUP', via: 'signal' });
  });
  return new Promise((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info('gateway.stopping', { signal });
      void gateway.close().then(() => resolve(0));
    };
    requestStop = stop;
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
}

/** The text shown in the log and in status while the partner list is empty. */
export const NO_PARTNERS_WARNING = '0 partners: all federation refused';

export async function startGateway(config: GatewayConfig, log: Logger = createLogger(), opts: { onStopRequest?: () => void } = {}): Promise<Gateway> {
  if (config.admin) checkAdminTls(config, config.admin);
  await ensureCertificates(config, log);
  const tls = await TlsContexts.load(config);
  // The pool first (docs/design.md section 11): the partner list, the dialback secret and the
  // approvals are shared through it.
  const pool = config.cluster ? await PoolNode.start(config.cluster, log) : null;

  // The dialback secret and the trust-tier approvals: shared through etcd in a pool (src/cluster/
  // shared-secret.ts, pool-approvals.ts); approvals survive restarts, a corrupt file stops the start with one line.
  const dialbackSecret = await openDialbackSecret(config, pool, log);
  const approvals = pool
    ? await PoolApprovalStore.open({ etcd: pool.etcd, nodeName: pool.name, file: config.approvals.file, maxEntries: config.approvals.maxEntries, etcdReachable: pool.membership.online, log })
    : await FileApprovalStore.open({ file: config.approvals.file, maxEntries: config.approvals.maxEntries, log });
  // partners.yaml, or in a pool the list in etcd (docs/design.md section 11).
  const reloader = new PartnerReloader(partnerSourceFor(config, pool?.etcd ?? null, log), new Set(config.localDomains.map((d) => d.domain)), config.localStore, log);
  await reloader.start();
  log.info('partners.loaded', { partners: reloader.current.size, file: reloader.origin, revision: reloader.revision ?? undefined });
  if (reloader.current.size === 0) log.warn('partners.empty', { file: reloader.location, message: NO_PARTNERS_WARNING, hint: reloader.emptyHint });

  const streams = new Set<S2SStream>();
  const liveStreams = { list: () => [...streams].filter((s) => !s.closed).map((s) => s.info()) };
  const metrics = new GatewayMetrics({ streams: liveStreams, ...(pool ? { node: pool.name } : {}) });
  // ConnectionLimit and connectionLimit across the pool (docs/design.md section 11).
  const clusterLimits = pool ? await startPoolLimits(pool, config, log, (view) => metrics.attachPool(view)) : null;
  const limits = new ConnectionLimits({
    connectionLimit: config.connectionLimit,
    partnerConnectionLimit: config.partnerConnectionLimit,
    maxUnauthenticatedPerAddress: config.maxUnauthenticatedConnectionsPerAddress,
    maxDialbackVerifications: config.maxDialbackVerifications,
    maxUnauthenticated: config.maxUnauthenticatedConnections,
    shed: (oldest, rule, text) => {
      if (oldest instanceof InboundStream) oldest.refuse(oldest.partner?.Identity ?? null, 'policy-violation', rule, text);
    },
    ...(clusterLimits ? { pool: clusterLimits.admission } : {}),
  });
  const resolver = new Resolver({ ...(config.dns.servers ? { servers: [...config.dns.servers] } : {}), routes: { ...config.dns.routes } });
  const refusals = new RefusalLog();
  const events = streamEvents(streams, metrics, log, refusals);
  // The admin panel: recent refusals and traffic per partner; the audit trail of every change and reload.
  const panelFeed = new PanelFeed(() => metrics.stanzaTotalsByPartner(), refusals);
  const audit = new AuditLog(config.auditLog);
  auditReloads(reloader, audit, log);

  const ctx: GatewayContext = {
    config,
    partners: () => reloader.current,
    localDomains: new Set(config.localDomains.map((d) => d.domain)),
    tls,
    tlsUpgrade: new TlsServerUpgrade(tls),
    get dialbackSecret() {
      return dialbackSecret.current;
    },
    limits,
    events,
    log,
    verifier: new DialbackVerifier(() => ctx, resolver, () => config.streamEstablishmentTimeoutSeconds * 1000),
    approvals,
    dialbackErrorsSupported: new Set(),
  };

  // The two realms and their outbound pools (docs/design.md section 1). Without an internal server the
  // partner realm's stanzas go to the local responder; with one, the router relays both ways.
  const poolLimits: PoolLimits = {
    maxQueuedStanzas: config.queues.maxStanzas,
    maxQueuedBytes: config.queues.maxBytes,
    reconnectMinMs: config.queues.reconnectMinMs,
    reconnectMaxMs: config.queues.reconnectMaxMs,
    confirmEveryStanzas: config.queues.confirmEveryStanzas,
    confirmIntervalMs: config.queues.confirmIntervalMs,
    confirmTimeoutMs: config.queues.confirmTimeoutMs,
    maxUnconfirmed: config.queues.maxUnconfirmed,
  };
  // In a pool, barrier ids are the pool's and an answer another node read comes back through etcd
  // (docs/design.md section 11, "Delivery barriers"; src/cluster/barrier-answers.ts).
  const barrierAnswers = pool ? new PoolBarrierAnswers(pool, () => dialbackSecret.current, log) : null;
  const barriers = new DeliveryBarriers(barrierAnswers);
  barrierAnswers?.start(barriers);
  const poolCounters = (realm: 'partners' | 'internal') => ({
    unconfirmed: (n: number) => metrics.unconfirmed.inc([realm], n),
    resent: (n: number) => metrics.resent.inc([realm], n),
  });
  const unrouted = { deliver: () => {}, bounce: () => {} };
  const partners = partnerRealm({ localDomains: ctx.localDomains, partners: ctx.partners, defaultDomain: tls.defaultDomain, sink: unrouted });
  // Delivery barriers confirm relayed stanzas; the gateway's own answers (no internal server) need none.
  const partnerPool = new OutboundPool(partners, ctx, resolver, config.internal ? barriers : null, poolLimits, poolCounters('partners'));
  let internal: Realm | null = null;
  let internalPool: OutboundPool | null = null;
  if (config.internal) {
    internal = internalRealm({ localDomains: ctx.localDomains, partners: ctx.partners, server: config.internal.server, requireTls: config.internal.requireTls, sink: unrouted });
    internalPool = new OutboundPool(internal, ctx, resolver, barriers, poolLimits, poolCounters('internal'));
    const router = new Router(partnerPool, internalPool, approvals, barriers, {
      bounced: (realm, condition) => metrics.bounces.inc([realm, condition]),
      lost: (realm, condition) => metrics.lost.inc([realm, condition]),
    }, log, config.queues.drainTimeoutMs);
    partners.sink = router.fromPartner;
    internal.sink = router.fromInternal;
  } else {
    partners.sink = new LocalResponder(() => partnerPool, barriers, log);
  }

  const supervisor = new StreamSupervisor(streams, config, limits, events.refused);
  metrics.partners.set(reloader.current.size);
  reloader.on('reloaded', (list, previous) => {
    metrics.reloads.inc(['ok']);
    metrics.partners.set(list.size);
    log.info('partners.reloaded', { partners: list.size, revision: reloader.revision ?? undefined });
    if (list.size === 0) log.warn('partners.empty', { file: reloader.location, message: NO_PARTNERS_WARNING, before: previous.size });
    supervisor.recheck(list);
    // docs/design.md section 6: what waits for a removed partner is bounced, in both directions.
    const removed = 'the partner was removed from the allowed-partner list';
    partnerPool.drop((_ours, peer) => !list.partnerFor(peer), 'remote-server-not-found', removed);
    internalPool?.drop((ours) => !list.partnerFor(ours), 'remote-server-not-found', removed);
  });
  reloader.on('failed', (err) => {
    metrics.reloads.inc(['error']);
    // The previous list stays in force (docs/design.md section 6); the message names file, line, field.
    log.error('partners.reload-failed', { error: err.message });
  });

  const listeners: Listener[] = [];
  let internalListener: Listener | null = null;
  let dnsView: DnsView | null = null;
  let admin: AdminServer | null = null;
  let extras: Awaited<ReturnType<typeof adminExtras>> | null = null;
  try {
    for (const l of config.listen) {
      listeners.push(await listen(l.host, l.port, (socket: Socket) => new InboundStream(socket, ctx, partners, l.directTls)));
      log.info('gateway.listening', { host: l.host, port: listeners[listeners.length - 1]!.port, directTls: l.directTls, domains: [...ctx.localDomains] });
    }
    if (config.internal && internal) {
      const realm = internal;
      internalListener = await listen(config.internal.listen.host, config.internal.listen.port, (socket: Socket) => new InboundStream(socket, ctx, realm));
      listeners.push(internalListener);
      log.info('internal.listening', { host: config.internal.listen.host, port: internalListener.port, server: `${config.internal.server.host}:${config.internal.server.port}` });
      if (config.internal.dns) {
        // Every allowed partner domain resolves to the internal listener, everything else is
        // NXDOMAIN; the predicate reads the partner snapshot per query, so reloads apply at once.
        dnsView = await DnsView.start({
          host: config.internal.dns.host,
          port: config.internal.dns.port,
          target: { host: config.internal.listen.host, port: internalListener.port },
          isPartnerDomain: (domain) => realm.speaksAs(domain),
          log,
        });
        log.info('internal.dns-listening', { host: dnsView.host, port: dnsView.port });
      }
    }
    admin = await startAdmin();
  } catch (err) {
    // A port that cannot be bound must not leave the others open (the process would hang).
    reloader.stop();
    await Promise.all(listeners.map((l) => l.close()));
    await dnsView?.close();
    await approvals.close();
    await barrierAnswers?.close();
    clusterLimits?.close();
    await dialbackSecret.close();
    await pool?.close();
    throw err instanceof Error && 'code' in err && (err as NodeJS.ErrnoException).code === 'EADDRINUSE'
      ? new ConfigError(`cannot listen: ${(err as Error).message}`, config.file, undefined, 'listen')
      : err;
  }

  async function startAdmin(): Promise<AdminServer | null> {
    if (!config.admin) return null;
    extras = await adminExtras(config, config.admin, { streams, limits, audit, feed: panelFeed, log, etcd: pool?.etcd ?? null });
    const server = await startAdminServer({
        ...extras.options,
        host: config.admin.listen.host,
        port: config.admin.listen.port,
        streams: liveStreams,
        metrics,
        approvals,
        partnersInfo: () => ({
          count: reloader.current.size,
          file: reloader.location,
          // In a pool: the etcd revision in force, and where it came from (etcd, or the local store).
          revision: reloader.revision,
          origin: reloader.origin,
          lastReloadError: reloader.lastError?.message ?? null,
          warning: reloader.current.size === 0 ? NO_PARTNERS_WARNING : null,
          // The last refusals per partner ('-': domains that are not partners), for `explain`.
          recentRefusals: refusals.toJSON(),
        }),
        reload: async (by) => {
          await reloader.reload(true, by);
          return reloader.lastError ? { ok: false, error: reloader.lastError.message } : { ok: true, partners: reloader.current.size, file: reloader.location };
        },
        ...(opts.onStopRequest ? { stop: opts.onStopRequest } : {}),
        ...(clusterLimits ? { poolInfo: () => clusterLimits.status() } : {}),
      });
    await extras.started();
    return server;
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
    internalListener,
    dnsView,
    pool,
    barriers,
    async close() {
      supervisor.stop();
      // Closing streams no longer talks to etcd: the lease, revoked last, takes all their slots at once.
      clusterLimits?.close();
      reloader.stop();
      // Nothing queued is dropped silently at shutdown: it is bounced to its senders first.
      partnerPool.shutdown('the gateway is shutting down');
      internalPool?.shutdown('the gateway is shutting down');
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
      await dnsView?.close();
      await approvals.close();
      await admin?.close();
      await extras?.closed();
      await barrierAnswers?.close();
      await dialbackSecret.close();
      await pool?.close();
    },
  };
}

/** Streams report here; logs and metrics are labelled by partner (never by an unvetted domain). */
function streamEvents(streams: Set<S2SStream>, metrics: GatewayMetrics, log: Logger, refusals: RefusalLog): StreamEvents {
  const events: StreamEvents = {
    opened(stream) {
      streams.add(stream);
      // Drops the transport decides (unread output, failed TLS handshake) are refusals too.
      stream.reportRefusal = (rule, condition, text) => events.refused(stream, stream.info().partner, rule, condition, text);
    },
    stanzaRefused(stream, partner, rule, condition, text) {
      metrics.stanzaRefusals.inc([partner, rule, condition]);
      log.info('stanza.refused', { stream: stream.connectionId, direction: stream.direction, partner, rule, condition, text });
    },
    refused(stream, partner, rule, condition, text) {
      metrics.refusals.inc([partner ?? NO_PARTNER, rule, condition]);
      log.info('stream.refused', { stream: stream.connectionId, direction: stream.direction, partner, rule, condition, text });
      refusals.add(partner, { time: new Date().toISOString(), direction: stream.direction, domain: stream.info().remoteDomain, rule, condition, text });
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

