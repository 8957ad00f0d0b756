/**
 * Shared plumbing of the interop harness: finding the peers' binaries (loudly), filling the
 * `@NAME@` templates, running short commands, waiting for a listener, reading log tails, and
 * killing everything the harness started when the test process exits.
 *
 * Safety rules this file enforces for its callers: every address is loopback (127.0.0.0/8), and
 * only processes whose PIDs the harness itself recorded are ever signalled.
 */
import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { access, open, readFile, stat } from 'node:fs/promises';
import { connect } from 'node:net';
import { delimiter, join, resolve } from 'node:path';
import type { TestZone } from '../../helpers/test-dns.js';
import type { PeerCerts } from './peer-certs.js';

/** Directory of the `@NAME@` templates (docs/peers.md explains their settings). */
export const TEMPLATE_DIR = resolve(import.meta.dirname, '../templates');

/** The modes of docs/peers.md's table (same names for both servers). */
export type PeerMode = 'external' | 'tls-dialback' | 'dialback' | 'any';

/** What `startProsody()` and `startEjabberd()` return. */
export interface PeerServer {
  readonly kind: 'prosody' | 'ejabberd';
  readonly domain: string;
  readonly ip: string;
  readonly s2sPort: number;
  readonly c2sPort: number;
  readonly mode: PeerMode;
  /** The instance's private directory (config, data, pid, log). */
  readonly dir: string;
  /** The server's main log file. */
  readonly logFile: string;
  /** OS PID of the server process (Prosody's lua process, ejabberd's beam.smp). */
  readonly pid: number;
  /** Creates the account `user@domain` with this password. */
  register(user: string, password: string): Promise<void>;
  /**
   * The last `lines` lines of the log (for failure messages). ejabberd's file logger buffers
   * (Erlang delayed_write): its newest lines reach the file up to about 2 s late.
   */
  logTail(lines?: number): Promise<string>;
  /** Stops the server (TERM, then KILL after a grace period) and removes its directory. Idempotent. */
  stop(): Promise<void>;
  /** Stops the server with SIGTERM and starts it again on the same directory (accounts kept). Prosody only. */
  restart?(): Promise<void>;
}

/** Options common to both servers. */
export interface PeerOptions {
  domain: string;
  /** The server's own loopback address, e.g. '127.0.0.21'. */
  ip: string;
  s2sPort: number;
  c2sPort: number;
  mode: PeerMode;
  /** The harness DNS server (`startTestDns()`): ip '127.0.0.1' and its port. */
  dns: { ip: string; port: number };
  certs: PeerCerts;
  /** Raw config text added at top level (Lua for Prosody, YAML for ejabberd). */
  extraConfig?: string;
  /** Extra modules to load: Prosody module names ('carbons'), ejabberd module names ('mod_offline'). */
  extraModules?: string[];
  /** Suffix of the certificate file name (`<domain><variant>.crt/.pem`), e.g. '-serverauth'. Default ''. */
  certVariant?: string;
  /** Log level (default: Prosody 'debug' — only top tags are logged; ejabberd 'info'). */
  logLevel?: 'debug' | 'info' | 'warn' | 'error';
  /** Startup deadline in ms (default 30 000). */
  startTimeoutMs?: number;
}

/** RFC 1122/5735: the whole 127.0.0.0/8 block is loopback. Anything else is refused. */
export function assertLoopback(ip: string, what: string): void {
  const m = /^127\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
  if (m === null || m.slice(1).some((o) => Number(o) > 255)) {
    throw new Error(`interop harness: ${what} must be an IPv4 loopback address (127.0.0.0/8), got '${ip}'`);
  }
}

export function assertPort(port: number, what: string): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`interop harness: ${what} must be a port number, got ${port}`);
}

/**
 * Resolves a binary on PATH (plus the sbin directories, which a non-login root PATH may lack)
 * without running it. A missing peer must make the interop suite FAIL, never skip.
 */
export async function requireBinary(name: string, pkg: string): Promise<string> {
  const dirs = [...(process.env['PATH'] ?? '').split(delimiter), '/usr/sbin', '/usr/bin', '/sbin', '/bin'].filter((d) => d !== '');
  for (const dir of dirs) {
    const candidate = join(dir, name);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      /* next */
    }
  }
  throw new Error(missingMessage(`the '${name}' binary was found neither on PATH nor in /usr/sbin, /usr/bin, /sbin, /bin`, pkg));
}

