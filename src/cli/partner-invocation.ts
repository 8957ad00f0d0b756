/**
 * One partner command, whichever form it was typed in (`partner new --identity x` or
 * `New-CsXmppAllowedPartner -Identity x`): parameters are checked against the cmdlet's
 * parameter set and typed here, once, so both forms accept and refuse the same things.
 */
import { UsageError } from '../errors.js';
import type { ListModifier, PartnerChanges, PartnerRecord } from '../policy/types.js';
import { domainList, domainValue, FieldError, propertyValue } from '../policy/validate.js';

export type Verb = 'get' | 'new' | 'set' | 'remove';

export const CMDLET_NAMES: Record<Verb, string> = {
  get: 'Get-CsXmppAllowedPartner',
  new: 'New-CsXmppAllowedPartner',
  set: 'Set-CsXmppAllowedPartner',
  remove: 'Remove-CsXmppAllowedPartner',
};

/** A parameter value after the command line was read: text from `--options`, typed from PowerShell. */
export type ArgValue =
  | string
  | number
  | boolean
  | null
  | readonly ArgValue[]
  | { readonly kind: 'modifier'; readonly add: readonly ArgValue[]; readonly remove: readonly ArgValue[] }
  | { readonly kind: 'switch' }
  | { readonly kind: 'records'; readonly records: readonly PartnerRecord[] };

export const SWITCH: ArgValue = { kind: 'switch' };

export interface PartnerInvocation {
  readonly verb: Verb;
  identity?: string;
  filter?: string;
  localStore: boolean;
  changes: PartnerChanges;
  /** -Instance / piped records (Set, Remove). */
  instances?: PartnerRecord[];
  whatIf: boolean;
  confirm: boolean;
  force: boolean;
  inMemory: boolean;
}

const PROPERTIES = [
  'AdditionalDomains', 'ConnectionLimit', 'Description', 'EnableKeepAlive', 'PartnerType',
  'ProxyFqdn', 'SaslNegotiation', 'SupportDialbackNegotiation', 'TlsNegotiation',
] as const;

/** Parameter sets from the cmdlet documentation (plus -Force/-Confirm/-WhatIf on Remove, as Set has). */
export const PARAMETERS: Record<Verb, readonly string[]> = {
  get: ['Identity', 'Filter', 'LocalStore', 'BypassDualWrite'],
  new: ['Identity', 'Domain', ...PROPERTIES, 'Confirm', 'Force', 'InMemory', 'WhatIf', 'BypassDualWrite'],
  set: ['Identity', 'Instance', ...PROPERTIES, 'Confirm', 'Force', 'WhatIf', 'BypassDualWrite'],
  remove: ['Identity', 'Instance', 'Confirm', 'Force', 'WhatIf', 'BypassDualWrite'],
};
const SWITCHES = new Set(['LocalStore', 'Confirm', 'Force', 'InMemory', 'WhatIf']);

/** Resolves a parameter name case-insensitively, also by unambiguous prefix as PowerShell does. */
export function resolveParameter(verb: Verb, name: string): string {
  const allowed = PARAMETERS[verb];
  const lower = name.toLowerCase();
  const exact = allowed.find((p) => p.toLowerCase() === lower);
  if (exact) return exact;
  const prefixed = allowed.filter((p) => p.toLowerCase().startsWith(lower));
  if (prefixed.length === 1 && prefixed[0]) return prefixed[0];
  if (prefixed.length > 1) {
    throw new UsageError(`parameter -${name} is ambiguous for ${CMDLET_NAMES[verb]}: ${prefixed.map((p) => `-${p}`).join(', ')}`, name);
  }
  throw new UsageError(`${CMDLET_NAMES[verb]} has no parameter -${name}`, name);
}

export function newInvocation(verb: Verb): PartnerInvocation {
  return { verb, localStore: false, changes: {}, whatIf: false, confirm: false, force: false, inMemory: false };
}

/** Applies one parameter (already resolved by `resolveParameter`) to the invocation. */
export function applyParameter(inv: PartnerInvocation, param: string, value: ArgValue): void {
  try {
    applyTyped(inv, param, value);
  } catch (err) {
    if (err instanceof FieldError) throw new UsageError(`-${param}: ${err.message}`, param);
    throw err;
  }
}

