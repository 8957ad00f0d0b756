/**
 * The admin commands as an admin runs them (the built CLI, a real `serve` process where one is
 * needed): admin-user add|list|reset|remove, audit [--since] [--json], Get-CsAdminRole through the
 * cmdlet runner, status with the local credential and without it, HTTPS on the admin listener,
 * and a listener off loopback without TLS refused at start with one line.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createCa, generateKeyPem, issueCertificate } from '../../src/tls/cert-factory.js';
import { BIN, freePort, runCli, tempConfig, waitForText, type TempConfig } from '../helpers/cli.js';

let t: TempConfig | undefined;
let child: ChildProcess | undefined;

afterEach(async () => {
  if (child && child.exitCode === null) {
    child.kill('SIGTERM');
    await new Promise((r) => child!.once('exit', r));
  }
  child = undefined;
  await t?.cleanup();
  t = undefined;
});

async function serve(c: TempConfig): Promise<{ stderr: () => string }> {
  let stderr = '';
  child = spawn(process.execPath, [BIN, 'serve', '--config', c.config], { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  await waitForText(() => stderr, /"event":"admin\.listening"/, 0, 15_000);
  return { stderr: () => stderr };
}

describe('xmpp-gateway admin-user', () => {
  it('add prints a fresh token once (last line); list, reset and remove; the file holds hashes only, mode 0600; all audited', async () => {
    t = await tempConfig('', `admin:\n  listen: { host: 127.0.0.1, port: 8269 }\n`);
    let r = await t.cli(['admin-user', 'add', 'alice', '--role', 'CsAdministrator']);
    expect(r.code).toBe(0);
    const token = r.stdout.trimEnd().split('\n').at(-1)!;
    expect(token).toMatch(/^xgw1\.[0-9a-f]{16}\.[\w-]{43}$/);
    expect(r.stderr).toMatch(/added admin user alice \(CsAdministrator\); the token is shown once/);
    r = await t.cli(['admin-user', 'add', 'victor', '--role', 'csviewonlyadministrator']);
    expect(r.code).toBe(0);

    const file = join(t.dir, 'admin-users.yaml');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const text = await readFile(file, 'utf8');
    expect(text).not.toContain(token.split('.')[2]);
    expect(text).toContain('tokenHash: scrypt$');

    r = await t.cli(['--json', 'admin-user', 'list']);
    expect(JSON.parse(r.stdout).map((u: { name: string; role: string }) => `${u.name}:${u.role}`)).toEqual(['alice:CsAdministrator', 'victor:CsViewOnlyAdministrator']);
    r = await t.cli(['admin-user', 'list']);
    expect(r.stdout.split('\n')[0]).toMatch(/^NAME\s+ROLE\s+CREATED$/);

    r = await t.cli(['admin-user', 'add', 'alice', '--role', 'CsAdministrator']);
    expect([r.code, r.stderr]).toEqual([1, "error: admin user 'alice' already exists (admin-user reset alice gives a new token)\n"]);
    r = await t.cli(['admin-user', 'add', 'eve', '--role', 'Root']);
    expect([r.code, r.stderr]).toEqual([1, "error: --role must be one of CsAdministrator, CsViewOnlyAdministrator (got 'Root')\n"]);
    r = await t.cli(['admin-user', 'add', 'eve']);
    expect(r.stderr).toMatch(/needs --role/);

    r = await t.cli(['admin-user', 'reset', 'alice']);
    const second = r.stdout.trimEnd().split('\n').at(-1)!;
    expect(second).not.toBe(token);
    r = await t.cli(['admin-user', 'remove', 'victor']);
    expect([r.code, r.stdout]).toEqual([0, 'removed admin user victor\n']);
    r = await t.cli(['admin-user', 'remove', 'victor']);
    expect([r.code, r.stderr]).toEqual([1, "error: no admin user 'victor'\n"]);

    r = await t.cli(['--json', 'audit']);
    expect(JSON.parse(r.stdout).map((e: { action: string }) => e.action)).toEqual(['admin-user add', 'admin-user add', 'admin-user reset', 'admin-user remove']);
  });
});

describe('xmpp-gateway audit', () => {
  it('shows CLI changes and refused attempts, as a table or JSON, --since filtering', async () => {
    t = await tempConfig('# mine\n- Identity: a.example\n');
    expect((await t.cli(['partner', 'new', '--identity', 'b.example', '--description', 'two words'])).code).toBe(0);
    expect((await t.cli(['Set-CsXmppAllowedPartner', '-Identity', 'a.example', '-EnableKeepAlive', '$False'])).code).toBe(0);
    const refused = await t.cli(['partner', 'new', '--identity', 'c.example', '--tls-negotiation', 'NotSupported']);
    expect(refused.code).toBe(1);
    expect((await t.cli(['cmdlet', 'Remove-CsXmppAllowedPartner -Identity "b.example"'])).code).toBe(0);
    expect((await t.cli(['partner', 'get'])).code).toBe(0); // reads are not audited

    let r = await t.cli(['--json', 'audit']);
    const entries = JSON.parse(r.stdout) as { cmdlet: string; result: string; via: string; error?: string; before: unknown; after: unknown }[];
    expect(entries.map((e) => [e.result, e.cmdlet])).toEqual([
      ['ok', 'New-CsXmppAllowedPartner -Identity "b.example" -Description "two words"'],
      ['ok', 'Set-CsXmppAllowedPartner -Identity "a.example" -EnableKeepAlive $False'],
      ['refused', 'xmpp-gateway partner new --identity c.example --tls-negotiation NotSupported'],
      ['ok', 'Remove-CsXmppAllowedPartner -Identity "b.example"'],
    ]);
    expect(entries[2]!.error).toMatch(/invalid combination/);
    expect(entries.every((e) => e.via === 'cli')).toBe(true);
    expect(entries[3]!.before).toMatchObject({ Identity: 'b.example' });
    expect(await t.readPartners()).toBe('# mine\n- Identity: a.example\n  EnableKeepAlive: false\n');

    r = await t.cli(['audit']);
    expect(r.stdout.split('\n')[0]).toMatch(/^TIME\s+WHO\s+RESULT\s+WHAT\s+ERROR$/);
    expect(r.stdout).toContain('Remove-CsXmppAllowedPartner -Identity "b.example"');
    r = await t.cli(['audit', '--since', '2999-01-01']);
    expect(r.stdout).toMatch(/^no audit entries since 2999-01-01/);
    r = await t.cli(['audit', '--since', 'soon']);
    expect([r.code, r.stderr]).toEqual([1, "error: --since: 'soon' is not a time (e.g. 2024-05-01T12:00Z, 2024-05-01, 30m, 2h, 7d)\n"]);
  });
});

describe('Get-CsAdminRole', () => {
  it('runs the cmdlet pages\' line as written', async () => {
    t = await tempConfig('');
    let r = await t.cli(['--json', 'cmdlet', 'Get-CsAdminRole | Where-Object {$_.Cmdlets -match "Set-CsXmppAllowedPartner"}']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).map((x: { Identity: string }) => x.Identity)).toEqual(['CsAdministrator']);
    r = await t.cli(['cmdlet', 'Get-CsAdminRole | Where-Object {$_.Cmdlets -match "Get-CsXmppAllowedPartner"}']);
    expect(r.stdout.match(/^Identity\s+: (\S+)$/gm)).toEqual(['Identity    : CsAdministrator', 'Identity    : CsViewOnlyAdministrator']);
    r = await t.cli(['--json', 'Get-CsAdminRole', '-Identity', 'CsViewOnlyAdministrator']);
    expect(JSON.parse(r.stdout)).toEqual([expect.objectContaining({ Identity: 'CsViewOnlyAdministrator', Cmdlets: ['Get-CsXmppAllowedPartner', 'Get-CsAdminRole'] })]);
  });
});

describe('the CLI and the admin listener', () => {
  it('status and reload work with no flags (local credential); without it, or with a wrong token, a clear refusal', async () => {
    const port = await freePort();
    t = await tempConfig('- Identity: a.example\n', `trust:\n  caFiles: [certs/ca.pem]\nadmin:\n  listen: { host: 127.0.0.1, port: ${port} }\n`);
    await serve(t);
    expect((await stat(join(t.dir, 'state', 'admin.credential'))).mode & 0o777).toBe(0o600);
    let r = await t.cli(['status']);
    expect([r.code, r.stdout]).toEqual([0, 'no live streams\n\n1 allowed partner\n']);
    r = await t.cli(['reload']);
    expect(r.stdout).toMatch(/^reloaded 1 partner from /);
    r = await runCli(['--config', t.config, 'status'], { env: { XMPP_GATEWAY_TOKEN: 'xgw1.0123456789abcdef.wrong-wrong-wrong-wrong-wrong-wrong-wrong-wr' } });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/answered HTTP 401: invalid token \(the token from \$XMPP_GATEWAY_TOKEN was refused\)\n$/);
    await writeFile(join(t.dir, 'state', 'admin.credential'), '');
    r = await t.cli(['status']);
    expect(r.stderr).toMatch(/HTTP 401: authentication required.*\(no credential: .*admin\.credential is missing or unreadable; run this as the gateway's user, or set XMPP_GATEWAY_TOKEN/);
    // A token from admin-user add works from anywhere through the environment.
    const token = (await t.cli(['admin-user', 'add', 'ops', '--role', 'CsViewOnlyAdministrator'])).stdout.trim();
    r = await runCli(['--config', t.config, '--json', 'status'], { env: { XMPP_GATEWAY_TOKEN: token } });
    expect(JSON.parse(r.stdout).partners.count).toBe(1);
    r = await runCli(['--config', t.config, 'reload'], { env: { XMPP_GATEWAY_TOKEN: token } });
    expect(r.stderr).toMatch(/HTTP 403: ops \(CsViewOnlyAdministrator\) may not POST \/reload/);
    // The reload is in the audit trail as the local credential's.
    const audit = JSON.parse((await t.cli(['--json', 'audit'])).stdout) as { who: string; via: string; action: string; result: string }[];
    expect(audit).toContainEqual(expect.objectContaining({ who: 'local', via: 'local', action: 'reload', result: 'ok' }));
    expect(audit).toContainEqual(expect.objectContaining({ who: 'ops', action: 'POST /reload', result: 'refused' }));
  });

  it('HTTPS on the admin listener: the CLI pins the configured certificate; plain HTTP is not answered', async () => {
    const port = await freePort();
    const key = generateKeyPem(2048);
    const ca = createCa({ commonName: 'Admin Test CA', keyPem: key });
    const cert = issueCertificate(ca, { domain: 'admin.gw.example', keyPem: key });
    t = await tempConfig('', `admin:\n  listen: { host: 127.0.0.1, port: ${port}, certificate: admin.crt, privateKey: admin.key }\n`);
    await writeFile(join(t.dir, 'admin.crt'), cert.certPem);
    await writeFile(join(t.dir, 'admin.key'), cert.keyPem);
    await serve(t);
    const r = await t.cli(['--json', 'status']);
    expect([r.code, r.stderr]).toEqual([0, '']);
    expect(JSON.parse(r.stdout).partners.count).toBe(0);
    const plain = await fetch(`http://127.0.0.1:${port}/status`).then((x) => x.status, (e: Error) => e.message);
    expect(plain).not.toBe(200);
    // A listener whose certificate is not the configured one (nor trusted) gets no credentials.
    const other = issueCertificate(createCa({ commonName: 'Other CA', keyPem: key }), { domain: 'admin.gw.example', keyPem: key });
    await writeFile(join(t.dir, 'admin.crt'), other.certPem);
    const refused = await t.cli(['status']);
    expect([refused.code, refused.stderr]).toEqual([1, `error: https://127.0.0.1:${port} presented a certificate that is neither admin.listen.certificate nor trusted for 127.0.0.1; no credentials were sent\n`]);
  });

  it('a listener off loopback without TLS is refused at start with one line', async () => {
    t = await tempConfig('', 'admin:\n  listen: { host: 0.0.0.0, port: 0 }\n');
    const r = await runCli(['serve', '--config', t.config]);
    expect(r.code).toBe(1);
    const errors = r.stderr.split('\n').filter((l) => l.startsWith('error: '));
    expect(errors).toEqual([`error: ${t.config}: admin.listen: the admin listener on 0.0.0.0 is not on loopback and has no TLS: set admin.listen.certificate and privateKey (HTTPS), or listen on 127.0.0.1`]);
  });
});
