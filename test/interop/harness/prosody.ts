/**
 * A real Prosody 0.12 as an interop peer: one instance per call, on its own loopback address, with
 * its own directory for config, data, pid, log and admin socket, resolving through the harness DNS
 * server only (libunbound, forward to 127.0.0.1@PORT).
 *
 * `prosody -F --config FILE` runs as a child of the test process (PID recorded; killed at exit if a
 * test forgets). Never `prosody --version`: that starts a server with the system config.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  KEEP_DIRS, assertLoopback, assertPort, assertPortsFree, fillTemplate, isAlive, readTemplate, requireBinary, requireFile, runOk,
  tailFile, terminate, trackPid, untrackPid, waitForListener, type PeerMode, type PeerOptions, type PeerServer,
} from './common.js';

export type ProsodyOptions = PeerOptions;

/** lua-unbound for Prosody's Lua 5.4; without it Prosody would fall back to resolv.conf (real DNS). */
const LUNBOUND = '/usr/lib/x86_64-linux-gnu/lua/5.4/lunbound.so';

const lua = (s: string): string => JSON.stringify(s);

/** docs/peers.md mode table, Prosody column. */
function modeSettings(mode: PeerMode, o: ProsodyOptions): { modeConfig: string; disabled: string[]; cafile: string } {
  switch (mode) {
    case 'external':
      return { modeConfig: 's2s_require_encryption = true\ns2s_secure_auth = true', disabled: ['dialback'], cafile: o.certs.caFile };
    case 'tls-dialback':
      // The peer's certificate must not verify: trust only an unrelated CA (and no system CAs, capath).
      return { modeConfig: 's2s_require_encryption = true\ns2s_secure_auth = false', disabled: [], cafile: o.certs.unrelatedCaFile };
    case 'dialback':
      return { modeConfig: 's2s_require_encryption = false\ns2s_secure_auth = false', disabled: ['tls'], cafile: o.certs.caFile };
    case 'any':
      return { modeConfig: 's2s_require_encryption = false\ns2s_secure_auth = false', disabled: [], cafile: o.certs.caFile };
  }
}

/** Starts Prosody and resolves once its c2s and s2s ports accept connections. */
export async function startProsody(o: ProsodyOptions): Promise<PeerServer> {
  const prosody = await requireBinary('prosody', 'prosody');
  const prosodyctl = await requireBinary('prosodyctl', 'prosody');
  await requireFile(LUNBOUND, 'lua-unbound (Prosody must resolve through the harness DNS, never resolv.conf)', 'lua-unbound');
  assertLoopback(o.ip, 'Prosody ip');
  assertLoopback(o.dns.ip, 'DNS ip');
  assertPort(o.s2sPort, 's2sPort');
  assertPort(o.c2sPort, 'c2sPort');
  assertPort(o.dns.port, 'dns.port');

  await assertPortsFree(o.ip, [o.c2sPort, o.s2sPort], `Prosody (${o.domain})`);

  const dir = await mkdtemp(join(tmpdir(), `xmpp-interop-prosody-${o.domain}-`));
  const configFile = join(dir, 'prosody.cfg.lua');
  const logFile = join(dir, 'prosody.log');
  const m = modeSettings(o.mode, o);
  const config = fillTemplate(
    await readTemplate('prosody.cfg.lua.tmpl'),
    {
      DOMAIN: o.domain,
      MODE: o.mode,
      IP: o.ip,
      S2S_PORT: String(o.s2sPort),
      C2S_PORT: String(o.c2sPort),
      DIR: dir,
      CERTS: o.certs.dir,
      CERT_VARIANT: o.certVariant ?? '',
      DNS_IP: o.dns.ip,
      DNS_PORT: String(o.dns.port),
      LOG_LEVEL: o.logLevel ?? 'debug',
      EXTRA_MODULES: (o.extraModules ?? []).map((x) => `${lua(x)};`).join(' '),
      DISABLED_MODULES: m.disabled.map((x) => `${lua(x)};`).join(' '),
      MODE_CONFIG: m.modeConfig,
      PROSODY_EXTRA_CONFIG: o.extraConfig ?? '',
      // capath: an empty directory, so only `cafile` is trusted (no system CAs).
      SSL_EXTRA: `cafile = ${lua(m.cafile)}; capath = ${lua(o.certs.emptyCaPath)};`,
    },
    'prosody.cfg.lua.tmpl',
  );
  await writeFile(configFile, config);

  /** Spawns Prosody on the config (again, for restart()); the PID is recorded for the exit hook. */
  const launch = async (): Promise<{ pid: number; exited: () => string | null; console: () => string }> => {
    const child = spawn(prosody, ['-F', '--config', configFile], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let consoleOut = '';
    const keep = (d: Buffer): void => {
      consoleOut = (consoleOut + d.toString('utf8')).slice(-8192);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    // A server a test forgot to stop must not keep the test process alive (the exit hook kills it).
    child.unref();
    (child.stdout as unknown as { unref(): void }).unref();
    (child.stderr as unknown as { unref(): void }).unref();
    const pid = child.pid;
    if (pid === undefined) {
      await rm(dir, { recursive: true, force: true });
      throw new Error(`interop harness: could not spawn ${prosody}`);
    }
    trackPid(pid);
    let exited: string | null = null;
    child.once('exit', (code, sig) => {
      exited = `exited with ${sig ?? `code ${code}`}`;
      untrackPid(pid);
    });
    return { pid, exited: () => exited, console: () => consoleOut };
  };
  let proc = await launch();
  const ready = async (timeoutMs: number): Promise<void> => {
    const check = async (): Promise<void> => {
      if (proc.exited() !== null || !isAlive(proc.pid)) {
        throw new Error(`interop harness: Prosody (${o.domain}) ${proc.exited() ?? 'died'} during startup\nconsole:\n${proc.console()}\nlog:\n${await tailFile(logFile, 40)}`);
      }
    };
    await waitForListener(o.ip, o.c2sPort, timeoutMs, check, `Prosody (${o.domain}) c2s`);
    await waitForListener(o.ip, o.s2sPort, 5_000, check, `Prosody (${o.domain}) s2s`);
  };

  let stopping: Promise<void> | null = null;
  const server: PeerServer = {
    kind: 'prosody',
    domain: o.domain,
    ip: o.ip,
    s2sPort: o.s2sPort,
    c2sPort: o.c2sPort,
    mode: o.mode,
    dir,
    logFile,
    get pid() {
      return proc.pid;
    },
    async register(user, password) {
      await runOk(prosodyctl, ['--config', configFile, 'register', user, o.domain, password]);
    },
    logTail: (lines = 60) => tailFile(logFile, lines),
    stop() {
      stopping ??= (async () => {
        // SIGTERM: Prosody closes its streams (s2s_close_timeout = 2 s) and exits.
        await terminate(proc.pid, 5_000);
        untrackPid(proc.pid);
        if (!KEEP_DIRS) await rm(dir, { recursive: true, force: true });
      })();
      return stopping;
    },
    async restart() {
      // SIGTERM as a service manager would send it; the directory (accounts, config) stays.
      await terminate(proc.pid, 5_000);
      untrackPid(proc.pid);
      proc = await launch();
      await ready(o.startTimeoutMs ?? 30_000);
    },
  };

  try {
    await ready(o.startTimeoutMs ?? 30_000);
  } catch (err) {
    await server.stop();
    throw err;
  }
  return server;
}
