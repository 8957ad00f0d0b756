/**
 * Help text, from one description of every command and cmdlet parameter:
 *
 *   xmpp-gateway <command> --help            the command's usage, options, defaults, examples
 *   xmpp-gateway partner new --help          the same for each partner verb (long options)
 *   xmpp-gateway Get-Help New-CsXmppAllowedPartner [-Examples|-Full|-Detailed|-Parameter P]
 *   xmpp-gateway New-CsXmppAllowedPartner -?  PowerShell's help for the cmdlet
 *
 * Defaults come from the code that applies them (RECORD_DEFAULTS, DEFAULT_CONFIG_PATH), and
 * parameter sets from partner-invocation.ts, so the help cannot drift from what is accepted.
 */
import { DEFAULT_CONFIG_PATH } from '../config/load.js';
import { UsageError } from '../errors.js';
import { PARTNER_TYPE, RECORD_DEFAULTS, SASL_NEGOTIATION, TLS_NEGOTIATION } from '../policy/types.js';
import { CMDLET_NAMES, PARAMETERS, type Verb } from './partner-invocation.js';
import { formatValue } from './output.js';

export const GLOBAL_USAGE = `usage: xmpp-gateway [--config FILE] [--json] <command> [options]

commands:
  serve                               run the gateway in the foreground
  status                              list the running gateway's live streams
  reload                              make the running gateway re-read partners.yaml (in a pool: etcd)
  stop                                stop the running gateway
  approvals list                      PublicUnverified approvals: which local user reached out to whom
  approvals revoke --local JID [--remote JID]
                                      forget one approval, or all of a local user's
  admin-user add NAME --role ROLE     an admin of the admin listener and panel (token printed once); list, remove, reset
  audit [--since TIME]                the audit trail: every change, reload and refused attempt
  partner get|new|set|remove          read and edit the allowed-partner list
  check                               check the configuration, certificates, ports and DNS (exit 1 on errors)
  probe DOMAIN [--from LOCAL]         try a partner as the gateway would: each step, then the verdict
  explain --from DOMAIN [--certificate FILE] [--tls]
                                      what the gateway would do with a stream from DOMAIN, and why
  import FILE [--what-if] [--force]   partners from a Lync / Skype for Business export, all or nothing
  cluster import [--force]            a pool: load partners.yaml into etcd once (the list every node applies)
  cmdlet '<PowerShell line>'          the *-CsXmppAllowedPartner cmdlets as one PowerShell line
  Get-CsXmppAllowedPartner ...        the cmdlets by name: Get-, New-, Set-, Remove-CsXmppAllowedPartner
  Get-Help <cmdlet> [-Examples]       a cmdlet's parameters, types, defaults and examples
  Get-CsAdminRole                     the admin roles (CsAdministrator, CsViewOnlyAdministrator) and their cmdlets

global options (before or after the command word):
  --config FILE                       gateway.yaml to use (default: ${DEFAULT_CONFIG_PATH})
  --json                              JSON output for scripts

'xmpp-gateway <command> --help' (and 'partner <verb> --help') shows a command's own options and examples.
`;

interface CommandHelp {
  readonly usage: string;
  readonly summary: string;
  readonly options: readonly [string, string][];
  readonly examples: readonly string[];
}

const CONFIG_OPTION: [string, string] = ['--config FILE', `gateway.yaml to use (default: ${DEFAULT_CONFIG_PATH})`];

