/**
 * `xmpp-gateway [--config FILE] [--json] status` (docs/design.md section 7): asks the running
 * gateway's admin listener (gateway.yaml `admin.listen`) for `GET /status` and prints its live
 * streams, as a table for people or as the JSON received for scripts.
 */
import { request } from 'node:http';
import { loadGatewayConfig } from '../config/load.js';
import { GatewayError } from '../errors.js';
import { formatHostPort } from './admin-server.js';

const TIMEOUT_MS = 5_000;
/** /status of a gateway at its connectionLimit is well under a megabyte; this only bounds a wrong peer. */
const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;

const COLUMNS = ['PARTNER', 'DIRECTION', 'LOCAL', 'REMOTE', 'TLS', 'AUTH', 'AGE', 'IN', 'OUT'] as const;
const RIGHT_ALIGNED = new Set<string>(['AGE', 'IN', 'OUT']);

/** Where the running gateway's admin listener is, from gateway.yaml. */
export interface AdminTarget {
  readonly host: string;
  readonly port: number;
  readonly url: string;
}

export async function adminTarget(configPath: string): Promise<AdminTarget> {
  const config = await loadGatewayConfig(configPath, (msg) => process.stderr.write(`WARNING: ${msg}\n`));
  if (config.admin === null) {
    throw new GatewayError('GW_ERR_USAGE', `${config.file} configures no admin listener (admin: {listen: {host: 127.0.0.1, port: 8269}}), so the running gateway cannot be asked`);
  }
  const { host, port } = config.admin.listen;
  if (port === 0) {
    throw new GatewayError('GW_ERR_USAGE', `${config.file}: admin.listen.port is 0 (any free port), so the running gateway's admin port is unknown; configure a fixed port`);
  }
  // A wildcard listener is reachable on loopback.
  const target = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  return { host: target, port, url: `http://${formatHostPort(target, port)}` };
}

/** Prints the running gateway's live streams; returns the exit status. */
export async function status(configPath: string, json: boolean): Promise<number> {
  const admin = await adminTarget(configPath);
  const url = admin.url;
  const text = await adminRequest(admin, 'GET', '/status', [200]).then((r) => r.text);
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new GatewayError('GW_ERR_ADMIN', `${url}/status did not answer with JSON; is that the gateway's admin listener?`);
  }
  const streams = (body as { streams?: unknown } | null)?.streams;
  if (!Array.isArray(streams)) throw new GatewayError('GW_ERR_ADMIN', `${url}/status answered without a "streams" list`);

  if (json) {
    process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
    return 0;
  }
  process.stdout.write(formatStatusTable(streams, (body as { partners?: unknown }).partners));
  return 0;
}

/**
 * One request to the admin listener. Answers with a status in `expected` resolve; others reject
 * with the listener's error text; a refused connection means the gateway is not running.
 */
export function adminRequest(admin: AdminTarget, method: 'GET' | 'POST', path: string, expected: readonly number[]): Promise<{ status: number; text: string }> {
  const { host, port, url } = admin;
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path, method, agent: false, headers: { accept: 'application/json' } }, (res) => {
      const chunks: Buffer[] = [];
      let total = 0;
      res.on('data', (chunk: Buffer) => {
        total += chunk.length;
        if (total > MAX_RESPONSE_BYTES) {
          req.destroy(new GatewayError('GW_ERR_ADMIN', `${url}${path} answered with more than ${MAX_RESPONSE_BYTES} bytes`));
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
        reject(new GatewayError('GW_ERR_ADMIN', `${url}${path} answered HTTP ${res.statusCode}${detail ? `: ${detail.slice(0, 200)}` : ''}`));
      });
    });
    req.setTimeout(TIMEOUT_MS, () => {
      req.destroy(new GatewayError('GW_ERR_ADMIN', `the gateway did not answer within ${TIMEOUT_MS / 1000} s (${url})`));
    });
    req.on('error', (err: NodeJS.ErrnoException & { errors?: NodeJS.ErrnoException[] }) => {
      if (err instanceof GatewayError) return reject(err);
      // Node 20 tries every address of a name (autoSelectFamily) and may report an AggregateError.
      const code = err.code ?? err.errors?.[0]?.code;
      if (code === 'ECONNREFUSED') {
        reject(new GatewayError('GW_ERR_USAGE', `the gateway is not running (nothing listens on ${url})`, { cause: err }));
      } else {
        reject(new GatewayError('GW_ERR_ADMIN', `cannot reach the gateway at ${url}: ${code ?? err.message}`, { cause: err }));
      }
    });
    req.end();
  });
}

/** The human view: one row per stream, then a line about the partner list. */
export function formatStatusTable(streams: readonly unknown[], partners: unknown): string {
  let out: string;
  if (streams.length === 0) out = 'no live streams\n';
  else {
    const rows = streams.map((s) => {
      const r = (s ?? {}) as Record<string, unknown>;
      return [
        cell(r.partner), cell(r.direction), cell(r.localDomain), cell(r.remoteDomain), cell(r.tls), cell(r.auth),
        typeof r.ageSeconds === 'number' ? formatAge(r.ageSeconds) : '-', cell(r.stanzasIn), cell(r.stanzasOut),
      ];
    });
    const widths = COLUMNS.map((name, i) => Math.max(name.length, ...rows.map((row) => row[i]!.length)));
    const line = (cells: readonly string[]) =>
      cells.map((c, i) => (RIGHT_ALIGNED.has(COLUMNS[i]!) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
    out = `${[line(COLUMNS), ...rows.map(line)].join('\n')}\n`;
  }
  const summary = partnersLine(partners);
  return summary === '' ? out : `${out}\n${summary}\n`;
}

function partnersLine(partners: unknown): string {
  if (partners === null || typeof partners !== 'object') return '';
  const p = partners as { count?: unknown; lastReloadError?: unknown; warning?: unknown };
  const parts: string[] = [];
  if (typeof p.warning === 'string' && p.warning !== '') parts.push(`WARNING: ${p.warning}`);
  else if (typeof p.count === 'number') parts.push(`${p.count} allowed partner${p.count === 1 ? '' : 's'}`);
  if (typeof p.lastReloadError === 'string' && p.lastReloadError !== '') {
    parts.push(`last reload failed, the previous list stays in force: ${p.lastReloadError.split('\n')[0]}`);
  }
  return parts.join('; ');
}

function cell(v: unknown): string {
  return v === null || v === undefined || v === '' ? '-' : String(v);
}

/** 42s, 5m07s, 3h02m, 2d04h. */
export function formatAge(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const two = (n: number) => String(n).padStart(2, '0');
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${two(s % 60)}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h${two(Math.floor((s % 3600) / 60))}m`;
  return `${Math.floor(s / 86_400)}d${two(Math.floor((s % 86_400) / 3600))}h`;
}
