/**
 * Running the gateway as an admin does: `serve` as its own process (and through `npm start`),
 * its start-up log, `xmpp-gateway reload` and `xmpp-gateway stop` through the admin listener, and
 * what an empty or missing partners.yaml does to a gateway that serves partners.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BIN, freePort, runCli, waitForText } from '../helpers/cli.js';
import { ScriptedPeer } from '../helpers/scripted-peer.js';

const ROOT = resolve(import.meta.dirname, '../..');

interface Served {
  dir: string;
  config: string;
  partners: string;
  child: ChildProcess;
  port: number;
  stderr(): string;
  waitFor(pattern: RegExp, from?: number, timeoutMs?: number): Promise<RegExpMatchArray>;
}

let served: Served | undefined;

afterEach(async () => {
  const s = served;
  served = undefined;
  if (!s) return;
  // Whatever the test did, stop the gateway it started (through its admin port: with npm start
  // the gateway is not our direct child), then its launcher.
  await runCli(['--config', s.config, 'stop']);
  if (s.child.exitCode === null && s.child.signalCode === null) {
    s.child.kill('SIGKILL');
    await new Promise((r) => s.child.once('exit', r));
  }
  await rm(s.dir, { recursive: true, force: true });
});

async function serve(partnersYaml: string | null, launcher: 'bin' | 'npm' = 'bin'): Promise<Served> {
  const dir = await mkdtemp(join(tmpdir(), 'xgw-admin-'));
  const config = join(dir, 'gateway.yaml');
  const partners = join(dir, 'partners.yaml');
  await writeFile(
    config,
    `localDomains:\n  - domain: gw.example\n    certificate: certs/gw.example.crt\n    privateKey: certs/gw.example.key\nlisten:\n  - host: 127.0.0.1\n    port: 0\npartners: partners.yaml\nreloadDebounceMs: 20\nadmin:\n  listen: { host: 127.0.0.1, port: ${await freePort()} }\n`,
  );
  if (partnersYaml !== null) await writeFile(partners, partnersYaml);
  const child =
    launcher === 'npm'
      ? spawn('npm', ['start', '--', '--config', config], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, npm_config_update_notifier: 'false' } })
      : spawn(process.execPath, [BIN, 'serve', '--config', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const waitFor = (pattern: RegExp, from = 0, timeoutMs = 5000) => waitForText(() => stderr, pattern, from, timeoutMs);
  served = { dir, config, partners, child, port: 0, stderr: () => stderr, waitFor };
  served.port = Number((await waitFor(/"event":"gateway\.listening","host":"127\.0\.0\.1","port":(\d+)/, 0, 20_000))[1]);
  await waitFor(/"event":"admin\.listening"/);
  return served;
}

async function firstGate(port: number, from: string): Promise<string> {
  const peer = await ScriptedPeer.connect(port);
  peer.sendHeader({ from, to: 'gw.example' });
  await peer.header();
  const el = await peer.next();
  peer.destroy();
  return el.name === 'stream:features' ? 'features' : (el.getChildElements()[0]?.name ?? el.name);
}

function portOpen(port: number): Promise<boolean> {
  return ScriptedPeer.connect(port).then(
    (peer) => (peer.destroy(), true),
    () => false,
  );
}

describe('start-up', () => {
  it('logs how many partners were loaded and from which file', async () => {
    const s = await serve('- Identity: a.example\n- Identity: b.example\n');
    const m = await s.waitFor(/"event":"partners\.loaded","partners":(\d+),"file":"([^"]+)"/);
    expect([Number(m[1]), m[2]]).toEqual([2, s.partners]);
    expect(s.stderr()).not.toContain('partners.empty');
  });
});

describe('xmpp-gateway reload and stop', () => {
  it('reload re-reads partners.yaml now and says what is in force; a bad file is one error line, exit 1', async () => {
    const s = await serve('- Identity: a.example\n');
    const ok = await runCli(['--config', s.config, 'reload']);
    expect([ok.code, ok.stderr, ok.stdout]).toEqual([0, '', `reloaded 1 partner from ${s.partners}\n`]);
    await writeFile(s.partners, '- Identity: a.example\n- Identity: b.example\n  TlsNegotiation: Sometimes\n');
    const bad = await runCli(['--config', s.config, 'reload']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toBe(`error: reload failed, the previous list stays in force: ${s.partners}:3: TlsNegotiation: 'Sometimes' is not one of Required, Optional, NotSupported\n`);
    expect(await firstGate(s.port, 'a.example')).toBe('features');
  });

  it('stop shuts the running gateway down and waits for it; then nothing answers', async () => {
    const s = await serve('- Identity: a.example\n');
    const exited = new Promise<number | null>((r) => s.child.once('exit', (code) => r(code)));
    const r = await runCli(['--config', s.config, 'stop']);
    expect([r.code, r.stderr]).toEqual([0, '']);
    expect(r.stdout).toMatch(/^stopped the gateway at http:\/\/127\.0\.0\.1:\d+\n$/);
    expect(await exited).toBe(0);
    expect(s.stderr()).toMatch(/"event":"gateway\.stopping","signal":"POST \/stop"/);
    expect(await portOpen(s.port)).toBe(false);
    const again = await runCli(['--config', s.config, 'stop']);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/^error: the gateway is not running \(nothing listens on http:\/\/127\.0\.0\.1:\d+\)\n$/);
  });

  it('npm start: stopping npm\'s own process stops the gateway too', async () => {
    const s = await serve('- Identity: a.example\n', 'npm');
    expect(await portOpen(s.port)).toBe(true);
    s.child.kill('SIGTERM'); // npm's PID, as a process manager or `kill $(pgrep npm)` would
    let open = true;
    for (let i = 0; i < 100 && open; i++) {
      await new Promise((r) => setTimeout(r, 50));
      open = await portOpen(s.port);
    }
    expect(open, 'the gateway still listens after npm was stopped').toBe(false);
    await s.waitFor(/"event":"gateway\.stopping","signal":"SIGTERM"/);
  }, 30_000);
});

describe('an empty or a missing partners.yaml while partners are served', () => {
  it('is applied, with a warning in the log and in status; missing and empty behave the same', async () => {
    const s = await serve('- Identity: a.example\n- Identity: b.example\n');
    expect(await firstGate(s.port, 'a.example')).toBe('features');
    for (const make of [() => writeFile(s.partners, ''), () => rm(s.partners)]) {
      const mark = s.stderr().length;
      await make();
      const m = await s.waitFor(/"level":"warn","event":"partners\.empty","file":"([^"]+)","message":"([^"]+)"/, mark, 3000);
      expect([m[1], m[2]]).toEqual([s.partners, '0 partners: all federation refused']);
      expect(await firstGate(s.port, 'a.example')).toBe('policy-violation');
      const status = await runCli(['--config', s.config, 'status']);
      expect(status.stdout).toContain('\nWARNING: 0 partners: all federation refused\n');
      const json = JSON.parse((await runCli(['--config', s.config, '--json', 'status'])).stdout) as { partners: Record<string, unknown> };
      expect(json.partners).toMatchObject({ count: 0, warning: '0 partners: all federation refused', lastReloadError: null });
      const get = await runCli(['--config', s.config, '--json', 'partner', 'get']);
      expect([get.code, get.stdout]).toEqual([0, '[]\n']);
      // Back to partners: the warning goes away.
      await writeFile(s.partners, '- Identity: a.example\n');
      await s.waitFor(/"event":"partners\.reloaded","partners":1/, mark, 3000);
      expect((await runCli(['--config', s.config, 'status'])).stdout).toContain('\n1 allowed partner\n');
    }
  });

  it('a gateway started without partners says so at start-up', async () => {
    for (const text of ['', null]) {
      const s = await serve(text);
      await s.waitFor(/"event":"partners\.loaded","partners":0,.*\n.*"level":"warn","event":"partners\.empty".*"message":"0 partners: all federation refused"/);
      await runCli(['--config', s.config, 'stop']);
      await new Promise((r) => (s.child.exitCode === null ? s.child.once('exit', r) : r(null)));
    }
  });
});
