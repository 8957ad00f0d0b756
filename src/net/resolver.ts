/**
 * Where to connect for an outbound s2s stream: proxy, static route, SRV, or the A/AAAA fallback.
 *
 * References:
 *   RFC 6120 section 3.2 (resolution of fully qualified domain names; fallback to the domain on 5269)
 *   RFC 2782 (SRV: ordering, and Target "." meaning "service decidedly not available")
 *   XEP-0368 (SRV records for XMPP over TLS: `_xmpps-server._tcp`, merged with `_xmpp-server._tcp`)
 *   XEP-0220 (Server Dialback: the dialback authority is found by the same SRV lookup)
 *   RFC 1035 section 4.1.1 (RCODE), RFC 2308 (NXDOMAIN vs NODATA, negative caching TTL)
 *   RFC 7766 (DNS over TCP after a truncated UDP answer)
 *   RFC 8305 (Happy Eyeballs v2: IPv6 first, then interleave families)
 *
 * With `servers` set, queries go through dns2's UDP client, one server at a time, each under its own
 * timeout. dns2's own `resolve()` is not used: it races every server with `Promise.race`, so the first
 * *rejection* (a dead server) wins over a good answer arriving later from another.
 */
import { randomInt } from 'node:crypto';
import { promises as nodeDns } from 'node:dns';
import net from 'node:net';
import { domainToASCII } from 'node:url';
import { Packet, UDPClient, type Resource } from 'dns2';
import { LRUCache } from 'lru-cache';
import { ConfigError, GatewayError } from '../errors.js';
import { orderSrv, srvTarget, type SrvRecord } from './srv-order.js';

/** RFC 6120 section 3.2.2: the IANA-registered port for server-to-server, used when SRV is absent. */
export const XMPP_SERVER_PORT = 5269;
const DNS_PORT = 53;

export type TargetSource = 'proxy' | 'route' | 'srv' | 'fallback';

/** One connection attempt, in the order to try. */
export interface Target {
  /** An IP literal, except for proxy/route entries configured by name (the connector resolves those). */
  readonly host: string;
  readonly port: number;
  /** XEP-0368: TLS from the first byte (an `_xmpps-server` record); otherwise plaintext then STARTTLS. */
  readonly directTls: boolean;
  readonly source: TargetSource;
}

export interface ResolverOptions {
  /** DNS servers as 'ip:port', 'ip' (port 53) or '[v6]:port'. Absent: the system resolver (node:dns). */
  servers?: string[];
  /** Static next hop per partner domain: 'host:port', 'host' (port 5269) or '[v6]:port'. */
  routes?: Record<string, string>;
  /** Per query and per server. Default 3000. */
  timeoutMs?: number;
  /** Also look up `_xmpps-server._tcp` (XEP-0368). Default true. */
  directTlsSrv?: boolean;
  /** Upper bound on how long an answer is cached, whatever its TTL. Default 60 000; 0 disables caching. */
  maxCacheTtlMs?: number;
  /** Random source in [0, 1) for RFC 2782 weighted selection; injectable for tests. */
  random?: () => number;
}

/** Parse 'host:port', 'host', '[v6]:port', '[v6]' or a bare IPv6 literal. Throws ConfigError. */
export function parseHostPort(spec: string, defaultPort: number, field?: string): { host: string; port: number } {
  const s = spec.trim();
  let host: string;
  let portText: string | undefined;
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  if (bracketed) {
    host = bracketed[1]!;
    portText = bracketed[2];
    if (net.isIP(host) !== 6) throw new ConfigError(`not an IPv6 literal: ${spec}`, undefined, undefined, field);
  } else if (s.indexOf(':') !== s.lastIndexOf(':')) {
    // Several colons and no brackets: a bare IPv6 literal, which cannot carry a port.
    host = s;
    if (net.isIP(host) !== 6) throw new ConfigError(`bad host:port: ${spec}`, undefined, undefined, field);
  } else {
    const colon = s.indexOf(':');
    host = colon < 0 ? s : s.slice(0, colon);
    portText = colon < 0 ? undefined : s.slice(colon + 1);
  }
  if (host === '') throw new ConfigError(`missing host: ${spec}`, undefined, undefined, field);
  let port = defaultPort;
  if (portText !== undefined) {
    port = /^\d{1,5}$/.test(portText) ? Number(portText) : NaN;
    if (!(port >= 1 && port <= 65535)) throw new ConfigError(`bad port: ${spec}`, undefined, undefined, field);
  }
  if (net.isIP(host) === 0) {
    const ascii = toAsciiName(host);
    if (ascii === null) throw new ConfigError(`bad host name: ${spec}`, undefined, undefined, field);
    host = ascii;
  }
  return { host, port };
}

