/**
 * The four partner operations (Get/New/Set/Remove-CsXmppAllowedPartner) on top of the store.
 * Both command-line forms (`partner new --identity ...` and PowerShell cmdlet lines) end here,
 * so they behave identically. Checks run before anything is written; WhatIf runs the same code
 * on a copy and writes nothing.
 */
import { UsageError } from '../errors.js';
import { matchesWildcard } from './wildcard.js';
import type { PartnerDocument } from './partner-file.js';
import type { PartnerList } from './partner-list.js';
import type { PartnerListStore } from './partner-store.js';
import { PROPERTY_NAMES, type PartnerChanges, type PartnerRecord, type PropertyName } from './types.js';
import { isInMemory, markInMemory, withoutInMemory } from './in-memory.js';
import { applyChanges, checkCombination, checkNotLocal, newRecord, sameValue } from './validate.js';

export interface EditResult {
  /** The records as they are (or, with WhatIf, would be) after the operation. */
  readonly records: PartnerRecord[];
  /** Non-fatal combination warnings (docs/design.md section 3), printed unless -Force. */
  readonly warnings: string[];
}

export function selectPartners(list: PartnerList, query: { identity?: string; filter?: string }): PartnerRecord[] {
  if (query.identity !== undefined) {
    const record = list.byIdentity(query.identity);
    if (!record) throw missingPartner(list, query.identity);
    return [record];
  }
  if (query.filter !== undefined) {
    const filter = query.filter;
    return list.records.filter((r) => matchesWildcard(filter, r.Identity));
  }
  return [...list.records];
}

/** New-CsXmppAllowedPartner: builds the record (not saved when inMemory / whatIf). */
export async function createPartner(
  store: PartnerListStore,
  identity: string,
  changes: PartnerChanges,
  opts: { whatIf?: boolean; inMemory?: boolean },
): Promise<EditResult> {
  const record = applyChanges(newRecord(identity), changes);
  // An -InMemory record is checked now but warned about when Set commits it (once, not twice).
  const warnings = checkRecord(record, opts.inMemory ? new Set() : chosenProperties(changes));
  checkLocal(store, record);
  if (opts.inMemory) return { records: [markInMemory(record)], warnings };
  return store.edit(
    (doc) => {
      if (doc.indexOf(identity) >= 0) throw new UsageError(`a partner with Identity '${identity}' already exists`, 'Identity');
      checkDomainsFree(store, doc, record);
      doc.add(record);
      return { records: [record], warnings };
    },
    { dryRun: opts.whatIf ?? false },
  );
}

export interface SetTarget {
  readonly identity: string;
  /** A whole record to commit (-Instance or piped input); explicit changes apply on top. */
  readonly instance?: PartnerRecord;
}

/**
 * Set-CsXmppAllowedPartner on one or more partners in one locked transaction. Set changes existing
 * partners only, whichever way it is called; the one exception is committing a record made by
 * `New -InMemory` (the cmdlets' way to build a partner before saving it), which creates it.
 */
export async function updatePartners(
  store: PartnerListStore,
  targets: readonly SetTarget[],
  changes: PartnerChanges,
  opts: { whatIf?: boolean },
): Promise<EditResult> {
  return store.edit(
    (doc) => {
      const records: PartnerRecord[] = [];
      const warnings: string[] = [];
      for (const target of targets) {
        const index = doc.indexOf(target.identity);
        const stored = doc.records[index];
        if (!stored && !(target.instance && isInMemory(target.instance))) {
          throw missingPartner(doc, target.identity, ` (${SET_NEVER_CREATES})`);
        }
        const base = withoutInMemory(target.instance ?? stored!);
        const record = applyChanges(base, changes);
        // Warn about what this command chose: its parameters, and what an -Instance changes
        // relative to the stored record (or to the defaults, for a New -InMemory record).
        const chosen = chosenProperties(changes);
        const before = stored ?? newRecord(record.Identity);
        for (const name of PROPERTY_NAMES) if (target.instance && !sameValue(base[name], before[name])) chosen.add(name);
        warnings.push(...checkRecord(record, chosen));
        checkDomainsFree(store, doc, record);
        if (index < 0) doc.add(record);
        else doc.replace(index, record);
        records.push(record);
      }
      return { records, warnings };
    },
    { dryRun: opts.whatIf ?? false },
  );
}