const COMMANDS: Record<string, CommandHelp> = {
  serve: {
    usage: 'xmpp-gateway [--config FILE] serve',
    summary:
      'Runs the gateway in the foreground until SIGINT (Ctrl-C), SIGTERM or `xmpp-gateway stop`. Logs are JSON lines on\n' +
      'stderr. SIGHUP, `xmpp-gateway reload` or a change of partners.yaml re-reads the partner list.',
    options: [CONFIG_OPTION],
    examples: ['xmpp-gateway serve', 'xmpp-gateway serve --config /etc/xmpp-gateway/gateway.yaml'],
  },
  approvals: {
    usage: 'xmpp-gateway [--config FILE] [--json] approvals list | approvals revoke --local JID [--remote JID]',
    summary:
      "Lists or revokes the PublicUnverified approvals (a local user reached out to a remote user first) through the running\n" +
      "gateway's admin listener; when the gateway is not running, reads or edits gateway.yaml's approvals.file itself.",
    options: [CONFIG_OPTION, ['--json', 'print JSON instead of a table (list)'], ['--local JID', 'the local user (revoke; required)'], ['--remote JID', 'only this remote user (revoke; default: all of the local user\'s)']],
    examples: ['xmpp-gateway approvals list', 'xmpp-gateway approvals revoke --local alice@corp.example --remote bob@partner.example'],
  },
  status: {
    usage: 'xmpp-gateway [--config FILE] [--json] status',
    summary: "Asks the running gateway's admin listener (gateway.yaml admin.listen) for its live streams and partner list.",
    options: [CONFIG_OPTION, ['--json', 'print the admin listener\'s JSON instead of a table (default: table)']],
    examples: ['xmpp-gateway status', 'xmpp-gateway --json status'],
  },
  reload: {
    usage: 'xmpp-gateway [--config FILE] reload',
    summary:
      'Makes the running gateway re-read partners.yaml now (POST /reload on its admin listener; in a pool, the list in\n' +
      'etcd). An invalid list is not applied: the error (file, line, field) is printed and the exit status is 1.',
    options: [CONFIG_OPTION],
    examples: ['xmpp-gateway reload', 'xmpp-gateway --config /etc/xmpp-gateway/gateway.yaml reload'],
  },
  stop: {
    usage: 'xmpp-gateway [--config FILE] stop',
    summary:
      'Stops the running gateway (POST /stop on its admin listener) and waits until it has closed its streams and exited\n' +
      "its listeners. Exit status 1 if no gateway answers on the configured admin listener.",
    options: [CONFIG_OPTION],
    examples: ['xmpp-gateway stop', 'xmpp-gateway --config /etc/xmpp-gateway/gateway.yaml stop'],
  },
  'admin-user': {
    usage: 'xmpp-gateway [--config FILE] [--json] admin-user add NAME --role ROLE | list | remove NAME | reset NAME [--role ROLE]',
    summary:
      "Admin users of the admin listener and its control panel, in gateway.yaml admin.usersFile (default admin-users.yaml\n" +
      'beside gateway.yaml, mode 0600). add and reset print a fresh token once, as the last line of stdout; only a salted\n' +
      'scrypt hash of it is stored. Roles: CsAdministrator (everything) and CsViewOnlyAdministrator (Get-*, status,\n' +
      'metrics, audit). The running gateway notices changes at once. The CLI on the gateway\'s host needs no token (it\n' +
      'uses the local credential the gateway writes at start); elsewhere set XMPP_GATEWAY_TOKEN.',
    options: [CONFIG_OPTION, ['--role ROLE', 'CsAdministrator or CsViewOnlyAdministrator (add: required)'], ['--json', 'list as JSON']],
    examples: ['xmpp-gateway admin-user add alice --role CsAdministrator', 'xmpp-gateway admin-user list', 'xmpp-gateway admin-user reset alice'],
  },
  audit: {
    usage: 'xmpp-gateway [--config FILE] [--json] audit [--since TIME]',
    summary:
      'The audit trail (gateway.yaml auditLog, default audit.log beside partners.yaml): one JSON line per change of the\n' +
      'partner list, from the CLI or the panel (time, who, the equivalent cmdlet, the record before and after), reloads,\n' +
      'refused attempts and admin-user changes. Oldest first.',
    options: [CONFIG_OPTION, ['--since TIME', 'only entries since TIME: 2024-05-01T12:00Z, 2024-05-01, or an age: 30m, 2h, 7d'], ['--json', 'the entries as a JSON array']],
    examples: ['xmpp-gateway audit --since 2h', 'xmpp-gateway --json audit --since 2024-05-01'],
  },
  check: {
    usage: 'xmpp-gateway [--config FILE] [--json] check',
    summary:
      'Checks gateway.yaml (unknown keys with file:line), partners.yaml, the CA files, each local domain\'s certificate\n' +
      '(key matches, chain to trust.caFiles, names cover the domain per RFC 6125, expiry: error when expired, warning under\n' +
      '30 days), the ports (free or held by this gateway), the DNS records partners need (_xmpp-server._tcp SRV and\n' +
      'A/AAAA, through dns.servers), each partner\'s ProxyFqdn and AdditionalDomains, and the internal link. One line per\n' +
      'finding with what to do; exit status 1 when any error was found.',
    options: [CONFIG_OPTION, ['--json', 'print {"findings": [{"severity", "check", "subject", "message"}, ...]}']],
    examples: ['xmpp-gateway check', 'xmpp-gateway --json check --config /etc/xmpp-gateway/gateway.yaml'],
  },
  probe: {
    usage: 'xmpp-gateway [--config FILE] [--json] probe DOMAIN [--from LOCALDOMAIN] [--unlisted] [--timeout SECONDS]',
    summary:
      'Connects to a partner exactly as the gateway\'s outbound side would, under its record: resolution (ProxyFqdn,\n' +
      'dns.routes, SRV in RFC 2782 order, A/AAAA), TCP, stream features, STARTTLS, the partner\'s certificate, SASL\n' +
      'EXTERNAL, dialback. Prints each step with its time, then the verdict: the authentication method, or the failing\n' +
      'step and the record property that decided. For dialback the partner calls our listen address back: when the\n' +
      'gateway is not running the probe answers there itself; when it is, it answers only with a shared dialbackSecret.\n' +
      'Exit status 1 when the gateway could not authenticate.',
    options: [
      CONFIG_OPTION,
      ['--json', 'print {"domain", "verdict": "ok"|"fail", "auth", "steps": [{"name", "ok", "ms", "detail"}], ...}'],
      ['--from LOCALDOMAIN', 'the local domain to speak as (default: the first of localDomains)'],
      ['--unlisted', 'probe a domain that is not a partner, under the default record'],
      ['--timeout SECONDS', 'for the negotiation after connecting (default: streamEstablishmentTimeoutSeconds, at most 30)'],
    ],
    examples: ['xmpp-gateway probe partner.example', 'xmpp-gateway --json probe muc.partner.example --from gw.example'],
  },
  explain: {
    usage: 'xmpp-gateway [--config FILE] [--json] explain --from DOMAIN [--to LOCALDOMAIN] [--certificate FILE] [--tls]',
    summary:
      'Says what the gateway would do with a stream from DOMAIN, with the decision functions of the live streams: the\n' +
      'record that applies (or that none does), the features offered before and after TLS, which authentication that\n' +
      'certificate would get, or the rule that refuses. With the gateway running, also its last refusals of the partner.',
    options: [
      CONFIG_OPTION,
      ['--json', 'print the explanation as JSON'],
      ['--from DOMAIN', 'the remote server\'s domain (required)'],
      ['--to LOCALDOMAIN', 'our domain it addresses (default: the first of localDomains)'],
      ['--certificate FILE', 'the PEM certificate (and chain) the partner presents; implies --tls'],
      ['--tls', 'the partner uses STARTTLS when offered (default: it stays on plain TCP)'],
    ],
    examples: ['xmpp-gateway explain --from partner.example --certificate partner.pem', 'xmpp-gateway --json explain --from partner.example --tls'],
  },
  import: {
    usage: 'xmpp-gateway [--config FILE] [--json] import FILE [--what-if] [--force]',
    summary:
      'Imports partners from what Lync / Skype for Business exports: the list view Get-CsXmppAllowedPartner prints, or\n' +
      'Get-CsXmppAllowedPartner | Export-Csv. Identity prefixes (XmppAllowedPartner:, Global/) are removed. Every record\n' +
      'is validated first and all are imported or none; partners that exist are left alone unless --force. Prints what\n' +
      'was created, what exists, and every warning. FILE - reads stdin.',
    options: [
      CONFIG_OPTION,
      ['--json', 'print {"created": [...], "existing": [...], "replaced": [...], "warnings": [...]}'],
      ['--what-if', 'say what would be imported and write nothing'],
      ['--force', 'replace partners that exist already'],
    ],
    examples: ['xmpp-gateway import lync-partners.txt --what-if', 'xmpp-gateway import partners.csv --force'],
  },
  cluster: {
    usage: 'xmpp-gateway [--config FILE] [--json] cluster import [--force]',
    summary:
      'A gateway pool (gateway.yaml cluster section) keeps its partner list in etcd, under <prefix>partners; every node\n' +
      'applies each revision of it, and the partner commands and the panel edit it there. `cluster import` validates\n' +
      'partners.yaml (gateway.yaml `partners`) and loads it into etcd once: refused when etcd already holds a list, unless\n' +
      '--force. Talks to etcd directly; no gateway needs to run. Exit status 1 when nothing was imported.',
    options: [
      CONFIG_OPTION,
      ['--json', 'print {"imported", "from", "to", "revision", "replaced"}'],
      ['--force', 'replace the list etcd holds (default: refuse when there is one)'],
    ],
    examples: ['xmpp-gateway cluster import', 'xmpp-gateway --config /etc/xmpp-gateway/gateway.yaml cluster import --force'],
  },
  cmdlet: {
    usage: "xmpp-gateway [--config FILE] [--json] cmdlet '<PowerShell command line>'",
    summary:
      'Runs one PowerShell command line of the *-CsXmppAllowedPartner cmdlets: statements separated by ;, $variables,\n' +
      'pipelines into Set-/Remove-CsXmppAllowedPartner and Where-Object {$_.Property -eq "Value"}. Get-Help <cmdlet>\n' +
      'and <cmdlet> -? print a cmdlet\'s help.',
    options: [CONFIG_OPTION, ['--json', 'records as a JSON array (default: PowerShell list view)']],
    examples: [
      "xmpp-gateway cmdlet 'Get-CsXmppAllowedPartner | Where-Object {$_.SaslNegotiation -eq \"Required\"}'",
      "xmpp-gateway cmdlet '$p = New-CsXmppAllowedPartner -Identity \"x.org\" -InMemory; $p.Description = \"later\"; Set-CsXmppAllowedPartner -Instance $p'",
    ],
  },
};

