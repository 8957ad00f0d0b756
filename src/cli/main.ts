/**
 * xmpp-gateway command line.
 *
 *   xmpp-gateway [--config FILE] [--json] serve
 *   xmpp-gateway [--config FILE] [--json] status
 *   xmpp-gateway [--config FILE] reload|stop
 *   xmpp-gateway [--config FILE] [--json] approvals list | revoke --local JID [--remote JID]
 *   xmpp-gateway [--config FILE] [--json] check | probe DOMAIN | explain --from DOMAIN | import FILE
 *   xmpp-gateway [--config FILE] [--json] cluster import [--force]
 *   xmpp-gateway [--config FILE] [--json] partner get|new|set|remove [--options]
 *   xmpp-gateway [--config FILE] [--json] cmdlet '<one PowerShell command line>'
 *   xmpp-gateway [--config FILE] [--json] Get-CsXmppAllowedPartner -Filter "*.org"
 *
 * `--config` and `--json` may stand before or after the command word. Results go to stdout;
 * warnings and errors go to stderr, errors as one line, with a non-zero exit status.
 */
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { DEFAULT_CONFIG_PATH, loadGatewayConfig } from '../config/load.js';
import { GatewayError } from '../errors.js';
import { partnerStoreFor } from '../cluster/central-store.js';
import type { PartnerRecord } from '../policy/types.js';
import { argvToPowerShellLine, helpOnlyLine, isCmdletName, runCmdletLine } from './cmdlet-runner.js';
import { commandHelp, cmdletHelp, GLOBAL_USAGE } from './help.js';
import { AuditLog, osActor } from '../admin/audit.js';
import { formatJson, formatList, formatObjects } from './output.js';
import type { ExecutionContext } from './partner-executor.js';
import { executePartner } from './partner-executor.js';
import { parsePartnerOptions } from './partner-options.js';
import { parseRecords } from './record-input.js';


const ADMIN_COMMANDS = new Set(['serve', 'status', 'reload', 'stop']);
/** Cmdlets that change the partner list: a refused one is recorded in the audit trail. */
const CHANGING_CMDLET = /\b(New|Set|Remove)-CsXmppAllowedPartner\b/i;

interface GlobalOptions {
  configPath: string;
  json: boolean;
  rest: string[];
}

export function splitGlobalOptions(argv: readonly string[]): GlobalOptions {
  const out: GlobalOptions = { configPath: DEFAULT_CONFIG_PATH, json: false, rest: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--json') out.json = true;
    else if (arg === '--config') {
      const value = argv[++i];
      if (value === undefined) throw new GatewayError('GW_ERR_USAGE', '--config needs a file name');
      out.configPath = value;
    } else if (arg.startsWith('--config=')) out.configPath = arg.slice('--config='.length);
    else out.rest.push(arg);
  }
  return out;
}

