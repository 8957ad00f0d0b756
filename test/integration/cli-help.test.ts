/**
 * Help as an admin asks for it, from the built CLI: `<command> --help` is that command's page
 * (options, defaults, two examples that work), `partner <verb> --help` likewise, and the cmdlets
 * answer Get-Help and -? as PowerShell does. None of it needs a gateway.yaml.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, runShell, tempConfig } from '../helpers/cli.js';

const ROOT = resolve(import.meta.dirname, '../..');
let empty: string; // a directory without any config: help must not need one
let global: string;

beforeAll(async () => {
  empty = await mkdtemp(join(tmpdir(), 'xgw-help-'));
  global = (await runCli(['--help'], { cwd: empty })).stdout;
});
afterAll(async () => {
  await rm(empty, { recursive: true, force: true });
});

async function help(args: string[]): Promise<string> {
  const r = await runCli(args, { cwd: empty });
  expect(r.stderr, `${args.join(' ')}: ${r.stderr}`).toBe('');
  expect(r.code).toBe(0);
  return r.stdout;
}

function examplesOf(page: string): string[] {
  const at = page.indexOf('\nexamples:\n');
  expect(at, page).toBeGreaterThan(0);
  return page.slice(at + '\nexamples:\n'.length).split('\n').filter((l) => l.startsWith('  ')).map((l) => l.trim());
}

describe('<command> --help prints that command\'s own page', () => {
  for (const command of ['serve', 'status', 'reload', 'stop', 'cmdlet', 'check', 'probe', 'explain', 'import', 'cluster']) {
    it(command, async () => {
      for (const args of [[command, '--help'], ['help', command]]) {
        const page = await help(args);
        expect(page).not.toBe(global);
        expect(page.split('\n')[0]).toMatch(new RegExp(`^usage: xmpp-gateway .*${command}`));
        expect(page).toMatch(/--config FILE +gateway\.yaml to use \(default: config\/gateway\.yaml\)/);
        const examples = examplesOf(page);
        expect(examples).toHaveLength(2);
        for (const e of examples) expect(e).toMatch(new RegExp(`^xmpp-gateway .*${command}`));
      }
    });
  }
});

describe('partner <verb> --help lists its options with defaults, and its two examples work', () => {
  const PARTNERS = '- Identity: contoso.com\n  AdditionalDomains: [europe.contoso.com]\n- Identity: xmpp.contoso.com\n- Identity: xmpp.contoso.org\n';
  const DEFAULTS: Record<string, RegExp[]> = {
    new: [/--tls-negotiation Required\|Optional\|NotSupported\n.*\n?.*Default: Required\./, /--partner-type Federated\|PublicVerified\|PublicUnverified\n.*Default: PublicUnverified\./, /--enable-keep-alive true\|false\n(.*\n)*?.*Default: True\./],
    set: [/--tls-negotiation .*\n(.*\n)*?.*Default: unchanged\./, /--instance FILE\|-/],
    get: [/--filter PATTERN/, /--local-store/],
    remove: [/--what-if/, /--identity DOMAIN/],
  };
  for (const verb of ['get', 'new', 'set', 'remove']) {
    it(verb, async () => {
      const page = await help(['partner', verb, '--help']);
      expect(page).not.toBe(global);
      expect(page.split('\n')[0]).toBe(`usage: xmpp-gateway [--config FILE] [--json] partner ${verb} [options]`);
      for (const pattern of DEFAULTS[verb]!) expect(page).toMatch(pattern);
      const examples = examplesOf(page);
      expect(examples).toHaveLength(2);
      const t = await tempConfig(PARTNERS);
      try {
        await mkdir(join(t.dir, 'config'));
        await writeFile(join(t.dir, 'config', 'gateway.yaml'), (await readFile(t.config, 'utf8')).replace('partners: partners.yaml', 'partners: ../partners.yaml'));
        for (const example of examples) {
          const r = await runShell(example, { cwd: t.dir });
          expect([r.code, r.stderr], example).toEqual([0, '']);
        }
      } finally {
        await t.cleanup();
      }
    });
  }
});

describe('the cmdlets answer Get-Help and -? as PowerShell does', () => {
  const FULL = [
    /^NAME\n {4}New-CsXmppAllowedPartner\n/,
    /\nSYNOPSIS\n {4}Creates an allowed partner/,
    /\nSYNTAX\n {4}New-CsXmppAllowedPartner -Identity <XdsGlobalRelativeIdentity>/,
    /\n {4}-TlsNegotiation <Required \| Optional \| NotSupported>\n(.*\n)+? {8}Default value +Required\n/,
    /\n {4}-ConnectionLimit <UInt32>\n(.*\n)+? {8}Default value +unset \(gateway\.yaml's partnerConnectionLimit\)\n/,
    /\n {4}-InMemory \[<SwitchParameter>\]\n/,
    /\nEXAMPLES\n(.*\n)*? {4}New-CsXmppAllowedPartner -Identity "contoso\.com" -PartnerType "PublicVerified"\n/,
  ];
  it("cmdlet 'Get-Help New-CsXmppAllowedPartner', Get-Help by name, -? and --help agree", async () => {
    const pages = [
      await help(['cmdlet', 'Get-Help New-CsXmppAllowedPartner']),
      await help(['Get-Help', 'New-CsXmppAllowedPartner']),
      await help(['New-CsXmppAllowedPartner', '-?']),
      await help(['cmdlet', 'New-CsXmppAllowedPartner -?']),
      await help(['cmdlet', 'Get-Help -Name New-CsXmppAllowedPartner -Full']),
      await help(['New-CsXmppAllowedPartner', '--help']),
    ];
    for (const page of pages) for (const pattern of FULL) expect(page).toMatch(pattern);
    expect(new Set(pages).size).toBe(1);
  });

  it('Get-Help Set-CsXmppAllowedPartner -Examples prints the synopsis and the examples only', async () => {
    const page = await help(['Get-Help', 'Set-CsXmppAllowedPartner', '-Examples']);
    expect(page).toMatch(/^NAME\n {4}Set-CsXmppAllowedPartner\n\nSYNOPSIS\n/);
    expect(page).toContain('\nEXAMPLES\n');
    expect(page).toContain('    Set-CsXmppAllowedPartner -Identity "contoso.com" -AdditionalDomains @{Add="na.contoso.com"}\n');
    expect(page).not.toContain('PARAMETERS');
    expect(await help(['cmdlet', 'Get-Help Set-CsXmppAllowedPartner -Examples'])).toBe(page);
  });

  it('-Parameter names one parameter; an unknown cmdlet is one error line', async () => {
    const one = await help(['Get-Help', 'Get-CsXmppAllowedPartner', '-Parameter', 'Filter']);
    expect(one).toMatch(/^ {4}-Filter <String>\n/);
    const bad = await runCli(['Get-Help', 'Get-CsXmppFoo'], { cwd: empty });
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/^error: Get-Help: no help for 'Get-CsXmppFoo'.*\n$/);
  });
});

describe('config/partners.yaml', () => {
  it('points to help that exists', async () => {
    const text = await readFile(join(ROOT, 'config/partners.yaml'), 'utf8');
    const commands = [...text.matchAll(/`xmpp-gateway ([^`]+)`/g)].map((m) => m[1]!);
    expect(commands.length).toBeGreaterThanOrEqual(1);
    for (const command of commands) {
      const page = await help(command.split(' '));
      expect(page, command).toMatch(/Default(: | value +)Required/); // the defaults the comment promises
    }
  });
});
