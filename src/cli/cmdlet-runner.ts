/**
 * Runs one PowerShell command line of the *-CsXmppAllowedPartner cmdlets: statements,
 * `$variables` (for the `New -InMemory` ⇒ edit ⇒ `Set -Instance` flow), pipelines into
 * Set/Remove, and Where-Object filters. Parsing is powershell-line.ts; the partner cmdlets
 * themselves run through the same PartnerInvocation as the `partner` long-option form.
 */
import { UsageError } from '../errors.js';
import { adminRoleRecords } from '../admin/roles.js';
import { toJsonRecord } from '../policy/record-json.js';
import type { PartnerRecord } from '../policy/types.js';
import { applyChanges, domainList, domainValue, FieldError, propertyName, propertyValue } from '../policy/validate.js';
import { cmdletHelp, type GetHelpRequest } from './help.js';
import { executePartner, type ExecutionContext } from './partner-executor.js';
import {
  applyParameter,
  CMDLET_NAMES,
  newInvocation,
  resolveParameter,
  SWITCH,
  type ArgValue,
  type Verb,
} from './partner-invocation.js';
import { evaluateFilter, parsePowerShellLine, type Command, type Pipeline, type Value } from './powershell-line.js';

const VERB_BY_CMDLET = new Map(Object.entries(CMDLET_NAMES).map(([verb, name]) => [name.toLowerCase(), verb as Verb]));
const WHERE_NAMES = new Set(['where-object', 'where', '?']);
const SWITCH_PARAMETERS = new Set(['LocalStore', 'Confirm', 'Force', 'InMemory', 'WhatIf']);

export function isCmdletName(name: string): boolean {
  return VERB_BY_CMDLET.has(name.toLowerCase());
}

/**
 * `xmpp-gateway Get-CsXmppAllowedPartner -Filter *.org`: the shell has already removed quotes,
 * so plain values are re-quoted for PowerShell; values that are PowerShell syntax themselves
 * (`$False`, `@{Add="x"}`, `"a","b"`) pass through, and `a,b` stays a comma list.
 */
