/**
 * The partner command line, run as a real process against real files: every seed example,
 * the long-option form, JSON and list output, pipes, and that bad input changes nothing.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import { tempConfig, type TempConfig } from '../helpers/cli.js';

let t: TempConfig;
afterEach(async () => {
  await t?.cleanup();
});

async function json(args: string[], stdin?: string) {
  const r = await t.cli(['--json', ...args], { stdin });
  expect(r.stderr, r.stderr).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as Record<string, unknown>[];
}

const THREE = `- Identity: contoso.com
  AdditionalDomains: [europe.contoso.com]
  PartnerType: Federated
- Identity: xmpp.contoso.org
  SaslNegotiation: Optional
- Identity: xmpp.fabrikam.org
  SaslNegotiation: Required
  SupportDialbackNegotiation: false
`;

describe('seed examples, as cmdlet lines', () => {
  it('Get-CsXmppAllowedPartner returns every partner with defaults filled in', async () => {
    t = await tempConfig(THREE);
    const all = await json(['cmdlet', 'Get-CsXmppAllowedPartner']);
    expect(all.map((r) => r.Identity)).toEqual(['contoso.com', 'xmpp.contoso.org', 'xmpp.fabrikam.org']);
    expect(all[1]).toEqual({
      Identity: 'xmpp.contoso.org',
      AdditionalDomains: [],
      ConnectionLimit: null,
      Description: null,
      EnableKeepAlive: true,
      PartnerType: 'PublicUnverified',
      ProxyFqdn: null,
      SaslNegotiation: 'Optional',
      SupportDialbackNegotiation: true,
      TlsNegotiation: 'Required',
    });
  });

  it('Get-CsXmppAllowedPartner -Identity "xmpp.contoso.com" returns one partner', async () => {
    t = await tempConfig(`${THREE}- Identity: xmpp.contoso.com\n`);
    const one = await json(['cmdlet', 'Get-CsXmppAllowedPartner -Identity "xmpp.contoso.com"']);
    expect(one.map((r) => r.Identity)).toEqual(['xmpp.contoso.com']);
  });

  it('Get-CsXmppAllowedPartner - Filter "*.org" (the seed typo) filters by wildcard', async () => {
    t = await tempConfig(THREE);
    for (const line of ['Get-CsXmppAllowedPartner - Filter "*.org"', 'Get-CsXmppAllowedPartner -Filter "*.org"']) {
      const found = await json(['cmdlet', line]);
      expect(found.map((r) => r.Identity)).toEqual(['xmpp.contoso.org', 'xmpp.fabrikam.org']);
    }
  });

  it('Get-CsXmppAllowedPartner | Where-Object {$_.SaslNegotiation -eq "Required"}', async () => {
    t = await tempConfig(THREE);
    const found = await json(['cmdlet', 'Get-CsXmppAllowedPartner | Where-Object {$_.SaslNegotiation -eq "Required"}']);
    expect(found.map((r) => r.Identity)).toEqual(['contoso.com', 'xmpp.fabrikam.org']);
  });

  it('New-CsXmppAllowedPartner -Identity "contoso.com" -PartnerType "PublicVerified"', async () => {
    t = await tempConfig();
    const r = await t.cli(['cmdlet', 'New-CsXmppAllowedPartner -Identity "contoso.com" -PartnerType "PublicVerified"']);
    expect(r.code).toBe(0);
    // The default negotiation (TLS Required, SASL Required, dialback on) is a valid record: no warning.
    expect(r.stderr).toBe('');
    const [rec] = await json(['partner', 'get', '--identity', 'contoso.com']);
    expect(rec?.PartnerType).toBe('PublicVerified');
  });

  it('New-CsXmppAllowedPartner -Identity "fabrikam.com" -AdditionalDomains "research.fabrikam2.com"', async () => {
    t = await tempConfig();
    const r = await t.cli(['cmdlet', 'New-CsXmppAllowedPartner -Identity "fabrikam.com" -AdditionalDomains "research.fabrikam2.com"']);
    expect(r.code).toBe(0);
    const [rec] = await json(['partner', 'get', '--identity', 'fabrikam.com']);
    expect(rec?.AdditionalDomains).toEqual(['research.fabrikam2.com']);
    expect(r.stderr).toBe('');
  });

  it('New-CsXmppAllowedPartner -Domain with a comma list of AdditionalDomains', async () => {
    t = await tempConfig();
    const r = await t.cli(['cmdlet', 'New-CsXmppAllowedPartner -Domain "fabrikam.com" -AdditionalDomains "fabrikam2.com","fabrikam3.com" -Force']);
    expect(r.code).toBe(0);
    const [rec] = await json(['partner', 'get', '--identity', 'fabrikam.com']);
    expect(rec?.AdditionalDomains).toEqual(['fabrikam2.com', 'fabrikam3.com']);
  });

  it('Set-CsXmppAllowedPartner -Identity "contoso.com" -SupportDialbackNegotiation $False', async () => {
    t = await tempConfig(THREE);
    const r = await t.cli(['cmdlet', 'Set-CsXmppAllowedPartner -Identity "contoso.com" -SupportDialbackNegotiation $False']);
    expect(r.code).toBe(0);
    const [rec] = await json(['partner', 'get', '--identity', 'contoso.com']);
    expect(rec?.SupportDialbackNegotiation).toBe(false);
  });

  it('Get-CsXmppAllowedPartner | Set-CsXmppAllowedPartner -SaslNegotiation "Required"', async () => {
    t = await tempConfig(THREE);
    const r = await t.cli(['cmdlet', 'Get-CsXmppAllowedPartner | Set-CsXmppAllowedPartner -SaslNegotiation "Required"']);
    expect(r.code).toBe(0);
    // SASL Required with the default dialback setting is not a combination that warns.
    expect(r.stderr).toBe('');
    const all = await json(['partner', 'get']);
    expect(all.map((p) => p.SaslNegotiation)).toEqual(['Required', 'Required', 'Required']);
  });

  it('Set-CsXmppAllowedPartner -AdditionalDomains @{Add="na.contoso.com"}', async () => {
    t = await tempConfig(THREE);
    const r = await t.cli(['cmdlet', 'Set-CsXmppAllowedPartner -Identity "contoso.com" -AdditionalDomains @{Add="na.contoso.com"}']);
    expect(r.code).toBe(0);
    const [rec] = await json(['partner', 'get', '--identity', 'contoso.com']);
    expect(rec?.AdditionalDomains).toEqual(['europe.contoso.com', 'na.contoso.com']);
  });

  it('Set-CsXmppAllowedPartner -AdditionalDomains @{Remove="europe.contoso.com"}', async () => {
    t = await tempConfig(THREE.replace('[europe.contoso.com]', '[europe.contoso.com, asia.contoso.com]'));
    const r = await t.cli(['cmdlet', 'Set-CsXmppAllowedPartner -Identity "contoso.com" -AdditionalDomains @{Remove="europe.contoso.com"}']);
    expect(r.code).toBe(0);
    const [rec] = await json(['partner', 'get', '--identity', 'contoso.com']);
    expect(rec?.AdditionalDomains).toEqual(['asia.contoso.com']);
  });

  it('Set-CsXmppAllowedPartner -AdditionalDomains $Null clears the list', async () => {
    t = await tempConfig(THREE);
    const r = await t.cli(['cmdlet', 'Set-CsXmppAllowedPartner -Identity "contoso.com" -AdditionalDomains $Null']);
    expect(r.code).toBe(0);
    const [rec] = await json(['partner', 'get', '--identity', 'contoso.com']);
    expect(rec?.AdditionalDomains).toEqual([]);
    expect(await t.readPartners()).not.toContain('europe.contoso.com');
  });

  it('Remove-CsXmppAllowedPartner by -Identity and from a pipeline', async () => {
    t = await tempConfig(THREE);
    expect((await t.cli(['cmdlet', 'Remove-CsXmppAllowedPartner -Identity "contoso.com"'])).code).toBe(0);
    expect((await json(['partner', 'get'])).map((r) => r.Identity)).toEqual(['xmpp.contoso.org', 'xmpp.fabrikam.org']);
    const r = await t.cli(['cmdlet', 'Get-CsXmppAllowedPartner -Filter "*.fabrikam.org" | Remove-CsXmppAllowedPartner']);
    expect(r.code).toBe(0);
    expect((await json(['partner', 'get'])).map((r) => r.Identity)).toEqual(['xmpp.contoso.org']);
  });

  it('cmdlet names work directly as the first argument, PowerShell-style', async () => {
    t = await tempConfig(THREE);
    const found = await json(['Get-CsXmppAllowedPartner', '-Filter', '*.org']);
    expect(found.map((r) => r.Identity)).toEqual(['xmpp.contoso.org', 'xmpp.fabrikam.org']);
    const r = await t.cli(['Set-CsXmppAllowedPartner', '-Identity', 'contoso.com', '-EnableKeepAlive', '$False']);
    expect(r.code).toBe(0);
    expect((await json(['partner', 'get', '--identity', 'contoso.com']))[0]?.EnableKeepAlive).toBe(false);
    const r2 = await t.cli(['Set-CsXmppAllowedPartner', '-Identity', 'contoso.com', '-AdditionalDomains', '@{Add="na.contoso.com"}']);
    expect(r2.code).toBe(0);
    expect((await json(['partner', 'get', '--identity', 'contoso.com']))[0]?.AdditionalDomains).toEqual(['europe.contoso.com', 'na.contoso.com']);
  });

  it('New -InMemory, edit the variable, Set -Instance commits it', async () => {
    t = await tempConfig();
    const r = await t.cli(['cmdlet', '$p = New-CsXmppAllowedPartner -Identity "mem.example" -InMemory -Force; $p.Description = "from memory"; Set-CsXmppAllowedPartner -Instance $p -Force']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const [rec] = await json(['partner', 'get', '--identity', 'mem.example']);
    expect(rec?.Description).toBe('from memory');
  });
});

describe('long options, output and pipes', () => {
  it('partner new with every property, list view and JSON agree', async () => {
    t = await tempConfig();
    const r = await t.cli([
      'partner', 'new', '--identity', 'Bücher.Example', '--additional-domains', 'a.example,b.example',
      '--partner-type', 'federated', '--tls-negotiation', 'Required', '--sasl-negotiation', 'Optional',
      '--support-dialback-negotiation', 'true', '--connection-limit', '5', '--enable-keep-alive', 'false',
      '--proxy-fqdn', 'proxy.example:5270', '--description', 'Books partner',
    ]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const [rec] = await json(['partner', 'get', '--identity', 'xn--bcher-kva.example']);
    expect(rec).toMatchObject({
      Identity: 'xn--bcher-kva.example', AdditionalDomains: ['a.example', 'b.example'], PartnerType: 'Federated',
      SaslNegotiation: 'Optional', ConnectionLimit: 5, EnableKeepAlive: false, ProxyFqdn: 'proxy.example:5270',
      Description: 'Books partner',
    });
    const list = await t.cli(['partner', 'get']);
    expect(list.stdout).toContain('\nIdentity                   : xn--bcher-kva.example\n');
    expect(list.stdout).toContain('AdditionalDomains          : {a.example, b.example}\n');
    expect(list.stdout).toContain('EnableKeepAlive            : False\n');
  });

  it('--config and --json are accepted after the command word', async () => {
    t = await tempConfig(THREE);
    const { runCli } = await import('../helpers/cli.js');
    const r = await runCli(['partner', 'get', '--filter', 'contoso*', '--config', t.config, '--json']);
    expect(r.code).toBe(0);
    expect((JSON.parse(r.stdout) as { Identity: string }[]).map((x) => x.Identity)).toEqual(['contoso.com']);
  });

  it('get --json piped into set and remove', async () => {
    t = await tempConfig(THREE);
    const out = await t.cli(['--json', 'partner', 'get', '--filter', '*.org']);
    const set = await t.cli(['partner', 'set', '--enable-keep-alive', 'false'], { stdin: out.stdout });
    expect(set.code).toBe(0);
    const all = await json(['partner', 'get']);
    expect(all.map((r) => r.EnableKeepAlive)).toEqual([true, false, false]);
    const rm = await t.cli(['partner', 'remove'], { stdin: out.stdout });
    expect(rm.code).toBe(0);
    expect((await json(['partner', 'get'])).map((r) => r.Identity)).toEqual(['contoso.com']);
  });

  it('list-view output piped into set is understood too', async () => {
    t = await tempConfig(THREE);
    const out = await t.cli(['partner', 'get', '--identity', 'contoso.com']);
    const set = await t.cli(['partner', 'set', '--description', 'piped'], { stdin: out.stdout });
    expect(set.stderr).toBe('');
    expect((await json(['partner', 'get', '--identity', 'contoso.com']))[0]?.Description).toBe('piped');
  });

  it('--in-memory prints without saving; set --instance FILE creates it', async () => {
    t = await tempConfig();
    const mem = await t.cli(['--json', 'partner', 'new', '--identity', 'later.example', '--sasl-negotiation', 'NotSupported', '--in-memory']);
    expect(mem.code).toBe(0);
    expect(JSON.parse(mem.stdout)).toMatchObject([{ Identity: 'later.example', SaslNegotiation: 'NotSupported' }]);
    expect(await json(['partner', 'get'])).toEqual([]);
    const file = `${t.dir}/instance.json`;
    const { writeFile } = await import('node:fs/promises');
    await writeFile(file, mem.stdout);
    const commit = await t.cli(['partner', 'set', '--instance', file]);
    expect(commit.code).toBe(0);
    expect(await json(['partner', 'get'])).toMatchObject([{ Identity: 'later.example', SaslNegotiation: 'NotSupported' }]);
    const fromStdin = await t.cli(['partner', 'set', '--instance', '-', '--description', 'again'], { stdin: mem.stdout });
    expect(fromStdin.code).toBe(0);
    expect((await json(['partner', 'get']))[0]?.Description).toBe('again');
  });

  it('--what-if says what it would do and changes nothing', async () => {
    t = await tempConfig(THREE);
    const before = await t.readPartners();
    const r = await t.cli(['partner', 'new', '--identity', 'new.example', '--sasl-negotiation', 'Optional', '--what-if']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('What if: Performing operation "New-CsXmppAllowedPartner" on Target "new.example".');
    const rj = await t.cli(['--json', 'partner', 'remove', '--identity', 'contoso.com', '--what-if']);
    expect(JSON.parse(rj.stdout)).toMatchObject([{ Identity: 'contoso.com' }]);
    expect(rj.stderr).toContain('What if: Performing operation "Remove-CsXmppAllowedPartner" on Target "contoso.com".');
    const rc = await t.cli(['cmdlet', 'Set-CsXmppAllowedPartner -Identity contoso.com -Description x -WhatIf']);
    expect(rc.stdout).toContain('What if: Performing operation "Set-CsXmppAllowedPartner" on Target "contoso.com".');
    expect(await t.readPartners()).toBe(before);
  });

  it('--confirm refuses without a terminal; -Confirm:$false does not ask', async () => {
    t = await tempConfig(THREE);
    const before = await t.readPartners();
    const r = await t.cli(['partner', 'remove', '--identity', 'contoso.com', '--confirm']);
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/Confirm.*terminal/);
    expect(await t.readPartners()).toBe(before);
    const ok = await t.cli(['cmdlet', 'Remove-CsXmppAllowedPartner -Identity contoso.com -Confirm:$false']);
    expect(ok.code).toBe(0);
  });

  it('-Force silences warnings; the record is saved either way', async () => {
    t = await tempConfig();
    const warned = await t.cli(['partner', 'new', '--identity', 'w.example', '--tls-negotiation', 'Optional']);
    expect(warned.code).toBe(0);
    expect(warned.stderr).toMatch(/WARNING: w\.example: TlsNegotiation Optional/);
    const forced = await t.cli(['partner', 'new', '--identity', 'f.example', '--tls-negotiation', 'Optional', '--force']);
    expect(forced.code).toBe(0);
    expect(forced.stderr).toBe('');
    expect((await json(['partner', 'get'])).map((r) => r.Identity)).toEqual(['w.example', 'f.example']);
  });

  it('--domain, --remove-domain and --clear-additional-domains', async () => {
    t = await tempConfig();
    expect((await t.cli(['partner', 'new', '--domain', 'd.example', '--additional-domains', 'a.d.example,b.d.example', '--force'])).code).toBe(0);
    expect((await t.cli(['partner', 'set', '--identity', 'd.example', '--remove-domain', 'a.d.example'])).code).toBe(0);
    expect((await json(['partner', 'get']))[0]?.AdditionalDomains).toEqual(['b.d.example']);
    expect((await t.cli(['partner', 'set', '--identity', 'd.example', '--clear-additional-domains'])).code).toBe(0);
    expect((await json(['partner', 'get']))[0]?.AdditionalDomains).toEqual([]);
  });

  it('an empty piped list sets and removes nothing, successfully', async () => {
    t = await tempConfig(THREE);
    const before = await t.readPartners();
    const none = await t.cli(['--json', 'partner', 'get', '--filter', 'nothing*']);
    expect(JSON.parse(none.stdout)).toEqual([]);
    const set = await t.cli(['partner', 'set', '--enable-keep-alive', 'false'], { stdin: none.stdout });
    expect([set.code, set.stderr]).toEqual([0, '']);
    const rm = await t.cli(['partner', 'remove'], { stdin: none.stdout });
    expect([rm.code, rm.stderr]).toEqual([0, '']);
    expect(await t.readPartners()).toBe(before);
  });

  it('a multi-line Description survives list view piped into set', async () => {
    t = await tempConfig(THREE);
    expect((await t.cli(['cmdlet', 'Set-CsXmppAllowedPartner -Identity contoso.com -Description "line1`nline2"'])).code).toBe(0);
    const list = await t.cli(['partner', 'get', '--identity', 'contoso.com']);
    expect(list.stdout).toContain('Description                : line1\n                             line2\n');
    const set = await t.cli(['partner', 'set', '--enable-keep-alive', 'false'], { stdin: list.stdout });
    expect(set.stderr).toBe('');
    expect((await json(['partner', 'get', '--identity', 'contoso.com']))[0]).toMatchObject({ Description: 'line1\nline2', EnableKeepAlive: false });
  });

  it('a partner file that cannot be read is one clear error line', async () => {
    t = await tempConfig();
    const { mkdir } = await import('node:fs/promises');
    await mkdir(t.partners);
    const r = await t.cli(['partner', 'get']);
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim()).toMatch(/^error: .*partners\.yaml: cannot read partner file: .*EISDIR/);
  });

  it('an empty or missing partner file means no partners', async () => {
    t = await tempConfig();
    expect(await json(['partner', 'get'])).toEqual([]);
    await t.writePartners('');
    expect(await json(['partner', 'get'])).toEqual([]);
    await t.writePartners('# nobody yet\n');
    expect(await json(['partner', 'get'])).toEqual([]);
    const r = await t.cli(['partner', 'new', '--identity', 'first.example', '--force']);
    expect(r.code).toBe(0);
    const text = await t.readPartners();
    expect(text).toMatch(/^# nobody yet\n/);
    expect(text).toContain('- Identity: first.example');
  });
});

describe('Set changes existing partners only; New -InMemory is the one way it creates', () => {
  /** Runs `args`, expects one error line naming the missing partner, and the file unchanged. */
  async function refused(args: string[], stdin: string | undefined, identity: string) {
    const before = await t.readPartners();
    const r = await t.cli(args, { stdin });
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1);
    expect(r.stderr.trim()).toBe(`error: no partner with Identity '${identity}' (Set-CsXmppAllowedPartner changes existing partners only; create one with New-CsXmppAllowedPartner)`);
    expect(await t.readPartners()).toBe(before);
  }

  it('records piped on stdin for a partner that does not exist are refused, as --identity is', async () => {
    t = await tempConfig(THREE);
    await refused(['partner', 'set', '--identity', 'nope.example', '--description', 'x'], undefined, 'nope.example');
    await refused(['partner', 'set', '--description', 'x'], '[{"Identity": "nope.example"}]', 'nope.example');
    await refused(['partner', 'set'], 'Identity : nope.example\n', 'nope.example');
    // One missing record among existing ones: nothing is changed at all.
    const mixed = '[{"Identity": "contoso.com", "Description": "changed"}, {"Identity": "nope.example"}]';
    await refused(['partner', 'set'], mixed, 'nope.example');
  });

  it('a record from get, given back with --instance or -Instance after its partner was removed, is refused', async () => {
    t = await tempConfig(THREE);
    const got = await t.cli(['--json', 'partner', 'get', '--identity', 'contoso.com']);
    expect((await t.cli(['partner', 'remove', '--identity', 'contoso.com'])).code).toBe(0);
    const file = `${t.dir}/got.json`;
    const { writeFile } = await import('node:fs/promises');
    await writeFile(file, got.stdout);
    await refused(['partner', 'set', '--instance', file], undefined, 'contoso.com');
    await refused(['partner', 'set', '--instance', '-'], got.stdout, 'contoso.com');
    // In one cmdlet line the Remove statement runs (and is saved) before Set refuses.
    const line = await t.cli(['cmdlet', '$p = Get-CsXmppAllowedPartner -Identity xmpp.contoso.org; Remove-CsXmppAllowedPartner -Identity xmpp.contoso.org; Set-CsXmppAllowedPartner -Instance $p']);
    expect(line.code).not.toBe(0);
    expect(line.stderr).toMatch(/^error: no partner with Identity 'xmpp\.contoso\.org' \(Set-CsXmppAllowedPartner changes existing partners only/);
    expect((await json(['partner', 'get'])).map((r) => r.Identity)).toEqual(['xmpp.fabrikam.org']);
  });

  it('a New -InMemory record is marked as such and Set commits it, from a variable, a file or stdin', async () => {
    t = await tempConfig();
    const mem = await t.cli(['--json', 'partner', 'new', '--identity', 'one.example', '--in-memory']);
    expect(JSON.parse(mem.stdout)).toEqual([expect.objectContaining({ Identity: 'one.example', InMemory: true })]);
    expect((await t.cli(['partner', 'set'], { stdin: mem.stdout })).code).toBe(0);
    const list = await t.cli(['partner', 'new', '--identity', 'two.example', '--in-memory']);
    expect(list.stdout).toContain('\nInMemory                   : True\n');
    const commit = await t.cli(['partner', 'set', '--instance', '-'], { stdin: list.stdout });
    expect([commit.code, commit.stderr]).toEqual([0, '']);
    const line = await t.cli(['cmdlet', '$p = New-CsXmppAllowedPartner -Identity three.example -InMemory; $p.Description = "later"; Set-CsXmppAllowedPartner -Instance $p']);
    expect([line.code, line.stderr]).toEqual([0, '']);
    const all = await json(['partner', 'get']);
    expect(all.map((r) => r.Identity)).toEqual(['one.example', 'two.example', 'three.example']);
    expect(all.every((r) => !('InMemory' in r))).toBe(true);
    expect(await t.readPartners()).not.toContain('InMemory');
  });
});

