/**
 * xmpp-gateway command line.
 *
 *   xmpp-gateway [--config FILE] [--json] serve
 *   xmpp-gateway [--config FILE] [--json] status
 *   xmpp-gateway [--config FILE] reload|stop
 *   xmpp-gateway [--config FILE] [--json] approvals list | revoke --local JID [--remote JID]
 *   xmpp-gateway [--config FILE] [--json] check | probe DOMAIN | explain --from DOMAIN | import FILE
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
import { PartnerStore } from '../policy/partner-store.js';
import type { PartnerRecord } from '../policy/types.js';
import { argvToPowerShellLine, helpOnlyLine, isCmdletName, runCmdletLine } from './cmdlet-runner.js';
import { commandHelp, cmdletHelp, GLOBAL_USAGE } from './help.js';
import { formatJson, formatList } from './output.js';
import type { ExecutionContext } from './partner-executor.js';
import { executePartner } from './partner-executor.js';
import { parsePartnerOptions } from './partner-options.js';
import { parseRecords } from './record-input.js';


const ADMIN_COMMANDS = new Set(['serve', 'status', 'reload', 'stop']);

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
  const store = new PartnerStore(config.partners, new Set(config.localDomains.map((d) => d.domain)));
  const ctx: ExecutionContext = {
    store,
    localStorePath: config.localStore,
    readPipedRecords: () => readStdinRecords(),
    ask: process.stdin.isTTY ? askOnTerminal : undefined,
    warn,
    whatIfLine: (line) => (json ? process.stderr : process.stdout).write(`${line}\n`),
  };
  const print = (records: readonly PartnerRecord[], always: boolean) => {
    if (json) {
      if (always || records.length > 0) out(formatJson(records));
    } else out(formatList(records));
  };

  if (command === 'partner') {
    const inv = await parsePartnerOptions(args, readInstanceSource);
    const records = await executePartner(inv, ctx);
    print(records, inv.verb === 'get' || inv.inMemory || inv.whatIf);
    return 0;
  }
  if (command === 'cmdlet') {
    if (args.length !== 1) throw new GatewayError('GW_ERR_USAGE', "cmdlet takes one quoted PowerShell command line, e.g. cmdlet 'Get-CsXmppAllowedPartner'");
    const result = await runCmdletLine(args[0]!, ctx);
    out(result.text);
    print(result.records, result.printsRecords);
    return 0;
  }
  if (isCmdletName(command) || /^get-help$/i.test(command)) {
    const result = await runCmdletLine(argvToPowerShellLine(command, args), ctx);
    out(result.text);
    print(result.records, result.printsRecords);
    return 0;
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