export async function main(argv: readonly string[]): Promise<number> {
  const { configPath, json, rest } = splitGlobalOptions(argv);
  const [command, ...args] = rest;
  const out = (text: string) => process.stdout.write(text);
  const warn = (text: string) => process.stderr.write(`WARNING: ${text}\n`);

  if (!command || command === 'help') {
    // `help serve`, `help partner new`: the command's own page, as `serve --help` prints it.
    const page = args[0] === undefined ? undefined : isCmdletName(args[0]) ? cmdletHelp({ name: args[0], examplesOnly: false, parameter: undefined }) : commandHelp(args[0], args.slice(1));
    out(page ?? GLOBAL_USAGE);
    return command ? 0 : 1;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    out(isCmdletName(command) ? cmdletHelp({ name: command, examplesOnly: false, parameter: undefined }) : (commandHelp(command, args) ?? GLOBAL_USAGE));
    return 0;
  }
  if (ADMIN_COMMANDS.has(command) && args.length > 0) {
    throw new GatewayError('GW_ERR_USAGE', `${command} takes no arguments besides --config${command === 'status' ? ' and --json' : ''} (got '${args[0]}')`);
  }
  if (command === 'serve') {
    const { serve } = await import('../gateway.js');
    return serve(configPath);
  }
  if (command === 'status') {
    const { status } = await import('../admin/status-command.js');
    return status(configPath, json);
  }
  if (command === 'approvals') {
    const { approvals } = await import('./approvals-command.js');
    return approvals(configPath, json, args);
  }
  if (command === 'check' || command === 'probe' || command === 'explain' || command === 'import') {
    const diagnostics = await import('./diagnostic-commands.js');
    return diagnostics.DIAGNOSTIC_COMMANDS[command](configPath, json, args);
  }
  if (command === 'cluster') {
    const { clusterCommand } = await import('./cluster-command.js');
    return clusterCommand(configPath, json, args);
  }
  if (command === 'reload' || command === 'stop') {
    const control = await import('../admin/control-commands.js');
    return command === 'reload' ? control.reload(configPath) : control.stop(configPath);
  }

  // Get-Help and `<cmdlet> -?` answer without reading any configuration.
  const line = command === 'cmdlet' && args.length === 1 ? args[0]! : isCmdletName(command) || /^get-help$/i.test(command) ? argvToPowerShellLine(command, args) : undefined;
  const help = line === undefined ? undefined : helpOnlyLine(line);
  if (help !== undefined) {
    out(help);
    return 0;
  }

  const config = await loadGatewayConfig(configPath, warn);
  if (command === 'admin-user') {
    const { adminUser } = await import('../admin/admin-user-command.js');
    return adminUser(config, json, args);
  }
  if (command === 'audit') {
    const { auditCommand } = await import('../admin/audit-command.js');
    return auditCommand(config, json, args);
  }
  // partners.yaml, or in a pool the list in etcd, reached directly: no running gateway is needed
  // (docs/design.md section 11).
  const store = partnerStoreFor(config);
  // Every committed change goes to the audit trail, as the OS user who ran the command.
  const audit = new AuditLog(config.auditLog);
  const actor = osActor();
  store.onCommit = (before, after) => audit.recordChanges(actor, before, after);
  /** Runs a command; a refused change is recorded too (with the command as given), then reported. */
  const audited = async <T>(changing: boolean, attempt: string, run: () => Promise<T>): Promise<T> => {
    try {
      return await run();
    } catch (err) {
      if (changing && err instanceof GatewayError) {
        const action = CHANGING_CMDLET.exec(attempt)?.[0] ?? attempt.split(' ').slice(0, 2).join(' ');
        await audit.refused(actor, action, attempt, err.message.split('\n')[0]!).catch(() => undefined);
      }
      throw err;
    }
  };
  const ctx: ExecutionContext = {
    store,
    localStorePath: config.localStore,
    readPipedRecords: () => readStdinRecords(),
    ask: process.stdin.isTTY ? askOnTerminal : undefined,
    warn,
    whatIfLine: (line) => (json ? process.stderr : process.stdout).write(`${line}\n`),
    infoLine: (line) => (json ? process.stderr : process.stdout).write(`${line}\n`),
  };
  const print = (records: readonly PartnerRecord[], always: boolean) => {
    if (json) {
      if (always || records.length > 0) out(formatJson(records));
    } else out(formatList(records));
  };

  const printObjects = (objects: readonly Record<string, unknown>[] | undefined) => {
    if (objects) out(json ? `${JSON.stringify(objects, null, 2)}\n` : formatObjects(objects));
  };
  if (command === 'partner') {
    const changing = ['new', 'set', 'remove'].includes(args[0]?.toLowerCase() ?? '');
    return audited(changing, `xmpp-gateway partner ${args.join(' ')}`, async () => {
      const inv = await parsePartnerOptions(args, readInstanceSource);
      const records = await executePartner(inv, ctx);
      print(records, inv.verb === 'get' || inv.inMemory || inv.whatIf);
      return 0;
    });
  }
  if (command === 'cmdlet') {
    if (args.length !== 1) throw new GatewayError('GW_ERR_USAGE', "cmdlet takes one quoted PowerShell command line, e.g. cmdlet 'Get-CsXmppAllowedPartner'");
    return audited(CHANGING_CMDLET.test(args[0]!), args[0]!, async () => {
      const result = await runCmdletLine(args[0]!, ctx);
      out(result.text);
      print(result.records, result.printsRecords);
      printObjects(result.objects);
      return 0;
    });
  }
  if (isCmdletName(command) || /^get-help$/i.test(command) || /^get-csadminrole$/i.test(command)) {
    const line = argvToPowerShellLine(command, args);
    return audited(CHANGING_CMDLET.test(command), line, async () => {
      const result = await runCmdletLine(line, ctx);
      out(result.text);
      print(result.records, result.printsRecords);
      printObjects(result.objects);
      return 0;
    });
  }
  throw new GatewayError('GW_ERR_USAGE', `unknown command '${command}' (try: xmpp-gateway help)`);
}

async function readInstanceSource(source: string): Promise<PartnerRecord[]> {
  if (source === '-') return (await readStdinRecords()) ?? [];
  let text: string;
  try {
    text = await readFile(source, 'utf8');
  } catch (err) {
    throw new GatewayError('GW_ERR_USAGE', `--instance: cannot read ${source}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return parseRecords(text, source);
}

let stdinRecords: Promise<PartnerRecord[] | null> | undefined;

/**
 * Piped partner records: null when nothing was piped (a terminal, or empty input), an array
 * (possibly empty, e.g. `[]` from a `get` that matched nothing) otherwise.
 */
function readStdinRecords(): Promise<PartnerRecord[] | null> {
  stdinRecords ??= (async () => {
    if (process.stdin.isTTY) return null;
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    return text.trim() === '' ? null : parseRecords(text, 'stdin');
  })();
  return stdinRecords;
}

async function askOnTerminal(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await new Promise<string>((resolve) => rl.question(question, resolve));
    return /^\s*(y|yes)?\s*$/i.test(answer);
  } finally {
    rl.close();
  }
}

/** Entry point used by bin/xmpp-gateway: one error line, non-zero exit. */
export async function run(argv: readonly string[]): Promise<void> {
  try {
    process.exitCode = await main(argv);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`error: ${message.split('\n')[0]}\n`);
    if (process.env.XMPP_GATEWAY_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    process.exitCode = err instanceof GatewayError ? 1 : 70;
  }
}
