/**
 * The node's local store (gateway.yaml `localStore`, Lync's local replica of the Central Management
 * Store): the partner list this node last applied, written after every applied reload. It holds
 *
 *   {"appliedAt": ISO time, "source": where the list came from (partners.yaml's path, or
 *    "etcd:<prefix>partners" in a pool), "revision": the etcd revision of that list (null for a
 *    file), "text": the partners.yaml text applied, "partners": the records as `--json` prints them}
 *
 * `Get-CsXmppAllowedPartner -LocalStore` shows it; a pool node that cannot reach etcd starts from
 * it (docs/design.md section 11). The text is what is re-validated and applied then; the records
 * are there for people and scripts. Files written before the text was stored have records only.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ConfigError } from '../errors.js';
import { writeFileAtomic } from './atomic-write.js';
import { PartnerDocument } from './partner-file.js';
import type { PartnerList } from './partner-list.js';
import { toJsonRecord } from './record-json.js';
import type { PartnerRecord } from './types.js';
import { recordFromObject } from './validate.js';

export interface LocalStoreSnapshot {
  readonly appliedAt: string;
  readonly source: string;
  /** The etcd revision (mod_revision of the list's key; 0: etcd held no list); null for a file. */
  readonly revision: number | null;
  /** The partners.yaml text applied (rebuilt from the records for files that predate it). */
  readonly text: string;
  readonly records: readonly PartnerRecord[];
}

export async function writeLocalStore(path: string, applied: { source: string; revision: number | null; text: string; list: PartnerList }): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const body = {
    appliedAt: new Date().toISOString(),
    source: applied.source,
    revision: applied.revision,
    text: applied.text,
    partners: applied.list.records.map(toJsonRecord),
  };
  await writeFileAtomic(path, `${JSON.stringify(body, null, 2)}\n`);
}

/** The local store, or null when this node has none yet; a damaged file is a ConfigError naming it. */
export async function readLocalStore(path: string): Promise<LocalStoreSnapshot | null> {
  let raw: string;
  try {
    raw = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new ConfigError(`cannot read the local store: ${(err as Error).message}`, path);
  }
  let body: { appliedAt?: unknown; source?: unknown; revision?: unknown; text?: unknown; partners?: unknown };
  try {
    body = JSON.parse(raw) as typeof body;
  } catch (err) {
    throw new ConfigError(`the local store is not JSON (${(err as Error).message.split('\n')[0]})`, path);
  }
  if (body === null || typeof body !== 'object' || !Array.isArray(body.partners)) {
    throw new ConfigError('the local store has no "partners" list', path);
  }
  let records: PartnerRecord[];
  try {
    records = body.partners.map((p) => recordFromObject(p as Record<string, unknown>));
  } catch (err) {
    throw new ConfigError(`the local store holds an invalid record: ${(err as Error).message}`, path);
  }
  const text = typeof body.text === 'string' ? body.text : textOf(records, path);
  return {
    appliedAt: typeof body.appliedAt === 'string' ? body.appliedAt : '',
    source: typeof body.source === 'string' ? body.source : '',
    revision: typeof body.revision === 'number' ? body.revision : null,
    text,
    records,
  };
}

/** partners.yaml text for records (a local store written before the text was kept). */
function textOf(records: readonly PartnerRecord[], path: string): string {
  const doc = PartnerDocument.parse('', path);
  for (const r of records) doc.add(r);
  return doc.toString();
}