export function argvToPowerShellLine(command: string, args: readonly string[]): string {
  const quote = (s: string) => `'${s.replaceAll("'", "''")}'`;
  const parts = args.map((arg) => {
    if (/^-[A-Za-z][\w]*(:.*)?$/.test(arg)) return arg;
    if (/^[$@{("']/.test(arg)) return arg;
    if (arg.includes(',')) return arg.split(',').map((s) => quote(s.trim())).join(',');
    return quote(arg);
  });
  return [command, ...parts].join(' ');
}

export interface CmdletLineResult {
  readonly records: PartnerRecord[];
  /** Other objects the line emitted (Get-CsAdminRole's roles), printed after the records. */
  readonly objects?: Record<string, unknown>[];
  /** Whether the line ends in something that prints records (Get, Where-Object, -InMemory, -WhatIf, a variable). */
  readonly printsRecords: boolean;
  /** Help text (Get-Help, <cmdlet> -?), printed before any records. */
  readonly text: string;
}

export async function runCmdletLine(line: string, ctx: ExecutionContext): Promise<CmdletLineResult> {
  const statements = parsePowerShellLine(line);
  const variables = new Map<string, PartnerRecord[]>();
  const output: PartnerRecord[] = [];
  const objects: Record<string, unknown>[] = [];
  let printsRecords = false;
  let text = '';
  for (const statement of statements) {
    if (statement.kind === 'pipeline') {
      const help = helpRequest(statement);
      if (help !== undefined) {
        text += cmdletHelp(help);
        continue;
      }
      if (statement.commands[0]?.name.toLowerCase() === 'get-csadminrole') {
        objects.push(...runAdminRolePipeline(statement));
        continue;
      }
      const result = await runPipeline(statement, variables, ctx);
      output.push(...result.records);
      printsRecords ||= result.prints;
      continue;
    }
    const name = statement.variable.toLowerCase();
    if (statement.path.length === 0) {
      const value = statement.value;
      if (value.kind === 'pipeline') variables.set(name, (await runPipeline(value, variables, ctx)).records);
      else variables.set(name, recordsOf(value, variables, `$${statement.variable}`));
      continue;
    }
    const records = variables.get(name);
    if (!records) throw new UsageError(`$${statement.variable} is not set (assign it first, e.g. $${statement.variable} = New-CsXmppAllowedPartner ... -InMemory)`);
    if (statement.path.length !== 1 || statement.value.kind === 'pipeline') {
      throw new UsageError(`only $${statement.variable}.<Property> = <value> can be assigned`);
    }
    variables.set(name, records.map((r) => setProperty(r, statement.path[0]!, toArg(statement.value as Value, variables))));
  }
  return objects.length > 0 ? { records: output, objects, printsRecords, text } : { records: output, printsRecords, text };
}

/**
 * `Get-CsAdminRole [-Identity R] | Where-Object {...}`: the built-in admin roles (src/admin/roles.ts),
 * so `Get-CsAdminRole | Where-Object {$_.Cmdlets -match "Set-CsXmppAllowedPartner"}` runs as in Lync.
 */
function runAdminRolePipeline(pipeline: Pipeline): Record<string, unknown>[] {
  const [first, ...rest] = pipeline.commands;
  if (pipeline.input) throw new UsageError('Get-CsAdminRole does not accept pipelined input');
  let roles = adminRoleRecords();
  for (const p of first!.parameters) {
    if (p.name.toLowerCase() !== 'identity' || p.value === null || p.value.kind !== 'string') {
      throw new UsageError(`Get-CsAdminRole takes only -Identity <role> (got -${p.name})`, p.name);
    }
    const want = p.value.value.toLowerCase();
    roles = roles.filter((r) => String(r.Identity).toLowerCase() === want);
  }
  const positional = first!.arguments[0]?.value;
  if (positional?.kind === 'string') roles = roles.filter((r) => String(r.Identity).toLowerCase() === positional.value.toLowerCase());
  for (const command of rest) {
    if (!WHERE_NAMES.has(command.name.toLowerCase()) || !command.filter) {
      throw new UsageError(`Get-CsAdminRole can only be piped into Where-Object {...} (got ${command.name})`);
    }
    const filter = command.filter;
    roles = roles.filter((r) => evaluateFilter(filter, r));
  }
  return roles;
}

/** The help text when every statement of the line asks for help (no partner file is needed then). */
export function helpOnlyLine(line: string): string | undefined {
  const statements = parsePowerShellLine(line);
  let text = '';
  for (const statement of statements) {
    const help = statement.kind === 'pipeline' ? helpRequest(statement) : undefined;
    if (help === undefined) return undefined;
    text += cmdletHelp(help);
  }
  return statements.length > 0 ? text : undefined;
}

const HELP_NAMES = new Set(['get-help', 'help']);
const HELP_SWITCHES = new Set(['examples', 'full', 'detailed']);

/**
 * `Get-Help <cmdlet> [-Examples|-Full|-Detailed|-Parameter P]` and `<cmdlet> -?` as PowerShell
 * answers them; undefined for any other pipeline. Help stands alone (nothing piped in or out).
 */
function helpRequest(pipeline: Pipeline): GetHelpRequest | undefined {
  const first = pipeline.commands[0];
  if (!first) return undefined;
  const asksHelp = (c: Command) => c.arguments.some((a) => a.value.kind === 'string' && a.value.value === '-?');
  const lower = first.name.toLowerCase();
  if (isCmdletName(first.name) && asksHelp(first)) {
    if (pipeline.commands.length > 1 || pipeline.input) throw new UsageError(`${first.name} -? prints help and takes no pipeline`);
    return { name: first.name, examplesOnly: false, parameter: undefined };
  }
  if (!HELP_NAMES.has(lower)) return undefined;
  if (pipeline.commands.length > 1 || pipeline.input) throw new UsageError(`${first.name} prints help and takes no pipeline`);
  const positional: string[] = [];
  let name: string | undefined;
  let parameter: string | undefined;
  let examplesOnly = false;
  const text = (v: Value, what: string): string => {
    if (v.kind !== 'string') throw new UsageError(`${first.name}: ${what} must be a name`);
    return v.value;
  };
  for (const p of first.parameters) {
    const key = p.name.toLowerCase();
    if (HELP_SWITCHES.has(key)) {
      examplesOnly = key === 'examples';
      // `-Examples New-Cs...`: a switch takes no value; the word after it is the name.
      if (p.value !== null && !p.colon) positional.push(text(p.value, 'the cmdlet'));
    } else if (key === 'name') {
      if (p.value === null) throw new UsageError(`${first.name}: -Name needs a cmdlet name`, 'Name');
      name = text(p.value, '-Name');
    } else if (key === 'parameter') {
      if (p.value === null) throw new UsageError(`${first.name}: -Parameter needs a parameter name`, 'Parameter');
      parameter = text(p.value, '-Parameter');
    } else {
      throw new UsageError(`${first.name} has no parameter -${p.name} (it knows -Name, -Examples, -Full, -Detailed, -Parameter)`, p.name);
    }
  }
  positional.push(...first.arguments.map((a) => text(a.value, 'the cmdlet')));
  if (positional.length > 1 || (positional.length === 1 && name !== undefined)) {
    throw new UsageError(`${first.name} takes one cmdlet name`);
  }
  return { name: name ?? positional[0], examplesOnly, parameter };
}

async function runPipeline(
  pipeline: Pipeline,
  variables: Map<string, PartnerRecord[]>,
  ctx: ExecutionContext,
): Promise<{ records: PartnerRecord[]; prints: boolean }> {
  let records: PartnerRecord[] | undefined = pipeline.input ? recordsOf(pipeline.input, variables, 'pipeline input') : undefined;
  let prints = pipeline.commands.length === 0;
  for (const command of pipeline.commands) {
    const lower = command.name.toLowerCase();
    if (WHERE_NAMES.has(lower)) {
      if (!command.filter) throw new UsageError(`${command.name} needs a filter such as {$_.SaslNegotiation -eq "Required"}`);
      const filter = command.filter;
      records = (records ?? []).filter((r) => evaluateFilter(filter, toJsonRecord(r)));
      prints = true;
      continue;
    }
    const verb = VERB_BY_CMDLET.get(lower);
    if (!verb) {
      throw new UsageError(`unknown command '${command.name}': this command line knows ${Object.values(CMDLET_NAMES).join(', ')} and Where-Object`);
    }
    if (records !== undefined && (verb === 'get' || verb === 'new')) {
      throw new UsageError(`${CMDLET_NAMES[verb]} does not accept pipelined input`);
    }
    const inv = invocationFor(verb, command, variables);
    records = await executePartner(inv, ctx, records);
    prints = verb === 'get' || inv.inMemory || inv.whatIf;
  }
  return { records: records ?? [], prints };
}

function invocationFor(verb: Verb, command: Command, variables: Map<string, PartnerRecord[]>) {
  const inv = newInvocation(verb);
  const positional: Value[] = command.arguments.map((a) => a.value);
  const seen = new Set<string>();
  for (const p of command.parameters) {
    const param = resolveParameter(verb, p.name);
    if (seen.has(param)) throw new UsageError(`-${param} is given more than once`, param);
    seen.add(param);
    if (SWITCH_PARAMETERS.has(param) && p.value !== null && !p.colon) {
      // `-WhatIf contoso.com`: a switch takes no value; the word after it is positional.
      positional.push(p.value);
      applyParameter(inv, param, SWITCH);
      continue;
    }
    applyParameter(inv, param, p.value === null ? SWITCH : toArg(p.value, variables));
  }
  // Identity is the cmdlets' first positional parameter (Get-CsXmppAllowedPartner contoso.com).
  if (positional.length > 0) {
    if (positional.length > 1 || seen.has('Identity')) {
      throw new UsageError(`${CMDLET_NAMES[verb]} takes at most one positional value (the Identity)`);
    }
    applyParameter(inv, 'Identity', toArg(positional[0]!, variables));
  }
  return inv;
}

function toArg(value: Value, variables: Map<string, PartnerRecord[]>): ArgValue {
  switch (value.kind) {
    case 'string':
    case 'number':
    case 'boolean':
      return value.value;
    case 'null':
      return null;
    case 'array':
      return value.items.map((v) => toArg(v, variables));
    case 'hashtable': {
      const add: ArgValue[] = [];
      const remove: ArgValue[] = [];
      let replace: ArgValue[] | undefined;
      for (const entry of value.entries) {
        const key = entry.key.toLowerCase();
        const v = toArg(entry.value, variables);
        const items = Array.isArray(v) ? v : [v];
        if (key === 'add') add.push(...items);
        else if (key === 'remove') remove.push(...items);
        else if (key === 'replace') replace = items;
        else throw new UsageError(`@{${entry.key}=...} is not a list modifier: use @{Add=...}, @{Remove=...} or @{Replace=...}`);
      }
      if (replace) {
        if (add.length || remove.length) throw new UsageError('@{Replace=...} cannot be combined with Add or Remove');
        return replace;
      }
      return { kind: 'modifier', add, remove };
    }
    case 'variable': {
      const records = variables.get(value.name.toLowerCase());
      if (!records) throw new UsageError(`$${value.name} is not set`);
      if (value.path.length === 0) return { kind: 'records', records };
      const name = propertyName(value.path[0]!);
      if (!name || value.path.length > 1) throw new UsageError(`$${value.name}.${value.path.join('.')} is not a partner property`);
      const got = records[0]?.[name];
      return Array.isArray(got) ? [...got] : (got as ArgValue);
    }
    case 'scriptblock':
      throw new UsageError('a script block {...} is only understood by Where-Object');
  }
}

function recordsOf(value: Value, variables: Map<string, PartnerRecord[]>, what: string): PartnerRecord[] {
  if (value.kind === 'variable' && value.path.length === 0) {
    const records = variables.get(value.name.toLowerCase());
    if (records) return records;
    throw new UsageError(`$${value.name} is not set`);
  }
  throw new UsageError(`${what} must be partner records (a $variable holding them)`);
}

/** `$p.Description = "x"`: the same typing and validation as -Description "x". */
function setProperty(record: PartnerRecord, property: string, value: ArgValue): PartnerRecord {
  const name = propertyName(property);
  if (!name) throw new UsageError(`'${property}' is not a partner property`, property);
  try {
    if (name === 'Identity') return { ...record, Identity: domainValue(name, value) };
    if (name === 'AdditionalDomains') {
      const list = Array.isArray(value) ? value : value === null ? [] : [value];
      return applyChanges(record, { AdditionalDomains: { replace: domainList(name, list) } });
    }
    if (Array.isArray(value) || (value !== null && typeof value === 'object')) throw new FieldError(name, 'takes one value');
    return applyChanges(record, { [name]: propertyValue(name, value === '' ? null : value) });
  } catch (err) {
    if (err instanceof FieldError) throw new UsageError(`$_.${name}: ${err.message}`, name);
    throw err;
  }
}