/** One cmdlet parameter: its PowerShell type, what it does, and where the long-option form differs. */
interface ParameterHelp {
  readonly type: string;
  readonly text: string;
  /** Long-option value placeholder (`--tls-negotiation VALUE`); absent for switches. */
  readonly value?: string;
}

const NEGOTIATION = (values: readonly string[]) => values.join(' | ');

const PARAMETER_HELP: Record<string, ParameterHelp> = {
  Identity: { type: 'XdsGlobalRelativeIdentity', value: 'DOMAIN', text: "The partner's primary domain (e.g. fabrikam.com); the first positional value. At least two labels, not one of the gateway's localDomains." },
  Domain: { type: 'String', value: 'DOMAIN', text: 'The primary domain, as -Identity; use one of the two, not both.' },
  Filter: { type: 'String', value: 'PATTERN', text: 'PowerShell -like wildcards matched against Identity, ignoring case (e.g. "*.org").' },
  LocalStore: { type: 'SwitchParameter', text: "Reads the list this gateway node last applied (its local store, with the etcd revision in a pool) instead of partners.yaml or etcd." },
  Instance: { type: 'PSObject', value: 'FILE|-', text: 'Partner records to commit (from Get, or from New -InMemory, which is the only record Set creates a partner from). Long form: a file of records, or - for stdin.' },
  AdditionalDomains: { type: 'PSListModifier', value: 'D1,D2', text: 'More domains of the same partner. A list replaces, @{Add="d"} and @{Remove="d"} edit, $Null clears (long form: --add-domain, --remove-domain, --clear-additional-domains).' },
  ConnectionLimit: { type: 'UInt32', value: 'N', text: "Authenticated streams per direction across the partner's domains; 1 or more, unset ('' / $Null) for gateway.yaml's partnerConnectionLimit." },
  Description: { type: 'String', value: 'TEXT', text: 'Free text shown in listings (e.g. a contact).' },
  EnableKeepAlive: { type: 'Boolean', value: 'true|false', text: 'The partner must show traffic (a whitespace ping counts) within keepAliveIntervalSeconds; false: streamInactivityTimeoutSeconds applies.' },
  PartnerType: { type: NEGOTIATION(PARTNER_TYPE), value: PARTNER_TYPE.join('|'), text: 'Trust tier of the partner.' },
  ProxyFqdn: { type: 'String', value: 'HOST[:PORT]', text: 'Where to connect to this partner (outbound streams, dialback verification) instead of its DNS SRV records.' },
  SaslNegotiation: { type: NEGOTIATION(SASL_NEGOTIATION), value: SASL_NEGOTIATION.join('|'), text: 'Required: SASL EXTERNAL with a valid certificate is the only way in. Optional: EXTERNAL, else dialback. NotSupported: never offered.' },
  SupportDialbackNegotiation: { type: 'Boolean', value: 'true|false', text: "Whether Server Dialback may authenticate the partner's streams. With SaslNegotiation Required it authenticates nothing (the partner's db:verify requests are still answered) and becomes the fallback once SASL is Optional." },
  TlsNegotiation: { type: NEGOTIATION(TLS_NEGOTIATION), value: TLS_NEGOTIATION.join('|'), text: 'Required: STARTTLS first, nothing else before TLS. Optional: STARTTLS offered, dialback over plain TCP accepted. NotSupported: no TLS.' },
  Confirm: { type: 'SwitchParameter', text: 'Asks before changing anything; refuses when there is no terminal to ask on.' },
  Force: { type: 'SwitchParameter', text: 'Does not print warnings about settings that can never take effect.' },
  InMemory: { type: 'SwitchParameter', text: 'Prints the new record without saving it; Set-CsXmppAllowedPartner -Instance commits it.' },
  WhatIf: { type: 'SwitchParameter', text: 'Says what would be done and changes nothing.' },
  BypassDualWrite: { type: 'Boolean', value: 'true|false', text: 'Accepted for scripts written for Lync; has no effect (there is one partner file).' },
};

