/**
 * The gateway's internal DNS view: a tiny authoritative DNS server that the organisation's own XMPP server
 * (Prosody or ejabberd) uses as its resolver, so that all its s2s traffic for partner domains reaches the
 * gateway's internal s2s listener.
 *
 * For every name D that `isPartnerDomain` accepts (asked per query, so partner-list changes apply at once):
 *   SRV  _xmpp-server._tcp.D   → 0 0 <listener port> <listener IP literal>.
 *   A    D                     → the listener's IPv4 (AAAA D: the IPv6 if the listener is IPv6)
 *   any other type at those two names, and every type at _xmpps-server._tcp.D and _tcp.D → NOERROR, no data
 * Every other name → NXDOMAIN. Nothing is ever recursed or forwarded (RA stays 0).
 *
 * Why these answers:
 * - The SRV target is an IP literal with a trailing dot ('127.0.0.10.'). COMPAT(ejabberd): it resolves SRV
 *   targets through getaddrinfo, i.e. the OS resolver, which cannot reach a DNS view on a non-53 port; an IP
 *   literal needs no lookup. Prosody accepts it too. Not valid per RFC 2782 (the target must be a host name).
 * - `_xmpps-server._tcp.D` (XEP-0368 direct TLS) is answered NOERROR/no data rather than NXDOMAIN: both make
 *   Prosody and ejabberd fall back to `_xmpp-server` at once, and "no data" is also the truthful answer for a
 *   name inside a zone this view serves. `_tcp.D` is an empty non-terminal (it has a child with records) and
 *   so must not be NXDOMAIN (RFC 8020: a resolver may take NXDOMAIN to mean nothing exists below).
 * - Negative answers carry an SOA (RFC 2308 section 3): without it unbound (Prosody's libunbound) treats an
 *   empty NOERROR as a throwaway and retries. Its TTL and MINIMUM equal the record TTL, so a removed partner
 *   stops resolving, and a new one starts, within `ttlSeconds` (default 5) also in resolver caches.
 * - The root name is NOERROR/no data, since every partner domain lies below it.
 *
 * Robustness: the sockets are our own (node:dgram and node:net) and each message is checked by the bounded
 * parser below before anything else looks at it. dns2's servers are not used because they hand every
 * datagram and TCP frame to `Packet.parse`, which loops over the header's 16-bit record counts and catches an
 * exception per missing record: a 12-byte datagram with all counts at 0xffff blocks the event loop (of the
 * whole gateway) for over a second. dns2's `Packet` is used only to encode our answers. A query is answered
 * only if it is a standard query (QR=0, OPCODE=0) with exactly one question, no answer or authority records
 * and at most one additional record (EDNS OPT); otherwise it gets FORMERR/NOTIMP, or nothing when not even
 * the 12-byte header is there or the message is itself a response (answering responses invites loops).
 *
 * References:
 *   RFC 1035 (message format, sections 4.1.1-4.1.4; UDP size limit 4.2.1; TCP length prefix 4.2.2)
 *   RFC 2782 (SRV RR: priority, weight, port, target)
 *   RFC 7766 (DNS over TCP: same port as UDP, pipelining, idle timeouts section 6.2.3)
 *   RFC 2308 (negative caching: SOA in NXDOMAIN and NODATA answers)
 *   RFC 8020 (NXDOMAIN means nothing exists below: empty non-terminals answer NODATA)
 *   RFC 6891 (EDNS: echo OPT, BADVERS for unknown versions)
 *   RFC 6120 section 3.2 and XEP-0368 (the `_xmpp-server._tcp` and `_xmpps-server._tcp` names)
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { Packet, type Question, type Resource } from 'dns2';
import type { Logger } from '../log.js';

export interface DnsViewOptions {
  /** Bind address, e.g. '127.0.0.10'. */
  host: string;
  /** 0 = ephemeral (tests); UDP and TCP then share the port picked for UDP. */
  port: number;
  /** The internal s2s listener the answers point at. `host` is an IP literal. */
  target: { host: string; port: number };
  /** Called per query with a lowercased name without trailing dot. */
  isPartnerDomain: (domain: string) => boolean;
  log: Logger;
  /** TTL of every answer and of negative answers. Default 5. */
  ttlSeconds?: number;
}

const TYPE = { A: 1, SOA: 6, AAAA: 28, SRV: 33, OPT: 41, ANY: 255 } as const;
const CLASS = { IN: 1, ANY: 255 } as const;
const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5, BADVERS: 16 } as const;