type RrType = 'SRV' | 'A' | 'AAAA';

export interface SrvAnswer extends SrvRecord {
  readonly target: string;
}

/** A definitive answer. Temporary failures (SERVFAIL, timeout, REFUSED, ...) are thrown instead. */
export type Lookup<R> =
  | { readonly kind: 'records'; readonly records: readonly R[] }
  | { readonly kind: 'nxdomain' }
  | { readonly kind: 'nodata' };

type AnyLookup = Lookup<SrvAnswer> | Lookup<string>;

interface Server {
  readonly host: string;
  readonly port: number;
}

interface CandidateRecord extends SrvAnswer {
  readonly directTls: boolean;
}

// RFC 1035 section 4.1.1 RCODE values. dns2 exposes these at runtime as `Packet.RCODE`, but its type
// declarations omit that table, so they are spelled out here.
const RCODE_NOERROR = 0;
const RCODE_NXDOMAIN = 3;
const RCODE_NAMES: Record<number, string> = { 1: 'FORMERR', 2: 'SERVFAIL', 4: 'NOTIMP', 5: 'REFUSED' };

const TEMPORARY = 'GW_ERR_DNS_TEMPORARY';
const NOT_FOUND = 'GW_ERR_DNS_NOT_FOUND';

export class Resolver {
  private readonly servers: readonly Server[];
  private readonly routes = new Map<string, { host: string; port: number }>();
  private readonly timeoutMs: number;
  private readonly directTlsSrv: boolean;
  private readonly maxCacheTtlMs: number;
  private readonly random: () => number;
  private readonly cache: LRUCache<string, { lookup: AnyLookup }> | null;
  private system: nodeDns.Resolver | null = null;

  constructor(opts: ResolverOptions = {}) {
    this.timeoutMs = opts.timeoutMs ?? 3000;
    if (!(this.timeoutMs > 0 && Number.isFinite(this.timeoutMs))) {
      throw new ConfigError(`timeoutMs must be a positive number`, undefined, undefined, 'timeoutMs');
    }
    this.servers = (opts.servers ?? []).map((spec) => {
      const server = parseHostPort(spec, DNS_PORT, 'servers');
      // An IP literal is required: finding the DNS server must not itself need DNS, and dns2's UDP client
      // only checks the source address of answers (anti-spoofing) when given an IP.
      if (net.isIP(server.host) === 0) {
        throw new ConfigError(`DNS server must be an IP literal: ${spec}`, undefined, undefined, 'servers');
      }
      return server;
    });
    for (const [domain, spec] of Object.entries(opts.routes ?? {})) {
      const key = normalizeDomain(domain);
      this.routes.set(key, parseHostPort(spec, XMPP_SERVER_PORT, `routes.${domain}`));
    }
    this.directTlsSrv = opts.directTlsSrv ?? true;
    this.maxCacheTtlMs = Math.max(0, opts.maxCacheTtlMs ?? 60_000);
    this.random = opts.random ?? Math.random;
    this.cache =
      this.maxCacheTtlMs > 0 ? new LRUCache({ max: 1000, ttl: this.maxCacheTtlMs }) : null;
  }