/** Remove-CsXmppAllowedPartner: all named partners must exist, else nothing is removed. */
export async function removePartners(
  store: PartnerListStore,
  identities: readonly string[],
  opts: { whatIf?: boolean },
): Promise<EditResult> {
  return store.edit(
    (doc) => {
      const records: PartnerRecord[] = [];
      for (const identity of identities) {
        const index = doc.indexOf(identity);
        const record = doc.records[index];
        if (index < 0 || !record) throw missingPartner(doc, identity);
        records.push(record);
        doc.remove(index);
      }
      return { records, warnings: [] };
    },
    { dryRun: opts.whatIf ?? false },
  );
}

export interface ImportResult {
  readonly created: PartnerRecord[];
  /** Already on the list (same Identity) and left alone. */
  readonly existing: PartnerRecord[];
  /** Already on the list and replaced (`force`). */
  readonly replaced: PartnerRecord[];
  readonly warnings: string[];
}

/**
 * Imports records (e.g. from a Lync export) in one locked transaction: every record is checked
 * first (combinations, local domains, domains owned by another partner or by another imported
 * record) and every problem reported together; then all are written, or none. A record whose
 * Identity exists is left alone unless `force`, which replaces it.
 */
export async function importPartners(
  store: PartnerListStore,
  records: readonly PartnerRecord[],
  opts: { force?: boolean; whatIf?: boolean },
): Promise<ImportResult & { problems: string[] }> {
  return store.edit(
    (doc) => {
      const out = { created: [] as PartnerRecord[], existing: [] as PartnerRecord[], replaced: [] as PartnerRecord[], warnings: [] as string[], problems: [] as string[] };
      for (const record of records) {
        try {
          const index = doc.indexOf(record.Identity);
          if (index >= 0 && !opts.force) {
            out.existing.push(record);
            continue;
          }
          // What the exporting admin chose: the properties that differ from the defaults.
          const base = newRecord(record.Identity);
          out.warnings.push(...checkRecord(record, new Set(PROPERTY_NAMES.filter((n) => !sameValue(record[n], base[n])))));
          checkDomainsFree(store, doc, record);
          if (index >= 0) {
            doc.replace(index, record);
            out.replaced.push(record);
          } else {
            doc.add(record);
            out.created.push(record);
          }
        } catch (err) {
          if (!(err instanceof UsageError)) throw err;
          out.problems.push(`${record.Identity}: ${err.message}`);
        }
      }
      // All or nothing: a problem anywhere leaves the file as it was.
      if (out.problems.length > 0) throw Object.assign(new UsageError(out.problems[0]!), { problems: out.problems });
      return out;
    },
    { dryRun: opts.whatIf ?? false },
  );
}

const SET_NEVER_CREATES = 'Set-CsXmppAllowedPartner changes existing partners only; create one with New-CsXmppAllowedPartner';

/**
 * Invalid combinations throw. Warnings are returned (with the partner's name in front) only for
 * combinations the admin chose: one of their properties is in `chosen`. A record that merely
 * keeps the defaults, or an unrelated edit of a record, never warns.
 */
function checkRecord(record: PartnerRecord, chosen: ReadonlySet<PropertyName>): string[] {
  const { errors, warnings } = checkCombination(record);
  if (errors[0]) throw new UsageError(`${record.Identity}: invalid combination: ${errors[0]}`, 'TlsNegotiation');
  return warnings.filter((w) => w.properties.some((p) => chosen.has(p))).map((w) => `${record.Identity}: ${w.text}`);
}

function chosenProperties(changes: PartnerChanges): Set<PropertyName> {
  return new Set(Object.keys(changes) as PropertyName[]);
}

function checkDomainsFree(store: PartnerListStore, doc: PartnerDocument, record: PartnerRecord): void {
  checkLocal(store, record);
  for (const other of doc.records) {
    if (other.Identity === record.Identity) continue;
    for (const domain of [record.Identity, ...record.AdditionalDomains]) {
      if (domain === other.Identity || other.AdditionalDomains.includes(domain)) {
        const field = domain === record.Identity ? 'Identity' : 'AdditionalDomains';
        throw new UsageError(`domain '${domain}' already belongs to partner '${other.Identity}'`, field);
      }
    }
  }
}

function checkLocal(store: PartnerListStore, record: PartnerRecord): void {
  const local = checkNotLocal(record, store.localDomains);
  if (local) throw new UsageError(`${local.field}: ${local.message}`, local.field);
}

function missingPartner(list: { records: readonly PartnerRecord[] }, identity: string, otherwise = ''): UsageError {
  const owner = list.records.find((r) => r.AdditionalDomains.includes(identity));
  const hint = owner ? ` (it is an additional domain of '${owner.Identity}')` : otherwise;
  return new UsageError(`no partner with Identity '${identity}'${hint}`, 'Identity');
}
