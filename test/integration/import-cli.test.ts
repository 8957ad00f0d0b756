/**
 * `xmpp-gateway import` (issue 10), run as the built CLI: a list-view export of 20 partners from
 * Lync / Skype for Business round-trips (import, then `partner get` shows the same records), a
 * second import leaves them alone, --force replaces, --what-if writes nothing, one bad record
 * stops the whole import, and Export-Csv output is read too.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tempConfig, type TempConfig } from '../helpers/cli.js';

const TYPES = ['Federated', 'PublicVerified', 'PublicUnverified'] as const;
/** Valid negotiation combinations (docs/design.md section 3). */
const COMBOS = [
  ['Required', 'Required', true], ['Required', 'Optional', true], ['Required', 'NotSupported', true],
  ['Optional', 'Optional', true], ['NotSupported', 'NotSupported', true], ['Required', 'Required', false],
] as const;

interface Json { Identity: string; AdditionalDomains: string[]; ConnectionLimit: number | null; Description: string | null; EnableKeepAlive: boolean; PartnerType: string; ProxyFqdn: string | null; SaslNegotiation: string; SupportDialbackNegotiation: boolean; TlsNegotiation: string }

function partners(): Json[] {
  return Array.from({ length: 20 }, (_, i) => {
    const n = String(i + 1).padStart(2, '0');
    const [tls, sasl, dialback] = COMBOS[i % COMBOS.length]!;
    return {
      Identity: `p${n}.example`,
      AdditionalDomains: i % 4 === 0 ? [`muc.p${n}.example`, `im.p${n}.example`] : [],
      ConnectionLimit: i % 3 === 0 ? null : 5 + i,
      Description: i % 5 === 0 ? null : `Partner ${n}, contact admin@p${n}.example`,
      EnableKeepAlive: i % 2 === 0,
      PartnerType: TYPES[i % 3]!,
      ProxyFqdn: i % 7 === 0 ? `xmpp.p${n}.example:5269` : null,
      SaslNegotiation: sasl,
      SupportDialbackNegotiation: dialback,
      TlsNegotiation: tls,
    };
  });
}

/** What `Get-CsXmppAllowedPartner` prints on a Lync console: Format-List, its own property order, scoped Identity. */
function lyncListView(records: Json[]): string {
  const order = ['Identity', 'TlsNegotiation', 'SaslNegotiation', 'SupportDialbackNegotiation', 'ProxyFqdn', 'ConnectionLimit', 'EnableKeepAlive', 'PartnerType', 'AdditionalDomains', 'Description'] as const;
  const show = (v: unknown) => (v === null ? '' : typeof v === 'boolean' ? (v ? 'True' : 'False') : Array.isArray(v) ? `{${v.join(', ')}}` : String(v));
  const blocks = records.map((r, i) => order.map((name) => {
    const value = name === 'Identity' ? `${i % 2 === 0 ? 'XmppAllowedPartner:' : 'Global/'}${r.Identity}` : show(r[name]);
    return `${name.padEnd(26)} : ${value}`.trimEnd();
  }).join('\n'));
  return `\n\n${blocks.join('\n\n')}\n\n\n`;
}

let t: TempConfig;
beforeEach(async () => {
  t = await tempConfig('');
});
afterEach(async () => t.cleanup());

async function getAll(): Promise<Json[]> {
  const r = await t.cli(['--json', 'partner', 'get']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Json[];
}

describe('xmpp-gateway import', () => {
  it('round-trips a list-view export of 20 partners; a second import leaves them alone', async () => {
    const file = join(t.dir, 'lync.txt');
    await writeFile(file, lyncListView(partners()));
    const r = await t.cli(['import', file]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.match(/^created {6} p\d\d\.example$/gm)).toHaveLength(20);
    expect(r.stdout).toMatch(/20 records read \(list view\): 20 created, 0 replaced, 0 left alone/);
    expect(await getAll()).toEqual(partners());

    const before = await t.readPartners();
    const again = await t.cli(['--json', 'import', file]);
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ format: 'list', created: [], replaced: [], existing: partners().map((p) => p.Identity) });
    expect(await t.readPartners()).toBe(before);
  });

  it('--force replaces existing partners, --what-if writes nothing', async () => {
    const file = join(t.dir, 'lync.txt');
    await writeFile(file, lyncListView(partners()));
    expect((await t.cli(['import', file])).code).toBe(0);
    const changed = partners().map((p) => (p.Identity === 'p03.example' ? { ...p, Description: 'moved to a new server', ProxyFqdn: 'new.p03.example' } : p));
    await writeFile(file, lyncListView(changed));
    const before = await t.readPartners();
    const whatIf = await t.cli(['import', file, '--force', '--what-if']);
    expect(whatIf.stdout).toMatch(/^would replace +p03\.example$/m);
    expect(await t.readPartners()).toBe(before);
    const forced = await t.cli(['import', file, '--force']);
    expect(forced.code, forced.stderr).toBe(0);
    expect((await getAll()).find((p) => p.Identity === 'p03.example')).toMatchObject({ Description: 'moved to a new server', ProxyFqdn: 'new.p03.example' });
  });

  it('all or nothing: one invalid record among valid ones imports nothing and names every problem', async () => {
    const file = join(t.dir, 'bad.txt');
    const records = partners().slice(0, 3);
    await writeFile(file, `${lyncListView(records)}Identity : XmppAllowedPartner:bad.example\nTlsNegotiation : NotSupported\nSaslNegotiation : Required\n\nIdentity : worse.example\nAdditionalDomains : {a.example, b.example, c.example, d.example...}\n`);
    const r = await t.cli(['import', file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/bad\.txt:\d+: record 4 \(bad\.example\): invalid combination: TlsNegotiation NotSupported with SaslNegotiation Required/);
    expect(r.stderr).toMatch(/record 5: AdditionalDomains .* was truncated by PowerShell \(\$FormatEnumerationLimit\)/);
    expect(r.stderr).toMatch(/2 problems: nothing was imported/);
    expect(await t.readPartners()).toBe('');
  });

  it('reads Export-Csv output, and refuses a list column Export-Csv wrote as a .NET type name', async () => {
    const file = join(t.dir, 'export.csv');
    const header = '#TYPE Microsoft.Rtc.Management.WritableConfig.Policy.Xmpp.XmppAllowedPartner\n"Identity","AdditionalDomains","ConnectionLimit","Description","EnableKeepAlive","PartnerType","ProxyFqdn","SaslNegotiation","SupportDialbackNegotiation","TlsNegotiation","Element"\n';
    await writeFile(file, `${header}"XmppAllowedPartner:csv.example","System.Collections.Generic.List\`1[System.String]","","","True","Federated","","Optional","True","Required","<x/>"\n`);
    const bad = await t.cli(['import', file]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/AdditionalDomains holds a \.NET type name/);

    await writeFile(file, `${header}"XmppAllowedPartner:csv.example","muc.csv.example,im.csv.example","10","Says ""hi""","True","Federated","","Optional","True","Required","<x/>"\n`);
    const good = await t.cli(['import', file]);
    expect(good.code, good.stderr).toBe(0);
    expect(good.stderr).toMatch(/property Element is not a property .*; ignored/);
    expect(await getAll()).toEqual([expect.objectContaining({ Identity: 'csv.example', AdditionalDomains: ['muc.csv.example', 'im.csv.example'], ConnectionLimit: 10, Description: 'Says "hi"', PartnerType: 'Federated', SaslNegotiation: 'Optional' })]);
  });
});