const HEADER_BYTES = 12;
/** RFC 1035 section 4.2.1: the UDP limit without EDNS. Our answers stay well below it. */
const UDP_PLAIN_LIMIT = 512;
/** The EDNS UDP payload size we advertise: the DNS Flag Day 2020 value, safe without fragmentation. */
const EDNS_PAYLOAD = 1232;
/** RFC 7766 section 6.2.3 suggests seconds; idle and half-sent (e.g. a huge length prefix) both count. */
const TCP_IDLE_MS = 10_000;
/** Only the local XMPP server talks to this view; a bound keeps a misbehaving client from piling sockets. */
const TCP_MAX_CONNECTIONS = 64;
/** Malformed-message warnings: at most one per interval, with the count of the ones held back. */
const WARN_INTERVAL_MS = 10_000;
/** SOA names of negative answers; `.invalid` (RFC 6761) because no such server can be reached. */
const SOA_MNAME = 'dns-view.invalid';
const SOA_RNAME = 'hostmaster.dns-view.invalid';

const SRV_PREFIX = '_xmpp-server._tcp.';
const SRVS_PREFIX = '_xmpps-server._tcp.';
const TCP_PREFIX = '_tcp.';

type Transport = 'udp' | 'tcp';

/** A query that passed the checks below; `labels` keep the client's case (it may use 0x20 randomisation). */
interface Query {
  id: number;
  rd: number;
  labels: string[];
  type: number;
  class: number;
  /** Present when the query carried an OPT record. */
  edns?: { version: number; payload: number };
}

type Parsed =
  | { kind: 'query'; query: Query }
  | { kind: 'error'; id: number; opcode: number; rd: number; rcode: number; reason: string }
  | { kind: 'drop'; reason: string };

/**
 * Check and decode one DNS message without trusting any count or length in it: every read is bounded by the
 * buffer, and at most one name (255 octets, RFC 1035 section 2.3.4) is walked.
 */
function parseQuery(buf: Buffer): Parsed {
  if (buf.length < HEADER_BYTES) return { kind: 'drop', reason: 'shorter than a header' };
  const id = buf.readUInt16BE(0);
  const flags = buf.readUInt16BE(2);
  if (flags & 0x8000) return { kind: 'drop', reason: 'a response, not a query' };
  const opcode = (flags >> 11) & 0xf;
  const rd = (flags >> 8) & 1;
  const error = (rcode: number, reason: string): Parsed => ({ kind: 'error', id, opcode, rd, rcode, reason });
  if (opcode !== 0) return error(RCODE.NOTIMP, `opcode ${opcode}`);
  const [qd, an, ns, ar] = [4, 6, 8, 10].map((o) => buf.readUInt16BE(o)) as [number, number, number, number];
  if (qd !== 1) return error(RCODE.FORMERR, `${qd} questions`);
  if (an !== 0 || ns !== 0 || ar > 1) return error(RCODE.FORMERR, 'records in a query');

  const labels: string[] = [];
  let offset = HEADER_BYTES;
  let octets = 1; // the root label
  for (;;) {
    if (offset >= buf.length) return error(RCODE.FORMERR, 'truncated name');
    const len = buf[offset]!;
    offset += 1;
    if (len === 0) break;
    // A compression pointer in the first name of a message could only point into the header.
    if (len & 0xc0) return error(RCODE.FORMERR, 'compressed or reserved label type in question');
    octets += len + 1;
    if (octets > 255 || offset + len > buf.length) return error(RCODE.FORMERR, 'bad name length');
    const label = buf.toString('latin1', offset, offset + len);
    // A '.' inside a label cannot be told apart from a label boundary once joined, nor echoed by dns2's
    // encoder; no partner domain has one.
    if (label.includes('.')) return error(RCODE.REFUSED, 'dot inside a label');
    labels.push(label);
    offset += len;
  }
  if (offset + 4 > buf.length) return error(RCODE.FORMERR, 'truncated question');
  const query: Query = { id, rd, labels, type: buf.readUInt16BE(offset), class: buf.readUInt16BE(offset + 2) };
  offset += 4;
  // RFC 6891 section 6.1.2: OPT is owned by the root name (one 0 octet). Only its fixed part matters here
  // (payload size in CLASS, version in TTL); options such as cookies are ignored. Another kind of
  // additional record is ignored too.
  if (ar === 1 && buf[offset] === 0 && offset + 11 <= buf.length && buf.readUInt16BE(offset + 1) === TYPE.OPT) {
    query.edns = { payload: buf.readUInt16BE(offset + 3), version: buf[offset + 6]! };
  }
  return { kind: 'query', query };
}

