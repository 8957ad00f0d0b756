/**
 * `xmpp-gateway approvals`, the built command line as a real process: through a running admin
 * listener (started here with a real store; gateway.yaml's admin.listen points at it), directly on
 * the approvals file when nothing listens, and bad arguments refused with one line, file unchanged.
 */
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startAdminServer, type AdminServer } from '../../src/admin/admin-server.js';
import { MetricsRegistry } from '../../src/admin/metrics.js';
import { createLogger } from '../../src/log.js';
import { parseApprovals } from '../../src/policy/approval-file.js';
import { FileApprovalStore } from '../../src/policy/approvals.js';
import { testAuth, writeTestCredential } from '../helpers/admin-http.js';
import { tempConfig, type TempConfig } from '../helpers/cli.js';

let t: TempConfig | undefined;
let admin: AdminServer | undefined;
let store: FileApprovalStore | undefined;

afterEach(async () => {
  await admin?.close();
  await store?.close();
  await t?.cleanup();
  admin = undefined;
  store = undefined;
  t = undefined;
});

const quiet = createLogger('error');

function startAdmin(approvals: FileApprovalStore): Promise<AdminServer> {
  return startAdminServer({
    host: '127.0.0.1', port: 0, auth: testAuth(), streams: { list: () => [] }, metrics: new MetricsRegistry(),
    partnersInfo: () => ({}), reload: async () => ({ ok: true }), approvals,
  });
}

/** A port on which nothing listens (a listener's, closed again). */
async function closedPort(): Promise<number> {
  const s = await startAdminServer({
    host: '127.0.0.1', port: 0, auth: testAuth(), streams: { list: () => [] }, metrics: new MetricsRegistry(), partnersInfo: () => ({}), reload: async () => ({ ok: true }),
  });
  await s.close();
  return s.port;
}

async function config(adminPort: number | null): Promise<TempConfig> {
  const adminYaml = adminPort === null ? '' : `admin:\n  listen: { host: 127.0.0.1, port: ${adminPort} }\n  localCredential: admin.credential\n`;
  t = await tempConfig(undefined, `${adminYaml}approvals:\n  file: state/approvals.json\n  maxEntries: 1000\n`);
  await writeTestCredential(t.dir, 'admin.credential');
  return t;
}

const fileOf = (c: TempConfig) => join(c.dir, 'state', 'approvals.json');

/** Three approvals in the store at `file`: alice>bob, alice>carol, dave>bob (most recent last). */
async function seeded(file: string): Promise<FileApprovalStore> {
  const s = await FileApprovalStore.open({ file, maxEntries: 1000, flushDelayMs: 60_000, log: quiet });
  s.record('alice@corp.example', 'bob@partner.example');
  s.record('alice@corp.example', 'carol@partner.example');
  s.record('dave@corp.example', 'bob@partner.example');
  return s;
}

const pairs = (list: { local: string; remote: string }[]) => list.map((a) => `${a.local}>${a.remote}`);

