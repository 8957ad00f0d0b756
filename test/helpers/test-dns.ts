/**
 * A tiny authoritative DNS server on 127.0.0.1 (UDP and TCP, same port) for tests, built on dns2's server.
 *
 * Used by the resolver unit tests, by gateway integration tests, and by interop tests where real Prosody
 * (libunbound) and ejabberd (inet_res) query it, so answers are well formed: the question is echoed, AA is
 * set, NXDOMAIN and NODATA carry an SOA in the authority section (RFC 2308 section 3: without it, unbound
 * treats an empty NOERROR as a throwaway and retries), an OPT record is echoed to EDNS queries (RFC 6891
 * section 7), and nothing is ever recursed or forwarded (RA stays 0).
 *
 * References: RFC 1035 (format, RCODE), RFC 2308 (negative answers), RFC 8020 (an empty non-terminal exists:
 * NODATA, never NXDOMAIN), RFC 2782 (SRV), RFC 6891 (EDNS), RFC 7766 (TCP).
 */
import type { AddressInfo, Socket } from 'node:net';
import { createTCPServer, createUDPServer, Packet, type DnsHandler, type Resource } from 'dns2';

export interface TestSrvRecord {
  /** Host name or (COMPAT(ejabberd)) an IP literal such as '127.0.0.12.'; '.' means "no service". */
  target: string;
  port: number;
  priority?: number;
  weight?: number;
}

export interface TestZone {
  /** Owner name (e.g. '_xmpp-server._tcp.a.test') → records. An empty list makes the name exist with no SRV. */
  srv?: Record<string, TestSrvRecord[]>;
  a?: Record<string, string[]>;
  aaaa?: Record<string, string[]>;
  /** Names answered with SERVFAIL (any type). */
  servfail?: string[];
  /** Names never answered at all, to provoke client timeouts. */
  drop?: string[];
  /** TTL of every record and of negative answers (SOA minimum), in seconds. Default 1. */
  ttl?: number;
  /**
   * Owner of the SOA put in negative answers. Default: the last label of the question (e.g. 'test'), which is
   * inside the bailiwick of both a forward zone for '.' and a stub zone for the TLD.
   */
  apex?: string;
}

export interface TestDns {
  /** '127.0.0.1:PORT', the form `Resolver({ servers })` and the gateway's config take. */
  readonly address: string;
  readonly port: number;
  /** Every name asked, lowercased without the trailing dot, in arrival order. */
  readonly queries: string[];
  /** The same with the query type ('SRV', 'A', 'AAAA', or the number for other types). */
  readonly questions: { name: string; type: string }[];
  setZone(zone: TestZone): void;
  close(): Promise<void>;
}

const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
const T = Packet.TYPE;

interface NormalZone {
  srv: Map<string, TestSrvRecord[]>;
  a: Map<string, string[]>;
  aaaa: Map<string, string[]>;
  servfail: Set<string>;
  drop: Set<string>;
  ttl: number;
  apex: string | undefined;
}