/** A 12-byte answer with no sections, for queries that cannot be echoed (RFC 1035 section 4.1.1). */
function headerOnly(p: Extract<Parsed, { kind: 'error' }>): Buffer {
  const out = Buffer.alloc(HEADER_BYTES);
  out.writeUInt16BE(p.id, 0);
  out.writeUInt16BE(0x8000 | (p.opcode << 11) | (p.rd << 8) | (p.rcode & 0xf), 2);
  return out;
}

/** ASCII-only lowercasing: DNS names compare case-insensitively in ASCII only (RFC 4343). */
function canonical(labels: readonly string[]): string {
  return labels.join('.').replace(/[A-Z]+/g, (s) => s.toLowerCase());
}

/** Which node of a partner domain's zone `name` is, or undefined when it is none (→ NXDOMAIN). */
function classify(
  name: string,
  isPartner: (d: string) => boolean,
): { domain: string; node: 'apex' | 'srv' | 'srvs' | 'tcp' } | undefined {
  if (name === '') return undefined;
  // The name itself first: a partner domain is its own apex whatever its first label looks like.
  if (isPartner(name)) return { domain: name, node: 'apex' };
  for (const [prefix, node] of [
    [SRV_PREFIX, 'srv'],
    [SRVS_PREFIX, 'srvs'],
    [TCP_PREFIX, 'tcp'],
  ] as const) {
    if (name.startsWith(prefix) && name.length > prefix.length) {
      const domain = name.slice(prefix.length);
      if (isPartner(domain)) return { domain, node };
    }
  }
  return undefined;
}

function checkTarget(target: { host: string; port: number }): { host: string; port: number } {
  const family = net.isIP(target.host);
  // An IPv6 literal with an embedded IPv4 part would be split into labels at its dots.
  if (family === 0 || (family === 6 && target.host.includes('.'))) {
    throw new TypeError(`DNS view target must be an IPv4 or plain IPv6 literal: ${target.host}`);
  }
  // Port 0 is allowed while the listener's port is not known yet (SRV queries then get SERVFAIL).
  if (!Number.isInteger(target.port) || target.port < 0 || target.port > 65535) {
    throw new TypeError(`DNS view target port out of range: ${target.port}`);
  }
  return { host: target.host, port: target.port };
}

export class DnsView {
  readonly host: string;
  readonly port: number;
  private target: { host: string; port: number };
  private readonly ttl: number;
  private readonly isPartnerDomain: (domain: string) => boolean;
  private readonly log: Logger;
  private readonly udp: dgram.Socket;
  private readonly tcp: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private closing: Promise<void> | undefined;
  private warnedAt = 0;
  private warnHeld = 0;

  /** Resolves once UDP and TCP both listen on the same port; on failure rejects with both closed. */
  static async start(opts: DnsViewOptions): Promise<DnsView> {
    const target = checkTarget(opts.target);
    const ttl = opts.ttlSeconds ?? 5;
    if (!Number.isInteger(ttl) || ttl < 0 || ttl > 0x7fffffff) throw new TypeError(`bad ttlSeconds: ${ttl}`);
    const family = net.isIP(opts.host);
    if (family === 0) throw new TypeError(`DNS view host must be an IP literal: ${opts.host}`);
    // With port 0, UDP picks the number and TCP takes the same one (RFC 7766: clients retry a query over
    // TCP to the same address and port); if TCP finds it taken, pick again.
    for (let attempt = 1; ; attempt++) {
      const udp = dgram.createSocket({ type: family === 6 ? 'udp6' : 'udp4' });
      const tcp = net.createServer({ allowHalfOpen: true, noDelay: true });
      // Installed first because an 'error' event without a listener throws and would take the process
      // down. Until the view exists, errors reach the caller through the rejected start() instead.
      let view: DnsView | undefined;
      udp.on('error', (err) => view?.socketError('udp', err));
      tcp.on('error', (err) => view?.socketError('tcp', err));
      try {
        await listenOn(udp, opts.host, opts.port);
        const port = udp.address().port;
        await listenOn(tcp, opts.host, port);
        view = new DnsView(opts, target, ttl, udp, tcp, port);
        opts.log.info('dns-view.listening', { host: opts.host, port, target: `${target.host}:${target.port}` });
        return view;
      } catch (err) {
        await Promise.all([closeQuietly(udp), closeQuietly(tcp)]);
        const code = (err as NodeJS.ErrnoException).code;
        if (opts.port === 0 && code === 'EADDRINUSE' && attempt < 20) continue;
        throw err;
      }
    }
  }

