/**
 * `xmpp-gateway [--config FILE] [--json] status` (docs/design.md section 7): asks the running
 * gateway's admin listener (gateway.yaml `admin.listen`) for `GET /status` and prints its live
 * streams, as a table for people or as the JSON received for scripts. A node of a pool also
 * prints every node of the pool with its streams (docs/design.md section 11).
 */
import { loadGatewayConfig } from '../config/load.js';
import { formatTable } from '../cli/output.js';
import { GatewayError } from '../errors.js';
import { adminJson, adminTarget } from './admin-client.js';

const COLUMNS = ['PARTNER', 'DIRECTION', 'LOCAL', 'REMOTE', 'TLS', 'AUTH', 'AGE', 'IN', 'OUT'] as const;
const RIGHT_ALIGNED = new Set<string>(['AGE', 'IN', 'OUT']);

/** Prints the running gateway's live streams; returns the exit status. */
export async function status(configPath: string, json: boolean): Promise<number> {
  const config = await loadGatewayConfig(configPath, (msg) => process.stderr.write(`WARNING: ${msg}\n`));
  const target = adminTarget(config);
  const body = await adminJson(target, 'GET', '/status');
  const streams = (body as { streams?: unknown } | null)?.streams;
  if (!Array.isArray(streams)) throw new GatewayError('GW_ERR_ADMIN', `${target.url}/status answered without a "streams" list`);

  if (json) {
    process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
    return 0;
  }
  const { partners, pool } = body as { partners?: unknown; pool?: unknown };
  process.stdout.write(formatStatusTable(streams, partners) + formatPoolTable(pool));
  return 0;
}

const POOL_COLUMNS = ['NODE', 'PARTNER', 'DIRECTION', 'REMOTE', 'STREAM', 'SLOT', 'AGE'] as const;

/**
 * The pool (only in a pool's status): a line saying which node answered and whether etcd did,
 * then one row per stream of every node (a node without streams gets a row of its own). SLOT is
 * the stream's slot of its partner's ConnectionLimit; `-` for a stream this node admitted on its
 * local share and has not registered yet, `over` for one that found no free slot since.
 */
export function formatPoolTable(pool: unknown, nowMs = Date.now()): string {
  if (pool === null || typeof pool !== 'object') return '';
  const p = pool as { node?: unknown; etcd?: unknown; error?: unknown; knownNodes?: unknown; nodes?: unknown };
  const nodes = Array.isArray(p.nodes) ? (p.nodes as Record<string, unknown>[]) : [];
  const known = typeof p.knownNodes === 'number' ? `, ${p.knownNodes} known for local shares` : '';
  const head = p.etcd === 'reachable'
    ? `pool: ${nodes.length} node${nodes.length === 1 ? '' : 's'} (this is ${cell(p.node)})${known}`
    : `pool: etcd unreachable (${String(p.error ?? 'no answer').split('\n')[0]}): this node (${cell(p.node)}) only${known}`;
  const rows: string[][] = [];
  for (const n of nodes) {
    const streams = Array.isArray(n.streams) ? (n.streams as Record<string, unknown>[]) : [];
    const name = `${cell(n.name)}${n.self === true ? '*' : ''}`;
    if (streams.length === 0) rows.push([name, '-', '-', '-', '-', '-', '-']);
    for (const s of streams) {
      const since = typeof s.since === 'string' ? Date.parse(s.since) : NaN;
      const slot = s.overLimit === true ? 'over' : cell(s.slot);
      rows.push([name, cell(s.partner), cell(s.direction), cell(s.remoteDomain), cell(s.stream), slot, Number.isNaN(since) ? '-' : formatAge((nowMs - since) / 1000)]);
    }
  }
  return `\n${head}\n${formatTable(POOL_COLUMNS, rows, new Set(['SLOT', 'AGE']))}`;
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
    out = formatTable(COLUMNS, rows, RIGHT_ALIGNED);
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
