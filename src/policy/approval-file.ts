/**
 * The approvals file (gateway.yaml `approvals.file`): JSON, one approval per line, most recently
 * seen first, so that a person can read it and `grep` it:
 *
 *   {"version":1,"approvals":[
 *   {"local":"alice@corp.example","remote":"bob@partner.example","since":"2024-...Z","lastSeen":"2024-...Z"}
 *   ]}
 *
 * Reading is strict: a file that is not exactly this (bad JSON, a missing field, a JID that is
 * not user@domain, a time that is not ISO 8601) is an error naming the file and what is wrong,
 * never an empty store, because silently dropping approvals would bounce users' contacts.
 */
import { readFile } from 'node:fs/promises';
import { GatewayError } from '../errors.js';
import type { IndexEntry } from './approval-index.js';
import { checkBareJid } from './bare-jid.js';

/** The `version` field this code reads and writes; another value is refused as not understood. */
export const APPROVAL_FILE_VERSION = 1;

/** The file's text for `entries` (epoch-millisecond times), in the order given. */
export function serializeApprovals(entries: Iterable<IndexEntry>): string {
  const lines: string[] = [];
  for (const e of entries) {
    lines.push(JSON.stringify({ local: e.local, remote: e.remote, since: new Date(e.since).toISOString(), lastSeen: new Date(e.lastSeen).toISOString() }));
  }
  return `{"version":${APPROVAL_FILE_VERSION},"approvals":[\n${lines.join(',\n')}${lines.length > 0 ? '\n' : ''}]}\n`;
}

/** Parses the file's text; throws GW_ERR_APPROVALS_FILE (one line, naming `file`) when it is not valid. */
export function parseApprovals(text: string, file: string): IndexEntry[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw corrupt(file, `not JSON: ${(err as Error).message.split('\n')[0]}`);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw corrupt(file, 'not a JSON object');
  const { version, approvals } = doc as { version?: unknown; approvals?: unknown };
  if (version !== APPROVAL_FILE_VERSION) throw corrupt(file, `version: ${JSON.stringify(version)} is not ${APPROVAL_FILE_VERSION}`);
  if (!Array.isArray(approvals)) throw corrupt(file, 'approvals: not a list');
  return approvals.map((item: unknown, i) => {
    const where = `approvals[${i}]`;
    if (item === null || typeof item !== 'object' || Array.isArray(item)) throw corrupt(file, `${where}: not an object`);
    const r = item as Record<string, unknown>;
    let local: string;
    let remote: string;
    try {
      local = checkBareJid(r.local, `${where}.local`);
      remote = checkBareJid(r.remote, `${where}.remote`);
    } catch (err) {
      throw corrupt(file, (err as Error).message);
    }
    return { local, remote, since: time(r.since, `${where}.since`, file), lastSeen: time(r.lastSeen, `${where}.lastSeen`, file) };
  });
}

/** Reads and parses the file; a file that does not exist is no approvals yet. */
export async function readApprovalFile(file: string): Promise<IndexEntry[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return [];
    throw new GatewayError('GW_ERR_APPROVALS_FILE', `${file}: cannot read the approvals file: ${code ?? (err as Error).message}`, { cause: err });
  }
  return parseApprovals(text, file);
}

function time(value: unknown, field: string, file: string): number {
  const ms = typeof value === 'string' && /^\d{4}-\d{2}-\d{2}T/.test(value) ? Date.parse(value) : NaN;
  if (Number.isNaN(ms)) throw corrupt(file, `${field}: ${JSON.stringify(value)} is not an ISO 8601 time`);
  return ms;
}

function corrupt(file: string, why: string): GatewayError {
  return new GatewayError(
    'GW_ERR_APPROVALS_FILE',
    `${file}: not a valid approvals file (${why}); not used, so that no approval is forgotten: fix the file, or move it aside to start with no approvals`,
  );
}
