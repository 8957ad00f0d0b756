/**
 * The admin HTTP listener (docs/design.md sections 6 to 8): live streams, Prometheus metrics and a
 * reload trigger.
 *
 *   GET  /status   application/json  {"streams": [StreamInfo, ...], "partners": partnersInfo()}
 *   GET  /metrics  text/plain; version=0.0.4
 *   POST /reload   application/json  {"ok": true, ...} (200) | {"ok": false, "error": "..."} (422)
 *   GET  /approvals          {"approvals": [Approval, ...]}, most recently seen first
 *   POST /approvals/revoke   body {"local": JID, "remote"?: JID} ⇒ {"revoked": N} once saved;
 *                            400 {"error": "..."} naming the field at fault
 *   (the /approvals paths exist only when the server is given an approvals store; else 404)
 *   POST /stop     application/json  {"ok": true} (202), then the gateway shuts down (`xmpp-gateway stop`)
 *
 * SECURITY: this listener has NO authentication and NO TLS. Anyone who can connect to it can
 * read every live stream (partner, addresses, counters), trigger reloads, and read and revoke
 * approvals. It is meant to be
 * bound to loopback (127.0.0.1 / ::1, the default in gateway.yaml examples) and reached by the
 * local `xmpp-gateway status` and a local Prometheus. It must never be bound to a public or
 * shared address unless a proxy that authenticates (and terminates TLS) stands in front of it.
 * The host is not checked here (gateway.yaml may name any address, on purpose), but two cheap
 * checks keep web browsers on this machine out, which matters even on loopback:
 *  - a request carrying an `Origin` header (every browser POST, and cross-origin fetches) is
 *    refused, so a web page cannot trigger a reload with a "simple" cross-site POST (CSRF);
 *  - when bound to loopback, a `Host` header that names anything but an IP literal or
 *    `localhost` is refused, which defeats DNS rebinding (a page whose name was re-pointed at
 *    127.0.0.1 sends its own name as Host).
 * Neither affects curl, Prometheus or the status command, which send no Origin and address the
 * listener by IP or localhost.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { BlockList, isIP, type AddressInfo } from 'node:net';
import { GatewayError, UsageError } from '../errors.js';
import type { ApprovalStore } from '../policy/approvals.js';
import type { StreamRegistryView } from '../stream/stream-info.js';
import { parseRevokeRequest } from './approvals-api.js';
import { METRICS_CONTENT_TYPE } from './metrics.js';

export interface ReloadResult {
  ok: boolean;
  error?: string;
}

export interface AdminServerOptions {
  host: string;
  /** 0 picks a free port (tests); the bound port is in the result. */
  port: number;
  streams: StreamRegistryView;
  metrics: { render(): string };
  /** Shown under "partners" in /status, e.g. {count, lastReloadError, appliedAt}. */
  partnersInfo: () => object;
  reload: () => Promise<ReloadResult>;
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

type Route = { method: 'GET' | 'POST'; handle: (res: ServerResponse, body: Buffer) => void | Promise<void> };

/** Starts the admin listener on `host:port` (that address only) and resolves once it listens. */
export async function startAdminServer(opts: AdminServerOptions): Promise<AdminServer> {
  const maxBody = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const loopbackOnly = isLoopbackHost(opts.host);

  const routes: Record<string, Route> = {
    '/status': {
      method: 'GET',
      handle: (res) => {
        const body = JSON.stringify({ streams: opts.streams.list(), partners: opts.partnersInfo() });
        send(res, 200, JSON_TYPE, body);
      },
    },
    '/metrics': {
      method: 'GET',
      handle: (res) => send(res, 200, METRICS_CONTENT_TYPE, opts.metrics.render()),
    },
    '/reload': {
      method: 'POST',
      handle: async (res) => {
        let result: ReloadResult;
        try {
          result = await opts.reload();
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

  const server = createServer({ maxHeaderSize: 8 * 1024 }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { error: firstLine(err) });
      else res.destroy();
    });
  });
  // Slow or stuck clients must not pin sockets: the whole request (headers and body) within 10 s.
  server.headersTimeout = 5_000;
  server.requestTimeout = 10_000;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.headers.origin !== undefined) {
      await discardBody(req);
      sendJson(res, 403, { error: 'requests from web pages (with an Origin header) are refused' });
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

    const path = (req.url ?? '/').split('?', 1)[0] ?? '/';
    const route = Object.hasOwn(routes, path) ? routes[path] : undefined;
    if (route === undefined) {
      sendJson(res, 404, { error: `not found: ${path}` });
      return;
    }
    if (req.method !== route.method) {
      res.setHeader('Allow', route.method);
      sendJson(res, 405, { error: `${path} takes ${route.method} only` });
      return;
    }
    await route.handle(res, body);
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
      handle: (res) => sendJson(res, 200, { approvals: store.list() }),
    },
    '/approvals/revoke': {
      method: 'POST',
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

function send(res: ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, {
    'Content-Type': contentType,
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
  });
  res.end(body);
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
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
