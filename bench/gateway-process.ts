/**
 * The gateway under test as a separate OS process (`node bin/xmpp-gateway serve --config FILE`),
 * so its CPU time is read from /proc exactly like Prosody's. Runs the compiled dist/ (the bench's
 * vitest globalSetup builds it first).
 *
 * Address: its own loopback IP and a fixed port (127.0.0.52:25269 by default). The brief's
 * "port 0 + parse `gateway.listening`" does not combine with XMPP_GATEWAY_LOG_LEVEL=warn
 * (`gateway.listening` is an info line), and warn is what keeps logging out of the measurement;
 * a fixed port on a private loopback address avoids both problems. A port that already accepts
 * connections is refused (a leftover from an earlier run would answer in its place).
 */
import { readLocalCredential } from '../src/admin/local-credential.js';
import { spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import {
  assertLoopback, assertPortsFree, isAlive, terminate, trackPid, untrackPid, waitForListener,
} from '../test/interop/harness/common.js';

export const REPO_ROOT = resolve(import.meta.dirname, '..');

export interface GatewayProcessOptions {
  domain: string;
  ip: string;
  port: number;
  certFile: string;
  keyFile: string;
  caFile: string;
  /** '127.0.0.1:PORT' of the test DNS. */
  dnsServer: string;
  /** gateway.yaml `dialbackSecret`; omitted: none (a pool node shares etcd's, docs/design.md section 11). */
  dialbackSecret?: string;
  /** partners.yaml text. */
  partners: string;
  /** XMPP_GATEWAY_LOG_LEVEL (default 'warn'). */
  logLevel?: 'debug' | 'info' | 'warn' | 'error';
  /** Directory for `node --cpu-prof` output (profile written when the gateway exits on SIGTERM). */
  cpuProfDir?: string;
  /** More gateway.yaml lines (top-level keys: `internal:`, `queues:`, limits). */
  extraConfig?: string;
  /** Admin listener port on `ip` (reload); none when unset. */
  adminPort?: number;
  /** Port on `ip` of the bench probe (bench/gw-probe.mjs: memory after GC, event-loop delay); none when unset. */
  probePort?: number;
}

export interface GatewayProcess {
  readonly pid: number;
  readonly dir: string;
  /** Everything the gateway wrote on stderr (JSON log lines), last 64 KiB. */
  stderr(): string;
  /** partners.yaml of this gateway (rewrite it, then `reload()`). */
  readonly partnersFile: string;
  /** GET from the probe (gw-probe.mjs), parsed JSON. */
  probe<T>(path: string): Promise<T>;
  /** POST /reload on the admin listener; resolves with the answer's JSON once the reload is applied. */
  reload(): Promise<Record<string, unknown>>;
  /** GET /metrics on the admin listener (Prometheus text). */
  metrics(): Promise<string>;
  stop(): Promise<void>;
}

export async function startGatewayProcess(o: GatewayProcessOptions): Promise<GatewayProcess> {
  assertLoopback(o.ip, 'gateway ip');
  await assertPortsFree(o.ip, [o.port], `the gateway (${o.domain})`);
  const dir = await mkdtemp(join(tmpdir(), 'xgw-bench-gw-'));
  await writeFile(join(dir, 'partners.yaml'), o.partners);
  const q = (s: string): string => JSON.stringify(s);
  const yaml = [
    'localDomains:',
    `  - { domain: ${o.domain}, certificate: ${q(o.certFile)}, privateKey: ${q(o.keyFile)} }`,
    'listen:',
    `  - { host: ${o.ip}, port: ${o.port} }`,
    'partners: partners.yaml',
    `trust: { caFiles: [${q(o.caFile)}] }`,
    ...(o.dialbackSecret !== undefined ? [`dialbackSecret: ${q(o.dialbackSecret)}`] : []),
    'dns:',
    `  servers: [${q(o.dnsServer)}]`,
    '  routes: {}',
    ...(o.adminPort !== undefined ? [`admin: { listen: { host: ${o.ip}, port: ${o.adminPort} } }`] : []),
    ...(o.extraConfig !== undefined ? [o.extraConfig] : []),
    '',
  ].join('\n');
  const configFile = join(dir, 'gateway.yaml');
  await writeFile(configFile, yaml);

  const nodeArgs = o.cpuProfDir !== undefined ? ['--cpu-prof', `--cpu-prof-dir=${o.cpuProfDir}`] : [];
  if (o.probePort !== undefined) nodeArgs.push('--expose-gc', '--import', join(REPO_ROOT, 'bench/gw-probe.mjs'));
  // Diagnostics: BENCH_GATEWAY_NODE_ARGS='--trace-gc' BENCH_GATEWAY_STDOUT=/tmp/gw.out
  const extraArgs = process.env['BENCH_GATEWAY_NODE_ARGS'];
  if (extraArgs) nodeArgs.push(...extraArgs.split(' ').filter((a) => a !== ''));
  const stdoutFile = process.env['BENCH_GATEWAY_STDOUT'];
  const stdout = stdoutFile ? openSync(stdoutFile, 'a') : 'ignore';
  const child = spawn(process.execPath, [...nodeArgs, join(REPO_ROOT, 'bin/xmpp-gateway'), 'serve', '--config', configFile], {
    cwd: dir,
    env: {
      ...process.env,
      XMPP_GATEWAY_LOG_LEVEL: o.logLevel ?? 'warn',
      ...(o.probePort !== undefined ? { XGW_BENCH_PROBE: `${o.ip}:${o.probePort}` } : {}),
    },
    stdio: ['ignore', stdout, 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => {
    err = (err + d.toString('utf8')).slice(-65536);
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error('bench: could not spawn the gateway');
  trackPid(pid);
  let exited: string | null = null;
  const exitedP = new Promise<void>((r) => child.once('exit', (code, sig) => {
    exited = `exited with ${sig ?? `code ${code}`}`;
    untrackPid(pid);
    r();
  }));

  /** A request to the admin listener with the gateway's local credential (admin.localCredential's default). */
  const admin = (path: string, method: 'GET' | 'POST'): Promise<Response> => {
    if (o.adminPort === undefined) throw new Error('bench: the gateway runs without an admin listener');
    const token = readLocalCredential(join(dir, 'state/admin.credential')) ?? '';
    return fetch(`http://${o.ip}:${o.adminPort}${path}`, { method, headers: { authorization: `Bearer ${token}` } });
  };
  let stopping: Promise<void> | null = null;
  const gw: GatewayProcess = {
    pid,
    dir,
    stderr: () => err,
    partnersFile: join(dir, 'partners.yaml'),
    async probe<T>(path: string): Promise<T> {
      if (o.probePort === undefined) throw new Error('bench: the gateway runs without the probe');
      const res = await fetch(`http://${o.ip}:${o.probePort}${path}`);
      return (await res.json()) as T;
    },
    async reload() {
      const res = await admin('/reload', 'POST');
      const body = (await res.json()) as Record<string, unknown>;
      if (res.status !== 200) throw new Error(`bench: reload failed: ${JSON.stringify(body)}`);
      return body;
    },
    async metrics() {
      const res = await admin('/metrics', 'GET');
      if (res.status !== 200) throw new Error(`bench: GET /metrics answered ${res.status}`);
      return res.text();
    },
    stop() {
      stopping ??= (async () => {
        // SIGTERM: the gateway closes its streams and exits (and --cpu-prof writes its profile).
        await terminate(pid, 10_000);
        await Promise.race([exitedP, new Promise((r) => setTimeout(r, 2_000))]);
        untrackPid(pid);
        await rm(dir, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
  try {
    await waitForListener(o.ip, o.port, 20_000, async () => {
      if (exited !== null || !isAlive(pid)) throw new Error(`bench: the gateway ${exited ?? 'died'} during startup\n${err}`);
    }, `the gateway (${o.domain})`);
  } catch (e) {
    await gw.stop();
    throw e;
  }
  return gw;
}