describe('warnings: only for a combination the admin chose that can never take effect', () => {
  it('the default record never warns, neither from New nor from New -InMemory committed by Set', async () => {
    t = await tempConfig();
    for (const args of [
      ['partner', 'new', '--identity', 'a.example'],
      ['cmdlet', 'New-CsXmppAllowedPartner -Identity "b.example" -TlsNegotiation Required -SaslNegotiation Required -SupportDialbackNegotiation $True'],
      ['cmdlet', '$p = New-CsXmppAllowedPartner -Identity "c.example" -InMemory; $p.Description = "later"; Set-CsXmppAllowedPartner -Instance $p'],
      ['partner', 'set', '--identity', 'a.example', '--sasl-negotiation', 'Required', '--description', 'unrelated'],
    ]) {
      const r = await t.cli(args);
      expect([r.code, r.stderr], args.join(' ')).toEqual([0, '']);
    }
  });

  it('a setting the admin chose that can never take effect warns once, on the command that chose it', async () => {
    t = await tempConfig();
    const chose = await t.cli(['cmdlet', '$p = New-CsXmppAllowedPartner -Identity "w.example" -TlsNegotiation Optional -InMemory; Set-CsXmppAllowedPartner -Instance $p']);
    expect(chose.code).toBe(0);
    expect(chose.stderr).toBe('WARNING: w.example: TlsNegotiation Optional: without TLS this partner can never authenticate (it needs SASL EXTERNAL), so plain TCP is useless\n');
    // An unrelated later edit of that record does not repeat it.
    const later = await t.cli(['partner', 'set', '--identity', 'w.example', '--description', 'x']);
    expect([later.code, later.stderr]).toEqual([0, '']);
    // Turning dialback off on a TLS Optional + SASL Optional partner makes plain TCP useless: warned.
    expect((await t.cli(['partner', 'new', '--identity', 'o.example', '--tls-negotiation', 'Optional', '--sasl-negotiation', 'Optional'])).stderr).toBe('');
    const off = await t.cli(['partner', 'set', '--identity', 'o.example', '--support-dialback-negotiation', 'false']);
    expect(off.stderr).toMatch(/^WARNING: o\.example: TlsNegotiation Optional: .*plain TCP is useless\n$/);
    const unused = await t.cli(['partner', 'new', '--identity', 'n.example', '--tls-negotiation', 'NotSupported', '--sasl-negotiation', 'Optional']);
    expect(unused.stderr).toMatch(/^WARNING: n\.example: TlsNegotiation NotSupported with SaslNegotiation Optional/);
  });
});