  /**
   * The ordered list of places to try for `domain`. Precedence: `proxyFqdn` (partner config), then a
   * static route, then DNS. An empty list means the domain says it offers no s2s service (SRV ".").
   * Throws GatewayError `GW_ERR_DNS_TEMPORARY` (SERVFAIL, timeout: retry later) or `GW_ERR_DNS_NOT_FOUND`
   * (the domain or its targets do not exist: bounce remote-server-not-found).
   */
  async resolveS2s(domain: string, proxyFqdn?: string): Promise<Target[]> {
    // docs/protocol.md section 7 step 1: a configured proxy replaces DNS entirely (SNI, certificate identity
    // and the stream `to` stay the partner domain; that is the connector's job).
    if (proxyFqdn !== undefined && proxyFqdn.trim() !== '') {
      const { host, port } = parseHostPort(proxyFqdn, XMPP_SERVER_PORT, 'proxy');
      return [{ host, port, directTls: false, source: 'proxy' }];
    }
    const name = normalizeDomain(domain);
    const route = this.routes.get(name);
    if (route) return [{ host: route.host, port: route.port, directTls: false, source: 'route' }];

    // RFC 6120 section 3.2: a domainpart may be an IP literal; there is nothing to look up.
    if (net.isIP(name) !== 0) return [{ host: name, port: XMPP_SERVER_PORT, directTls: false, source: 'fallback' }];

    const none: Lookup<SrvAnswer> = { kind: 'nxdomain' };
    const [plain, direct] = await Promise.all([
      this.lookup(`_xmpp-server._tcp.${name}`, 'SRV'),
      // XEP-0368 records are an optional extra: a failure there must not block the STARTTLS records.
      this.directTlsSrv
        ? this.lookup(`_xmpps-server._tcp.${name}`, 'SRV').catch((): Lookup<SrvAnswer> => none)
        : Promise.resolve(none),
    ]);

    const candidates: CandidateRecord[] = [];
    let plainUnavailable = false;
    if (plain.kind === 'records') {
      if (isNoService(plain.records)) plainUnavailable = true;
      else candidates.push(...plain.records.map((r) => ({ ...r, directTls: false })));
    }
    // XEP-0368: a "." for `_xmpps-server` only means no direct TLS; the `_xmpp-server` set still applies.
    if (direct.kind === 'records' && !isNoService(direct.records)) {
      candidates.push(...direct.records.map((r) => ({ ...r, directTls: true })));
    }

    if (candidates.length === 0) {
      // RFC 2782: Target "." = service decidedly not available; falling back to A/AAAA would ignore that.
      if (plainUnavailable) return [];
      // RFC 6120 section 3.2.2 (and docs/protocol.md section 7 step 5): NXDOMAIN or NODATA for the SRV name ⇒
      // the domain itself on 5269 with STARTTLS. Prosody does the same; there is no fallback for xmpps.
      const addresses = await this.addressesOf(name);
      return addresses.map((host) => ({ host, port: XMPP_SERVER_PORT, directTls: false, source: 'fallback' }));
    }

    // XEP-0368: both sets are merged and ordered as one RRset by priority and weight.
    const ordered = orderSrv(candidates, this.random).records;
    const settled = await Promise.allSettled(ordered.map((r) => this.addressesOf(srvTarget(r))));
    const targets: Target[] = [];
    const seen = new Set<string>();
    const failures: unknown[] = [];
    settled.forEach((result, i) => {
      const record = ordered[i]!;
      if (result.status === 'rejected') {
        failures.push(result.reason);
        return;
      }
      for (const host of result.value) {
        const key = `${host}|${record.port}|${record.directTls}`;
        if (seen.has(key)) continue;
        seen.add(key);
        targets.push({ host, port: record.port, directTls: record.directTls, source: 'srv' });
      }
    });
    if (targets.length > 0) return targets; // an unresolvable target is skipped, as Prosody does
    // Every target failed to resolve. Prosody does not fall back to A/AAAA here either.
    if (failures.some((e) => e instanceof GatewayError && e.code === TEMPORARY)) {
      throw new GatewayError(TEMPORARY, `no SRV target of ${name} could be resolved (temporary failure)`, {
        cause: new AggregateError(failures),
      });
    }
    throw new GatewayError(NOT_FOUND, `no SRV target of ${name} has an address`, {
      cause: new AggregateError(failures),
    });
  }