interface CmdletHelp {
  readonly synopsis: string;
  readonly examples: readonly (readonly [command: string, text: string])[];
  readonly longExamples: readonly string[];
}

const CMDLETS: Record<Verb, CmdletHelp> = {
  get: {
    synopsis: 'Returns the allowed partners: all of them, one by -Identity, or those whose Identity matches -Filter.',
    examples: [
      ['Get-CsXmppAllowedPartner', 'Returns every allowed partner, with default values filled in.'],
      ['Get-CsXmppAllowedPartner -Identity "xmpp.contoso.com"', 'Returns the partner xmpp.contoso.com.'],
      ['Get-CsXmppAllowedPartner -Filter "*.org"', 'Returns the partners whose Identity ends in .org.'],
      ['Get-CsXmppAllowedPartner | Where-Object {$_.SaslNegotiation -eq "Required"}', 'Returns the partners that must authenticate with SASL EXTERNAL.'],
    ],
    longExamples: ['xmpp-gateway partner get --filter "*.org"', 'xmpp-gateway --json partner get --identity xmpp.contoso.com'],
  },
  new: {
    synopsis: 'Creates an allowed partner in partners.yaml (or, with -InMemory, only prints the record).',
    examples: [
      ['New-CsXmppAllowedPartner -Identity "contoso.com" -PartnerType "PublicVerified"', 'Creates contoso.com as a PublicVerified partner; every other property takes its default.'],
      ['New-CsXmppAllowedPartner -Identity "fabrikam.com" -AdditionalDomains "research.fabrikam2.com"', 'Creates fabrikam.com, which also federates as research.fabrikam2.com.'],
      ['$p = New-CsXmppAllowedPartner -Identity "x.org" -InMemory; $p.Description = "later"; Set-CsXmppAllowedPartner -Instance $p', 'Builds a record in memory, edits it, then saves it with Set.'],
    ],
    longExamples: [
      'xmpp-gateway partner new --identity partner.example --sasl-negotiation Optional',
      'xmpp-gateway partner new --identity fabrikam.com --additional-domains research.fabrikam2.com --partner-type PublicVerified',
    ],
  },
  set: {
    synopsis: 'Changes existing allowed partners, named by -Identity, given by -Instance or piped in. Never creates one, except from a New -InMemory record.',
    examples: [
      ['Set-CsXmppAllowedPartner -Identity "contoso.com" -SupportDialbackNegotiation $False', 'Stops contoso.com from authenticating with dialback.'],
      ['Get-CsXmppAllowedPartner | Set-CsXmppAllowedPartner -SaslNegotiation "Required"', 'Requires SASL EXTERNAL from every partner.'],
      ['Set-CsXmppAllowedPartner -Identity "contoso.com" -AdditionalDomains @{Add="na.contoso.com"}', 'Adds na.contoso.com to the partner\'s additional domains.'],
      ['Set-CsXmppAllowedPartner -Identity "contoso.com" -AdditionalDomains @{Remove="europe.contoso.com"}', 'Removes europe.contoso.com from them.'],
      ['Set-CsXmppAllowedPartner -Identity "contoso.com" -AdditionalDomains $Null', 'Clears the additional domains.'],
    ],
    longExamples: [
      'xmpp-gateway partner set --identity contoso.com --add-domain na.contoso.com',
      'xmpp-gateway --json partner get --filter "*.org" | xmpp-gateway partner set --enable-keep-alive false',
    ],
  },
  remove: {
    synopsis: 'Removes allowed partners, named by -Identity or piped in; their live streams are closed on reload.',
    examples: [
      ['Remove-CsXmppAllowedPartner -Identity "contoso.com"', 'Removes contoso.com.'],
      ['Get-CsXmppAllowedPartner -Filter "*.org" | Remove-CsXmppAllowedPartner -WhatIf', 'Says which partners would be removed, and removes nothing.'],
    ],
    longExamples: ['xmpp-gateway partner remove --identity contoso.com --what-if', 'xmpp-gateway --json partner get --filter "*.org" | xmpp-gateway partner remove'],
  },
};

