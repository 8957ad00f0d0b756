/**
 * Records made by `New-CsXmppAllowedPartner -InMemory` (the cmdlet documentation: "creates an object reference
 * without committing it ... commit those changes by calling the matching Set- cmdlet"). Such a
 * record is the only thing Set may create a partner from; Set never creates from a record that
 * came from Get or from a file. The mark travels with the record through `$p.Prop = ...` edits
 * (a spread copies it) and, between processes, as `"InMemory": true` in the printed record.
 */
import type { PartnerRecord } from './types.js';

const IN_MEMORY = Symbol('New -InMemory');

/** The name of the mark in printed records (JSON key, list-view label). */
export const IN_MEMORY_KEY = 'InMemory';

export function markInMemory(record: PartnerRecord): PartnerRecord {
  return Object.assign({ ...record }, { [IN_MEMORY]: true });
}

export function isInMemory(record: PartnerRecord): boolean {
  return (record as { [IN_MEMORY]?: boolean })[IN_MEMORY] === true;
}

/** The same record without the mark (what is committed, and printed after a commit). */
export function withoutInMemory(record: PartnerRecord): PartnerRecord {
  if (!isInMemory(record)) return record;
  const copy = { ...record } as PartnerRecord & { [IN_MEMORY]?: boolean };
  delete copy[IN_MEMORY];
  return copy;
}