  private constructor(
    opts: DnsViewOptions,
    target: { host: string; port: number },
    ttl: number,
    udp: dgram.Socket,
    tcp: net.Server,
    port: number,
  ) {
    this.host = opts.host;
    this.port = port;
    this.target = target;
    this.ttl = ttl;
    this.isPartnerDomain = opts.isPartnerDomain;
    this.log = opts.log;
    this.udp = udp;
    this.tcp = tcp;
    udp.on('message', (msg, rinfo) => this.onDatagram(msg, rinfo));
    tcp.maxConnections = TCP_MAX_CONNECTIONS;
    tcp.on('connection', (socket) => this.onConnection(socket));
  }

  /** Point the answers elsewhere, e.g. once the listener bound to port 0 knows its port. */
  setTarget(target: { host: string; port: number }): void {
    this.target = checkTarget(target);
  }

  /** Stops both listeners and drops open TCP connections (idle ones would otherwise hold close() for 10 s). */
  close(): Promise<void> {
    this.closing ??= Promise.all([
      closeQuietly(this.udp),
      new Promise<void>((resolve) => {
        this.tcp.close(() => resolve());
        for (const socket of this.sockets) socket.destroy();
      }),
    ]).then(() => undefined);
    return this.closing;
  }

  private socketError(transport: Transport, err: Error): void {
    this.log.warn('dns-view.error', { transport, error: err.message });
  }

  private onDatagram(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const out = this.respond(msg, 'udp');
    if (!out || this.closing) return;
    this.udp.send(out, rinfo.port, rinfo.address, (err) => {
      if (err) this.log.warn('dns-view.error', { transport: 'udp', error: err.message });
    });
  }

