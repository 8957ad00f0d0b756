/**
 * Typing and validation of partner properties, shared by every way a record comes in: the
 * YAML file, `--long-options`, PowerShell cmdlet lines and piped JSON. One place decides what a
 * valid value is, so the file, the CLI and the gateway can never disagree.
 */
import { normalizeDomain, normalizeHostPort } from './domain.js';
import {
  PARTNER_TYPE,
  PROPERTY_NAMES,
  RECORD_DEFAULTS,
  SASL_NEGOTIATION,
  TLS_NEGOTIATION,
  UINT32_MAX,
  partnerDomains,
  type ListModifier,
  type PartnerChanges,
  type PartnerRecord,
  type PropertyName,
} from './types.js';

/** A problem with one property; the caller adds where it came from (file:line or parameter). */
export class FieldError extends Error {
  override name = 'FieldError';
  constructor(readonly field: string, message: string) {
    super(message);
  }
}

const CANONICAL_NAMES = new Map(PROPERTY_NAMES.map((n) => [n.toLowerCase(), n]));

/** Case-insensitive property lookup (`tlsnegotiation` ⇒ `TlsNegotiation`), undefined if unknown. */
export function propertyName(name: string): PropertyName | undefined {
  return CANONICAL_NAMES.get(name.toLowerCase());
}

function enumValue<T extends string>(field: string, allowed: readonly T[], value: unknown): T {
  if (typeof value === 'string') {
    const found = allowed.find((a) => a.toLowerCase() === value.trim().toLowerCase());
    if (found) return found;
  }
  throw new FieldError(field, `${show(value)} is not one of ${allowed.join(', ')}`);
}

export function booleanValue(field: string, value: unknown): boolean {
  if (typeof value === 'boolean') return value;
  if (typeof value === 'string') {
    const v = value.trim().toLowerCase().replace(/^\$/, '');
    if (v === 'true' || v === '1') return true;
    if (v === 'false' || v === '0') return false;
  }
  if (value === 1) return true;
  if (value === 0) return false;
  throw new FieldError(field, `${show(value)} is not a boolean (use true or false)`);
}

function uint32OrNull(field: string, value: unknown): number | null {
  if (value === null || value === undefined) return null;
  const text = typeof value === 'number' ? String(value) : typeof value === 'string' ? value.trim() : '';
  if (/^\d+$/.test(text)) {
    const n = Number(text);
    if (n <= UINT32_MAX) return n;
    throw new FieldError(field, `${show(value)} is larger than ${UINT32_MAX} (UInt32)`);
  }
  throw new FieldError(field, `${show(value)} is not a whole number from 1 to ${UINT32_MAX}`);
}

function stringOrNull(field: string, value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  throw new FieldError(field, `${show(value)} is not text`);
}

/** A partner's domain (Identity, AdditionalDomains): normalised, and a name other servers can reach. */
export function domainValue(field: string, value: unknown): string {
  if (typeof value !== 'string') throw new FieldError(field, `${show(value)} is not a domain name`);
  let domain: string;
  try {
    domain = normalizeDomain(value);
  } catch (err) {
    throw new FieldError(field, (err as Error).message);
  }
  // A single label (localhost, intranet) is no public DNS name a partner's server can be found by.
  if (!domain.includes('.')) {
    throw new FieldError(field, `'${value}' is a single-label name; a partner domain needs at least two labels (e.g. partner.example)`);
  }
  return domain;
}

/** The gateway's own localDomains can never be a partner's: streams from them would claim to be us. */
export function checkNotLocal(record: PartnerRecord, localDomains: ReadonlySet<string>): FieldError | undefined {
  for (const domain of partnerDomains(record)) {
    if (localDomains.has(domain)) {
      const field = domain === record.Identity ? 'Identity' : 'AdditionalDomains';
      return new FieldError(field, `${domain} is one of this gateway's own localDomains (gateway.yaml), so it cannot be a partner's domain`);
    }
  }
  return undefined;
}

export function domainList(field: string, value: unknown): string[] {
  if (value === null || value === undefined) return [];
  const items = Array.isArray(value)
    ? value
    : typeof value === 'string'
      ? value.split(',').map((s) => s.trim()).filter((s) => s !== '')
      : [value];
  const out: string[] = [];
  for (const item of items) {
    const domain = domainValue(field, item);
    if (!out.includes(domain)) out.push(domain);
  }
  return out;
}

function proxyValue(field: string, value: unknown): string | null {
  const text = stringOrNull(field, value);
  if (text === null || text.trim() === '') return null;
  try {
    return normalizeHostPort(text);
  } catch (err) {
    throw new FieldError(field, (err as Error).message);
  }
}

/** Types one property value (everything but Identity/AdditionalDomains lists of modifiers). */
export function propertyValue(name: Exclude<PropertyName, 'Identity' | 'AdditionalDomains'>, value: unknown) {
  switch (name) {
    case 'ConnectionLimit': {
      const limit = uint32OrNull(name, value);
      if (limit === 0) {
        throw new FieldError(name, "0 would refuse every stream of this partner; give 1 or more, or unset it ('' / $null) for the gateway's partnerConnectionLimit (to cut a partner off, remove it)");
      }
      return limit;
    }
    case 'Description':
      return stringOrNull(name, value);
    case 'EnableKeepAlive':
    case 'SupportDialbackNegotiation':
      return booleanValue(name, value);
    case 'PartnerType':
      return enumValue(name, PARTNER_TYPE, value);
    case 'ProxyFqdn':
      return proxyValue(name, value);
    case 'SaslNegotiation':
      return enumValue(name, SASL_NEGOTIATION, value);
    case 'TlsNegotiation':
      return enumValue(name, TLS_NEGOTIATION, value);
  }
}

