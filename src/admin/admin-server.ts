/**
 * The admin HTTP listener (docs/design.md sections 6 to 8): live streams, Prometheus metrics and a
 * reload trigger.
 *
 *   GET  /status   application/json  {"streams": [StreamInfo, ...], "partners": partnersInfo()}
 *                  (in a pool also "pool": every node and its streams, cluster/pool-status.ts)
 *   GET  /metrics  text/plain; version=0.0.4
 *   POST /reload   application/json  {"ok": true, ...} (200) | {"ok": false, "error": "..."} (422)
 *   GET  /approvals          {"approvals": [Approval, ...]}, most recently seen first
 *   POST /approvals/revoke   body {"local": JID, "remote"?: JID} ⇒ {"revoked": N} once saved;
 *                            400 {"error": "..."} naming the field at fault
 *   (the /approvals paths exist only when the server is given an approvals store; else 404)
 *   POST /stop     application/json  {"ok": true} (202), then the gateway shuts down (`xmpp-gateway stop`)
 *   POST /login    {"token": "..."} ⇒ the panel's session cookie and {"user", "role", "csrf"}; POST /logout
 *   /, /api/...    the control panel and its JSON API (src/admin/panel), from `routes`
 *
 * Access (src/admin/auth.ts): every request but the panel's static files and `POST /login` needs
 * `Authorization: Bearer <token>` or the panel's session cookie (plus `X-CSRF-Token` on writes);
 * 401 without, 429 while the address is locked out after repeated bad credentials, 403 when the
 * role does not allow it (a CsViewOnlyAdministrator's write). `/metrics` may be left open
 * (`admin.openMetrics`). With `tls` the listener speaks HTTPS; gateway.ts refuses a listener off
 * loopback without it. The panel and its JSON API (`/`, `/api/...`) come from `routes`.
 * Two cheap checks keep other web pages out, which matters even on loopback:
 *  - a request whose `Origin` header is not this listener's own origin is refused, so a web page
 *    elsewhere cannot make the browser send a "simple" cross-site POST (CSRF);
 *  - when bound to loopback, a `Host` header that names anything but an IP literal or
 *    `localhost` is refused, which defeats DNS rebinding (a page whose name was re-pointed at
 *    127.0.0.1 sends its own name as Host).
 * Neither affects curl, Prometheus or the status command, which send no Origin and address the
 * listener by IP or localhost.
 */
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { BlockList, isIP, type AddressInfo } from 'node:net';
import { GatewayError, UsageError } from '../errors.js';
import type { ApprovalStore } from '../policy/approvals.js';
import type { StreamRegistryView } from '../stream/stream-info.js';
import { parseRevokeRequest } from './approvals-api.js';
import type { Actor, AuditLog } from './audit.js';
import { sessionCookie, type AdminAuth, type Principal } from './auth.js';
import { METRICS_CONTENT_TYPE } from './metrics.js';
import { allows, type Permission } from './roles.js';

export interface ReloadResult {
  ok: boolean;
  error?: string;
}

export interface AdminServerOptions {
  host: string;
  /** 0 picks a free port (tests); the bound port is in the result. */
  port: number;
  streams: StreamRegistryView;
  metrics: { render(): string | Promise<string> };
  /** Shown under "partners" in /status, e.g. {count, lastReloadError, appliedAt}. */
  partnersInfo: () => object;
  /** Shown under "pool" in /status (cluster mode only): the pool's nodes and their streams. */
  poolInfo?: () => Promise<object>;
  /** `by`: who asked (recorded in the audit trail with the reload). */
  reload: (by?: Actor) => Promise<ReloadResult>;
  /** Who may do what (required: the listener is never open). */
  auth: AdminAuth;
  /** Serve /metrics without credentials (gateway.yaml admin.openMetrics). */
  openMetrics?: boolean;
  /** PEM certificate (chain) and key: HTTPS instead of HTTP. */
  tls?: { cert: string; key: string };
  /** More routes (the panel, /api); consulted after the built-in ones. */
  routes?: RouteResolver;
  /** Refused writes (403) are recorded here. */
  audit?: AuditLog;
  /** PublicUnverified approvals, served under /approvals; absent: those paths answer 404. */
  approvals?: ApprovalStore;
  /** Shuts the gateway down after the answer is sent; absent when the process is not `serve` (501). */
  stop?: () => void;
  /** Largest request body accepted, in bytes (POST /approvals/revoke reads it; others drain it). Default 16 KiB. */
  maxBodyBytes?: number;
}