  /**
   * RFC 1035 section 4.2.2 / RFC 7766: each message is preceded by a two-octet length; several may follow
   * on one connection (pipelining) and are answered in order. A message that cannot be answered at all
   * means the framing cannot be trusted any more, so the connection is closed.
   */
  private onConnection(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    // Resets by clients are routine and not worth a warning.
    socket.on('error', (err) => this.log.debug('dns-view.tcp-error', { error: err.message }));
    socket.setTimeout(TCP_IDLE_MS, () => socket.destroy());
    let pending: Buffer = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      // At most one message (≤ 65535 octets) plus a chunk is ever held.
      while (pending.length >= 2) {
        const length = pending.readUInt16BE(0);
        if (pending.length < 2 + length) return;
        const message = pending.subarray(2, 2 + length);
        pending = pending.subarray(2 + length);
        const out = this.respond(message, 'tcp');
        if (!out) {
          socket.destroy();
          return;
        }
        const prefix = Buffer.alloc(2);
        prefix.writeUInt16BE(out.length, 0);
        // A client that pipelines without reading would otherwise grow our write buffer without bound.
        if (!socket.write(Buffer.concat([prefix, out]))) {
          socket.pause();
          socket.once('drain', () => socket.resume());
        }
      }
    });
    // The client half-closed: every answer is already written (answers are synchronous), so finish ours.
    socket.on('end', () => socket.end());
  }

  /** The wire answer to one message, or undefined to send nothing. Never throws. */
  private respond(msg: Buffer, transport: Transport): Buffer | undefined {
    try {
      const parsed = parseQuery(msg);
      if (parsed.kind === 'drop') {
        this.warnMalformed(transport, parsed.reason, msg.length);
        return undefined;
      }
      if (parsed.kind === 'error') {
        this.warnMalformed(transport, parsed.reason, msg.length);
        return headerOnly(parsed);
      }
      return this.answer(parsed.query, transport);
    } catch (err) {
      // Not expected (the parser bounds every read); answered with nothing rather than crashing.
      this.log.warn('dns-view.error', { transport, error: err instanceof Error ? err.message : String(err) });
      return undefined;
    }
  }

  private answer(q: Query, transport: Transport): Buffer {
    const response = new Packet();
    response.header = new Packet.Header({ id: q.id, qr: 1, opcode: 0, aa: 1, rd: q.rd ? 1 : 0, ra: 0 });
    // Echo the question as asked (case included): resolvers match answers against it. Plain objects, since
    // dns2's constructors turn a type or class of 0 into ANY.
    const owner = q.labels.join('.');
    response.questions.push({ name: owner, type: q.type, class: q.class } as Question);
    if (q.edns) {
      const opt = Packet.Resource.EDNS([]);
      opt.class = EDNS_PAYLOAD; // an OPT record's CLASS is the sender's UDP payload size
      response.additionals.push(opt);
      // RFC 6891 section 6.1.3: only version 0 exists; anything else gets BADVERS and no answer.
      if (q.edns.version !== 0) return this.finish(response, RCODE.BADVERS, q, transport);
    }
    if (q.class !== CLASS.IN && q.class !== CLASS.ANY) return this.finish(response, RCODE.REFUSED, q, transport);

    const name = canonical(q.labels);
    let node: ReturnType<typeof classify>;
    try {
      node = classify(name, this.isPartnerDomain);
    } catch (err) {
      this.log.warn('dns-view.error', { name, error: err instanceof Error ? err.message : String(err) });
      return this.finish(response, RCODE.SERVFAIL, q, transport);
    }
    const want = (type: number): boolean => q.type === type || q.type === TYPE.ANY;
    const base = { name: owner, class: CLASS.IN, ttl: this.ttl };
    const target = this.target;
    if (node?.node === 'apex') {
      const family = net.isIP(target.host) === 6 ? TYPE.AAAA : TYPE.A;
      if (want(family)) response.answers.push({ ...base, type: family, address: target.host } as Resource);
    } else if (node?.node === 'srv' && want(TYPE.SRV)) {
      // Port 0 would send the XMPP server nowhere and be cached; SERVFAIL makes it try again shortly.
      if (target.port === 0) return this.finish(response, RCODE.SERVFAIL, q, transport);
      response.answers.push({
        ...base,
        type: TYPE.SRV,
        priority: 0,
        weight: 0,
        port: target.port,
        target: `${target.host}.`,
      } as Resource);
    }
    if (response.answers.length === 0) {
      // RFC 2308 section 3: the SOA of the zone the name would be in, its TTL bounding negative caching.
      // For partner names that is the partner domain; for others the last label (inside the bailiwick of a
      // forward zone for '.' and of a stub zone for the TLD alike); for the root, the root.
      const labels = name.split('.');
      const apex = node ? node.domain : labels[labels.length - 1]!;
      response.authorities.push({
        name: apex,
        type: TYPE.SOA,
        class: CLASS.IN,
        ttl: this.ttl,
        primary: SOA_MNAME,
        admin: SOA_RNAME,
        serial: 1,
        refresh: 3600,
        retry: 600,
        expiration: 86400,
        minimum: this.ttl,
      } as Resource);
      if (!node && name !== '') {
        this.log.debug('dns-view.refused', { name, type: q.type, transport });
        return this.finish(response, RCODE.NXDOMAIN, q, transport);
      }
    }
    return this.finish(response, RCODE.NOERROR, q, transport);
  }

  private finish(response: Packet, rcode: number, q: Query, transport: Transport): Buffer {
    response.header.rcode = rcode;
    const out = response.toBuffer();
    const limit = q.edns ? Math.max(UDP_PLAIN_LIMIT, Math.min(q.edns.payload, EDNS_PAYLOAD)) : UDP_PLAIN_LIMIT;
    if (transport === 'udp' && out.length > limit) {
      // Not reachable with the records above (a 255-octet name still fits); kept so a future larger answer
      // is truncated per RFC 1035 section 4.2.1 (TC, retry over TCP) rather than sent oversized.
      response.answers = [];
      response.authorities = [];
      response.header.tc = 1;
      return response.toBuffer();
    }
    return out;
  }

  private warnMalformed(transport: Transport, reason: string, bytes: number): void {
    const now = Date.now();
    if (now - this.warnedAt < WARN_INTERVAL_MS) {
      this.warnHeld++;
      return;
    }
    this.log.warn('dns-view.malformed', { transport, reason, bytes, heldBack: this.warnHeld });
    this.warnedAt = now;
    this.warnHeld = 0;
  }
}

function listenOn(server: dgram.Socket | net.Server, host: string, port: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    const done = (): void => {
      server.off('error', onError);
      resolve();
    };
    if (server instanceof net.Server) server.listen({ host, port }, done);
    else server.bind({ address: host, port, exclusive: true }, done);
  });
}

function closeQuietly(server: dgram.Socket | net.Server): Promise<void> {
  return new Promise<void>((resolve) => {
    try {
      if (server instanceof net.Server) {
        if (!server.listening) return resolve();
        server.close(() => resolve());
      } else {
        server.close(() => resolve());
      }
    } catch {
      resolve(); // a dgram socket that never bound, or is already closed, throws ERR_SOCKET_DGRAM_NOT_RUNNING
    }
  });
}
