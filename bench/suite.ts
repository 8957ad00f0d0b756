/**
 * `npm run bench`: every benchmark in one run, one table, one ratio line per ratio (bench/README.md).
 *
 *  1. relay throughput: ONE authenticated partner stream (flood.test) carrying back-to-back
 *     194-byte `<message/>`s (docs/peers.md's shape) through the gateway to a counting receiver
 *     on the internal link (the fake internal server in.test, a ReplySink), every hot-path check
 *     on (flood.test is PublicUnverified: the trust-tier gate runs per message, with the approval
 *     in place), delivery barriers answered; dialback without TLS, and STARTTLS + EXTERNAL;
 *  2. the same workload into real Prosody 0.12 and ejabberd 23.01, delivered to bob online on
 *     c2s who counts (bench/c2s-counter.ts); the reply workloads (ping, bounced message) of the
 *     earlier benchmark for the gateway (without internal server), Prosody and ejabberd;
 *     all in the same run, the order of the servers rotating per run;
 *  3. ceilings: the project's StreamParser alone on the same bytes (this process), a bare
 *     node:net pipe (its own process) copying them to a byte counter, and the receiver alone;
 *  4. session set-up: authenticated sessions per second (dialback; TLS + EXTERNAL) against raw
 *     mutual-TLS handshakes of node:tls (its own process), same concurrency, same certificates;
 *  5. memory per idle authenticated TLS stream (RSS and heap after a full GC, from the gateway's
 *     bench probe) at 10,000 streams;
 *  6. reload: POST /reload of a 100,000-partner list (load + validate + swap), and the longest
 *     stall it causes, seen from outside (gap in a paced relay stream) and inside (event-loop delay);
 *  7. latency added by the gateway at 50 % of its measured relay peak: paced traffic through the
 *     gateway, minus the same pacing straight into the receiver;
 *  8. the pool (issue 11): relay throughput of one node of a pool on a real etcd against the
 *     single node (same workload as 1, alternating in the same run: the hot path must not wait on
 *     etcd, so the ratio should be ~1), and admissions per second (authenticated sessions, each
 *     admitted against the partner's cluster-wide ConnectionLimit) at the pool node against the
 *     single node (bench/pool.ts).
 *
 * Addresses: the block 127.0.0.9x (test/interop/README.md: the tests use 1x-6x), so a bench run
 * and a test run can share the machine.
 */
import { readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { spawn, type ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import tls from 'node:tls';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { StreamParser } from '../src/xml/stream-parser.js';
import { startTestDns, type TestDns } from '../test/helpers/test-dns.js';
import {
  createPeerCerts, peerZone, sleep, startEjabberd, startProsody, terminate, trackPid, untrackPid,
  type PeerServer,
} from '../test/interop/harness/index.js';
import { connectCounter, type C2sCounter } from './c2s-counter.js';
import { GW_POOL, startBenchPool } from './pool.js';
import { REPO_ROOT, startGatewayProcess, type GatewayProcess } from './gateway-process.js';
import { ReplySink } from './reply-sink.js';
import { connectLight, connectRaw, type LightStream } from './s2s-client.js';
import {
  driverCpuMs, floodWrite, markdownTable, measure, median, payload, processCpuMs,
  type Auth, type AuthContext, type RunResult, type Target, type Workload,
} from './s2s-replies.js';

export interface SuiteOptions {
  quick: boolean;
  /** Runs per throughput row (medians); the order of the servers rotates per run. */
  runs: number;
  /** Stanzas per measured flood. */
  n: { relay: number; prosody: number; ejabberd: number; replyGateway: number; replyPeer: number };
  auths: Auth[];
  /** Sessions per set-up measurement, in flight at once. */
  sessions: number;
  concurrency: number;
  /** Idle TLS streams for the memory figure. */
  idleStreams: number;
  reloadPartners: number;
  reloadRuns: number;
  latencySeconds: number;
  /** Skip the reply workloads (section 2b). */
  replies: boolean;
  /** Sections to run ('1'..'8'; 1, 2 and 3 run together); all when unset. */
  sections?: ReadonlySet<string>;
  gatewayCpuProfDir?: string;
  log?: (line: string) => void;
}

const FLOOD = 'flood.test';
const FLOOD_SECRET = 'bench-flood-dialback-secret-0123456789';
const INTERNAL_SECRET = 'bench-internal-dialback-secret-0123456789';
const GATEWAY_SECRET = 'bench-gateway-dialback-secret-0123456789';
const IN = 'in.test';
const PR = { domain: 'pr.test', ip: '127.0.0.91', s2sPort: 25269, c2sPort: 25222 };
const EJ = { domain: 'ej.test', ip: '127.0.0.92', s2sPort: 25269, c2sPort: 25222 };
const GW_REPLY = { domain: 'gw.test', ip: '127.0.0.93', port: 25269 };
const GW_RELAY = { ip: '127.0.0.94', port: 25269, adminPort: 25280, probePort: 25281 };
const INTERNAL_LISTEN = { host: '127.0.0.95', port: 25269 };
const INTERNAL_SERVER_IP = '127.0.0.96';
const PIPE = { ip: '127.0.0.97', port: 25269 };
const TLS_REF = { ip: '127.0.0.98', port: 25269 };
const IDLE_MS = 15_000;

/** flood.test's record on the relay gateway: PublicUnverified (the gate runs per message), room for 10k streams. */
const RELAY_RECORD: Record<Auth, string> = {
  dialback: `- Identity: ${FLOOD}\n  TlsNegotiation: NotSupported\n  SaslNegotiation: NotSupported\n  SupportDialbackNegotiation: true\n  EnableKeepAlive: false\n  PartnerType: PublicUnverified\n  ConnectionLimit: 100000\n`,
  external: `- Identity: ${FLOOD}\n  TlsNegotiation: Required\n  SaslNegotiation: Required\n  SupportDialbackNegotiation: false\n  EnableKeepAlive: false\n  PartnerType: PublicUnverified\n  ConnectionLimit: 100000\n`,
};
const REPLY_RECORD: Record<Auth, string> = {
  dialback: `- Identity: ${FLOOD}\n  TlsNegotiation: NotSupported\n  SaslNegotiation: NotSupported\n  SupportDialbackNegotiation: true\n  EnableKeepAlive: false\n`,
  external: `- Identity: ${FLOOD}\n  TlsNegotiation: Required\n  SaslNegotiation: Required\n  SupportDialbackNegotiation: false\n  EnableKeepAlive: false\n`,
};

/** docs/peers.md's message (194 bytes with its domains; the same length here for every server). */
export function chatMessage(toDomain: string, i: number): string {
  return `<message from='flood@${FLOOD}/r' to='bob@${toDomain}/r' type='chat' id='f${i}'><body>${'x'.repeat(100)}</body></message>`;
}

function chatPayload(toDomain: string, n: number, offset = 0): Buffer {
  const parts: string[] = new Array(n);
  for (let i = 0; i < n; i++) parts[i] = chatMessage(toDomain, offset + i + 1);
  return Buffer.from(parts.join(''), 'utf8');
}

// ---------------------------------------------------------------------------------------------
// Results

export interface Row {
  section: string;
  what: string;
  auth: string;
  n: number | null;
  /** Medians and ranges over the runs. */
  values: number[];
  unit: string;
  serverCpu?: number[];
  cpuMsPer1k?: number[];
  /** Share of the wall time the server's main thread was runnable but waiting for a core. */
  waited?: number[];
  note?: string;
}

export interface SuiteReport {
  options: SuiteOptions;
  rows: Row[];
  ratios: [string, number][];
  figures: [string, number][];
  notes: string[];
  environment: Record<string, unknown>;
}

const fmt = (x: number): string => (Math.abs(x) >= 100 ? Math.round(x).toLocaleString('en-US') : x.toPrecision(3));

export function formatSuite(rep: SuiteReport): string {
  const header = ['#', 'benchmark', 'auth', 'N', 'median', 'min–max', 'unit', 'server CPU', 'CPU ms/1k', 'waited for a core', 'note'];
  const rows = rep.rows.map((r) => [
    r.section, r.what, r.auth, r.n === null ? '' : r.n.toLocaleString('en-US'),
    fmt(median(r.values)), r.values.length > 1 ? `${fmt(Math.min(...r.values))}–${fmt(Math.max(...r.values))}` : '', r.unit,
    r.serverCpu && r.serverCpu.length > 0 ? `${(median(r.serverCpu) * 100).toFixed(0)}%` : '',
    r.cpuMsPer1k && r.cpuMsPer1k.length > 0 ? median(r.cpuMsPer1k).toFixed(2) : '',
    r.waited && r.waited.length > 0 ? `${(median(r.waited) * 100).toFixed(0)}%` : '',
    r.note ?? '',
  ]);
  const o = rep.options;
  return [
    `benchmark suite${o.quick ? ' (--quick)' : ''}: medians of ${o.runs} run${o.runs === 1 ? '' : 's'} per throughput row; ${JSON.stringify(rep.environment)}`,
    '',
    markdownTable(header, rows),
    '',
    ...rep.notes.map((n) => `- ${n}`),
    '',
    ...rep.ratios.map(([k, v]) => `ratio ${k} ${v.toFixed(2)}`),
    ...rep.figures.map(([k, v]) => `${k} ${Number.isInteger(v) ? v : v.toFixed(3)}`),
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------
// Helper processes (pipe, raw TLS)

async function startHelper(args: string[]): Promise<{ pid: number; stop(): Promise<void> }> {
  const child: ChildProcess = spawn(process.execPath, [join(REPO_ROOT, 'bench/helper-server.mjs'), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const pid = child.pid!;
  trackPid(pid);
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`bench: helper ${args[0]} exited with ${code}`)));
  });
  return {
    pid,
    async stop() {
      await terminate(pid, 3_000);
      untrackPid(pid);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Flooding one stream into something that counts

interface CountingTarget {
  name: string;
  pid: number;
  /** Reads (and resets) the gateway's backpressure pauses (gw-probe.mjs), when it is the target. */
  pauses?: () => Promise<{ count: number; totalMs: number }>;
  /** Connects and authenticates a flooder, and returns its socket. */
  connect(): Promise<LightStream>;
  /** Sends one message on `s` and waits until it was counted (the path is up). */
  warmUp(s: LightStream): Promise<void>;
  count(): number;
  /** performance.now() of the chunk that brought the count to `target`. */
  waitFor(target: number): Promise<number>;
  data: Buffer;
  n: number;
}

interface FloodResult {
  pauses?: { count: number; totalMs: number };
  waited: number;
  rate: number;
  serverCores: number;
  cpuMsPer1k: number;
  driverCores: number;
}

async function flood(t: CountingTarget): Promise<FloodResult> {
  const s = await t.connect();
  try {
    await t.warmUp(s);
    await t.pauses?.();
    const target = t.count() + t.n;
    const end = t.waitFor(target);
    const cpu0 = processCpuMs(t.pid);
    const wait0 = runQueueWaitMs(t.pid);
    const drv0 = driverCpuMs();
    const t0 = performance.now();
    await floodWrite(s.socket, t.data);
    const t1 = await end;
    const cpu = processCpuMs(t.pid) - cpu0;
    const waited = runQueueWaitMs(t.pid) - wait0;
    const wall = t1 - t0;
    const pauses = await t.pauses?.();
    return {
      rate: t.n / (wall / 1000), serverCores: cpu / wall, cpuMsPer1k: (cpu / t.n) * 1000, driverCores: (driverCpuMs() - drv0) / wall, waited: waited / wall,
      ...(pauses !== undefined ? { pauses } : {}),
    };
  } finally {
    s.close();
  }
}

function sinkWaiter(sink: ReplySink, domain: string): (target: number) => Promise<number> {
  return (target) => sink.waitFor(domain, (c) => c.message >= target, IDLE_MS, 600_000);
}

// ---------------------------------------------------------------------------------------------
// The run

export async function runSuite(o: SuiteOptions): Promise<SuiteReport> {
  const log = o.log ?? ((l: string) => console.log(l));
  const rows: Row[] = [];
  const notes: string[] = [];
  const ratios: [string, number][] = [];
  const figures: [string, number][] = [];
  const rowFor = (section: string, what: string, auth: string, n: number | null, unit: string, note?: string): Row => {
    let r = rows.find((x) => x.section === section && x.what === what && x.auth === auth);
    if (!r) {
      r = { section, what, auth, n, values: [], unit, serverCpu: [], cpuMsPer1k: [], ...(note !== undefined ? { note } : {}) };
      rows.push(r);
    }
    return r;
  };
  const authLabel = (a: Auth): string => (a === 'dialback' ? 'dialback, no TLS' : 'STARTTLS + EXTERNAL');
  const load = (): string => loadavg().map((x) => x.toFixed(2)).join(' ');
  const loads: string[] = [`start: ${load()}`];
  const on = (section: string): boolean => o.sections === undefined || o.sections.has(section);
  const pausesSeen: Partial<Record<Auth, { count: number; totalMs: number }[]>> = {};

  const certs = await createPeerCerts([GW_REPLY.domain, PR.domain, EJ.domain, IN, FLOOD]);
  const floodFiles = certs.files(FLOOD);
  const floodTls = { cert: readFileSync(floodFiles.cert, 'utf8'), key: readFileSync(floodFiles.key, 'utf8'), ca: certs.ca.certPem };
  /** A mutual-TLS connection as flood.test to a reference node:tls server (helper-server.mjs). */
  const tlsConnect = (port: number): Promise<tls.TLSSocket> => new Promise((resolve, reject) => {
    const c = tls.connect({ host: TLS_REF.ip, port, servername: IN, ...floodTls, ALPNProtocols: ['xmpp-server'], minVersion: 'TLSv1.2' });
    c.once('secureConnect', () => resolve(c));
    c.once('error', reject);
  });
  let dns: TestDns | undefined;
  try {
    dns = await startTestDns({});

    // ---- 3. the parser alone, in this process, on the relay bytes --------------------------
    if (on('1')) {
      const n = o.n.relay;
      const data = chatPayload(IN, n);
      const header = Buffer.from(`<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='${FLOOD}' to='${IN}' version='1.0'>`);
      const rates: number[] = [];
      const cpuPer1k: number[] = [];
      // Nine rounds, median: one round takes 0.2-0.8 s, and this process waits for a core too.
      for (let r = 0; r < 9; r++) {
        const p = new StreamParser({ maxStanzaBytes: 262_144 });
        let count = 0;
        p.handler = { streamStart() {}, element() { count++; }, streamEnd() {}, whitespace() {}, error(e) { throw e; } };
        p.write(header);
        const c0 = driverCpuMs();
        const t0 = performance.now();
        for (let off = 0; off < data.length; off += 65_536) p.write(data.subarray(off, Math.min(off + 65_536, data.length)));
        const ms = performance.now() - t0;
        cpuPer1k.push(((driverCpuMs() - c0) / n) * 1000);
        if (count !== n) throw new Error(`bench: the parser produced ${count} of ${n} elements`);
        rates.push(n / (ms / 1000));
      }
      const row = rowFor('3', 'ceiling: StreamParser alone (same bytes, 64 KiB chunks, this process)', '-', n, 'msgs/s');
      row.values.push(...rates);
      row.cpuMsPer1k!.push(...cpuPer1k);
      log(`[bench] parser alone: median ${fmt(median(rates))} msgs/s, ${median(cpuPer1k).toFixed(2)} CPU ms/1k`);
    }

    for (const auth of o.auths) {
      log(`[bench] ===== ${authLabel(auth)} (load ${load()}) =====`);
      // flood.test's own server: verifies flood.test's dialback keys, receives the reply workloads' answers.
      const floodSink = await ReplySink.start(auth === 'dialback'
        ? { domain: FLOOD, mode: 'dialback', dialbackSecret: FLOOD_SECRET }
        : { domain: FLOOD, mode: 'external', dialbackSecret: FLOOD_SECRET, ...floodTls });
      // The fake internal server in.test: counts relayed messages, answers barrier pings on its own
      // stream back to the gateway (in.test -> flood.test), answers the gateway's dialback verifications.
      let replyStream: LightStream | null = null;
      const internalSink = await ReplySink.start({
        domain: IN, mode: 'dialback', dialbackSecret: INTERNAL_SECRET, host: INTERNAL_SERVER_IP,
        onIqRequest: (from, id) => replyStream?.socket.write(`<iq type='result' from='${IN}' to='${from}' id='${id}'/>`),
      });
      dns.setZone(peerZone([{ domain: FLOOD, ip: '127.0.0.1', s2sPort: floodSink.port }]));
      const peerMode = auth === 'dialback' ? 'dialback' : 'external';
      let prosody: PeerServer | undefined;
      let ejabberd: PeerServer | undefined;
      let gwReply: GatewayProcess | undefined;
      let gwRelay: GatewayProcess | undefined;
      let pipe: Awaited<ReturnType<typeof startHelper>> | undefined;
      let tlsRef: Awaited<ReturnType<typeof startHelper>> | undefined;
      const counters: C2sCounter[] = [];
      // The relay gateway's limits, the same for the pool node of section 8.
      const relayLimits = [
        'connectionLimit: 100000',
        'maxUnauthenticatedConnectionsPerAddress: 1000',
        'partnerConnectionLimit: 100000',
        ...(process.env['BENCH_QUEUES'] ? [`queues: ${process.env['BENCH_QUEUES']}`] : []),
      ].join('\n');
      try {
        const gwFiles = certs.files(GW_REPLY.domain);
        const inFiles = certs.files(IN);
        const common = { mode: peerMode as 'dialback' | 'external', dns: { ip: '127.0.0.1', port: dns.port }, certs, logLevel: 'warn' as const };
        [prosody, ejabberd, gwReply, gwRelay, pipe] = await Promise.all([
          startProsody({ ...PR, ...common }),
          startEjabberd({ ...EJ, ...common }),
          startGatewayProcess({
            domain: GW_REPLY.domain, ip: GW_REPLY.ip, port: GW_REPLY.port, certFile: gwFiles.cert, keyFile: gwFiles.key, caFile: certs.caFile,
            dnsServer: dns.address, dialbackSecret: GATEWAY_SECRET, partners: REPLY_RECORD[auth],
          }),
          startGatewayProcess({
            domain: IN, ip: GW_RELAY.ip, port: GW_RELAY.port, certFile: inFiles.cert, keyFile: inFiles.key, caFile: certs.caFile,
            dnsServer: dns.address, dialbackSecret: GATEWAY_SECRET, partners: RELAY_RECORD[auth],
            adminPort: GW_RELAY.adminPort, probePort: GW_RELAY.probePort,
            extraConfig: [
              'internal:',
              `  server: { host: ${INTERNAL_SERVER_IP}, port: ${internalSink.port} }`,
              `  listen: { host: ${INTERNAL_LISTEN.host}, port: ${INTERNAL_LISTEN.port} }`,
              relayLimits,
            ].join('\n'),
            ...(o.gatewayCpuProfDir !== undefined ? { cpuProfDir: o.gatewayCpuProfDir } : {}),
          }),
          startHelper(['pipe', PIPE.ip, String(PIPE.port), INTERNAL_SERVER_IP, String(internalSink.port)]),
        ]);
        await Promise.all([prosody.register('bob', 'pw'), ejabberd.register('bob', 'pw')]);
        counters.push(await connectCounter(PR.ip, PR.c2sPort, PR.domain, 'bob', 'pw'), await connectCounter(EJ.ip, EJ.c2sPort, EJ.domain, 'bob', 'pw'));
        const [prBob, ejBob] = counters as [C2sCounter, C2sCounter];

        // The internal server's own stream to flood.test (barrier answers); bob@in.test writes to
        // flood@flood.test first, so the PublicUnverified gate lets flood's messages in.
        replyStream = await connectLight({ host: INTERNAL_LISTEN.host, port: INTERNAL_LISTEN.port, from: IN, to: FLOOD, dialbackSecret: INTERNAL_SECRET });
        const opened = floodSink.waitFor(IN, (c) => c.message >= 1, IDLE_MS);
        replyStream.socket.write(`<message from='bob@${IN}/r' to='flood@${FLOOD}/r' type='chat' id='open-gate'><body>hi</body></message>`);
        await opened;

        const connectFlooder = (ip: string, port: number, to: string) => (): Promise<LightStream> =>
          connectLight({ host: ip, port, from: FLOOD, to, ...(auth === 'dialback' ? { dialbackSecret: FLOOD_SECRET } : { tls: floodTls }) });
        const warm = (toDomain: string, count: () => number, wait: (n: number) => Promise<number>) => async (s: LightStream): Promise<void> => {
          const done = wait(count() + 1);
          s.socket.write(chatMessage(toDomain, 0));
          await done;
        };
        const relayCount = (): number => internalSink.counts(FLOOD).message;
        const relayWait = sinkWaiter(internalSink, FLOOD);
        const relay: CountingTarget = {
          name: 'relay', pid: gwRelay.pid, connect: connectFlooder(GW_RELAY.ip, GW_RELAY.port, IN), pauses: () => gwRelay!.probe('/pauses'),
          warmUp: warm(IN, relayCount, relayWait), count: relayCount, waitFor: relayWait, data: chatPayload(IN, o.n.relay), n: o.n.relay,
        };
        const toProsody: CountingTarget = {
          name: 'prosody', pid: prosody.pid, connect: connectFlooder(PR.ip, PR.s2sPort, PR.domain),
          warmUp: warm(PR.domain, () => prBob.count, (n) => prBob.waitFor(n, IDLE_MS)), count: () => prBob.count,
          waitFor: (n) => prBob.waitFor(n, IDLE_MS), data: chatPayload(PR.domain, o.n.prosody), n: o.n.prosody,
        };
        const toEjabberd: CountingTarget = {
          name: 'ejabberd', pid: ejabberd.pid, connect: connectFlooder(EJ.ip, EJ.s2sPort, EJ.domain),
          warmUp: warm(EJ.domain, () => ejBob.count, (n) => ejBob.waitFor(n, IDLE_MS)), count: () => ejBob.count,
          waitFor: (n) => ejBob.waitFor(n, IDLE_MS), data: chatPayload(EJ.domain, o.n.ejabberd), n: o.n.ejabberd,
        };
        const pipeSock = { current: null as Socket | null };
        const pipeBytes = { n: 0 };
        // The pipe forwards into the internal sink's port; a raw byte counter would do, but the
        // sink is what the relay feeds, so the pipe row is "the same receiver, bytes not parsed
        // by anyone in between". Its stream is a plain connection: the sink counts the messages.
        const pipeTarget: CountingTarget = {
          name: 'pipe', pid: pipe.pid,
          connect: async () => {
            const s = await connectRaw(PIPE.ip, PIPE.port);
            pipeSock.current = s;
            // Authenticate towards the sink as flood.test (dialback: the sink accepts db:result).
            s.write(`<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='pipe.test' to='${IN}' version='1.0'><db:result from='pipe.test' to='${IN}'>k</db:result>`);
            s.on('data', (d: Buffer) => (pipeBytes.n += d.length));
            return { socket: s, close: () => s.destroy() };
          },
          warmUp: warm(IN, () => internalSink.counts('pipe.test').message, sinkWaiter(internalSink, 'pipe.test')),
          count: () => internalSink.counts('pipe.test').message, waitFor: sinkWaiter(internalSink, 'pipe.test'),
          data: chatPayload(IN, o.n.relay), n: o.n.relay,
        };

        // ---- 1 + 2 + 3: relay, Prosody, ejabberd, pipe, rotating order -------------------------
        const only = process.env['BENCH_TARGETS']?.split(',').map((x) => x.trim());
        const order: CountingTarget[] = [relay, toProsody, toEjabberd, pipeTarget].filter((t) => only === undefined || only.includes(t.name));
        // One unmeasured flood per target first (JIT, caches, the servers' first-stream costs).
        if (on('1')) for (const t of order) await flood(t);
        for (let run = 1; run <= (on('1') ? o.runs : 0); run++) {
          const rot = run - 1;
          const seq = [...order.slice(rot % order.length), ...order.slice(0, rot % order.length)];
          for (const t of seq) {
            const r = await flood(t);
            const label = t.name === 'relay' ? 'relay: partner stream -> gateway -> internal receiver'
              : t.name === 'pipe' ? 'ceiling: bare node:net pipe -> same receiver'
                : `${t.name === 'prosody' ? 'Prosody 0.12' : 'ejabberd 23.01'}: s2s in -> c2s user who counts`;
            const row = rowFor(t.name === 'pipe' ? '3' : t.name === 'relay' ? '1' : '2', label, authLabel(auth), t.n, 'msgs/s');
            row.values.push(r.rate);
            row.serverCpu!.push(r.serverCores);
            row.cpuMsPer1k!.push(r.cpuMsPer1k);
            (row.waited ??= []).push(r.waited);
            log(`[bench] ${auth} ${t.name} run ${run}/${o.runs}: ${fmt(r.rate)} msgs/s, server ${(r.serverCores * 100).toFixed(0)}% / driver ${(r.driverCores * 100).toFixed(0)}% of a core, ${r.cpuMsPer1k.toFixed(2)} CPU ms/1k, waited for a core ${(r.waited * 100).toFixed(0)}%` +
              (r.pauses ? `, source paused ${r.pauses.count}× for ${r.pauses.totalMs.toFixed(0)} ms` : ''));
            if (r.pauses) (pausesSeen[auth] ??= []).push(r.pauses);
            await sleep(200);
          }
        }
        loads.push(`after ${auth} throughput: ${load()}`);

        // ---- 3. the receiver alone: the same flooder straight into a sink ----------------------
        {
          const direct: CountingTarget = {
            name: 'receiver', pid: process.pid,
            connect: () => connectLight({ host: INTERNAL_SERVER_IP, port: internalSink.port, from: 'direct.test', to: IN, dialbackSecret: 'x' }),
            warmUp: warm(IN, () => internalSink.counts('direct.test').message, sinkWaiter(internalSink, 'direct.test')),
            count: () => internalSink.counts('direct.test').message, waitFor: sinkWaiter(internalSink, 'direct.test'),
            data: chatPayload(IN, o.n.relay), n: o.n.relay,
          };
          for (let run = 0; run < (on('1') ? Math.min(3, o.runs) : 0); run++) {
            const r = await flood(direct);
            rowFor('3', 'ceiling: flooder -> receiver, nothing in between (one process)', authLabel('dialback'), direct.n, 'msgs/s', 'the harness\'s own limit').values.push(r.rate);
          }
        }

        // ---- 2b. reply workloads (the earlier benchmark), gateway without internal server -----
        if (o.replies && on('2')) {
          const ctx: AuthContext = { auth, certs, sink: floodSink };
          const targets: Target[] = [
            { name: 'gateway', domain: GW_REPLY.domain, ip: GW_REPLY.ip, port: GW_REPLY.port, pid: gwReply.pid, logTail: async () => gwReply!.stderr().slice(-3000) },
            { name: 'prosody', domain: PR.domain, ip: PR.ip, port: PR.s2sPort, pid: prosody.pid, logTail: () => prosody!.logTail(30) },
            { name: 'ejabberd', domain: EJ.domain, ip: EJ.ip, port: EJ.s2sPort, pid: ejabberd.pid, logTail: () => ejabberd!.logTail(30) },
          ];
          const replyRuns = Math.max(1, Math.min(3, o.runs));
          for (let run = 1; run <= replyRuns; run++) {
            for (const workload of ['ping', 'message'] as Workload[]) {
              const seq = [...targets.slice(run % 3), ...targets.slice(0, run % 3)];
              for (const t of seq) {
                const n = t.name === 'gateway' ? o.n.replyGateway : o.n.replyPeer;
                const r: RunResult = await measure(t, ctx, workload, n, payload(workload, t.domain, n), run);
                const row = rowFor('2b', `reply ${workload === 'ping' ? 'ping -> iq result' : 'message -> bounce'}: ${t.name}`, authLabel(auth), n, 'msgs/s');
                row.values.push(r.rate);
                row.serverCpu!.push(r.serverCores);
                row.cpuMsPer1k!.push(r.cpuMsPer1k);
                log(`[bench] ${auth} reply ${workload} ${t.name} run ${run}/${replyRuns}: ${fmt(r.rate)} msgs/s`);
                await sleep(200);
              }
            }
          }
        }

        // ---- 4. session set-up ----------------------------------------------------------------
        if (on('4')) {
          // n operations, `concurrency` of them in flight; returns operations per second.
          const perSecond = async (fn: () => Promise<void>): Promise<number> => {
            const t0 = performance.now();
            await inFlight(o.sessions, o.concurrency, fn);
            return o.sessions / ((performance.now() - t0) / 1000);
          };
          const sessions = (): Promise<number> => perSecond(async () => {
            (await connectFlooder(GW_RELAY.ip, GW_RELAY.port, IN)()).close();
          });
          const handshakes = (): Promise<number> => perSecond(async () => {
            (await tlsConnect(TLS_REF.port)).destroy();
          });
          if (auth === 'external') tlsRef = await startHelper(['tls', TLS_REF.ip, String(TLS_REF.port), inFiles.cert, inFiles.key, certs.caFile]);
          for (let run = 0; run < 3; run++) {
            const cpu0 = processCpuMs(gwRelay.pid);
            const t0 = performance.now();
            const rate = await sessions();
            const row = rowFor('4', `session set-up: authenticated s2s sessions/s (${o.concurrency} in flight)`, authLabel(auth), o.sessions, 'sessions/s');
            row.values.push(rate);
            row.serverCpu!.push((processCpuMs(gwRelay.pid) - cpu0) / (performance.now() - t0));
            if (tlsRef !== undefined) {
              const c0 = processCpuMs(tlsRef.pid);
              const h0 = performance.now();
              const hs = await handshakes();
              const hrow = rowFor('4', `reference: raw node:tls mutual-TLS handshakes/s (${o.concurrency} in flight, own process)`, 'TLS 1.3, client cert', o.sessions, 'handshakes/s');
              hrow.values.push(hs);
              hrow.serverCpu!.push((processCpuMs(tlsRef.pid) - c0) / (performance.now() - h0));
            }
            await sleep(500);
          }
          log(`[bench] ${auth} set-up: ${fmt(median(rowFor('4', `session set-up: authenticated s2s sessions/s (${o.concurrency} in flight)`, authLabel(auth), o.sessions, 'sessions/s').values))} sessions/s`);
        }

        // ---- 8. the pool: one node of a pool on etcd against the single node ----------------------
        if (auth === 'dialback' && on('8')) {
          let poolReply: LightStream | null = null;
          const poolSink = await ReplySink.start({
            domain: IN, mode: 'dialback', dialbackSecret: INTERNAL_SECRET, host: INTERNAL_SERVER_IP,
            onIqRequest: (from, id) => poolReply?.socket.write(`<iq type='result' from='${IN}' to='${from}' id='${id}'/>`),
          });
          const pool = await startBenchPool({
            domain: IN, certFile: inFiles.cert, keyFile: inFiles.key, caFile: certs.caFile, dnsServer: dns.address,
            partners: RELAY_RECORD.dialback, internal: { host: INTERNAL_SERVER_IP, port: poolSink.port }, extraConfig: relayLimits,
          });
          try {
            // The internal server's stream back to the pool node; bob writes first (the approval goes to etcd).
            poolReply = await connectLight({ host: GW_POOL.ip, port: GW_POOL.internalPort, from: IN, to: FLOOD, dialbackSecret: INTERNAL_SECRET });
            const base = floodSink.counts(IN).message;
            const opened = floodSink.waitFor(IN, (c) => c.message > base, IDLE_MS);
            poolReply.socket.write(`<message from='bob@${IN}/r' to='flood@${FLOOD}/r' type='chat' id='open-gate-pool'><body>hi</body></message>`);
            await opened;
            const poolCount = (): number => poolSink.counts(FLOOD).message;
            const poolWait = sinkWaiter(poolSink, FLOOD);
            const inPool: CountingTarget = {
              name: 'pool node', pid: pool.node.pid, connect: connectFlooder(GW_POOL.ip, GW_POOL.port, IN), pauses: () => pool.node.probe('/pauses'),
              warmUp: warm(IN, poolCount, poolWait), count: poolCount, waitFor: poolWait, data: chatPayload(IN, o.n.relay), n: o.n.relay,
            };
            // (b) relay throughput, the single node and the pool node alternating, one unmeasured flood each first.
            await flood(relay);
            await flood(inPool);
            const relayLabel = (pooled: boolean): string => pooled
              ? 'pool: relay through one node of a 2-node pool (etcd, 3 members), same workload as section 1'
              : 'pool: the single node of section 1, same run';
            for (let run = 1; run <= o.runs; run++) {
              for (const t of run % 2 === 1 ? [relay, inPool] : [inPool, relay]) {
                const r = await flood(t);
                const row = rowFor('8', relayLabel(t === inPool), authLabel(auth), t.n, 'msgs/s');
                row.values.push(r.rate);
                row.serverCpu!.push(r.serverCores);
                row.cpuMsPer1k!.push(r.cpuMsPer1k);
                (row.waited ??= []).push(r.waited);
                log(`[bench] pool relay ${t.name} run ${run}/${o.runs}: ${fmt(r.rate)} msgs/s, ${r.cpuMsPer1k.toFixed(2)} CPU ms/1k, waited for a core ${(r.waited * 100).toFixed(0)}%`);
                await sleep(200);
              }
            }
            // (a) admissions: authenticated sessions per second, each admitted against flood.test's
            // ConnectionLimit (cluster-wide in the pool: an etcd transaction per admission).
            // Whether admission holds a ConnectionLimit slot in etcd: one session held open, streams/ read.
            let slotsHeld = 0;
            {
              const s = await connectFlooder(GW_POOL.ip, GW_POOL.port, IN)();
              for (let i = 0; i < 20 && slotsHeld === 0; i++) {
                slotsHeld = await pool.streamSlots();
                if (slotsHeld === 0) await sleep(50);
              }
              s.close();
            }
            const admissions = async (pooled: boolean): Promise<void> => {
              const [host, port, pid] = pooled ? [GW_POOL.ip, GW_POOL.port, pool.node.pid] : [GW_RELAY.ip, GW_RELAY.port, gwRelay!.pid];
              const cpu0 = processCpuMs(pid);
              const wait0 = runQueueWaitMs(pid);
              const t0 = performance.now();
              await inFlight(o.sessions, o.concurrency, async () => {
                (await connectFlooder(host, port, IN)()).close();
              });
              const wall = performance.now() - t0;
              const cpu = processCpuMs(pid) - cpu0;
              const row = rowFor('8', pooled ? `pool: admissions/s at one pool node, cluster-wide limits (${o.concurrency} in flight)` : `pool: admissions/s at the single node (${o.concurrency} in flight)`,
                authLabel(auth), o.sessions, 'sessions/s', 'CPU ms/1k: per 1000 sessions');
              row.values.push(o.sessions / (wall / 1000));
              row.serverCpu!.push(cpu / wall);
              row.cpuMsPer1k!.push((cpu / o.sessions) * 1000);
              (row.waited ??= []).push((runQueueWaitMs(pid) - wait0) / wall);
            };
            // Alternating, as many runs as the throughput rows have (at least 3): the figure is noisy on a shared machine.
            for (let run = 0; run < Math.max(3, o.runs); run++) {
              for (const pooled of run % 2 === 0 ? [false, true] : [true, false]) {
                await admissions(pooled);
                await sleep(500);
              }
            }
            // The pool node's own account of the wait, where the build has it (gw_pool_admission_seconds).
            const poolMetrics = await pool.node.metrics();
            const metric = (name: string): number => {
              const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(poolMetrics);
              return m ? Number(m[1]) : Number.NaN;
            };
            const waits = metric('gw_pool_admission_seconds_count');
            if (waits > 0) notes.push(`pool admissions: the pool node's admission decisions took ${((metric('gw_pool_admission_seconds_sum') / waits) * 1000).toFixed(1)} ms on average (${waits} decisions, gw_pool_admission_seconds)`);
            notes.push(`pool admissions: ${slotsHeld > 0 ? `an admitted session holds a ConnectionLimit slot in etcd (${slotsHeld} key(s) under streams/ while one session was open)` : 'no ConnectionLimit slot appeared in etcd (streams/) while a session was open: admission did not go through etcd in this build'}`);
            const warn = pool.node.stderr().split('\n').filter((l) => l.trim() !== '');
            if (warn.length > 0) notes.push(`pool node logged ${warn.length} warn+ lines, e.g. ${warn[0]!.slice(0, 300)}`);
          } finally {
            poolReply?.close();
            await pool.stop();
            await poolSink.close();
          }
        }

        // ---- 5. memory per idle authenticated TLS stream ----------------------------------------
        if (auth === 'external' && on('5')) {
          await sleep(3_000); // closed set-up sessions are gone (close grace 2 s)
          type Mem = { rss: number; heapUsed: number; external: number; arrayBuffers: number };
          const before = await gwRelay.probe<Mem>('/mem');
          const idle: LightStream[] = [];
          const t0 = performance.now();
          await inFlight(o.idleStreams, 16, async () => {
            idle.push(await connectFlooder(GW_RELAY.ip, GW_RELAY.port, IN)());
          });
          const openMs = performance.now() - t0;
          await sleep(1_000);
          const after = await gwRelay.probe<Mem>('/mem');
          const k = idle.length;
          const rss = (after.rss - before.rss) / k / 1024;
          const heap = (after.heapUsed - before.heapUsed) / k / 1024;
          const ext = (after.external - before.external) / k / 1024;
          rowFor('5', `memory per idle authenticated TLS stream: RSS (${k.toLocaleString('en-US')} streams)`, authLabel(auth), k, 'KiB').values.push(rss);
          rowFor('5', 'memory per idle authenticated TLS stream: V8 heap used', authLabel(auth), k, 'KiB').values.push(heap);
          rowFor('5', 'memory per idle authenticated TLS stream: external (buffers, OpenSSL outside)', authLabel(auth), k, 'KiB', 'external is not part of the heap; RSS includes everything').values.push(ext);
          figures.push(['mem-per-stream-kib', rss]);
          log(`[bench] ${k} idle TLS streams opened in ${(openMs / 1000).toFixed(1)} s: RSS ${fmt(rss)} KiB, heap ${fmt(heap)} KiB, external ${fmt(ext)} KiB per stream`);
          for (const s of idle) s.socket.destroy();
          await sleep(2_000);
          // Reference: bare node:tls holding the same number of idle mutual-TLS connections.
          const hold = await startHelper(['tls-hold', TLS_REF.ip, String(TLS_REF.port + 1), inFiles.cert, inFiles.key, certs.caFile]);
          try {
            const rss0 = rssKiB(hold.pid);
            const conns: tls.TLSSocket[] = [];
            await inFlight(k, 16, async () => {
              conns.push(await tlsConnect(TLS_REF.port + 1));
            });
            await sleep(1_000);
            const per = (rssKiB(hold.pid) - rss0) / k;
            rowFor('5', `reference: RSS per idle mutual-TLS connection of bare node:tls (${k.toLocaleString('en-US')} connections, own process)`, 'TLS 1.3, client cert', k, 'KiB', 'the floor for any Node TLS server').values.push(per);
            log(`[bench] bare node:tls: RSS ${fmt(per)} KiB per idle connection`);
            for (const c of conns) c.destroy();
          } finally {
            await hold.stop();
          }
        }

        // ---- 7. latency at 50 % of the measured relay peak ------------------------------------
        if (auth === 'dialback' && on('7')) {
          const peak = median(rowFor('1', 'relay: partner stream -> gateway -> internal receiver', authLabel(auth), o.n.relay, 'msgs/s').values)
            || Number(process.env['BENCH_PEAK'] ?? 100_000);
          const rate = Math.round(peak / 2);
          const ms = o.latencySeconds * 1000;
          const through = async (): Promise<number[]> => {
            const s = await relay.connect();
            try {
              await relay.warmUp(s);
              // One unmeasured second at the same rate first (JIT, the barrier cycle, socket buffers).
              await pace(s.socket, FLOOD, IN, rate, (t) => t >= 1_000, internalSink);
              return latencies(await pace(s.socket, FLOOD, IN, rate, (t) => t >= ms, internalSink));
            } finally {
              s.close();
            }
          };
          const direct = async (): Promise<number[]> => {
            const s = await connectLight({ host: INTERNAL_SERVER_IP, port: internalSink.port, from: 'direct.test', to: IN, dialbackSecret: 'x' });
            try {
              await pace(s.socket, 'direct.test', IN, rate, (t) => t >= 1_000, internalSink);
              return latencies(await pace(s.socket, 'direct.test', IN, rate, (t) => t >= ms, internalSink));
            } finally {
              s.close();
            }
          };
          const cpu0 = processCpuMs(gwRelay.pid);
          const wait0 = runQueueWaitMs(gwRelay.pid);
          const l0 = performance.now();
          await gwRelay.probe('/loop/start');
          await gwRelay.probe('/pauses');
          const g = await through();
          const loop = await gwRelay.probe<{ maxMs: number; p99Ms: number }>('/loop/stop');
          const paused = await gwRelay.probe<{ count: number; totalMs: number }>('/pauses');
          const lWall = performance.now() - l0;
          const gwCores = (processCpuMs(gwRelay.pid) - cpu0) / lWall;
          const gwWaited = (runQueueWaitMs(gwRelay.pid) - wait0) / lWall;
          const d = await direct();
          const pct = (xs: number[], p: number): number => xs[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))]!;
          for (const p of [50, 99, 99.9]) {
            const added = pct(g, p) - pct(d, p);
            rowFor('7', `latency added by the gateway at 50 % of peak (${rate.toLocaleString('en-US')} msgs/s): p${p}`, authLabel(auth), g.length, 'ms',
              `through gateway ${pct(g, p).toFixed(3)} ms − direct ${pct(d, p).toFixed(3)} ms`).values.push(added);
            if (p === 99) figures.push(['latency-p99-ms', added]);
          }
          const cpuRow = rowFor('7', 'gateway CPU during the latency run', authLabel(auth), null, '% of a core', `gateway event-loop delay max ${loop.maxMs.toFixed(1)} ms, p99 ${loop.p99Ms.toFixed(1)} ms; partner stream paused ${paused.count}× for ${paused.totalMs.toFixed(0)} ms`);
          cpuRow.values.push(gwCores * 100);
          (cpuRow.waited ??= []).push(gwWaited);
          log(`[bench] latency at ${fmt(rate)} msgs/s: through gateway p50/p99/p99.9 ${[50, 99, 99.9].map((p) => pct(g, p).toFixed(3)).join('/')} ms, direct ${[50, 99, 99.9].map((p) => pct(d, p).toFixed(3)).join('/')} ms; gateway event loop max ${loop.maxMs.toFixed(1)} ms p99 ${loop.p99Ms.toFixed(1)} ms, waited for a core ${(gwWaited * 100).toFixed(0)}%, partner stream paused ${paused.count}× for ${paused.totalMs.toFixed(0)} ms`);
        }

        // ---- 6. reload of a 100k-partner list, and the stall it causes ---------------------------
        if (auth === 'dialback' && on('6')) {
          const bigList = (tag: string): string => {
            const parts = [RELAY_RECORD.dialback];
            for (let i = 1; i < o.reloadPartners; i++) parts.push(`- Identity: p${i}.${tag}.example\n  Description: bench partner ${i}\n`);
            return parts.join('');
          };
          const reloadMs: number[] = [];
          const stallOutside: number[] = [];
          const stallInside: number[] = [];
          const rate = 10_000; // messages/s on the stream that carries traffic during the reload
          for (let run = 0; run < o.reloadRuns; run++) {
            const s = await relay.connect();
            try {
              await relay.warmUp(s);
              const text = bigList(`r${run}`);
              let reloadedAt = Number.POSITIVE_INFINITY;
              const paced = pace(s.socket, FLOOD, IN, rate, () => performance.now() > reloadedAt + 500, internalSink);
              await sleep(500);
              await gwRelay.probe('/loop/start');
              writeAtomic(gwRelay.partnersFile, text);
              const r0 = performance.now();
              const answer = await gwRelay.reload();
              const r1 = performance.now();
              reloadedAt = r1;
              await sleep(300);
              const loop = await gwRelay.probe<{ maxMs: number }>('/loop/stop');
              const arrivals = await paced;
              reloadMs.push(r1 - r0);
              stallInside.push(loop.maxMs);
              stallOutside.push(maxGap(arrivals, r0 - 50, r1 + 300));
              log(`[bench] reload ${o.reloadPartners.toLocaleString('en-US')} partners: ${(r1 - r0).toFixed(0)} ms (answer ${JSON.stringify(answer).slice(0, 120)}), event-loop max ${loop.maxMs.toFixed(1)} ms, longest gap in relayed traffic ${stallOutside.at(-1)!.toFixed(1)} ms`);
            } finally {
              s.close();
            }
          }
          writeAtomic(gwRelay.partnersFile, RELAY_RECORD.dialback);
          await gwRelay.reload();
          rowFor('6', `reload: POST /reload of ${o.reloadPartners.toLocaleString('en-US')} partners (load, validate, swap) until answered`, '-', o.reloadPartners, 'ms').values.push(...reloadMs);
          rowFor('6', `reload: longest gap in relayed traffic (${rate.toLocaleString('en-US')} msgs/s paced) around the reload`, authLabel(auth), null, 'ms', 'outside view, includes the 1 ms pacing').values.push(...stallOutside);
          rowFor('6', 'reload: longest event-loop delay in the gateway during the reload', '-', null, 'ms', 'monitorEventLoopDelay, 1 ms resolution').values.push(...stallInside);
          figures.push(['reload-100k-ms', median(reloadMs)], ['reload-stall-ms', median(stallOutside)]);
        }

        if (internalSink.notes.length > 0) notes.push(`${auth}: internal receiver notes: ${internalSink.notes.slice(0, 5).join(' | ')}`);
        const warn = gwRelay.stderr().split('\n').filter((l) => l.trim() !== '');
        if (warn.length > 0) notes.push(`${auth}: relay gateway logged ${warn.length} warn+ lines, e.g. ${warn[0]!.slice(0, 300)}`);
        loads.push(`after ${auth}: ${load()}`);
      } finally {
        for (const c of counters) c.close();
        replyStream?.close();
        await Promise.allSettled([gwReply?.stop(), gwRelay?.stop(), prosody?.stop(), ejabberd?.stop(), pipe?.stop(), tlsRef?.stop()]);
        await Promise.allSettled([floodSink.close(), internalSink.close()]);
      }
    }
  } finally {
    await dns?.close();
    await certs.cleanup();
  }

  // ---- ratios -----------------------------------------------------------------------------------
  const med = (section: string, prefix: string, auth: string): number => {
    const r = rows.find((x) => x.section === section && x.what.startsWith(prefix) && x.auth === auth);
    return r === undefined || r.values.length === 0 ? Number.NaN : median(r.values);
  };
  const db = authLabel('dialback');
  const ex = authLabel('external');
  const relayDb = med('1', 'relay:', db);
  const relayEx = med('1', 'relay:', ex);
  ratios.push(
    ['relay/prosody', relayDb / med('2', 'Prosody', db)],
    ['relay/ejabberd', relayDb / med('2', 'ejabberd', db)],
    ['relay-tls/prosody', relayEx / med('2', 'Prosody', ex)],
    ['relay-tls/ejabberd', relayEx / med('2', 'ejabberd', ex)],
    ['relay/parser', relayDb / med('3', 'ceiling: StreamParser', '-')],
    ['relay/pipe', relayDb / med('3', 'ceiling: bare node:net pipe', db)],
    ['setup/handshake', med('4', 'session set-up', ex) / med('4', 'reference: raw node:tls', 'TLS 1.3, client cert')],
    ['pool-relay/relay', med('8', 'pool: relay through', db) / med('8', 'pool: the single node', db)],
    ['pool-admissions/admissions', med('8', 'pool: admissions/s at one pool node', db) / med('8', 'pool: admissions/s at the single node', db)],
  );
  const cpuOf = (section: string, prefix: string, auth: string): number => {
    const r = rows.find((x) => x.section === section && x.what.startsWith(prefix) && x.auth === auth);
    return r?.cpuMsPer1k && r.cpuMsPer1k.length > 0 ? median(r.cpuMsPer1k) : Number.NaN;
  };
  const cpuRatio = cpuOf('3', 'ceiling: StreamParser', '-') / cpuOf('1', 'relay:', db);
  if (!Number.isNaN(cpuRatio)) {
    notes.push(`relay/parser by CPU time (parser CPU ms/1k ÷ relay CPU ms/1k, dialback), which waiting for a core does not disturb: ${cpuRatio.toFixed(2)}`);
  }
  for (const [auth, ps] of Object.entries(pausesSeen)) {
    notes.push(`${authLabel(auth as Auth)} relay: the gateway paused reading the partner stream (backpressure) ${ps.map((p) => `${p.count}× ${p.totalMs.toFixed(0)} ms`).join(', ')} per measured run`);
  }
  notes.push(
    `machine load average (1/5/15 min): ${loads.join('; ')}`,
    'relay: flood.test is PublicUnverified (trust-tier gate per message, approval in place), delivery barriers (XEP-0199 ping every 100 stanzas) answered by the fake internal server on its own stream; the internal link is dialback without TLS in both rows (the auth column is the partner side)',
    'Prosody/ejabberd rows: the same messages, delivered to bob online on c2s who counts; the order of relay/Prosody/ejabberd/pipe rotates per run',
    'ratio setup/handshake = STARTTLS + EXTERNAL sessions/s ÷ raw mutual-TLS handshakes/s',
    'waited for a core: time the server\'s threads were runnable but not running (/proc/PID/task/*/schedstat) ÷ wall time; on a shared machine this, not the server, is what keeps "server CPU" below 100 %',
  );
  return {
    options: o, rows, ratios, figures, notes,
    environment: { node: process.version, cpus: cpus().length, cpu: cpus()[0]?.model ?? '?' },
  };
}

/**
 * Time the process's threads spent runnable but waiting for a core (ms, summed over threads): the
 * second field of /proc/PID/task/TID/schedstat. On a shared machine this is what lowers "server
 * CPU" below 100 % while the server has work.
 */
function runQueueWaitMs(pid: number): number {
  let sum = 0;
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        sum += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[1]) / 1e6;
      } catch {
        /* thread gone */
      }
    }
  } catch {
    return Number.NaN;
  }
  return sum;
}

