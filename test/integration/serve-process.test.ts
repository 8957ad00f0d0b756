/**
 * `xmpp-gateway serve` as an admin runs it: a separate process, its partner file edited by the
 * CLI and by hand while it runs, reload on change and on SIGHUP, errors on standard error.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, freePort, runCli, waitForText } from '../helpers/cli.js';
import { ScriptedPeer } from '../helpers/scripted-peer.js';

let dir: string;
let child: ChildProcess;
let stderr = '';
let port = 0;
let adminPort = 0;

function waitForStderr(pattern: RegExp, from: number, timeoutMs = 5000): Promise<RegExpMatchArray> {
  return waitForText(() => stderr, pattern, from, timeoutMs);
}

async function firstGate(from: string): Promise<'features' | string> {
  const peer = await ScriptedPeer.connect(port);
  peer.sendHeader({ from, to: 'gw.example' });
  await peer.header();
  const el = await peer.next();
  peer.destroy();
  if (el.name === 'stream:features') return 'features';
  return el.getChildElements()[0]?.name ?? el.name;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'xgw-serve-'));
  const fixedAdminPort = await freePort();
  await writeFile(
    join(dir, 'gateway.yaml'),
    `localDomains:\n  - domain: gw.example\n    certificate: certs/gw.example.crt\n    privateKey: certs/gw.example.key\nlisten:\n  - host: 127.0.0.1\n    port: 0\npartners: partners.yaml\ntrust:\n  caFiles: [certs/ca.pem]\nadmin:\n  listen: { host: 127.0.0.1, port: ${fixedAdminPort} }\n`,
  );
  await writeFile(join(dir, 'partners.yaml'), '# partners\n- Identity: first.example\n');
  child = spawn(process.execPath, [BIN, 'serve', '--config', join(dir, 'gateway.yaml')], { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  port = Number((await waitForStderr(/"event":"gateway\.listening","host":"127\.0\.0\.1","port":(\d+)/, 0, 15000))[1]);
  adminPort = Number((await waitForStderr(/"event":"admin\.listening","host":"127\.0\.0\.1","port":(\d+)/, 0))[1]);
}, 30_000);

afterAll(async () => {
  if (child && child.exitCode === null) {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
  await rm(dir, { recursive: true, force: true });
});

describe('xmpp-gateway serve', () => {
  it('created dev certificates on first start and refuses non-partners at the header', async () => {
    expect(stderr).toMatch(/"event":"tls\.dev-certificate-created","domain":"gw\.example"/);
    expect(await firstGate('first.example')).toBe('features');
    expect(await firstGate('second.example')).toBe('policy-violation');
  });

  it('picks up a partner added with the CLI within two seconds', async () => {
    const mark = stderr.length;
    const r = await runCli(['--config', join(dir, 'gateway.yaml'), 'partner', 'new', '--identity', 'second.example', '--force']);
    expect(r.code).toBe(0);
    await waitForStderr(/"event":"partners\.reloaded","partners":2/, mark, 2000);
    expect(await firstGate('second.example')).toBe('features');
  });

  it('an invalid file is not applied: the error names file, line and field; the old list stays', async () => {
    const mark = stderr.length;
    await writeFile(join(dir, 'partners.yaml'), '- Identity: first.example\n- Identity: third.example\n  TlsNegotiation: Sometimes\n');
    const m = await waitForStderr(/"event":"partners\.reload-failed","error":"([^"]+)"/, mark, 3000);
    expect(m[1]).toBe(`${join(dir, 'partners.yaml')}:3: TlsNegotiation: 'Sometimes' is not one of Required, Optional, NotSupported`);
    expect(await firstGate('second.example')).toBe('features');
    expect(await firstGate('third.example')).toBe('policy-violation');
    const status = await runCli(['--config', join(dir, 'gateway.yaml'), '--json', 'status']);
    expect(JSON.parse(status.stdout).partners.lastReloadError).toMatch(/TlsNegotiation/);
  });

  it('SIGHUP re-reads the file; -LocalStore shows what this node applied', async () => {
    await writeFile(join(dir, 'partners.yaml'), '- Identity: third.example\n');
    await waitForStderr(/"event":"partners\.reloaded","partners":1/, 0, 3000);
    const mark = stderr.length;
    child.kill('SIGHUP');
    await waitForStderr(/"event":"partners\.reload-requested","by":"SIGHUP"[\s\S]*"event":"partners\.reloaded"/, mark, 2000);
    expect(await firstGate('first.example')).toBe('policy-violation');
    const local = await runCli(['--config', join(dir, 'gateway.yaml'), '--json', 'Get-CsXmppAllowedPartner', '-LocalStore']);
    expect(JSON.parse(local.stdout).map((p: { Identity: string }) => p.Identity)).toEqual(['third.example']);
    const longForm = await runCli(['--config', join(dir, 'gateway.yaml'), '--json', 'partner', 'get', '--local-store']);
    expect(JSON.parse(longForm.stdout)).toEqual(JSON.parse(local.stdout));
  });

  it('status lists live streams as JSON through the admin listener', async () => {
    const peer = await ScriptedPeer.connect(port);
    peer.sendHeader({ from: 'third.example', to: 'gw.example' });
    await peer.header();
    await peer.features();
    const r = await runCli(['--config', join(dir, 'gateway.yaml'), '--json', 'status']);
    expect(r.code).toBe(0);
    const body = JSON.parse(r.stdout) as { streams: Record<string, unknown>[] };
    expect(body.streams).toContainEqual(expect.objectContaining({ partner: 'third.example', direction: 'inbound', localDomain: 'gw.example', remoteDomain: 'third.example', tls: null, auth: 'none' }));
    peer.destroy();
    expect(adminPort).toBeGreaterThan(0);
  });

  it('a second instance whose admin port is taken exits with one error line instead of hanging', async () => {
    const started = Date.now();
    const r = await runCli(['serve', '--config', join(dir, 'gateway.yaml')]);
    expect(r.code).not.toBe(0);
    const errors = r.stderr.split('\n').filter((l) => l.startsWith('error: '));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/admin|listen/i);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('SIGTERM stops it cleanly', async () => {
    child.kill('SIGTERM');
    const code = await new Promise((r) => child.once('exit', r));
    expect(code).toBe(0);
  });
});