  /** `<service>._tcp.<domain>` SRV as the configured servers answer it (`xmpp-gateway check` and `probe` show the records). */
  lookupSrv(service: '_xmpp-server' | '_xmpps-server', domain: string): Promise<Lookup<SrvAnswer>> {
    return this.lookup(`${service}._tcp.${normalizeDomain(domain)}`, 'SRV');
  }

  /** One A or AAAA question as the configured servers answer it. */
  lookupAddresses(name: string, type: 'A' | 'AAAA'): Promise<Lookup<string>> {
    return this.lookup(normalizeDomain(name), type);
  }

  /** Drop every cached answer (e.g. on config reload). */
  clearCache(): void {
    this.cache?.clear();
  }

  /**
   * AAAA and A for `host`, IPv6 first then interleaved (RFC 8305 section 4), so a connector trying them in
   * order alternates families. An IP literal is returned as is.
   */
  private async addressesOf(host: string): Promise<string[]> {
    const bare = host.endsWith('.') ? host.slice(0, -1) : host;
    // COMPAT(ejabberd): its test suites answer SRV with IP-literal targets such as `127.0.0.12.`. Not valid
    // per RFC 2782 (the target must be a host name with A/AAAA), but harmless to honour, and a lookup of
    // "127.0.0.12" as a name would only fail.
    if (net.isIP(bare) !== 0) return [bare];
    const [v6, v4] = await Promise.allSettled([
      this.lookup(bare, 'AAAA'),
      this.lookup(bare, 'A'),
    ]);
    const six = v6.status === 'fulfilled' && v6.value.kind === 'records' ? v6.value.records : [];
    const four = v4.status === 'fulfilled' && v4.value.kind === 'records' ? v4.value.records : [];
    const out: string[] = [];
    for (let i = 0; i < Math.max(six.length, four.length); i++) {
      if (i < six.length) out.push(six[i]!);
      if (i < four.length) out.push(four[i]!);
    }
    if (out.length > 0) return out; // one family answering is enough
    const rejected = [v6, v4].filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (rejected.length > 0) {
      const first: unknown = rejected[0]!.reason;
      throw first instanceof GatewayError
        ? first
        : new GatewayError(TEMPORARY, `address lookup for ${bare} failed`, { cause: first });
    }
    const nx = [v6, v4].every((r) => r.status === 'fulfilled' && r.value.kind === 'nxdomain');
    throw new GatewayError(NOT_FOUND, nx ? `${bare}: no such domain (NXDOMAIN)` : `${bare}: no A/AAAA records`);
  }

  private lookup(name: string, type: 'SRV'): Promise<Lookup<SrvAnswer>>;
  private lookup(name: string, type: 'A' | 'AAAA'): Promise<Lookup<string>>;
  private async lookup(name: string, type: RrType): Promise<AnyLookup> {
    const key = `${type} ${name}`;
    const hit = this.cache?.get(key);
    if (hit) return hit.lookup;
    const { lookup, ttlMs } =
      this.servers.length > 0 ? await this.queryServers(name, type) : await this.querySystem(name, type);
    // RFC 1035 section 3.2.1: a TTL of 0 means "do not cache". Capped so a long TTL cannot pin a stale
    // target after a partner moves.
    if (this.cache && ttlMs > 0) this.cache.set(key, { lookup }, { ttl: Math.min(ttlMs, this.maxCacheTtlMs) });
    return lookup;
  }