/** VmRSS of a process, KiB. */
function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : Number.NaN;
}

/** Runs `fn` `n` times with `concurrency` calls in flight. */
async function inFlight(n: number, concurrency: number, fn: () => Promise<void>): Promise<void> {
  let started = 0;
  const worker = async (): Promise<void> => {
    while (started < n) {
      started++;
      await fn();
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

/** Replaces a file by rename, as the CLI does (the gateway's watcher must never see half a file). */
function writeAtomic(file: string, text: string): void {
  writeFileSync(`${file}.tmp`, text);
  renameSync(`${file}.tmp`, file);
}

// ---------------------------------------------------------------------------------------------
// Paced traffic (reload stall, latency)

interface Paced {
  /** performance.now() at which message k (1-based) was written. */
  sentAt: number[];
  /** (time, messages completed) per chunk the sink received during the run. */
  arrivals: number[];
}

/**
 * Writes `rate` messages/s on `socket` in 1 ms ticks (each tick writes what is due) until
 * `stop(elapsedMs)` says so; resolves once the sink counted them all (from `from`), with the send
 * times and the sink's arrival record.
 */
async function pace(socket: Socket, from: string, toDomain: string, rate: number, stop: (elapsedMs: number) => boolean, sink: ReplySink): Promise<Paced> {
  const sentAt: number[] = [0];
  const base = sink.counts(from).message;
  sink.arrivals = [];
  const t0 = performance.now();
  let sent = 0;
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const now = performance.now();
      const due = Math.floor(((now - t0) * rate) / 1000) + 1;
      if (due > sent) {
        const parts: string[] = [];
        for (let i = sent + 1; i <= due; i++) {
          parts.push(chatMessage(toDomain, i));
          sentAt.push(now);
        }
        socket.write(parts.join(''));
        sent = due;
      }
      if (stop(now - t0)) resolve();
      else setTimeout(tick, 1);
    };
    tick();
  });
  await sink.waitFor(from, (c) => c.message >= base + sent, IDLE_MS, 600_000);
  const arrivals = sink.arrivals;
  sink.arrivals = null;
  return { sentAt, arrivals };
}

/** Per-message latency (ms), sorted: arrival of the chunk that completed message k − its write. */
function latencies(p: Paced): number[] {
  const out: number[] = [];
  let k = 1;
  let sum = 0;
  for (let i = 0; i + 1 < p.arrivals.length; i += 2) {
    const t = p.arrivals[i]!;
    sum += p.arrivals[i + 1]!;
    for (; k <= sum && k < p.sentAt.length; k++) out.push(t - p.sentAt[k]!);
  }
  return out.sort((a, b) => a - b);
}

/** The longest gap (ms) between chunks that carried messages, for chunks within [from, to]. */
function maxGap(p: Paced, from: number, to: number): number {
  let last = Number.NaN;
  let gap = 0;
  for (let i = 0; i + 1 < p.arrivals.length; i += 2) {
    const t = p.arrivals[i]!;
    if (t >= from && t <= to && !Number.isNaN(last)) gap = Math.max(gap, t - last);
    last = t;
  }
  return gap;
}