/** Throws the same loud error when a required file (e.g. a Lua module) is missing. */
export async function requireFile(path: string, what: string, pkg: string): Promise<void> {
  try {
    await stat(path);
  } catch {
    throw new Error(missingMessage(`${what} (${path}) is missing`, pkg));
  }
}

function missingMessage(problem: string, pkg: string): string {
  return [
    '',
    '=====================================================================================',
    `INTEROP PEER MISSING: ${problem}.`,
    `The interop suite needs the Debian package '${pkg}'. .ci/run installs it with`,
    '  apt-get update && apt-get install -y prosody prosody-modules lua-unbound ejabberd',
    'Run that (as root) and re-run the tests. The interop suite fails, never skips, without its peers.',
    '=====================================================================================',
  ].join('\n');
}

/**
 * Replaces every `@NAME@` in `text` from `vars`. An unknown placeholder left in the template, or
 * a variable the template does not use, is a harness bug and throws.
 */
export function fillTemplate(text: string, vars: Readonly<Record<string, string>>, name: string): string {
  const used = new Set<string>();
  const out = text.replace(/@([A-Z][A-Z0-9_]*)@/g, (match, key: string) => {
    const value = vars[key];
    if (value === undefined) throw new Error(`interop harness: template ${name} has unknown placeholder ${match}`);
    used.add(key);
    return value;
  });
  const unused = Object.keys(vars).filter((k) => !used.has(k));
  if (unused.length > 0) throw new Error(`interop harness: template ${name} does not use ${unused.join(', ')}`);
  return out;
}

export async function readTemplate(file: string): Promise<string> {
  return readFile(join(TEMPLATE_DIR, file), 'utf8');
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a short command to completion (no shell); rejects only if it cannot be started or times out. */
export function run(file: string, args: readonly string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    execFile(
      file,
      args,
      { timeout: opts.timeoutMs ?? 30_000, env: opts.env ?? process.env, cwd: opts.cwd, encoding: 'utf8', killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') {
          reject(new Error(`interop harness: ${file} ${args.join(' ')} failed: ${err.message}\n${stderr}`, { cause: err }));
          return;
        }
        resolvePromise({ code: err ? (err.code as number) : 0, stdout, stderr });
      },
    );
  });
}

