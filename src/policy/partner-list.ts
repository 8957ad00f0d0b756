/**
 * The frozen snapshot of the allowed-partner list that the gateway reads on every stream and
 * stanza. A reload builds a new snapshot and swaps one reference, so readers never need a lock
 * (docs/design.md section 6) and lookups are O(1) in the number of partners.
 */
import type { PartnerRecord } from './types.js';

export class PartnerList {
  private readonly byDomain: ReadonlyMap<string, PartnerRecord>;

  constructor(readonly records: readonly PartnerRecord[]) {
    const map = new Map<string, PartnerRecord>();
    for (const record of records) {
      Object.freeze(record.AdditionalDomains);
      Object.freeze(record);
      for (const domain of [record.Identity, ...record.AdditionalDomains]) map.set(domain, record);
    }
    this.byDomain = map;
    Object.freeze(this.records);
  }

  static readonly EMPTY = new PartnerList([]);

  /** The partner that owns `domain` (Identity or additional domain; already normalised), if any. */
  partnerFor(domain: string): PartnerRecord | undefined {
    return this.byDomain.get(domain);
  }

  byIdentity(identity: string): PartnerRecord | undefined {
    const record = this.byDomain.get(identity);
    return record?.Identity === identity ? record : undefined;
  }

  get size(): number {
    return this.records.length;
  }
}