const SWITCH_TYPES = new Set(['SwitchParameter']);

function isSwitchParameter(name: string): boolean {
  return SWITCH_TYPES.has(PARAMETER_HELP[name]?.type ?? '');
}

/** The default a cmdlet applies when the parameter is not given. */
function defaultOf(verb: Verb, name: string): string {
  if (isSwitchParameter(name)) return 'False';
  if (verb === 'new' && name in RECORD_DEFAULTS) {
    const value = RECORD_DEFAULTS[name as keyof typeof RECORD_DEFAULTS];
    if (name === 'ConnectionLimit' && value === null) return "unset (gateway.yaml's partnerConnectionLimit)";
    if (value === null) return 'unset';
    return Array.isArray(value) && value.length === 0 ? 'empty list' : formatValue(value);
  }
  if (verb === 'set' && name in RECORD_DEFAULTS) return 'unchanged';
  if (name === 'Identity' && (verb === 'get' || verb === 'set' || verb === 'remove')) return verb === 'get' ? 'all partners' : 'the piped records';
  return 'None';
}

function required(verb: Verb, name: string): boolean {
  return verb === 'new' && (name === 'Identity' || name === 'Domain');
}

function pascalToKebab(name: string): string {
  return name.replace(/[A-Z]/g, (c, i: number) => `${i === 0 ? '' : '-'}${c.toLowerCase()}`);
}