/** Runs a command and throws (with its output) unless it exits 0. */
export async function runOk(file: string, args: readonly string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<RunResult> {
  const r = await run(file, args, opts);
  if (r.code !== 0) {
    throw new Error(`interop harness: '${file} ${args.join(' ')}' exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  }
  return r;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** One TCP connection attempt; true if something accepted it. */
export function canConnect(host: string, port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolvePromise) => {
    const socket = connect({ host, port });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolvePromise(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/**
 * Refuses to start a server whose ports already accept connections: a leftover from a crashed run
 * would otherwise answer in its place (Prosody keeps running when it cannot bind a port).
 */
export async function assertPortsFree(ip: string, ports: readonly number[], what: string): Promise<void> {
  for (const port of ports) {
    if (await canConnect(ip, port, 300)) {
      throw new Error(`interop harness: ${ip}:${port} already accepts connections, so ${what} cannot use it (a leftover from an earlier run? other test files must use other loopback IPs)`);
    }
  }
}

/**
 * Polls until `ip:port` accepts a TCP connection. `check()` runs before every attempt and may
 * throw to abort early (the process died, the log shows a fatal error).
 * @param timeoutMs overall deadline
 */
export async function waitForListener(ip: string, port: number, timeoutMs: number, check: () => Promise<void>, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    await check();
    if (await canConnect(ip, port)) return;
    if (Date.now() > deadline) throw new Error(`interop harness: ${what} did not accept connections on ${ip}:${port} within ${timeoutMs} ms`);
    await sleep(50);
  }
}

/** The last `lines` lines of a text file ('' if it does not exist); reads at most the last 256 KiB. */
export async function tailFile(path: string, lines: number): Promise<string> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch {
    return '';
  }
  try {
    const { size } = await fh.stat();
    const len = Math.min(size, 256 * 1024);
    const buf = Buffer.alloc(len);
    await fh.read(buf, 0, len, size - len);
    const all = buf.toString('utf8').split('\n');
    if (all[all.length - 1] === '') all.pop();
    return all.slice(-lines).join('\n');
  } finally {
    await fh.close();
  }
}

/** True while a process with this PID exists (signal 0 probes without signalling). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Sends a signal to one recorded PID, ignoring "no such process". */
export function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    /* already gone */
  }
}

/**
 * Stops one recorded PID: `sig` (default SIGTERM), then SIGKILL after `graceMs`; resolves once the
 * process is gone.
 */
export async function terminate(pid: number, graceMs: number, sig: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (!isAlive(pid)) return;
  signal(pid, sig);
  const deadline = Date.now() + graceMs;
  while (isAlive(pid) && Date.now() < deadline) await sleep(25);
  if (isAlive(pid)) {
    signal(pid, 'SIGKILL');
    const hard = Date.now() + 5_000;
    while (isAlive(pid) && Date.now() < hard) await sleep(25);
  }
}

// ---------------------------------------------------------------------------------------------
// Exit cleanup: whatever a test forgot (or could not) stop is killed when this process ends.

const livePids = new Set<number>();
let hooksInstalled = false;

function killAllSync(): void {
  for (const pid of livePids) signal(pid, 'SIGKILL');
  livePids.clear();
}

function onSignal(sig: NodeJS.Signals): void {
  killAllSync();
  process.off(sig, onSignal);
  // Keep the default behaviour (terminate) unless someone else also handles the signal.
  if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
}

/** Records a PID the harness started, so it is SIGKILLed if the test process exits first. */
export function trackPid(pid: number): void {
  livePids.add(pid);
  if (!hooksInstalled) {
    hooksInstalled = true;
    process.on('exit', killAllSync);
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, onSignal);
  }
}

export function untrackPid(pid: number): void {
  livePids.delete(pid);
}

/** uid/gid of the `ejabberd` system user (from /etc/passwd), or null when there is none. */
export async function ejabberdUser(): Promise<{ uid: number; gid: number } | null> {
  const passwd = await readFile('/etc/passwd', 'utf8').catch(() => '');
  for (const line of passwd.split('\n')) {
    const f = line.split(':');
    if (f[0] === 'ejabberd' && f[2] !== undefined && f[3] !== undefined) return { uid: Number(f[2]), gid: Number(f[3]) };
  }
  return null;
}

/** When set, instance directories are kept after stop() for post-mortems. */
export const KEEP_DIRS = process.env['XMPP_INTEROP_KEEP_DIRS'] === '1';

/**
 * Runs `fn`; if it throws, rethrows with the last log lines of every given server appended, so a
 * failing interop test shows what the peers saw.
 */
export async function withPeerLogs<T>(servers: ReadonlyArray<PeerServer | undefined>, fn: () => Promise<T>, lines = 40): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    const logs: string[] = [];
    for (const s of servers) {
      if (s) logs.push(`----- ${s.kind} ${s.domain} (${s.logFile}), last ${lines} lines -----\n${await s.logTail(lines)}`);
    }
    const e = err instanceof Error ? err : new Error(String(err));
    e.message += `\n${logs.join('\n')}`;
    throw e;
  }
}

/**
 * DNS records for servers at `ip:s2sPort`: `SRV _xmpp-server._tcp.<domain>` and `A <domain>`.
 * COMPAT(ejabberd): the SRV target is an IP literal ('127.0.0.22.'), because ejabberd resolves the
 * target with the OS resolver, which cannot reach the harness DNS on its non-53 port.
 *
 * A domain served by several hosts (a gateway pool, issue 11) gives `targets`: one SRV record with
 * one target each (RFC 2782: lowest priority first, weight among equal priorities), and an A record
 * per address.
 */
export function peerZone(servers: ReadonlyArray<PeerZoneEntry>, base: TestZone = {}): TestZone {
  const srv = { ...base.srv };
  const a = { ...base.a };
  for (const s of servers) {
    const targets = 'targets' in s ? s.targets : [{ ip: s.ip, port: s.s2sPort }];
    for (const t of targets) assertLoopback(t.ip, `${s.domain} ip`);
    srv[`_xmpp-server._tcp.${s.domain}`] = targets.map((t) => ({
      target: `${t.ip}.`, port: t.port, ...(t.priority !== undefined ? { priority: t.priority } : {}), ...(t.weight !== undefined ? { weight: t.weight } : {}),
    }));
    a[s.domain] = targets.map((t) => t.ip);
  }
  return { ...base, srv, a };
}

/** A server of peerZone: one host, or several SRV targets for one domain. */
export type PeerZoneEntry =
  | { domain: string; ip: string; s2sPort: number }
  | { domain: string; targets: ReadonlyArray<{ ip: string; port: number; priority?: number; weight?: number }> };
