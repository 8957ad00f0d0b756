/**
 * `xmpp-gateway partner get|new|set|remove --long-options`: each option is named after the
 * cmdlet parameter in kebab case (`--tls-negotiation` ⇔ `-TlsNegotiation`), plus list helpers
 * `--add-domain`, `--remove-domain`, `--clear-additional-domains` for AdditionalDomains.
 */
import { UsageError } from '../errors.js';
import type { PartnerRecord } from '../policy/types.js';
import {
  applyParameter,
  newInvocation,
  resolveParameter,
  SWITCH,
  type ArgValue,
  type PartnerInvocation,
  type Verb,
} from './partner-invocation.js';

const VERBS: readonly Verb[] = ['get', 'new', 'set', 'remove'];
const SWITCH_OPTIONS = new Set(['what-if', 'confirm', 'force', 'in-memory', 'local-store', 'clear-additional-domains']);

/** Whether `--option` exists for this verb (checked before its value is read, so a typo is named as such). */
function isKnownOption(verb: Verb, option: string): boolean {
  if (option === 'add-domain' || option === 'remove-domain' || option === 'clear-additional-domains') return verb === 'set' || verb === 'new';
  const pascal = kebabToPascal(option);
  try {
    return resolveParameter(verb, pascal) === pascal;
  } catch {
    return false;
  }
}

export function kebabToPascal(name: string): string {
  return name.split('-').map((w) => (w ? w[0]!.toUpperCase() + w.slice(1) : w)).join('');
}

export async function parsePartnerOptions(
  args: readonly string[],
  readInstance: (source: string) => Promise<PartnerRecord[]>,
): Promise<PartnerInvocation> {
  const [verbWord, ...rest] = args;
  const verb = VERBS.find((v) => v === verbWord?.toLowerCase());
  if (!verb) throw new UsageError(`partner needs one of ${VERBS.join(', ')}${verbWord ? `, not '${verbWord}'` : ''}`);
  const inv = newInvocation(verb);
  const add: string[] = [];
  const remove: string[] = [];
  let clear = false;

  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]!;
    const m = /^--([a-z][a-z-]*)(?:=(.*))?$/s.exec(arg);
    if (!m) throw new UsageError(`unexpected argument '${arg}' for partner ${verb} (options start with --)`);
    const option = m[1]!;
    let value: string | undefined = m[2];
    if (!isKnownOption(verb, option)) throw new UsageError(`partner ${verb} has no option --${option}`, option);
    const takesValue = !SWITCH_OPTIONS.has(option);
    if (takesValue && value === undefined) {
      value = rest[++i];
      if (value === undefined) throw new UsageError(`--${option} needs a value`, option);
    }
    if (option === 'add-domain' || option === 'remove-domain') {
      if (verb !== 'set' && verb !== 'new') throw new UsageError(`partner ${verb} has no option --${option}`, option);
      (option === 'add-domain' ? add : remove).push(...value!.split(','));
      continue;
    }
    if (option === 'clear-additional-domains') {
      if (verb !== 'set' && verb !== 'new') throw new UsageError(`partner ${verb} has no option --${option}`, option);
      clear = true;
      continue;
    }
    const pascal = kebabToPascal(option);
    let param: string;
    try {
      param = resolveParameter(verb, pascal);
    } catch {
      throw new UsageError(`partner ${verb} has no option --${option}`, option);
    }
    if (param !== pascal) throw new UsageError(`partner ${verb} has no option --${option}`, option);
    let argValue: ArgValue = value === undefined ? SWITCH : value;
    if (param === 'Instance') argValue = { kind: 'records', records: await readInstance(value!) };
    applyParameter(inv, param, argValue);
  }

  if (clear || add.length > 0 || remove.length > 0) {
    if (inv.changes.AdditionalDomains) {
      throw new UsageError('--additional-domains replaces the list: do not combine it with --add-domain, --remove-domain or --clear-additional-domains', 'additional-domains');
    }
    if (clear && (add.length > 0 || remove.length > 0)) {
      throw new UsageError('--clear-additional-domains cannot be combined with --add-domain or --remove-domain', 'clear-additional-domains');
    }
    const modifier: ArgValue = clear ? null : { kind: 'modifier', add, remove };
    applyParameter(inv, 'AdditionalDomains', modifier);
  }
  return inv;
}
