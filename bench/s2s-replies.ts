/**
 * Side-by-side s2s throughput: the gateway and real Prosody 0.12, same machine, same run.
 *
 * Workload (per run, per server): a synthetic partner flood.test opens ONE authenticated inbound
 * s2s stream to the server under test and writes N stanzas back to back, in 64 KiB socket writes
 * with backpressure honoured; every stanza is addressed to the server's own domain, so the server
 * answers it itself over its OUTBOUND s2s stream to flood.test, whose server is the counting sink
 * (bench/reply-sink.ts):
 *   ping:    <iq type='get' from='flood@flood.test/r' to='DOMAIN' id='pN'><ping xmlns='urn:xmpp:ping'/></iq>
 *            → iq result
 *   message: <message from='flood@flood.test/r' to='nobody@DOMAIN/r' type='chat' id='fN'><body>x*100</body></message>
 *            → message error service-unavailable (no such user / no internal server)
 * rate = N / (time the N-th reply was counted − time of the first write).
 * CPU = utime+stime of the server process (/proc/PID/stat, all threads) over the same interval.
 *
 * Auth modes (docs/peers.md): 'dialback' (no TLS, XEP-0220 both ways) and 'external' (STARTTLS + SASL
 * EXTERNAL both ways, certificates from one test CA).
 *
 * Before each measured flood a warm-up ping and message go through the same stream and their
 * replies are checked (shape, type, error condition), so the outbound stream to flood.test is
 * already up and the measurement is pure stanza throughput (the gateway also caps the queue of
 * an outbound stream that is still negotiating at 10,000 stanzas).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { ScriptedPeer } from '../test/helpers/scripted-peer.js';
import { startTestDns, type TestDns } from '../test/helpers/test-dns.js';
import {
  createPeerCerts, peerZone, sleep, startProsody, tailFile, type PeerCerts, type PeerServer,
} from '../test/interop/harness/index.js';
import { startGatewayProcess, type GatewayProcess } from './gateway-process.js';
import { ReplySink, type ReplyCounts, type ReplyKind } from './reply-sink.js';

export type Auth = 'dialback' | 'external';
export type Workload = 'ping' | 'message';
export type ServerName = 'gateway' | 'prosody' | 'ejabberd';

export interface BenchOptions {
  /** Stanzas per measured flood, per server (the gateway needs more to run as long as Prosody). */
  n: Record<ServerName, number>;
  runs: number;
  auths: Auth[];
  workloads: Workload[];
  /** `node --cpu-prof` output directory for the gateway process. */
  gatewayCpuProfDir?: string;
  log?: (line: string) => void;
}

export interface RunResult {
  server: ServerName;
  workload: Workload;
  auth: Auth;
  run: number;
  n: number;
  /** Replies per second. */
  rate: number;
  durationMs: number;
  /** Server CPU (utime+stime) per 1000 stanzas, ms. */
  cpuMsPer1k: number;
  /** Server CPU time / wall time (1.0 = one core busy). */
  serverCores: number;
  /** This process (flooder + sink) CPU time / wall time. */
  driverCores: number;
  /** Header to authenticated, ms. */
  setupMs: number;
}

export interface CalibrationResult {
  auth: Auth;
  n: number;
  rates: number[];
  driverCores: number[];
}

export interface BenchReport {
  options: BenchOptions;
  results: RunResult[];
  calibration: CalibrationResult[];
  notes: string[];
  environment: { node: string; cpus: number; prosodyLogLines: Record<string, number> };
}

const FLOOD = 'flood.test';
const FLOOD_JID = `flood@${FLOOD}/r`;
/** Secret of flood.test's dialback keys (the sink, as flood.test's Authoritative Server, checks them). */
const FLOOD_SECRET = 'bench-flood-dialback-secret-0123456789';
const GATEWAY = { name: 'gateway' as const, domain: 'gw.test', ip: '127.0.0.52', port: 25269 };
const PROSODY = { name: 'prosody' as const, domain: 'pr.test', ip: '127.0.0.51', s2sPort: 25269, c2sPort: 25222 };
const WRITE_CHUNK = 64 * 1024;
/** A server that sends no reply for this long has dropped some: the run fails. */
const IDLE_MS = 15_000;

/** The partner record for flood.test matching each auth mode (docs/peers.md mode table, gateway side). */
const PARTNER_RECORD: Record<Auth, string> = {
  dialback: 'TlsNegotiation: NotSupported\n  SaslNegotiation: NotSupported\n  SupportDialbackNegotiation: true\n  EnableKeepAlive: false',
  external: 'TlsNegotiation: Required\n  SaslNegotiation: Required\n  SupportDialbackNegotiation: false\n  EnableKeepAlive: false',
};