function applyTyped(inv: PartnerInvocation, param: string, value: ArgValue): void {
  if (SWITCHES.has(param)) {
    const on = isSwitch(value) ? true : switchValue(param, value);
    if (param === 'LocalStore') inv.localStore = on;
    else if (param === 'Confirm') inv.confirm = on;
    else if (param === 'Force') inv.force = on;
    else if (param === 'InMemory') inv.inMemory = on;
    else inv.whatIf = on;
    return;
  }
  if (isSwitch(value)) throw new UsageError(`-${param} needs a value`, param);
  switch (param) {
    case 'Identity':
    case 'Domain': {
      if (inv.identity !== undefined) {
        throw new UsageError(inv.verb === 'new' ? 'use -Identity or -Domain, not both' : `-${param} given twice`, param);
      }
      inv.identity = domainArg(param, value);
      return;
    }
    case 'Filter':
      inv.filter = textArg(param, value);
      return;
    case 'BypassDualWrite':
      return; // Lync replication switch; meaningless with one partner file, accepted for scripts that pass it.
    case 'Instance':
      inv.instances = [...(inv.instances ?? []), ...recordsArg(value)];
      return;
    case 'AdditionalDomains':
      inv.changes.AdditionalDomains = listModifier(value);
      return;
    default: {
      const name = param as Exclude<(typeof PROPERTIES)[number], 'AdditionalDomains'>;
      (inv.changes as Record<string, unknown>)[name] = propertyValue(name, scalarArg(param, value));
    }
  }
}

/** PSListModifier: a list replaces, @{Add=..; Remove=..} edits, $Null (or empty) clears. */
export function listModifier(value: ArgValue): ListModifier {
  if (value !== null && typeof value === 'object' && !Array.isArray(value) && 'kind' in value && value.kind === 'modifier') {
    return {
      add: domainList('AdditionalDomains', flatten(value.add)),
      remove: domainList('AdditionalDomains', flatten(value.remove)),
    };
  }
  if (value === null || value === '') return { replace: [] };
  return { replace: domainList('AdditionalDomains', flatten([value])) };
}

/** Nested lists flattened; text like "a.example,b.example" (from `--options`) split on commas. */
function flatten(values: readonly ArgValue[]): unknown[] {
  return values.flatMap((v) =>
    Array.isArray(v) ? flatten(v) : typeof v === 'string' && v.includes(',') ? v.split(',').map((s) => s.trim()) : [v],
  );
}

function isSwitch(value: ArgValue): boolean {
  return value !== null && typeof value === 'object' && !Array.isArray(value) && 'kind' in value && value.kind === 'switch';
}

function switchValue(param: string, value: ArgValue): boolean {
  if (typeof value === 'boolean') return value;
  if (typeof value === 'string' && /^\$?(true|false)$/i.test(value)) return /true/i.test(value);
  throw new UsageError(`-${param} is a switch: use -${param} or -${param}:$false`, param);
}

function scalarArg(param: string, value: ArgValue): unknown {
  if (Array.isArray(value)) throw new UsageError(`-${param} takes one value, not a list`, param);
  if (value !== null && typeof value === 'object') throw new UsageError(`-${param} does not take that kind of value`, param);
  // From `--options` every value is text: an empty string unsets nullable properties.
  return value === '' ? null : value;
}

function textArg(param: string, value: ArgValue): string {
  const v = scalarArg(param, value);
  if (typeof v !== 'string' && typeof v !== 'number') throw new UsageError(`-${param} needs a text value`, param);
  return String(v);
}

function domainArg(param: string, value: ArgValue): string {
  return domainValue(param, textArg(param, value));
}

function recordsArg(value: ArgValue): PartnerRecord[] {
  if (value !== null && typeof value === 'object' && !Array.isArray(value) && 'kind' in value && value.kind === 'records') {
    return [...value.records];
  }
  throw new UsageError('-Instance needs a partner record (from New-CsXmppAllowedPartner -InMemory or Get-CsXmppAllowedPartner)', 'Instance');
}