export interface AdminServer {
  readonly host: string;
  readonly port: number;
  close(): Promise<void>;
}

const JSON_TYPE = 'application/json; charset=utf-8';
const DEFAULT_MAX_BODY_BYTES = 16 * 1024;
/** After close(), keep-alive connections still busy get this long to finish before they are cut. */
const CLOSE_GRACE_MS = 1_000;

/** What a handler gets besides the response: who asks, the request, its URL and body. */
export interface RequestContext {
  readonly principal: Principal | null;
  readonly req: IncomingMessage;
  readonly url: URL;
  readonly body: Buffer;
}

/** `permission` null: no credentials needed (the panel's static files, its login). */
export type Route = { method: string; permission?: Permission | null; handle: (res: ServerResponse, body: Buffer, ctx: RequestContext) => void | Promise<void> };

/** Resolves a path to its routes by method; undefined when the path is unknown. */
export type RouteResolver = (path: string) => Route[] | undefined;

/** The actor an admin request acts as, for the audit trail. */
export function actorOf(principal: Principal | null): Actor {
  return principal ? { who: principal.name, via: principal.via } : { who: 'anonymous', via: 'http' };
}

/** Starts the admin listener on `host:port` (that address only) and resolves once it listens. */
export async function startAdminServer(opts: AdminServerOptions): Promise<AdminServer> {
  const maxBody = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const loopbackOnly = isLoopbackHost(opts.host);

  const routes: Record<string, Route> = {
    '/login': {
      method: 'POST',
      permission: null,
      handle: async (res, body, ctx) => {
        let token: unknown;
        try {
          token = (JSON.parse(body.toString('utf8')) as { token?: unknown }).token;
        } catch {
          token = new URLSearchParams(body.toString('utf8')).get('token');
        }
        if (typeof token !== 'string' || token === '') {
          sendJson(res, 400, { error: 'send {"token": "..."}', field: 'token' });
          return;
        }
        const result = await opts.auth.login(ctx.req, token.trim());
        if (!result.ok) {
          if (result.retryAfter !== undefined) res.setHeader('Retry-After', String(result.retryAfter));
          sendJson(res, result.status, { error: result.error, field: 'token' });
          return;
        }
        res.setHeader('Set-Cookie', sessionCookie(result.sid!, opts.auth.secureCookies));
        sendJson(res, 200, { user: result.principal.name, role: result.principal.role, csrf: result.principal.csrf });
      },
    },
    '/logout': {
      method: 'POST',
      permission: null,
      handle: (res, _body, ctx) => {
        opts.auth.logout(ctx.req);
        res.setHeader('Set-Cookie', sessionCookie('', opts.auth.secureCookies, 0));
        sendJson(res, 200, { ok: true });
      },
    },
    '/status': {
      method: 'GET',
      handle: async (res) => {
        const pool = opts.poolInfo ? { pool: await opts.poolInfo() } : {};
        const body = JSON.stringify({ streams: opts.streams.list(), partners: opts.partnersInfo(), ...pool });
        send(res, 200, JSON_TYPE, body);
      },
    },
    '/metrics': {
      method: 'GET',
      permission: opts.openMetrics ? null : 'read',
      handle: async (res) => send(res, 200, METRICS_CONTENT_TYPE, await opts.metrics.render()),
    },
    '/reload': {
      method: 'POST',
      permission: 'write',
      handle: async (res, _body, ctx) => {
        let result: ReloadResult;
        try {
          result = await opts.reload(actorOf(ctx.principal));
        } catch (err) {
          sendJson(res, 500, { ok: false, error: firstLine(err) });
          return;
        }
        if (result.ok) sendJson(res, 200, { ...result, ok: true });
        else sendJson(res, 422, { ...result, ok: false, error: result.error ?? 'reload failed' });
      },
    },
    '/stop': {
      method: 'POST',
      permission: 'write',
      handle: (res) => {
        const stop = opts.stop;
        if (!stop) {
          sendJson(res, 501, { ok: false, error: 'this gateway was not started by `xmpp-gateway serve` and cannot be stopped from here' });
          return;
        }
        res.once('finish', stop);
        sendJson(res, 202, { ok: true });
      },
    },
  };
  if (opts.approvals) Object.assign(routes, approvalRoutes(opts.approvals));

  const listener = (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { error: firstLine(err) });
      else res.destroy();
    });
  };
  const server = opts.tls
    ? createHttpsServer({ maxHeaderSize: 8 * 1024, cert: opts.tls.cert, key: opts.tls.key }, listener)
    : createHttpServer({ maxHeaderSize: 8 * 1024 }, listener);
  const scheme = opts.tls ? 'https' : 'http';
  // Slow or stuck clients must not pin sockets: the whole request (headers and body) within 10 s.
  server.headersTimeout = 5_000;
  server.requestTimeout = 10_000;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // Same-origin requests (the panel's own fetches) carry Origin too; any other origin is refused.
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== `${scheme}://${req.headers.host ?? ''}`) {
      await discardBody(req);
      sendJson(res, 403, { error: 'requests from other web pages (a foreign Origin header) are refused' });
      return;
    }
    if (loopbackOnly && !isSafeHostHeader(req.headers.host)) {
      await discardBody(req);
      sendJson(res, 403, { error: 'the Host header must be an IP address or localhost' });
      return;
    }
    const declared = Number(req.headers['content-length'] ?? 0);
    const body = declared > maxBody ? null : await readBodyWithin(req, maxBody);
    if (body === null) {
      res.setHeader('Connection', 'close');
      sendJson(res, 413, { error: `request body larger than ${maxBody} bytes` });
      return;
    }

    const url = new URL(req.url ?? '/', `${scheme}://localhost`);
    const path = url.pathname;
    const candidates = Object.hasOwn(routes, path) ? [routes[path]!] : opts.routes?.(path);
    if (candidates === undefined || candidates.length === 0) {
      sendJson(res, 404, { error: `not found: ${path}` });
      return;
    }
    const method = req.method === 'HEAD' ? 'GET' : req.method;
    const route = candidates.find((r) => r.method === method);
    if (route === undefined) {
      res.setHeader('Allow', candidates.map((r) => r.method).join(', '));
      sendJson(res, 405, { error: `${path} takes ${candidates.map((r) => r.method).join(', ')} only` });
      return;
    }
    let principal: Principal | null = null;
    const permission = route.permission === undefined ? (route.method === 'GET' ? 'read' : 'write') : route.permission;
    if (permission !== null) {
      const outcome = await opts.auth.authenticate(req);
      if (!outcome.ok) {
        if (outcome.status === 401) res.setHeader('WWW-Authenticate', 'Bearer realm="xmpp-gateway"');
        if (outcome.retryAfter !== undefined) res.setHeader('Retry-After', String(outcome.retryAfter));
        sendJson(res, outcome.status, { error: outcome.error });
        return;
      }
      principal = outcome.principal;
      if (route.method !== 'GET' && !opts.auth.csrfOk(req, principal)) {
        sendJson(res, 403, { error: 'missing or wrong X-CSRF-Token (reload the panel)' });
        return;
      }
      if (!allows(principal.role, permission)) {
        const error = `${principal.name} (${principal.role}) may not ${req.method} ${path}: that needs CsAdministrator`;
        await opts.audit?.refused(actorOf(principal), `${req.method} ${path}`, null, error).catch(() => undefined);
        sendJson(res, 403, { error });
        return;
      }
    }
    await route.handle(res, body, { principal, req, url, body });
  }

  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) =>
      reject(new GatewayError('GW_ERR_LISTEN', `admin listener: cannot listen on ${formatHostPort(opts.host, opts.port)}: ${err.code ?? err.message}`, { cause: err }));
    server.once('error', onError);
    server.listen({ host: opts.host, port: opts.port }, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;

  let closing: Promise<void> | undefined;
  return {
    host: opts.host,
    port,
    close() {
      closing ??= new Promise<void>((resolve) => {
        const cut = setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS);
        cut.unref();
        server.close(() => {
          clearTimeout(cut);
          resolve();
        });
        server.closeIdleConnections();
      });
      return closing;
    },
  };
}