const KIND: Record<Workload, ReplyKind> = { ping: 'iqResult', message: 'messageError' };

export function requestStanza(workload: Workload, domain: string, id: string): string {
  return workload === 'ping'
    ? `<iq type='get' from='${FLOOD_JID}' to='${domain}' id='${id}'><ping xmlns='urn:xmpp:ping'/></iq>`
    : `<message from='${FLOOD_JID}' to='nobody@${domain}/r' type='chat' id='${id}'><body>${'x'.repeat(100)}</body></message>`;
}

export function payload(workload: Workload, domain: string, n: number): Buffer {
  const prefix = workload === 'ping' ? 'p' : 'f';
  const parts: string[] = new Array(n);
  for (let i = 0; i < n; i++) parts[i] = requestStanza(workload, domain, `${prefix}${i + 1}`);
  return Buffer.from(parts.join(''), 'utf8');
}

/** Writes `buf` in WRITE_CHUNK slices, waiting for 'drain' whenever the socket asks to. */
export async function floodWrite(socket: Socket, buf: Buffer): Promise<void> {
  for (let off = 0; off < buf.length; off += WRITE_CHUNK) {
    if (socket.destroyed || !socket.writable) throw new Error('bench: the stream closed during the flood');
    const ok = socket.write(buf.subarray(off, Math.min(off + WRITE_CHUNK, buf.length)));
    if (!ok) await drained(socket);
  }
}

function drained(socket: Socket): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const done = (err?: Error): void => {
      socket.off('drain', onDrain);
      socket.off('close', onClose);
      if (err) reject(err);
      else resolve();
    };
    const onDrain = (): void => done();
    const onClose = (): void => done(new Error('bench: the stream closed during the flood'));
    socket.on('drain', onDrain);
    socket.on('close', onClose);
  });
}

let clkTck = 0;
/** utime + stime of a process (all its threads), in ms. */
export function processCpuMs(pid: number): number {
  if (clkTck === 0) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after "(comm)": state is field 3, utime 14, stime 15 (proc(5)).
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(rest[11]) + Number(rest[12])) * 1000) / clkTck;
}

export function driverCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export interface Target {
  name: ServerName;
  domain: string;
  ip: string;
  port: number;
  pid: number;
  logTail(): Promise<string>;
}

export interface AuthContext {
  auth: Auth;
  certs: PeerCerts;
  sink: ReplySink;
}

async function connectFlooder(t: Target, ctx: AuthContext, timeoutMs = 20_000): Promise<{ peer: ScriptedPeer; setupMs: number }> {
  const t0 = performance.now();
  const peer = await ScriptedPeer.connect(t.port, t.ip, timeoutMs);
  const f = ctx.certs.files(FLOOD);
  try {
    const r = await peer.negotiate(ctx.auth === 'dialback'
      ? { from: FLOOD, to: t.domain, dialback: { secret: FLOOD_SECRET }, timeoutMs }
      : {
        from: FLOOD,
        to: t.domain,
        tls: { cert: readFileSync(f.cert, 'utf8'), key: readFileSync(f.key, 'utf8'), ca: ctx.certs.ca.certPem, timeoutMs },
        sasl: true,
        timeoutMs,
      });
    if (!r.established) throw new Error(`bench: flood.test could not authenticate to ${t.name} (${JSON.stringify({ sasl: r.sasl, dialback: r.dialback?.type })})`);
  } catch (e) {
    peer.destroy();
    throw e;
  }
  return { peer, setupMs: performance.now() - t0 };
}

function delta(a: ReplyCounts, b: ReplyCounts): ReplyCounts {
  return {
    total: b.total - a.total, iqResult: b.iqResult - a.iqResult, iqError: b.iqError - a.iqError, iqRequest: b.iqRequest - a.iqRequest,
    messageError: b.messageError - a.messageError, message: b.message - a.message, other: b.other - a.other,
  };
}