describe('approvals through the running gateway', () => {
  it('list --json prints what GET /approvals answered; list prints a table', async () => {
    const c = await config(0);
    store = await seeded(fileOf(c));
    admin = await startAdmin(store);
    await writeFile(c.config, (await readFile(c.config, 'utf8')).replace('port: 0 }', `port: ${admin.port} }`));

    let r = await c.cli(['approvals', 'list', '--json']);
    expect([r.code, r.stderr]).toEqual([0, '']);
    expect(JSON.parse(r.stdout)).toEqual({ approvals: store.list() });

    r = await c.cli(['approvals', 'list']);
    expect([r.code, r.stderr]).toEqual([0, '']);
    const rows = r.stdout.trimEnd().split('\n');
    expect(rows[0]).toMatch(/^LOCAL\s+REMOTE\s+SINCE\s+LAST SEEN$/);
    expect(rows.slice(1).map((row) => row.split(/\s+/).slice(0, 2).join('>'))).toEqual(pairs(store.list()));
    // Nothing was written: the store was only read.
    await expect(stat(fileOf(c))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('revoke changes the running store (and its file), one approval or all of a user\'s', async () => {
    const c = await config(0);
    store = await seeded(fileOf(c));
    admin = await startAdmin(store);
    await writeFile(c.config, (await readFile(c.config, 'utf8')).replace('port: 0 }', `port: ${admin.port} }`));

    let r = await c.cli(['approvals', 'revoke', '--local', 'Alice@corp.example', '--remote', 'bob@partner.example']);
    expect([r.code, r.stderr, r.stdout]).toEqual([0, '', 'revoked 1 approval\n']);
    expect(pairs(store.list())).toEqual(['dave@corp.example>bob@partner.example', 'alice@corp.example>carol@partner.example']);
    // Saved before the answer: the file says the same.
    expect(pairs(parseApprovals(await readFile(fileOf(c), 'utf8'), fileOf(c)))).toEqual(pairs(store.list()));

    r = await c.cli(['--json', 'approvals', 'revoke', '--local=dave@corp.example']);
    expect([r.code, r.stderr, JSON.parse(r.stdout)]).toEqual([0, '', { revoked: 1 }]);
    r = await c.cli(['approvals', 'revoke', '--local', 'nobody@corp.example']);
    expect([r.code, r.stdout]).toEqual([0, 'revoked 0 approvals\n']);
    expect(pairs(store.list())).toEqual(['alice@corp.example>carol@partner.example']);
    expect(pairs(parseApprovals(await readFile(fileOf(c), 'utf8'), fileOf(c)))).toEqual(['alice@corp.example>carol@partner.example']);
  });

  it('a running gateway without approvals (404) is an error, the file is not touched', async () => {
    const c = await config(0);
    const plain = await startAdminServer({
      host: '127.0.0.1', port: 0, auth: testAuth(), streams: { list: () => [] }, metrics: new MetricsRegistry(), partnersInfo: () => ({}), reload: async () => ({ ok: true }),
    });
    admin = plain;
    await writeFile(c.config, (await readFile(c.config, 'utf8')).replace('port: 0 }', `port: ${plain.port} }`));
    const r = await c.cli(['approvals', 'revoke', '--local', 'alice@corp.example']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: http:\/\/127\.0\.0\.1:\d+\/approvals\/revoke answered HTTP 404.*\n$/);
    await expect(stat(fileOf(c))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('approvals when the gateway is not running', () => {
  it('list reads the file, saying so in one line on stderr', async () => {
    const c = await config(await closedPort());
    const s = await seeded(fileOf(c));
    const expected = s.list();
    await s.close();

    let r = await c.cli(['approvals', 'list', '--json']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^the gateway is not running \(nothing listens on http:\/\/127\.0\.0\.1:\d+\); reading .*approvals\.json directly\n$/);
    expect(JSON.parse(r.stdout)).toEqual({ approvals: expected });

    r = await c.cli(['approvals', 'list']);
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n')[1]).toMatch(/^dave@corp\.example\s+bob@partner\.example\s+\d{4}-/);
  });

  it('list with no file yet says "no approvals" and creates nothing', async () => {
    const c = await config(await closedPort());
    const r = await c.cli(['approvals', 'list']);
    expect([r.code, r.stdout]).toEqual([0, 'no approvals\n']);
    await expect(stat(join(c.dir, 'state'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('revoke edits the file; revoking nothing leaves it byte for byte', async () => {
    const c = await config(await closedPort());
    await (await seeded(fileOf(c))).close();

    let r = await c.cli(['approvals', 'revoke', '--local', 'alice@corp.example', '--remote', 'carol@partner.example']);
    expect([r.code, r.stdout]).toEqual([0, 'revoked 1 approval\n']);
    expect(r.stderr).toMatch(/^the gateway is not running .*; editing .*approvals\.json directly\n$/);
    let left = await FileApprovalStore.open({ file: fileOf(c), maxEntries: 1000, log: quiet });
    expect(pairs(left.list())).toEqual(['dave@corp.example>bob@partner.example', 'alice@corp.example>bob@partner.example']);
    await left.close();

    r = await c.cli(['--json', 'approvals', 'revoke', '--local', 'alice@corp.example']);
    expect([r.code, JSON.parse(r.stdout)]).toEqual([0, { revoked: 1 }]);
    const before = await readFile(fileOf(c), 'utf8');
    const mtime = (await stat(fileOf(c))).mtimeMs;
    r = await c.cli(['approvals', 'revoke', '--local', 'alice@corp.example']);
    expect([r.code, r.stdout]).toEqual([0, 'revoked 0 approvals\n']);
    expect(await readFile(fileOf(c), 'utf8')).toBe(before);
    expect((await stat(fileOf(c))).mtimeMs).toBe(mtime);
    left = await FileApprovalStore.open({ file: fileOf(c), maxEntries: 1000, log: quiet });
    expect(pairs(left.list())).toEqual(['dave@corp.example>bob@partner.example']);
    await left.close();
  });

  it('a corrupt file is one error line naming it, and stays as it was', async () => {
    const c = await config(await closedPort());
    await mkdir(join(c.dir, 'state'));
    await writeFile(fileOf(c), '{"version":1,"approvals":[{"local":"alice@corp.example"');
    for (const args of [['approvals', 'list'], ['approvals', 'revoke', '--local', 'alice@corp.example']]) {
      const r = await c.cli(args);
      expect(r.code).toBe(1);
      const lines = r.stderr.trimEnd().split('\n');
      expect(lines).toHaveLength(2); // the "not running" note, then the error
      expect(lines[1]).toContain(`error: ${fileOf(c)}: not a valid approvals file (not JSON`);
      expect(await readFile(fileOf(c), 'utf8')).toBe('{"version":1,"approvals":[{"local":"alice@corp.example"');
    }
  });
});

describe('approvals with bad arguments', () => {
  it.each([
    [['approvals'], /approvals needs a verb/],
    [['approvals', 'frob'], /unknown verb 'frob'/],
    [['approvals', 'list', 'extra'], /approvals list takes no arguments/],
    [['approvals', 'revoke'], /needs --local JID/],
    [['approvals', 'revoke', '--remote', 'bob@partner.example'], /needs --local JID/],
    [['approvals', 'revoke', '--local'], /--local needs a bare JID/],
    [['approvals', 'revoke', '--local', 'alice'], /--local: "alice" is not a bare JID/],
    [['approvals', 'revoke', '--local', 'alice@corp.example', '--remote', 'bob@partner.example/phone'], /--remote: .* has a resource/],
    [['approvals', 'revoke', '--local', 'a@corp.example', '--local', 'b@corp.example'], /--local given twice/],
    [['approvals', 'revoke', '--local', 'a@corp.example', '--remtoe', 'b@partner.example'], /unknown argument '--remtoe'/],
  ])('%j: one line, non-zero, file unchanged', async (args, message) => {
    const c = await config(await closedPort());
    await (await seeded(fileOf(c))).close();
    const before = await readFile(fileOf(c), 'utf8');
    const r = await c.cli(args);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^error: [^\n]*\n$/);
    expect(r.stderr).toMatch(message);
    expect(await readFile(fileOf(c), 'utf8')).toBe(before);
  });

  it('a config without an admin listener is an error naming admin', async () => {
    const c = await config(null);
    const r = await c.cli(['approvals', 'list']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: .*configures no admin listener.*\n$/);
  });

  it('help lists the approvals command', async () => {
    const c = await config(null);
    const r = await c.cli(['help']);
    expect(r.stdout).toContain('approvals list');
    expect(r.stdout).toContain('approvals revoke --local JID [--remote JID]');
  });
});