/** GET /approvals and POST /approvals/revoke over `store`. */
function approvalRoutes(store: ApprovalStore): Record<string, Route> {
  return {
    '/approvals': {
      method: 'GET',
      permission: 'read',
      handle: (res) => sendJson(res, 200, { approvals: store.list() }),
    },
    '/approvals/revoke': {
      method: 'POST',
      permission: 'write',
      handle: async (res, body) => {
        let request;
        try {
          request = parseRevokeRequest(body.toString('utf8'));
        } catch (err) {
          if (!(err instanceof UsageError)) throw err;
          sendJson(res, 400, { error: err.message });
          return;
        }
        const revoked = store.revoke(request.local, request.remote);
        if (revoked > 0) {
          try {
            await store.flush();
          } catch (err) {
            sendJson(res, 500, { revoked, error: `revoked in memory but not saved: ${firstLine(err)}` });
            return;
          }
        }
        sendJson(res, 200, { revoked });
      },
    },
  };
}

export function send(res: ServerResponse, status: number, contentType: string, body: string | Buffer): void {
  res.writeHead(status, {
    'Content-Type': contentType,
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
  });
  res.end(body);
}

export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  send(res, status, JSON_TYPE, JSON.stringify(value));
}

/** Reads the body; null as soon as it exceeds `max` bytes. */
function readBodyWithin(req: IncomingMessage, max: number): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    if (req.readableEnded) return resolve(Buffer.alloc(0));
    const chunks: Buffer[] = [];
    let total = 0;
    const onData = (chunk: Buffer) => {
      total += chunk.length;
      if (total > max) {
        cleanup();
        req.pause();
        resolve(null);
      } else chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(Buffer.concat(chunks));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}