/** One ping and one message through the stream; their replies must be what the workload expects. */
async function warmUp(t: Target, ctx: AuthContext, peer: ScriptedPeer): Promise<void> {
  const sink = ctx.sink;
  const before = sink.counts(t.domain).total;
  sink.capture = [];
  try {
    const done = sink.waitFor(t.domain, (c) => c.total >= before + 2, IDLE_MS, 30_000);
    peer.socket.write(requestStanza('ping', t.domain, 'warm-ping') + requestStanza('message', t.domain, 'warm-msg'));
    await done;
    const got = sink.capture.filter((c) => c.from === t.domain).map((c) => c.text);
    const ping = got.find((s) => /id=['"]warm-ping['"]/.test(s));
    const msg = got.find((s) => /id=['"]warm-msg['"]/.test(s));
    if (ping === undefined || !/^<iq\b/.test(ping) || !/type=['"]result['"]/.test(ping)) {
      throw new Error(`bench: ${t.name} did not answer the ping with a result: ${JSON.stringify(got)}`);
    }
    if (msg === undefined || !/^<message\b/.test(msg) || !/type=['"]error['"]/.test(msg) || !msg.includes('<service-unavailable')) {
      throw new Error(`bench: ${t.name} did not bounce the message with service-unavailable: ${JSON.stringify(got)}`);
    }
  } finally {
    sink.capture = null;
  }
}

export async function measure(t: Target, ctx: AuthContext, workload: Workload, n: number, data: Buffer, run: number): Promise<RunResult> {
  const { peer, setupMs } = await connectFlooder(t, ctx);
  try {
    await warmUp(t, ctx, peer);
    const kind = KIND[workload];
    const sink = ctx.sink;
    const before = sink.counts(t.domain);
    const target = before[kind] + n;
    const end = sink.waitFor(t.domain, (c) => c[kind] >= target, IDLE_MS);
    const cpu0 = processCpuMs(t.pid);
    const drv0 = driverCpuMs();
    const t0 = performance.now();
    await floodWrite(peer.socket, data);
    const t1 = await end;
    const cpu1 = processCpuMs(t.pid);
    const drv1 = driverCpuMs();
    const d = delta(before, sink.counts(t.domain));
    if (d.total !== n || d[kind] !== n) {
      throw new Error(`bench: ${t.name} ${workload}: expected ${n} replies of kind ${kind}, got ${JSON.stringify(d)}`);
    }
    const wall = t1 - t0;
    return {
      server: t.name, workload, auth: ctx.auth, run, n,
      rate: n / (wall / 1000),
      durationMs: wall,
      cpuMsPer1k: ((cpu1 - cpu0) / n) * 1000,
      serverCores: (cpu1 - cpu0) / wall,
      driverCores: (drv1 - drv0) / wall,
      setupMs,
    };
  } catch (e) {
    const err = e instanceof Error ? e : new Error(String(e));
    err.message += `\n----- ${t.name} log tail -----\n${await t.logTail()}`;
    throw err;
  } finally {
    await peer.close(3_000).catch(() => peer.destroy());
  }
}

/**
 * The harness alone: a flooder writes N reply-shaped stanzas straight into a sink of the same
 * mode, both in this process, as in the real runs. Its rate is the ceiling this harness can
 * measure on this machine (per auth mode).
 */
export async function calibrate(auth: Auth, certs: PeerCerts, n: number, runs: number): Promise<CalibrationResult> {
  const sink = await ReplySink.start(auth === 'dialback'
    ? { domain: FLOOD, mode: 'dialback', dialbackSecret: FLOOD_SECRET }
    : { domain: FLOOD, mode: 'external', dialbackSecret: FLOOD_SECRET, cert: readFileSync(certs.files(FLOOD).cert, 'utf8'), key: readFileSync(certs.files(FLOOD).key, 'utf8'), ca: certs.ca.certPem });
  const from = GATEWAY.domain; // a domain with a certificate from the test CA
  const stanza = (i: number): string =>
    `<message from='nobody@${from}/r' to='${FLOOD_JID}' type='error' id='f${i}'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>`;
  const data = Buffer.from(Array.from({ length: n }, (_, i) => stanza(i + 1)).join(''), 'utf8');
  const rates: number[] = [];
  const driverCores: number[] = [];
  try {
    for (let r = 0; r < runs; r++) {
      const peer = await ScriptedPeer.connect(sink.port, '127.0.0.1', 10_000);
      const f = certs.files(from);
      const res = await peer.negotiate(auth === 'dialback'
        ? { from, to: FLOOD, dialback: { key: 'calibration' }, timeoutMs: 10_000 }
        : { from, to: FLOOD, tls: { cert: readFileSync(f.cert, 'utf8'), key: readFileSync(f.key, 'utf8'), ca: certs.ca.certPem }, sasl: true, timeoutMs: 10_000 });
      if (!res.established) throw new Error(`bench calibration (${auth}): could not authenticate to the sink; notes: ${sink.notes.join('; ')}`);
      const before = sink.counts(from).messageError;
      const end = sink.waitFor(from, (c) => c.messageError >= before + n, IDLE_MS);
      const drv0 = driverCpuMs();
      const t0 = performance.now();
      await floodWrite(peer.socket, data);
      const t1 = await end;
      rates.push(n / ((t1 - t0) / 1000));
      driverCores.push((driverCpuMs() - drv0) / (t1 - t0));
      peer.destroy();
      await sleep(100);
    }
  } finally {
    await sink.close();
  }
  return { auth, n, rates, driverCores };
}

export async function runS2sBenchmark(opts: BenchOptions): Promise<BenchReport> {
  const log = opts.log ?? ((l: string) => console.log(l));
  const results: RunResult[] = [];
  const calibration: CalibrationResult[] = [];
  const notes: string[] = [];
  const prosodyLogLines: Record<string, number> = {};
  const certs = await createPeerCerts([GATEWAY.domain, PROSODY.domain, FLOOD]);
  let dns: TestDns | undefined;
  try {
    dns = await startTestDns({});
    const payloads = new Map<string, Buffer>();
    const dataFor = (w: Workload, domain: string, n: number): Buffer => {
      const key = `${w} ${domain} ${n}`;
      let b = payloads.get(key);
      if (b === undefined) {
        b = payload(w, domain, n);
        payloads.set(key, b);
      }
      return b;
    };

    for (const auth of opts.auths) {
      const cal = await calibrate(auth, certs, Math.max(opts.n.gateway, opts.n.prosody, 200_000), 3);
      calibration.push(cal);
      log(`[bench] ${auth}: harness ceiling (flooder -> sink, no server) median ${Math.round(median(cal.rates)).toLocaleString('en-US')} msgs/s`);

      const flood = certs.files(FLOOD);
      const sink = await ReplySink.start(auth === 'dialback'
        ? { domain: FLOOD, mode: 'dialback', dialbackSecret: FLOOD_SECRET }
        : { domain: FLOOD, mode: 'external', dialbackSecret: FLOOD_SECRET, cert: readFileSync(flood.cert, 'utf8'), key: readFileSync(flood.key, 'utf8'), ca: certs.ca.certPem });
      dns.setZone(peerZone([{ domain: FLOOD, ip: '127.0.0.1', s2sPort: sink.port }]));
      let prosody: PeerServer | undefined;
      let gateway: GatewayProcess | undefined;
      try {
        prosody = await startProsody({
          ...PROSODY, mode: auth, dns: { ip: '127.0.0.1', port: dns.port }, certs, logLevel: 'warn',
        });
        const gwFiles = certs.files(GATEWAY.domain);
        gateway = await startGatewayProcess({
          domain: GATEWAY.domain, ip: GATEWAY.ip, port: GATEWAY.port,
          certFile: gwFiles.cert, keyFile: gwFiles.key, caFile: certs.caFile,
          dnsServer: dns.address,
          dialbackSecret: 'bench-gateway-dialback-secret-0123456789',
          partners: `- Identity: ${FLOOD}\n  ${PARTNER_RECORD[auth]}\n`,
          ...(opts.gatewayCpuProfDir !== undefined ? { cpuProfDir: opts.gatewayCpuProfDir } : {}),
        });
        const gw = gateway;
        const pr = prosody;
        const targets: Target[] = [
          { name: 'gateway', domain: GATEWAY.domain, ip: GATEWAY.ip, port: GATEWAY.port, pid: gw.pid, logTail: async () => gw.stderr().split('\n').slice(-30).join('\n') },
          { name: 'prosody', domain: PROSODY.domain, ip: PROSODY.ip, port: PROSODY.s2sPort, pid: pr.pid, logTail: () => pr.logTail(30) },
        ];
        const ctx: AuthContext = { auth, certs, sink };
        for (let run = 1; run <= opts.runs; run++) {
          for (const workload of opts.workloads) {
            // Alternate which server goes first, so slow drift of the machine hits both alike.
            const order = run % 2 === 1 ? targets : [...targets].reverse();
            for (const t of order) {
              const n = opts.n[t.name];
              const r = await measure(t, ctx, workload, n, dataFor(workload, t.domain, n), run);
              results.push(r);
              log(`[bench] ${auth} ${workload} ${t.name} run ${run}/${opts.runs}: ${Math.round(r.rate).toLocaleString('en-US')} msgs/s, ` +
                `${r.cpuMsPer1k.toFixed(1)} CPU ms/1k, server ${(r.serverCores * 100).toFixed(0)}% / driver ${(r.driverCores * 100).toFixed(0)}% of a core, setup ${r.setupMs.toFixed(0)} ms`);
              await sleep(200);
            }
          }
        }
        if (sink.notes.length > 0) notes.push(`${auth}: sink notes: ${sink.notes.slice(0, 10).join(' | ')}`);
        const plog = await tailFile(pr.logFile, 100_000);
        prosodyLogLines[auth] = plog === '' ? 0 : plog.split('\n').length;
        const gwWarn = gw.stderr().split('\n').filter((l) => l.trim() !== '');
        if (gwWarn.length > 0) notes.push(`${auth}: gateway logged ${gwWarn.length} warn+ lines, e.g. ${gwWarn[0]!.slice(0, 300)}`);
      } finally {
        await Promise.allSettled([gateway?.stop(), prosody?.stop()]);
        await sink.close();
      }
    }
  } finally {
    await dns?.close();
    await certs.cleanup();
  }
  return {
    options: opts,
    results,
    calibration,
    notes,
    environment: { node: process.version, cpus: (await import('node:os')).cpus().length, prosodyLogLines },
  };
}

// ---------------------------------------------------------------------------------------------
// Report

const fmt = (x: number): string => Math.round(x).toLocaleString('en-US');

export function formatReport(rep: BenchReport): string {
  const header = ['server', 'workload', 'auth', 'N', 'median msgs/s', 'min–max msgs/s', 'CPU ms/1k', 'server CPU', 'driver CPU', 'gw/Prosody msgs/s', 'gw/Prosody CPU/1k'];
  const rows: string[][] = [];
  for (const auth of rep.options.auths) {
    for (const workload of rep.options.workloads) {
      const of = (s: ServerName) => rep.results.filter((r) => r.server === s && r.auth === auth && r.workload === workload);
      const gw = of('gateway');
      const pr = of('prosody');
      if (gw.length === 0 || pr.length === 0) continue;
      const gRate = median(gw.map((r) => r.rate));
      const pRate = median(pr.map((r) => r.rate));
      const gCpu = median(gw.map((r) => r.cpuMsPer1k));
      const pCpu = median(pr.map((r) => r.cpuMsPer1k));
      for (const [name, rs, ratio, cpuRatio] of [
        ['gateway', gw, `${(gRate / pRate).toFixed(2)}×`, `${(gCpu / pCpu).toFixed(2)}×`],
        ['Prosody 0.12', pr, '1 (ref)', '1 (ref)'],
      ] as const) {
        const rates = rs.map((r) => r.rate);
        rows.push([
          name, workload, auth === 'dialback' ? 'dialback, no TLS' : 'STARTTLS + EXTERNAL', fmt(rs[0]!.n),
          fmt(median(rates)), `${fmt(Math.min(...rates))}–${fmt(Math.max(...rates))}`,
          median(rs.map((r) => r.cpuMsPer1k)).toFixed(1),
          `${(median(rs.map((r) => r.serverCores)) * 100).toFixed(0)}%`,
          `${(median(rs.map((r) => r.driverCores)) * 100).toFixed(0)}%`,
          ratio, cpuRatio,
        ]);
      }
    }
  }
  const table = markdownTable(header, rows);
  const cal = rep.calibration.map((c) =>
    `- harness ceiling, ${c.auth}: flooder → sink with no server in between, ${fmt(c.n)} stanzas, median ${fmt(median(c.rates))} msgs/s ` +
    `(min ${fmt(Math.min(...c.rates))}), driver ${(median(c.driverCores) * 100).toFixed(0)}% of a core`);
  const runs = rep.options.runs;
  return [
    `s2s replies benchmark: median of ${runs} run${runs === 1 ? '' : 's'} per row; node ${rep.environment.node}, ${rep.environment.cpus} CPUs`,
    '',
    table,
    '',
    ...cal,
    `- CPU ms/1k: server process utime+stime per 1000 stanzas; server/driver CPU: CPU time / wall time of the run (100% = one core)`,
    `- Prosody log lines written at level warn: ${JSON.stringify(rep.environment.prosodyLogLines)}`,
    ...rep.notes.map((n) => `- note: ${n}`),
  ].join('\n');
}

export function markdownTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const numeric = (i: number): boolean => i >= 3;
  const line = (cells: string[]): string =>
    `| ${cells.map((c, i) => (numeric(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(' | ')} |`;
  const sep = `| ${widths.map((w, i) => (numeric(i) ? `${'-'.repeat(w - 1)}:` : '-'.repeat(w))).join(' | ')} |`;
  return [line(header), sep, ...rows.map(line)].join('\n');
}