  /** One server at a time, each under its own timeout; the next server only on failure (not on NXDOMAIN). */
  private async queryServers(name: string, type: RrType): Promise<{ lookup: AnyLookup; ttlMs: number }> {
    const failures: Error[] = [];
    for (const server of this.servers) {
      let response: Packet;
      try {
        response = await this.queryOne(server, name, type);
      } catch (err) {
        failures.push(err instanceof Error ? err : new Error(String(err)));
        continue;
      }
      const rcode = response.header.rcode;
      // RFC 2308 section 2.1: NXDOMAIN is an authoritative "the name does not exist"; asking another
      // server would not change that, so it is final.
      if (rcode === RCODE_NXDOMAIN) return { lookup: { kind: 'nxdomain' }, ttlMs: negativeTtlMs(response) };
      if (rcode !== RCODE_NOERROR) {
        // SERVFAIL, REFUSED, FORMERR, NOTIMP: this server could not answer; another may.
        failures.push(
          new Error(`${server.host}:${server.port} answered ${RCODE_NAMES[rcode] ?? `rcode ${rcode}`}`),
        );
        continue;
      }
      const answers = matchingAnswers(response, name, Packet.TYPE[type]);
      // RFC 2308 section 2.2: NOERROR with no matching answer is NODATA (the name exists, not this type).
      if (answers.length === 0) return { lookup: { kind: 'nodata' }, ttlMs: negativeTtlMs(response) };
      const ttlMs = Math.min(...answers.map((rr) => rr.ttl)) * 1000;
      if (type === 'SRV') {
        const records: SrvAnswer[] = answers.map((rr) => ({
          target: rr.target ?? '',
          port: rr.port ?? 0,
          priority: rr.priority ?? 0,
          weight: rr.weight ?? 0,
        }));
        return { lookup: { kind: 'records', records }, ttlMs };
      }
      const records = answers.map((rr) => rr.address ?? '').filter((a) => net.isIP(a) !== 0);
      if (records.length === 0) return { lookup: { kind: 'nodata' }, ttlMs: 0 };
      return { lookup: { kind: 'records', records }, ttlMs };
    }
    throw new GatewayError(
      TEMPORARY,
      `${type} ${name}: no DNS server answered (${failures.map((e) => e.message).join('; ')})`,
      { cause: new AggregateError(failures) },
    );
  }

  private async queryOne(server: Server, name: string, type: RrType): Promise<Packet> {
    const udp = UDPClient({
      dns: server.host,
      port: server.port,
      timeout: this.timeoutMs,
      socketType: net.isIP(server.host) === 6 ? 'udp6' : 'udp4',
      // dns2's own TCP retry has no timeout and leaves its socket open; ours below has both.
      retryOverTCP: false,
    });
    const response = await udp(name, type, Packet.CLASS.IN);
    // RFC 1035 section 4.2.1 / RFC 7766: a truncated UDP answer must be retried over TCP.
    if (response.header.tc) return tcpQuery(server, name, type, this.timeoutMs);
    return response;
  }

  /** node:dns (c-ares, the system's configured servers) when no `servers` are given. */
  private async querySystem(name: string, type: RrType): Promise<{ lookup: AnyLookup; ttlMs: number }> {
    this.system ??= new nodeDns.Resolver({ timeout: this.timeoutMs, tries: 1 });
    try {
      if (type === 'SRV') {
        const answers = await this.system.resolveSrv(name);
        const records: SrvAnswer[] = answers.map((r) => ({
          target: r.name,
          port: r.port,
          priority: r.priority,
          weight: r.weight,
        }));
        // c-ares does not report SRV TTLs, so SRV answers from the system resolver are not cached.
        return { lookup: { kind: 'records', records }, ttlMs: 0 };
      }
      const answers =
        type === 'A'
          ? await this.system.resolve4(name, { ttl: true })
          : await this.system.resolve6(name, { ttl: true });
      const ttlMs = answers.length > 0 ? Math.min(...answers.map((a) => a.ttl)) * 1000 : 0;
      return { lookup: { kind: 'records', records: answers.map((a) => a.address) }, ttlMs };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // docs/protocol.md section 7 step 6: ENOTFOUND is NXDOMAIN and ENODATA is NODATA (both definitive);
      // ESERVFAIL, ETIMEOUT, ECONNREFUSED, EREFUSED ... are temporary.
      if (code === nodeDns.NOTFOUND) return { lookup: { kind: 'nxdomain' }, ttlMs: 0 };
      if (code === nodeDns.NODATA) return { lookup: { kind: 'nodata' }, ttlMs: 0 };
      throw new GatewayError(TEMPORARY, `${type} ${name}: ${code ?? String(err)}`, { cause: err });
    }
  }
}

