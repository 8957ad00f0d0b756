/**
 * What `serve` adds to the admin listener (gateway.ts calls this): authentication and roles,
 * HTTPS, the panel and its API, the local credential for the CLI, and reloads in the audit trail.
 */
import { readFile } from 'node:fs/promises';
import { partnerStoreFor } from '../cluster/central-store.js';
import type { EtcdConnection } from '../cluster/etcd.js';
import type { AdminConfig, GatewayConfig } from '../config/schema.js';
import { ConfigError } from '../errors.js';
import type { GatewayContext } from '../gateway-context.js';
import type { Logger } from '../log.js';
import type { PartnerReloader } from '../policy/partner-reloader.js';
import type { ConnectionLimits } from '../stream/connection-limits.js';
import type { S2SStream } from '../stream/s2s-stream.js';
import { isLoopbackHost, type AdminServerOptions, type RouteResolver } from './admin-server.js';
import { AdminUserFile } from './admin-users.js';
import type { AuditLog } from './audit.js';
import { AdminAuth } from './auth.js';
import { removeLocalCredential, writeLocalCredential } from './local-credential.js';
import { PanelFeed } from './panel/feed.js';
import { partnersApi } from './panel/partners-api.js';
import { staticRoutes } from './panel/static-routes.js';

export interface AdminExtras {
  /** Spread into startAdminServer's options. */
  readonly options: Pick<AdminServerOptions, 'auth' | 'openMetrics' | 'routes' | 'audit'> & { tls?: { cert: string; key: string } };
  /** After the listener is bound: writes the local credential. */
  started(): Promise<void>;
  /** At shutdown: removes the local credential, stops sampling. */
  closed(): Promise<void>;
}

/**
 * A listener off loopback without TLS would send tokens and session cookies in the clear: refused
 * at start, with one line.
 */
export function checkAdminTls(config: GatewayConfig, admin: AdminConfig): void {
  if (!isLoopbackHost(admin.listen.host) && admin.listen.certificate === null) {
    throw new ConfigError(
      `the admin listener on ${admin.listen.host} is not on loopback and has no TLS: set admin.listen.certificate and privateKey (HTTPS), or listen on 127.0.0.1`,
      config.file, undefined, 'admin.listen',
    );
  }
}

export async function adminExtras(
  config: GatewayConfig,
  admin: AdminConfig,
  deps: { streams: ReadonlySet<S2SStream>; limits: ConnectionLimits; audit: AuditLog; feed: PanelFeed; log: Logger; ctx?: GatewayContext; etcd?: EtcdConnection | null },
): Promise<AdminExtras> {
  checkAdminTls(config, admin);
  let tls: { cert: string; key: string } | undefined;
  if (admin.listen.certificate !== null && admin.listen.privateKey !== null) {
    try {
      tls = { cert: await readFile(admin.listen.certificate, 'utf8'), key: await readFile(admin.listen.privateKey, 'utf8') };
    } catch (err) {
      throw new ConfigError(`cannot read the admin listener's certificate or key: ${(err as Error).message}`, config.file, undefined, 'admin.listen');
    }
  }
  const auth = new AdminAuth({ users: new AdminUserFile(admin.usersFile), secureCookies: tls !== undefined });
  const api = partnersApi({
    // partners.yaml, or in a pool the list in etcd through this node's connection (docs/design.md section 11).
    openStore: () => partnerStoreFor(config, deps.etcd),
    streams: () => deps.streams,
    limits: deps.limits,
    audit: deps.audit,
    feed: deps.feed,
  });
  const files = staticRoutes();
  const routes: RouteResolver = (path) => files(path) ?? api(path);
  let localToken: string | undefined;
  return {
    options: { auth, openMetrics: admin.openMetrics, routes, audit: deps.audit, ...(tls ? { tls } : {}) },
    async started() {
      deps.feed.start();
      localToken = await writeLocalCredential(admin.localCredential);
      auth.localToken = localToken;
      deps.log.info('admin.local-credential', { file: admin.localCredential });
    },
    async closed() {
      deps.feed.stop();
      if (localToken !== undefined) await removeLocalCredential(admin.localCredential, localToken).catch(() => undefined);
    },
  };
}

/** Every reload, applied or refused, with who asked (the file watcher when nobody did). */
export function auditReloads(reloader: PartnerReloader, audit: AuditLog, log: Logger): void {
  const write = (entry: Parameters<AuditLog['append']>[0]) =>
    void audit.append(entry).catch((err: Error) => log.error('audit.write-failed', { file: audit.file, error: err.message }));
  reloader.on('reloaded', (list, _previous, by) =>
    write({ who: by?.who ?? 'gateway', via: by?.via ?? 'watch', action: 'reload', cmdlet: null, result: 'ok', detail: { partners: list.size } }));
  reloader.on('failed', (err, by) =>
    write({ who: by?.who ?? 'gateway', via: by?.via ?? 'watch', action: 'reload', cmdlet: null, result: 'error', error: err.message.split('\n')[0]! }));
}