function wrap(text: string, indent: string, width = 100): string {
  const words = text.split(/\s+/);
  const lines: string[] = [];
  let line = '';
  for (const word of words) {
    if (line !== '' && indent.length + line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line === '' ? word : `${line} ${word}`;
  }
  if (line !== '') lines.push(line);
  return lines.map((l) => `${indent}${l}`).join('\n');
}

// Command usage (`<command> --help`, `partner <verb> --help`) ----------------------------------

/** `xmpp-gateway <command> --help`; undefined for a command that has no page of its own. */
export function commandHelp(command: string, args: readonly string[]): string | undefined {
  if (command === 'partner') {
    const verb = (['get', 'new', 'set', 'remove'] as const).find((v) => v === args[0]?.toLowerCase());
    return verb ? partnerVerbHelp(verb) : partnerHelp();
  }
  const page = COMMANDS[command];
  if (!page) return undefined;
  return renderCommand(page);
}

function renderCommand(page: CommandHelp): string {
  const width = Math.max(...page.options.map(([o]) => o.length));
  return [
    `usage: ${page.usage}`,
    '',
    page.summary,
    '',
    'options:',
    ...page.options.map(([o, text]) => `  ${o.padEnd(width)}  ${text}`),
    '',
    'examples:',
    ...page.examples.map((e) => `  ${e}`),
    '',
  ].join('\n');
}

function partnerHelp(): string {
  return [
    'usage: xmpp-gateway [--config FILE] [--json] partner get|new|set|remove [options]',
    '',
    'Reads and edits the allowed-partner list (gateway.yaml `partners`, default partners.yaml next to it). Each verb is',
    'the cmdlet of the same name: get = Get-CsXmppAllowedPartner, new = New-, set = Set-, remove = Remove-.',
    'In a pool (gateway.yaml cluster section) they read and edit the list in etcd instead, with compare-and-swap, so',
    "edits made at the same time through different nodes all land; see 'xmpp-gateway cluster --help'.",
    "'xmpp-gateway partner <verb> --help' lists a verb's options with their defaults.",
    '',
    'examples:',
    `  ${CMDLETS.new.longExamples[0]}`,
    `  ${CMDLETS.get.longExamples[0]}`,
    '',
  ].join('\n');
}

function partnerVerbHelp(verb: Verb): string {
  const rows: [string, string][] = [];
  for (const name of PARAMETERS[verb]) {
    if (name === 'BypassDualWrite') continue;
    const p = PARAMETER_HELP[name]!;
    const option = `--${pascalToKebab(name)}${p.value ? ` ${p.value}` : ''}`;
    const def = defaultOf(verb, name);
    const note = required(verb, name)
      ? `Required (this or --${name === 'Identity' ? 'domain' : 'identity'}).`
      : def === 'None' || def === 'False' ? '' : `Default: ${def}.`;
    rows.push([option, `${p.text} ${note}`.trim()]);
    if (name === 'AdditionalDomains') {
      rows.push(['--add-domain D', 'Adds a domain to AdditionalDomains (repeatable, or D1,D2).']);
      rows.push(['--remove-domain D', 'Removes a domain from AdditionalDomains (repeatable, or D1,D2).']);
      rows.push(['--clear-additional-domains', 'Empties AdditionalDomains.']);
    }
  }
  const help = CMDLETS[verb];
  const input = verb === 'set' || verb === 'remove' ? ['', 'Without --identity, records piped on stdin (JSON or list view, as get prints them) are the targets.'] : [];
  return [
    `usage: xmpp-gateway [--config FILE] [--json] partner ${verb} [options]`,
    '',
    wrap(`${help.synopsis} The ${CMDLET_NAMES[verb]} cmdlet; 'xmpp-gateway Get-Help ${CMDLET_NAMES[verb]}' shows it in PowerShell terms.`, ''),
    ...input,
    '',
    'options:',
    ...rows.flatMap(([o, text]) => [`  ${o}`, wrap(text, '      ')]),
    '',
    'examples:',
    ...help.longExamples.map((e) => `  ${e}`),
    '',
  ].join('\n');
}

// PowerShell help (`Get-Help <cmdlet>`, `<cmdlet> -?`) -----------------------------------------

export interface GetHelpRequest {
  readonly name: string | undefined;
  readonly examplesOnly: boolean;
  readonly parameter: string | undefined;
}

const VERB_BY_NAME = new Map(Object.entries(CMDLET_NAMES).map(([verb, name]) => [name.toLowerCase(), verb as Verb]));

/** Get-Help's text for one cmdlet (PowerShell's layout), or the list of cmdlets without a name. */
export function cmdletHelp(request: GetHelpRequest): string {
  if (request.name === undefined) {
    return [
      'The *-CsXmppAllowedPartner cmdlets of this gateway:',
      '',
      ...Object.entries(CMDLET_NAMES).map(([verb, name]) => `    ${name.padEnd(30)} ${CMDLETS[verb as Verb].synopsis.split('. ')[0]!.replace(/\.$/, '')}.`),
      '',
      'Get-Help <cmdlet> [-Examples | -Full | -Detailed | -Parameter <name>], or <cmdlet> -?',
      '',
    ].join('\n');
  }
  const verb = VERB_BY_NAME.get(request.name.toLowerCase());
  if (!verb) {
    throw new UsageError(`Get-Help: no help for '${request.name}': this gateway knows ${Object.values(CMDLET_NAMES).join(', ')}`, 'Name');
  }
  const name = CMDLET_NAMES[verb];
  const help = CMDLETS[verb];
  const sections: string[] = ['NAME', `    ${name}`, '', 'SYNOPSIS', wrap(help.synopsis, '    '), ''];
  if (request.parameter !== undefined) {
    const wanted = PARAMETERS[verb].filter((p) => p.toLowerCase().startsWith(request.parameter!.toLowerCase()));
    if (wanted.length === 0) throw new UsageError(`Get-Help: ${name} has no parameter -${request.parameter}`, 'Parameter');
    return `${wanted.map((p) => renderParameter(verb, p)).join('\n\n')}\n`;
  }
  if (!request.examplesOnly) {
    sections.push('SYNTAX', ...syntax(verb).map((s) => wrap(s, '    ', 110)), '', 'PARAMETERS');
    for (const p of PARAMETERS[verb]) sections.push(renderParameter(verb, p), '');
  }
  sections.push('EXAMPLES');
  help.examples.forEach(([command, text], i) => {
    sections.push(`    -------------------------- Example ${i + 1} --------------------------`, '', `    ${command}`, '', wrap(text, '    '), '');
  });
  if (!request.examplesOnly) {
    sections.push('REMARKS', `    The same command with long options: xmpp-gateway partner ${verb} --help`, '');
  }
  return sections.join('\n');
}

function renderParameter(verb: Verb, name: string): string {
  const p = PARAMETER_HELP[name]!;
  const type = isSwitchParameter(name) ? '[<SwitchParameter>]' : `<${p.type}>`;
  return [
    `    -${name} ${type}`,
    wrap(p.text, '        '),
    '',
    `        Required?                    ${required(verb, name)}`,
    `        Default value                ${defaultOf(verb, name)}`,
    `        Accept pipeline input?       ${(verb === 'set' || verb === 'remove') && name === 'Instance' ? 'true (ByValue)' : 'false'}`,
  ].join('\n');
}

function syntax(verb: Verb): string[] {
  const name = CMDLET_NAMES[verb];
  const params = (skip: readonly string[]) =>
    PARAMETERS[verb]
      .filter((p) => !skip.includes(p))
      .map((p) => (isSwitchParameter(p) ? `[-${p}]` : required(verb, p) ? `-${p} <${PARAMETER_HELP[p]!.type}>` : `[-${p} <${PARAMETER_HELP[p]!.type}>]`))
      .join(' ');
  if (verb === 'new') return [`${name} ${params(['Domain'])}`, `${name} ${params(['Identity'])}`];
  if (verb === 'set' || verb === 'remove') return [`${name} ${params(['Instance'])}`, `${name} ${params(['Identity'])}`];
  return [`${name} ${params([])}`];
}