/** Before a refusal: drains small bodies so the connection stays usable; cuts big ones off. */
async function discardBody(req: IncomingMessage): Promise<void> {
  if ((await readBodyWithin(req, DEFAULT_MAX_BODY_BYTES)) === null) req.socket.destroySoon();
}

function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? '';
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');
LOOPBACK.addSubnet('::ffff:127.0.0.0', 104, 'ipv6');

/** True for `localhost` and loopback IP literals (127.0.0.0/8, ::1, ::ffff:127.0.0.0/104). */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, '$1').replace(/\.$/, '');
  if (h === 'localhost') return true;
  const family = isIP(h);
  return family !== 0 && LOOPBACK.check(h, family === 4 ? 'ipv4' : 'ipv6');
}

/** Host header (`name`, `name:port`, `[v6]:port`) names an IP literal or localhost; absent (HTTP/1.0) is accepted. */
function isSafeHostHeader(header: string | undefined): boolean {
  if (header === undefined) return true;
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(header);
  const name = bracketed ? bracketed[1]! : header.replace(/:\d+$/, '');
  const bare = name.toLowerCase().replace(/\.$/, '');
  return bare === 'localhost' || isIP(bare) !== 0;
}

/** `host:port`, with brackets for IPv6 literals. */
export function formatHostPort(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}