/** RFC 2782: one record whose target is the root "." */
function isNoService(records: readonly SrvRecord[]): boolean {
  return records.length === 1 && srvTarget(records[0]!) === '';
}

/** domainToASCII plus the checks it skips (empty labels, RFC 1035 length limits); null if invalid. */
function toAsciiName(name: string): string | null {
  const trimmed = name.endsWith('.') ? name.slice(0, -1) : name;
  const ascii = domainToASCII(trimmed);
  if (ascii === '' || ascii.length > 253) return null;
  if (ascii.split('.').some((label) => label.length === 0 || label.length > 63)) return null;
  return ascii;
}

/**
 * docs/protocol.md section 7 step 6: convert with `url.domainToASCII()` before any DNS use (IDNA, lowercase).
 * An IP-literal domainpart (RFC 6120 section 3.2, `[v6]` or v4) is returned bare.
 */
function normalizeDomain(domain: string): string {
  const d = domain.trim();
  const bare = d.startsWith('[') && d.endsWith(']') ? d.slice(1, -1) : d;
  if (net.isIP(bare) !== 0) return bare;
  const ascii = toAsciiName(d);
  if (ascii === null) throw new GatewayError(NOT_FOUND, `not a valid domain name: ${JSON.stringify(domain)}`);
  return ascii;
}

function canonical(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

/** Answers of `typeCode` owned by `qname` or by a name it is a CNAME alias of (a recursive server's chain). */
function matchingAnswers(response: Packet, qname: string, typeCode: number): Resource[] {
  const answers = response.answers ?? [];
  const owners = new Set([canonical(qname)]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const rr of answers) {
      if (rr.type !== Packet.TYPE.CNAME || !owners.has(canonical(rr.name)) || !rr.domain) continue;
      const alias = canonical(rr.domain);
      if (!owners.has(alias)) {
        owners.add(alias);
        grew = true;
      }
    }
  }
  return answers.filter((rr) => rr.type === typeCode && owners.has(canonical(rr.name)));
}

/** RFC 2308 section 5: a negative answer is cached for min(SOA TTL, SOA MINIMUM); no SOA, no caching. */
function negativeTtlMs(response: Packet): number {
  const soa = (response.authorities ?? []).find((rr) => rr.type === Packet.TYPE.SOA);
  if (!soa) return 0;
  return Math.min(soa.ttl, soa.minimum ?? 0) * 1000;
}

/** One DNS query over TCP (RFC 1035 section 4.2.2 two-octet length prefix), with a timeout. */
function tcpQuery(server: Server, name: string, type: RrType, timeoutMs: number): Promise<Packet> {
  const query = new Packet();
  query.header.id = randomInt(0x10000); // RFC 5452: unpredictable ids
  query.header.rd = 1;
  query.questions.push(new Packet.Question(name, Packet.TYPE[type], Packet.CLASS.IN));
  const message = query.toBuffer();
  const framed = Buffer.alloc(2 + message.length);
  framed.writeUInt16BE(message.length, 0);
  message.copy(framed, 2);

  return new Promise<Packet>((resolve, reject) => {
    const socket = net.connect({ host: server.host, port: server.port });
    let received = Buffer.alloc(0);
    let done = false;
    const finish = (err: Error | null, packet?: Packet): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(packet!);
    };
    const timer = setTimeout(() => {
      const err: NodeJS.ErrnoException = new Error(`DNS query over TCP timed out after ${timeoutMs}ms`);
      err.code = 'ETIMEDOUT';
      finish(err);
    }, timeoutMs);
    socket.on('connect', () => socket.write(framed));
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (received.length < 2) return;
      const length = received.readUInt16BE(0);
      if (received.length < 2 + length) return;
      let packet: Packet;
      try {
        packet = Packet.parse(received.subarray(2, 2 + length));
      } catch (err) {
        finish(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      if (packet.header.id !== query.header.id) finish(new Error('DNS answer over TCP with a mismatched id'));
      else finish(null, packet);
    });
    socket.on('error', (err) => finish(err));
    socket.on('close', () => finish(new Error('DNS TCP connection closed before an answer')));
  });
}
