/**
 * The reply workloads of bench/suite.ts (section 2b) and the flooding plumbing the suite shares:
 * the gateway without an internal server, Prosody 0.12 and ejabberd 23.01 answering stanzas
 * themselves, same machine, same run.
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
import type { PeerCerts } from '../test/interop/harness/index.js';
import type { ReplyCounts, ReplyKind, ReplySink } from './reply-sink.js';

export type Auth = 'dialback' | 'external';
export type Workload = 'ping' | 'message';
export type ServerName = 'gateway' | 'prosody' | 'ejabberd';

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

const FLOOD = 'flood.test';
const FLOOD_JID = `flood@${FLOOD}/r`;
/** Secret of flood.test's dialback keys (the sink, as flood.test's Authoritative Server, checks them). */
const FLOOD_SECRET = 'bench-flood-dialback-secret-0123456789';
const WRITE_CHUNK = 64 * 1024;
/** A server that sends no reply for this long has dropped some: the run fails. */
const IDLE_MS = 15_000;

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

// ---------------------------------------------------------------------------------------------
// Report

export function markdownTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const numeric = (i: number): boolean => i >= 3;
  const line = (cells: string[]): string =>
    `| ${cells.map((c, i) => (numeric(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(' | ')} |`;
  const sep = `| ${widths.map((w, i) => (numeric(i) ? `${'-'.repeat(w - 1)}:` : '-'.repeat(w))).join(' | ')} |`;
  return [line(header), sep, ...rows.map(line)].join('\n');
}