function canonical(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

function normalize(zone: TestZone): NormalZone {
  const map = <V>(rec: Record<string, V> | undefined): Map<string, V> =>
    new Map(Object.entries(rec ?? {}).map(([k, v]) => [canonical(k), v]));
  return {
    srv: map(zone.srv),
    a: map(zone.a),
    aaaa: map(zone.aaaa),
    servfail: new Set((zone.servfail ?? []).map(canonical)),
    drop: new Set((zone.drop ?? []).map(canonical)),
    ttl: zone.ttl ?? 1,
    apex: zone.apex === undefined ? undefined : canonical(zone.apex),
  };
}

function typeName(code: number): string {
  const entry = Object.entries(T).find(([, v]) => v === code);
  return entry ? entry[0] : String(code);
}

/** RFC 8020: a name exists if it owns records or is an ancestor of a name that does (empty non-terminal). */
function nameExists(zone: NormalZone, name: string): boolean {
  for (const m of [zone.srv, zone.a, zone.aaaa]) {
    for (const owner of m.keys()) {
      if (owner === name || owner.endsWith(`.${name}`)) return true;
    }
  }
  return false;
}

function answer(zone: NormalZone, request: Packet): Packet {
  const response = Packet.createResponseFromRequest(request);
  const question = request.questions[0];
  // Only standard queries with one question are meaningful (RFC 1035 section 4.1.1, 4.1.2).
  if (request.header.opcode !== 0) {
    response.header.rcode = RCODE.NOTIMP;
    return response;
  }
  if (request.questions.length !== 1 || !question) {
    response.header.rcode = RCODE.FORMERR;
    return response;
  }
  if (question.class !== Packet.CLASS.IN && question.class !== Packet.CLASS.ANY) {
    response.header.rcode = RCODE.REFUSED;
    return response;
  }
  const name = canonical(question.name);
  if (zone.servfail.has(name)) {
    response.header.rcode = RCODE.SERVFAIL;
    return response;
  }
  response.header.aa = 1;
  // Answers are owned by the name exactly as asked, preserving any 0x20 case randomisation of the client.
  const owner = question.name;
  const base = { name: owner, class: Packet.CLASS.IN, ttl: zone.ttl };
  const want = (code: number): boolean => question.type === code || question.type === T.ANY;
  if (want(T.SRV)) {
    for (const r of zone.srv.get(name) ?? []) {
      response.answers.push(
        new Packet.Resource({
          ...base,
          type: T.SRV,
          priority: r.priority ?? 0,
          weight: r.weight ?? 0,
          port: r.port,
          target: r.target,
        }),
      );
    }
  }
  if (want(T.A)) {
    for (const address of zone.a.get(name) ?? []) {
      response.answers.push(new Packet.Resource({ ...base, type: T.A, address }));
    }
  }
  if (want(T.AAAA)) {
    for (const address of zone.aaaa.get(name) ?? []) {
      response.answers.push(new Packet.Resource({ ...base, type: T.AAAA, address }));
    }
  }
  if (response.answers.length === 0) {
    // NXDOMAIN when nothing exists at or below the name, else NODATA (NOERROR, empty answer); both with
    // the SOA whose TTL/MINIMUM bound negative caching (RFC 2308 sections 3 and 5).
    if (!nameExists(zone, name)) response.header.rcode = RCODE.NXDOMAIN;
    const labels = name.split('.');
    const apex = zone.apex ?? (name === '' ? '' : labels[labels.length - 1]!);
    response.authorities.push(
      new Packet.Resource({
        name: apex,
        type: T.SOA,
        class: Packet.CLASS.IN,
        ttl: zone.ttl,
        primary: `ns.${apex || 'test'}`,
        admin: `hostmaster.${apex || 'test'}`,
        serial: 1,
        refresh: 3600,
        retry: 600,
        expiration: 86400,
        minimum: zone.ttl,
      }),
    );
  }
  // RFC 6891 section 7: a responder that understands EDNS includes an OPT record when the query had one.
  if (request.additionals.some((rr: Resource) => rr.type === T.EDNS)) {
    response.additionals.push(Packet.Resource.EDNS([]));
  }
  return response;
}

function servfailFor(request: Packet): Packet {
  const response = Packet.createResponseFromRequest(request);
  response.header.rcode = RCODE.SERVFAIL;
  return response;
}

export async function startTestDns(initial: TestZone = {}): Promise<TestDns> {
  let zone = normalize(initial);
  const queries: string[] = [];
  const questions: { name: string; type: string }[] = [];

  const handle: DnsHandler = (request, send) => {
    const question = request.questions[0];
    if (question) {
      const name = canonical(question.name);
      queries.push(name);
      questions.push({ name, type: typeName(question.type) });
      if (zone.drop.has(name)) return;
    }
    let response: Packet;
    try {
      response = answer(zone, request);
      response.toBuffer(); // surface encoding errors (a bad zone entry) here rather than inside send()
    } catch {
      response = servfailFor(request);
    }
    // The socket may be closing at test teardown; a failed send must not become an unhandled rejection.
    try {
      void Promise.resolve(send(response)).catch(() => undefined);
    } catch {
      /* TCP client already gone */
    }
  };

  // UDP first on an ephemeral port, then TCP on the same number (RFC 7766: clients retry a truncated
  // answer over TCP to the same address and port). If TCP's port is taken, start over.
  for (let attempt = 0; ; attempt++) {
    const udp = createUDPServer(handle);
    udp.on('error', () => undefined);
    udp.on('requestError', () => undefined);
    await udp.listen(0, '127.0.0.1');
    const port = (udp.address() as AddressInfo).port;

    const tcp = createTCPServer(handle);
    tcp.on('requestError', () => undefined);
    const sockets = new Set<Socket>();
    tcp.on('connection', (socket: Socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    try {
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen(port, '127.0.0.1', () => {
          tcp.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      await new Promise<void>((resolve) => udp.close(() => resolve()));
      if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE' && attempt < 20) continue;
      throw err;
    }
    tcp.on('error', () => undefined);

    let closing: Promise<void> | null = null;
    return {
      address: `127.0.0.1:${port}`,
      port,
      queries,
      questions,
      setZone(next: TestZone) {
        zone = normalize(next);
      },
      close() {
        closing ??= Promise.all([
          new Promise<void>((resolve) => udp.close(() => resolve())),
          new Promise<void>((resolve) => {
            tcp.close(() => resolve());
            // dns2 keeps TCP connections open for pipelining (10 s idle); do not wait for them.
            for (const socket of sockets) socket.destroy();
          }),
        ]).then(() => undefined);
        return closing;
      },
    };
  }
}
