/**
 * The command line's side of the admin listener: where the running gateway listens (gateway.yaml
 * `admin.listen`) and one JSON request to it. Used by `status`, `approvals`, `reload` and `stop`.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import { checkServerIdentity, connect as tlsConnect, rootCertificates, type TLSSocket } from 'node:tls';
import type { GatewayConfig } from '../config/schema.js';
import { GatewayError } from '../errors.js';
import { formatHostPort } from './admin-server.js';
import { readLocalCredential } from './local-credential.js';

/** An admin token for remote use (`XMPP_GATEWAY_TOKEN=xgw1... xmpp-gateway status`); else the local credential file. */
export const TOKEN_ENV = 'XMPP_GATEWAY_TOKEN';

const TIMEOUT_MS = 5_000;
/** /status of a gateway at its connectionLimit is well under a megabyte; this only bounds a wrong peer. */
const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;

/** Where to reach the running gateway's admin listener. */
export interface AdminTarget {
  readonly host: string;
  readonly port: number;
  /** `http://host:port` (https with TLS), for messages. */
  readonly url: string;
  /** Sent as `Authorization: Bearer`; undefined when none was found. */
  readonly token?: string | undefined;
  /** Where the token was looked for, for the message when it is refused. */
  readonly tokenSource?: string;
  /** HTTPS: CAs to trust and the fingerprints of the configured certificate (accepted for any name). */
  readonly tls?: { readonly ca: string[]; readonly pinned: ReadonlySet<string> };
}

/** Nothing listens at the admin address (connection refused): the gateway is not running. */
export class GatewayNotRunningError extends GatewayError {
  override name = 'GatewayNotRunningError';
  constructor(readonly url: string, opts?: ErrorOptions) {
    super('GW_ERR_USAGE', `the gateway is not running (nothing listens on ${url})`, opts);
  }
}

/** The running gateway's admin address; a GW_ERR_USAGE error when the config cannot say. */
export function adminTarget(config: GatewayConfig): AdminTarget {
  if (config.admin === null) {
    throw new GatewayError('GW_ERR_USAGE', `${config.file} configures no admin listener (admin: {listen: {host: 127.0.0.1, port: 8269}}), so the running gateway cannot be asked`);
  }
  const { host, port } = config.admin.listen;
  if (port === 0) {
    throw new GatewayError('GW_ERR_USAGE', `${config.file}: admin.listen.port is 0 (any free port), so the running gateway's admin port is unknown; configure a fixed port`);
  }
  // A wildcard listener is reachable on loopback.
  const target = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  const fromEnv = process.env[TOKEN_ENV];
  const token = fromEnv !== undefined && fromEnv !== '' ? fromEnv : readLocalCredential(config.admin.localCredential);
  const tokenSource = fromEnv ? `$${TOKEN_ENV}` : config.admin.localCredential;
  const tls = config.admin.listen.certificate === null ? undefined : adminTls(config.admin.listen.certificate, config.trust.caFiles ?? []);
  return { host: target, port, url: `${tls ? 'https' : 'http'}://${formatHostPort(target, port)}`, token, tokenSource, ...(tls ? { tls } : {}) };
}

/** The listener's own certificate (pinned) and the usual CAs. */
function adminTls(certificateFile: string, caFiles: readonly string[]): { ca: string[]; pinned: Set<string> } {
  const pems = (file: string) => {
    try {
      return readFileSync(file, 'utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    } catch {
      return [];
    }
  };
  const own = pems(certificateFile);
  const pinned = new Set(own.map((pem) => new X509Certificate(pem).fingerprint256));
  return { ca: [...rootCertificates, ...own, ...caFiles.flatMap(pems)], pinned };
}

/**
 * Sends one request (`body` as JSON) and resolves with the parsed JSON of a 200 answer. Rejects
 * with GatewayNotRunningError when the connection is refused, GW_ERR_ADMIN for anything else
 * (another status, with the answer's `error`; not JSON; no answer within 5 s).
 */
export async function adminJson(target: AdminTarget, method: 'GET' | 'POST', path: string, body?: unknown): Promise<unknown> {
  const { text } = await adminRequest(target, method, path, body === undefined ? undefined : JSON.stringify(body));
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new GatewayError('GW_ERR_ADMIN', `${target.url}${path} did not answer with JSON; is that the gateway's admin listener?`);
  }
}

