import { PROPERTY_NAMES, type PartnerRecord } from './types.js';

/** A record as a plain JSON object with every property, in canonical order. */
export function toJsonRecord(record: PartnerRecord): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const name of PROPERTY_NAMES) {
    const value = record[name];
    out[name] = Array.isArray(value) ? [...value] : value;
  }
  return out;
}
