/**
 * `xmpp-gateway [--config FILE] [--json] status` (docs/design.md section 7): asks the running
 * gateway's admin listener (gateway.yaml `admin.listen`) for `GET /status` and prints its live
 * streams, as a table for people or as the JSON received for scripts.
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
  process.stdout.write(formatStatusTable(streams, (body as { partners?: unknown }).partners));
  return 0;
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