/**
 * One request; resolves with the status and text of an answer whose status is in `expected`,
 * rejects like adminJson otherwise. `reload` and `stop` use it for their 422/202 answers.
 */
export function adminRequest(target: AdminTarget, method: string, path: string, body: string | undefined, expected: readonly number[] = [200]): Promise<{ status: number; text: string }> {
  const where = `${target.url}${path}`;
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (target.token !== undefined) headers.authorization = `Bearer ${target.token}`;
    const options = { host: target.host, port: target.port, path, method, agent: false as const, headers };
    let req: ClientRequest | undefined;
    const onError = (err: NodeJS.ErrnoException & { errors?: NodeJS.ErrnoException[] }) => {
      if (err instanceof GatewayError) return reject(err);
      // Node 20 tries every address of a name (autoSelectFamily) and may report an AggregateError.
      const code = err.code ?? err.errors?.[0]?.code;
      if (code === 'ECONNREFUSED') reject(new GatewayNotRunningError(target.url, { cause: err }));
      else reject(new GatewayError('GW_ERR_ADMIN', `cannot reach the gateway at ${target.url}: ${code ?? err.message}`, { cause: err }));
    };
    const onResponse = (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      let total = 0;
      res.on('data', (chunk: Buffer) => {
        total += chunk.length;
        if (total > MAX_RESPONSE_BYTES) {
          req?.destroy(new GatewayError('GW_ERR_ADMIN', `${where} answered with more than ${MAX_RESPONSE_BYTES} bytes`));
        } else chunks.push(chunk);
      });
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        if (expected.includes(res.statusCode ?? 0)) return resolve({ status: res.statusCode!, text });
        let detail = text.split('\n')[0] ?? '';
        try {
          const err = (JSON.parse(text) as { error?: unknown }).error;
          if (typeof err === 'string') detail = err;
        } catch {
          // not JSON: keep the first line of the text
        }
        const hint = res.statusCode === 401
          ? target.token === undefined
            ? ` (no credential: ${target.tokenSource ?? 'the local credential file'} is missing or unreadable; run this as the gateway's user, or set ${TOKEN_ENV} to a token from xmpp-gateway admin-user add)`
            : ` (the token from ${target.tokenSource ?? 'the local credential file'} was refused)`
          : '';
        reject(new GatewayError('GW_ERR_ADMIN', `${where} answered HTTP ${res.statusCode}${detail ? `: ${detail.slice(0, 200)}` : ''}${hint}`));
      });
    };
    const send = (socket?: TLSSocket) => {
      const r = httpRequest(socket ? { ...options, agent: undefined, createConnection: () => socket } : options, onResponse);
      req = r;
      r.setTimeout(TIMEOUT_MS, () => {
        r.destroy(new GatewayError('GW_ERR_ADMIN', `the gateway did not answer within ${TIMEOUT_MS / 1000} s (${target.url})`));
      });
      r.on('error', onError);
      r.end(body);
    };
    // HTTPS: the certificate is checked before a byte of the request (the token) is written.
    if (target.tls) verifiedTls(target, target.tls).then(send, onError);
    else send();
  });
}

/**
 * A TLS connection to the admin listener, accepted only if its certificate is the one gateway.yaml
 * configures (pinned, whoever issued it) or chains to a known CA and names the host. The request
 * (and its token) is written only once this resolves.
 */
function verifiedTls(target: AdminTarget, tls: NonNullable<AdminTarget['tls']>): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: target.host, port: target.port, ca: tls.ca, rejectUnauthorized: false });
    const timer = setTimeout(() => socket.destroy(new GatewayError('GW_ERR_ADMIN', `the gateway did not answer within ${TIMEOUT_MS / 1000} s (${target.url})`)), TIMEOUT_MS);
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      const cert = socket.getPeerCertificate();
      const ok = tls.pinned.has(cert.fingerprint256) || (socket.authorized && checkServerIdentity(target.host, cert) === undefined);
      if (!ok) {
        socket.destroy();
        reject(new GatewayError('GW_ERR_ADMIN', `${target.url} presented a certificate that is neither admin.listen.certificate nor trusted for ${target.host}; no credentials were sent`));
        return;
      }
      resolve(socket);
    });
  });
}