describe('bad input: one clear line, non-zero exit, file byte-for-byte unchanged', () => {
  const cases: [string, string[], RegExp][] = [
    ['unknown long option', ['partner', 'set', '--identity', 'contoso.com', '--colour', 'red'], /--colour/],
    ['unknown cmdlet parameter', ['cmdlet', 'Set-CsXmppAllowedPartner -Identity contoso.com -Colour red'], /-Colour/],
    ['bad enum value', ['partner', 'set', '--identity', 'contoso.com', '--tls-negotiation', 'Sometimes'], /TlsNegotiation.*'Sometimes'.*Required, Optional, NotSupported/],
    ['bad enum in a cmdlet line', ['cmdlet', 'Set-CsXmppAllowedPartner -Identity contoso.com -PartnerType Friends'], /PartnerType.*'Friends'/],
    ['bad number', ['partner', 'set', '--identity', 'contoso.com', '--connection-limit', 'ten'], /ConnectionLimit.*'ten'/],
    ['negative number', ['partner', 'set', '--identity', 'contoso.com', '--connection-limit', '-1'], /ConnectionLimit/],
    ['number beyond UInt32', ['partner', 'set', '--identity', 'contoso.com', '--connection-limit', '4294967296'], /ConnectionLimit.*UInt32/],
    ['bad boolean', ['partner', 'set', '--identity', 'contoso.com', '--enable-keep-alive', 'maybe'], /EnableKeepAlive.*boolean/],
    ['invalid domain', ['partner', 'new', '--identity', 'not a domain!'], /Identity.*not a valid domain/],
    ['invalid additional domain', ['partner', 'set', '--identity', 'contoso.com', '--add-domain', '-bad-.example'], /AdditionalDomains.*not a valid domain/],
    ['IP address as a domain', ['partner', 'new', '--identity', '192.0.2.1'], /IP address/],
    ['duplicate Identity', ['partner', 'new', '--identity', 'contoso.com', '--force'], /already exists/],
    ['domain owned by another partner', ['partner', 'new', '--identity', 'europe.contoso.com', '--force'], /europe\.contoso\.com.*already belongs to partner 'contoso\.com'/],
    ['additional domain owned by another partner', ['partner', 'set', '--identity', 'xmpp.contoso.org', '--add-domain', 'xmpp.fabrikam.org'], /already belongs to partner 'xmpp\.fabrikam\.org'/],
    ['missing partner on set', ['partner', 'set', '--identity', 'nobody.example', '--description', 'x'], /no partner with Identity 'nobody\.example'/],
    ['missing partner on remove', ['cmdlet', 'Remove-CsXmppAllowedPartner -Identity nobody.example'], /no partner with Identity 'nobody\.example'/],
    ['missing partner on get', ['partner', 'get', '--identity', 'nobody.example'], /no partner with Identity/],
    ['invalid combination', ['partner', 'new', '--identity', 'x.example', '--tls-negotiation', 'NotSupported', '--sasl-negotiation', 'Required', '--support-dialback-negotiation', 'false'], /invalid combination.*TlsNegotiation NotSupported/],
    ['invalid combination by set', ['partner', 'set', '--identity', 'xmpp.fabrikam.org', '--sasl-negotiation', 'NotSupported'], /invalid combination/],
    ['Identity and Domain together', ['cmdlet', 'New-CsXmppAllowedPartner -Identity a.example -Domain b.example'], /-Identity or -Domain, not both/],
    ['unreadable instance file', ['partner', 'set', '--instance', '/nonexistent/instance.json'], /cannot read \/nonexistent\/instance\.json/],
    ['malformed cmdlet line', ['cmdlet', 'Get-CsXmppAllowedPartner -Identity "unterminated'], /unterminated/],
    ['unknown cmdlet', ['cmdlet', 'Get-CsXmppFoo'], /Get-CsXmppFoo/],
    ['unknown command', ['partners', 'get'], /unknown command 'partners'/],
    ['misspelled switch', ['partner', 'new', '--identity', 'q.example', '--forse'], /partner new has no option --forse/],
    ['misspelled switch on get', ['partner', 'get', '--bogus'], /partner get has no option --bogus/],
    ['serve with a stray argument', ['serve', '--port', '1'], /serve takes no arguments besides --config/],
    ['single-label Identity', ['partner', 'new', '--identity', 'localhost', '--force'], /Identity: 'localhost' is a single-label name/],
    ['single-label Identity in a cmdlet line', ['cmdlet', 'New-CsXmppAllowedPartner -Identity intranet -InMemory'], /Identity: 'intranet' is a single-label name/],
    ['single-label additional domain', ['cmdlet', 'Set-CsXmppAllowedPartner -Identity contoso.com -AdditionalDomains @{Add="intranet"}'], /AdditionalDomains: 'intranet' is a single-label name/],
    ['Identity that is a local domain', ['partner', 'new', '--identity', 'GW.example', '--force'], /^error: Identity: gw\.example is one of this gateway's own localDomains/],
    ['local domain in New -InMemory', ['cmdlet', 'New-CsXmppAllowedPartner -Identity gw.example -InMemory'], /Identity: gw\.example is one of this gateway's own localDomains/],
    ['additional domain that is a local domain', ['partner', 'set', '--identity', 'contoso.com', '--add-domain', 'gw.example'], /AdditionalDomains: gw\.example is one of this gateway's own localDomains/],
    ['ConnectionLimit 0', ['partner', 'set', '--identity', 'contoso.com', '--connection-limit', '0'], /ConnectionLimit: 0 would refuse every stream/],
    ['ConnectionLimit 0 in a cmdlet line', ['cmdlet', 'New-CsXmppAllowedPartner -Identity z.example -ConnectionLimit 0'], /ConnectionLimit: 0 would refuse every stream/],
  ];
  for (const [name, args, message] of cases) {
    it(name, async () => {
      t = await tempConfig(THREE);
      const before = await readFile(t.partners);
      const r = await t.cli(args);
      expect(r.code).not.toBe(0);
      const lines = r.stderr.trim().split('\n');
      expect(lines, r.stderr).toHaveLength(1);
      expect(lines[0]).toMatch(/^error: /);
      expect(lines[0]).toMatch(message);
      expect(r.stdout).toBe('');
      expect(await readFile(t.partners)).toEqual(before);
    });
  }

  it('an invalid partner file is never overwritten and the error names file, line and field', async () => {
    const broken = THREE.replace('SaslNegotiation: Optional', 'SaslNegotiation: Sometimes');
    t = await tempConfig(broken);
    const r = await t.cli(['partner', 'new', '--identity', 'new.example', '--force']);
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim()).toMatch(new RegExp(`^error: ${t.partners.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:5: SaslNegotiation: 'Sometimes' is not one of`));
    expect(await t.readPartners()).toBe(broken);
    const get = await t.cli(['partner', 'get']);
    expect(get.code).not.toBe(0);
    expect(get.stderr).toMatch(/partners\.yaml:5: SaslNegotiation/);
  });

  it('a YAML syntax error and an unknown property are reported with their line', async () => {
    t = await tempConfig('- Identity: a.example\n  Bogus: 1\n');
    const r = await t.cli(['partner', 'get']);
    expect(r.stderr.trim()).toMatch(/partners\.yaml:2: Bogus: unknown property$/);
    await t.writePartners('- Identity: a.example\n  Description: [unclosed\n');
    const r2 = await t.cli(['partner', 'get']);
    expect(r2.code).not.toBe(0);
    expect(r2.stderr.trim()).toMatch(/partners\.yaml:\d+: invalid YAML/);
    await t.writePartners('- Identity: a.example\n- Identity: b.example\n  AdditionalDomains: [A.example]\n');
    const r3 = await t.cli(['partner', 'get']);
    expect(r3.stderr.trim()).toMatch(/partners\.yaml:3: AdditionalDomains: domain a\.example already belongs to partner a\.example/);
  });

  it('a partner file naming a local domain, a single-label domain or ConnectionLimit 0 is refused at its line', async () => {
    t = await tempConfig('- Identity: a.example\n- Identity: b.example\n  AdditionalDomains: [gw.example]\n');
    const r = await t.cli(['partner', 'get']);
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim()).toMatch(/partners\.yaml:3: AdditionalDomains: gw\.example is one of this gateway's own localDomains/);
    await t.writePartners('- Identity: a.example\n- Identity: intranet\n');
    expect((await t.cli(['partner', 'get'])).stderr.trim()).toMatch(/partners\.yaml:2: Identity: 'intranet' is a single-label name/);
    await t.writePartners('- Identity: a.example\n  ConnectionLimit: 0\n');
    expect((await t.cli(['partner', 'get'])).stderr.trim()).toMatch(/partners\.yaml:2: ConnectionLimit: 0 would refuse/);
    await t.writePartners('- Identity: a.example\n');
    const piped = await t.cli(['partner', 'set', '--instance', '-'], { stdin: '[{"Identity": "a.example", "AdditionalDomains": ["gw.example"]}]' });
    expect(piped.stderr.trim()).toBe("error: AdditionalDomains: gw.example is one of this gateway's own localDomains (gateway.yaml), so it cannot be a partner's domain");
    expect(await t.readPartners()).toBe('- Identity: a.example\n');
  });

  it('a YAML syntax error names the line to fix, not the line after it', async () => {
    const cases: [string, number][] = [
      ['- Identity: a.example\n  Description: [unclosed\n', 2],
      ['- Identity: a.example\n  Description: [unclosed\n- Identity: b.example\n', 2],
      ['- Identity: a.example\n  AdditionalDomains: {x: 1\n  Foo: 2\n', 2],
      ["- Identity: 'a.example\n\n", 1],
      ['- Identity: a.example\n Bad: x\n', 2],
      ['- Identity: a.example\n  Identity: b.example\n', 2],
    ];
    t = await tempConfig();
    for (const [text, line] of cases) {
      await t.writePartners(text);
      const r = await t.cli(['partner', 'get']);
      expect(r.code).not.toBe(0);
      expect(r.stderr.trim(), JSON.stringify(text)).toMatch(new RegExp(`partners\\.yaml:${line}: invalid YAML`));
    }
    const { writeFile } = await import('node:fs/promises');
    await writeFile(t.config, 'localDomains: [unclosed\n\nlisten: []\n');
    const r = await t.cli(['partner', 'get']);
    expect(r.stderr.trim()).toMatch(/gateway\.yaml:1: invalid YAML/);
  });

  it('a bad gateway.yaml is reported with file, line and field', async () => {
    t = await tempConfig(THREE, 'connectionLimit: lots\n');
    const r = await t.cli(['partner', 'get']);
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim()).toMatch(/gateway\.yaml:\d+: connectionLimit: "lots" is not a whole number/);
  });
});

describe('-Confirm on a terminal', () => {
  /** Runs the CLI on a pseudo-terminal (util-linux `script`) and answers the prompt. */
  async function onTerminal(args: string[], answer: string): Promise<{ code: number | null; output: string }> {
    const { spawn } = await import('node:child_process');
    const { BIN } = await import('../helpers/cli.js');
    const command = [process.execPath, BIN, '--config', t.config, ...args].map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(' ');
    const child = spawn('script', ['-qec', command, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    let answered = false;
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      output += d;
      if (!answered && output.includes('[Y] Yes  [N] No')) {
        answered = true;
        child.stdin.write(`${answer}\r`);
      }
    });
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    return { code, output };
  }

  it('asks before removing; "n" changes nothing, "y" removes', async () => {
    t = await tempConfig(THREE);
    const before = await t.readPartners();
    const no = await onTerminal(['partner', 'remove', '--identity', 'contoso.com', '--confirm'], 'n');
    expect(no.output).toContain('Performing operation "Remove-CsXmppAllowedPartner" on Target "contoso.com".');
    expect(no.code).not.toBe(0);
    expect(await t.readPartners()).toBe(before);
    const yes = await onTerminal(['cmdlet', 'Remove-CsXmppAllowedPartner -Identity contoso.com -Confirm'], 'y');
    expect(yes.code).toBe(0);
    expect(await t.readPartners()).not.toContain('contoso.com');
  });
});