/**
 * Builds a full record from a plain object (a YAML mapping, a JSON record). Omitted properties
 * take their defaults; unknown keys are refused so a typo never silently does nothing.
 */
export function recordFromObject(obj: Record<string, unknown>): PartnerRecord {
  const fields: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(obj)) {
    const name = propertyName(key);
    if (!name || name !== key) {
      throw new FieldError(key, name ? `property names are case-sensitive here: write ${name}` : 'unknown property');
    }
    fields[name] = value;
  }
  if (fields.Identity === undefined || fields.Identity === null) {
    throw new FieldError('Identity', 'is required');
  }
  const changes: PartnerChanges = {};
  for (const name of PROPERTY_NAMES) {
    if (name === 'Identity' || name === 'AdditionalDomains' || !(name in fields)) continue;
    (changes as Record<string, unknown>)[name] = propertyValue(name, fields[name]);
  }
  if ('AdditionalDomains' in fields) {
    changes.AdditionalDomains = { replace: domainList('AdditionalDomains', fields.AdditionalDomains) };
  }
  return applyChanges(newRecord(domainValue('Identity', fields.Identity)), changes);
}

export function newRecord(identity: string): PartnerRecord {
  return { Identity: identity, ...RECORD_DEFAULTS };
}

export function applyListModifier(current: readonly string[], mod: ListModifier): string[] {
  if ('replace' in mod) return [...mod.replace];
  const out = current.filter((d) => !mod.remove.includes(d));
  for (const d of mod.add) if (!out.includes(d)) out.push(d);
  return out;
}

export function applyChanges(record: PartnerRecord, changes: PartnerChanges): PartnerRecord {
  const { AdditionalDomains, ...rest } = changes;
  const next: PartnerRecord = { ...record, ...rest };
  if (!AdditionalDomains) return next;
  const domains = applyListModifier(record.AdditionalDomains, AdditionalDomains).filter((d) => d !== record.Identity);
  return { ...next, AdditionalDomains: domains };
}

/** A combination that leaves a setting without any effect, and the properties that make it up. */
export interface CombinationWarning {
  readonly text: string;
  readonly properties: readonly PropertyName[];
}

/**
 * The negotiation combination matrix (docs/design.md section 3, after Lync's Control Panel).
 * Authentication paths: SASL EXTERNAL needs TLS; SaslNegotiation Required makes EXTERNAL the only
 * way in; dialback needs SupportDialbackNegotiation. A record with no path is invalid. A record
 * in which a setting can never take effect gets a warning.
 *
 * SaslNegotiation Required with SupportDialbackNegotiation true (the cmdlet's default record) is
 * not such a case: dialback does not authenticate the partner's streams, but the gateway answers
 * the partner's dialback verification requests (db:verify) about our own domains, and dialback
 * becomes the partner's fallback as soon as SaslNegotiation is relaxed to Optional.
 */
export function checkCombination(r: PartnerRecord): { errors: string[]; warnings: CombinationWarning[] } {
  const errors: string[] = [];
  const warnings: CombinationWarning[] = [];
  const saslPossible = r.TlsNegotiation !== 'NotSupported' && r.SaslNegotiation !== 'NotSupported';
  const dialbackPossible = r.SupportDialbackNegotiation && r.SaslNegotiation !== 'Required';
  if (!saslPossible && !dialbackPossible) {
    if (r.TlsNegotiation === 'NotSupported' && r.SaslNegotiation === 'Required') {
      errors.push(
        'TlsNegotiation NotSupported with SaslNegotiation Required: SASL EXTERNAL needs TLS, so no authentication can ever succeed',
      );
    } else {
      errors.push(
        'SaslNegotiation NotSupported with SupportDialbackNegotiation false: no authentication method is left, so no connection can ever succeed',
      );
    }
    return { errors, warnings };
  }
  if (r.TlsNegotiation === 'Optional' && !dialbackPossible) {
    warnings.push({
      text: 'TlsNegotiation Optional: without TLS this partner can never authenticate (it needs SASL EXTERNAL), so plain TCP is useless',
      properties: ['TlsNegotiation', 'SaslNegotiation', 'SupportDialbackNegotiation'],
    });
  }
  if (r.TlsNegotiation === 'NotSupported' && r.SaslNegotiation === 'Optional') {
    warnings.push({
      text: 'TlsNegotiation NotSupported with SaslNegotiation Optional: SASL EXTERNAL needs TLS, so SaslNegotiation is unused',
      properties: ['TlsNegotiation', 'SaslNegotiation'],
    });
  }
  return { errors, warnings };
}

/** Property values compared as stored: lists item by item, scalars by identity. */
export function sameValue(a: unknown, b: unknown): boolean {
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => x === b[i]);
  return a === b;
}

/** Every domain may belong to one partner only, as Identity or additional domain. */
export function findDuplicateDomain(records: readonly PartnerRecord[]): { domain: string; first: string; second: string } | undefined {
  const owner = new Map<string, string>();
  for (const r of records) {
    for (const d of [r.Identity, ...r.AdditionalDomains]) {
      const prev = owner.get(d);
      if (prev !== undefined) {
        return { domain: d, first: prev, second: r.Identity };
      }
      owner.set(d, r.Identity);
    }
  }
  return undefined;
}

function show(value: unknown): string {
  if (typeof value === 'string') return `'${value}'`;
  if (value === null) return '$null';
  return JSON.stringify(value) ?? String(value);
}
