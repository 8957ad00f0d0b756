/**
 * The audit trail: the equivalent cmdlet line of a change, checked by running it (through the
 * same cmdlet runner as the CLI) and getting the same record; lines appended and read back with
 * --since; a partner store edit that is committed appends exactly one line per changed record.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog, cmdletLine, diffRecords, parseSince, psString } from '../../src/admin/audit.js';
import { runCmdletLine } from '../../src/cli/cmdlet-runner.js';
import type { ExecutionContext } from '../../src/cli/partner-executor.js';
import { PartnerStore } from '../../src/policy/partner-store.js';
import type { PartnerRecord } from '../../src/policy/types.js';
import { newRecord, recordFromObject } from '../../src/policy/validate.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'xgw-audit-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function ctx(store: PartnerStore): ExecutionContext {
  return { store, localStorePath: join(dir, 'local.json'), readPipedRecords: async () => null, ask: undefined, warn: () => {}, whatIfLine: () => {} };
}

/** Runs `line` on a store holding `before` and returns the record `identity` afterwards. */
async function apply(before: PartnerRecord | null, line: string, identity: string): Promise<PartnerRecord | undefined> {
  const file = join(dir, `p-${Math.random().toString(36).slice(2)}.yaml`);
  await writeFile(file, before ? `- Identity: ${before.Identity}\n` : '');
  const store = new PartnerStore(file);
  if (before) await store.edit((doc) => doc.replace(0, before));
  await runCmdletLine(`${line} -Force`, ctx(store));
  return (await store.read()).byIdentity(identity);
}

describe('cmdletLine: the change as the cmdlet an admin would type', () => {
  const base = recordFromObject({ Identity: 'a.example', AdditionalDomains: ['x.a.example', 'y.a.example'], Description: 'old "quoted" $text `tick`' });
  const cases: [string, PartnerRecord | null, PartnerRecord | null][] = [
    ['new with non-defaults', null, recordFromObject({ Identity: 'n.example', TlsNegotiation: 'Optional', SaslNegotiation: 'Optional', ConnectionLimit: 3, AdditionalDomains: ['m.n.example'], Description: 'line one\nline two', ProxyFqdn: 'proxy.n.example:5270', EnableKeepAlive: false })],
    ['new with defaults only', null, newRecord('d.example')],
    ['set: lists add and remove, text with PowerShell specials', base, { ...base, AdditionalDomains: ['y.a.example', 'z.a.example'], Description: 'new $var "q"' }],
    ['set: list emptied, value unset', { ...base, ConnectionLimit: 9 }, { ...base, AdditionalDomains: [], ConnectionLimit: null, Description: null }],
    ['set: booleans and enums', base, { ...base, SupportDialbackNegotiation: false, SaslNegotiation: 'Required', TlsNegotiation: 'Optional', PartnerType: 'Federated' }],
  ];
  for (const [name, before, after] of cases) {
    it(`${name}: running the line gives the same record`, async () => {
      const line = cmdletLine(before, after);
      expect(line).toMatch(before ? /^Set-CsXmppAllowedPartner -Identity / : /^New-CsXmppAllowedPartner -Identity /);
      expect(await apply(before, line, after!.Identity)).toEqual(after);
    });
  }

  it('remove', async () => {
    expect(cmdletLine(base, null)).toBe('Remove-CsXmppAllowedPartner -Identity "a.example"');
    expect(await apply(base, cmdletLine(base, null), 'a.example')).toBeUndefined();
  });

  it('quotes as PowerShell does', () => {
    expect(psString('a"b$c`d\ne')).toBe('"a`"b`$c``d`ne"');
    expect(cmdletLine(null, newRecord('d.example'))).toBe('New-CsXmppAllowedPartner -Identity "d.example"');
  });

  it('diffRecords: added, changed, removed; unchanged records are not listed', () => {
    const a = newRecord('a.example');
    const b = newRecord('b.example');
    const c = newRecord('c.example');
    const changes = diffRecords([a, b], [{ ...a, Description: 'x' }, c]);
    expect(changes.map((ch) => ch.cmdlet)).toEqual([
      'Set-CsXmppAllowedPartner -Identity "a.example" -Description "x"',
      'New-CsXmppAllowedPartner -Identity "c.example"',
      'Remove-CsXmppAllowedPartner -Identity "b.example"',
    ]);
    expect(diffRecords([a], [a])).toEqual([]);
  });
});

describe('AuditLog', () => {
  it('appends one JSON line per entry and reads them back, --since filtering by time', async () => {
    const log = new AuditLog(join(dir, 'sub', 'audit.log'));
    await log.append({ time: '2024-01-01T00:00:00.000Z', who: 'alice', via: 'api', action: 'reload', cmdlet: null, result: 'ok' });
    await log.refused({ who: 'bob', via: 'cli' }, 'New-CsXmppAllowedPartner', 'xmpp-gateway partner new --identity x', 'nope');
    const text = await readFile(log.file, 'utf8');
    expect(text.split('\n')).toHaveLength(3);
    expect((await log.read()).map((e) => e.who)).toEqual(['alice', 'bob']);
    expect((await log.read({ since: new Date('2024-06-01') })).map((e) => e.who)).toEqual(['bob']);
    expect(await new AuditLog(join(dir, 'none.log')).read()).toEqual([]);
  });

  it('a committed store edit appends one line per changed record, with before and after; a refused or empty edit appends none', async () => {
    const file = join(dir, 'partners.yaml');
    await writeFile(file, '# keep\n- Identity: a.example\n- Identity: b.example\n');
    const store = new PartnerStore(file);
    const log = new AuditLog(join(dir, 'audit.log'));
    store.onCommit = (before, after) => log.recordChanges({ who: 'carol', via: 'cli' }, before, after);
    await store.edit((doc) => {
      doc.replace(0, { ...doc.records[0]!, Description: 'hello' });
      doc.remove(1);
    });
    await store.edit(() => undefined); // no change: no line
    await expect(store.edit((doc) => doc.add(newRecord('a.example')))).rejects.toThrow(/already belongs/);
    const entries = await log.read();
    expect(entries.map((e) => [e.who, e.via, e.cmdlet])).toEqual([
      ['carol', 'cli', 'Set-CsXmppAllowedPartner -Identity "a.example" -Description "hello"'],
      ['carol', 'cli', 'Remove-CsXmppAllowedPartner -Identity "b.example"'],
    ]);
    expect(entries[0]!.before).toMatchObject({ Identity: 'a.example', Description: null });
    expect(entries[0]!.after).toMatchObject({ Identity: 'a.example', Description: 'hello' });
    expect(entries[1]!.after).toBeNull();
  });
});

describe('parseSince', () => {
  it('takes ages and times; refuses anything else with a clear message', () => {
    const now = Date.parse('2024-05-01T12:00:00Z');
    expect(parseSince('30m', now).toISOString()).toBe('2024-05-01T11:30:00.000Z');
    expect(parseSince('2h', now).toISOString()).toBe('2024-05-01T10:00:00.000Z');
    expect(parseSince('7d', now).toISOString()).toBe('2024-04-24T12:00:00.000Z');
    expect(parseSince('2024-04-30T08:00Z').toISOString()).toBe('2024-04-30T08:00:00.000Z');
    expect(() => parseSince('yesterday')).toThrow(/--since: 'yesterday' is not a time/);
  });
});
