import dgram from 'node:dgram';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Packet, UDPClient } from 'dns2';
import { GatewayError } from '../../src/errors.js';
import { Resolver, parseHostPort, type Target } from '../../src/net/resolver.js';
import { startTestDns, type TestDns } from '../helpers/test-dns.js';

// Every query in this file goes to a dns2 server (or a silent socket) on 127.0.0.1.

const srvName = (domain: string): string => `_xmpp-server._tcp.${domain}`;
const srvsName = (domain: string): string => `_xmpps-server._tcp.${domain}`;

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(GatewayError);
    return (err as GatewayError).code;
  }
  throw new Error('expected a rejection');
}

/** A UDP socket that reads queries and never answers: a dead DNS server. */
async function blackhole(): Promise<{ address: string; received: () => number; close: () => Promise<void> }> {
  const socket = dgram.createSocket('udp4');
  let count = 0;
  socket.on('message', () => count++);
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return {
    address: `127.0.0.1:${socket.address().port}`,
    received: () => count,
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}

const hosts = (targets: Target[]): string[] => targets.map((t) => `${t.host}:${t.port}`);

describe('Resolver against a local dns2 server', () => {
  let dns: TestDns;
  beforeEach(async () => {
    dns = await startTestDns();
  });
  afterEach(async () => {
    await dns.close();
  });

  const resolver = (extra: Partial<ConstructorParameters<typeof Resolver>[0]> = {}): Resolver =>
    new Resolver({ servers: [dns.address], timeoutMs: 1000, ...extra });

  it('orders SRV targets by priority and resolves each to its addresses', async () => {
    dns.setZone({
      srv: {
        [srvName('a.test')]: [
          { target: 'backup.a.test', port: 5270, priority: 20 },
          { target: 'primary.a.test', port: 5269, priority: 10 },
        ],
      },
      a: { 'primary.a.test': ['127.0.0.2'], 'backup.a.test': ['127.0.0.3'] },
    });
    const targets = await resolver().resolveS2s('a.test');
    expect(targets).toEqual([
      { host: '127.0.0.2', port: 5269, directTls: false, source: 'srv' },
      { host: '127.0.0.3', port: 5270, directTls: false, source: 'srv' },
    ]);
    expect(dns.queries).toContain(srvName('a.test'));
    expect(dns.queries).toContain('primary.a.test');
    // No A/AAAA fallback on the domain itself when SRV answered.
    expect(dns.queries).not.toContain('a.test');
  });

  it('applies RFC 2782 weighted selection within a priority, using the injected random', async () => {
    dns.setZone({
      srv: {
        [srvName('w.test')]: [
          { target: 'light.w.test', port: 1001, priority: 10, weight: 1 },
          { target: 'heavy.w.test', port: 1002, priority: 10, weight: 3 },
        ],
      },
      a: { 'light.w.test': ['127.0.0.4'], 'heavy.w.test': ['127.0.0.5'] },
    });
    const low = await resolver({ random: () => 0 }).resolveS2s('w.test');
    expect(hosts(low)).toEqual(['127.0.0.4:1001', '127.0.0.5:1002']);
    const high = await resolver({ random: () => 0.9 }).resolveS2s('w.test');
    expect(hosts(high)).toEqual(['127.0.0.5:1002', '127.0.0.4:1001']);
  });

  it('uses IP-literal SRV targets as they are (COMPAT ejabberd test suites)', async () => {
    dns.setZone({ srv: { [srvName('ip.test')]: [{ target: '127.0.0.12.', port: 5299 }] } });
    const targets = await resolver().resolveS2s('ip.test');
    expect(targets).toEqual([{ host: '127.0.0.12', port: 5299, directTls: false, source: 'srv' }]);
    expect(dns.queries.filter((q) => q.startsWith('127.'))).toEqual([]);
  });

  it('returns AAAA and A addresses of a target, IPv6 first then interleaved', async () => {
    dns.setZone({
      srv: { [srvName('dual.test')]: [{ target: 'xmpp.dual.test', port: 5269 }] },
      a: { 'xmpp.dual.test': ['127.0.0.6', '127.0.0.7'] },
      aaaa: { 'xmpp.dual.test': ['::1'] },
    });
    const targets = await resolver().resolveS2s('dual.test');
    expect(targets.map((t) => t.host)).toEqual(['::1', '127.0.0.6', '127.0.0.7']);
  });

  it('falls back to the domain A/AAAA on 5269 when the SRV name is NXDOMAIN', async () => {
    dns.setZone({ a: { 'plain.test': ['127.0.0.8'] }, aaaa: { 'plain.test': ['::1'] } });
    const targets = await resolver().resolveS2s('plain.test');
    expect(targets).toEqual([
      { host: '::1', port: 5269, directTls: false, source: 'fallback' },
      { host: '127.0.0.8', port: 5269, directTls: false, source: 'fallback' },
    ]);
    expect(dns.queries).toContain(srvName('plain.test'));
  });

  it('falls back to the domain A when the SRV name exists without SRV records (NODATA)', async () => {
    dns.setZone({ srv: { [srvName('nodata.test')]: [] }, a: { 'nodata.test': ['127.0.0.9'] } });
    const targets = await resolver().resolveS2s('nodata.test');
    expect(targets).toEqual([{ host: '127.0.0.9', port: 5269, directTls: false, source: 'fallback' }]);
  });

  it('returns no targets and does not fall back for a single "." SRV target', async () => {
    dns.setZone({
      srv: { [srvName('nope.test')]: [{ target: '.', port: 0 }] },
      a: { 'nope.test': ['127.0.0.10'] },
    });
    await expect(resolver().resolveS2s('nope.test')).resolves.toEqual([]);
    expect(dns.queries).not.toContain('nope.test');
  });

  it('throws GW_ERR_DNS_TEMPORARY on SERVFAIL for the SRV name, without falling back', async () => {
    dns.setZone({ servfail: [srvName('sf.test')], a: { 'sf.test': ['127.0.0.11'] } });
    expect(await codeOf(resolver().resolveS2s('sf.test'))).toBe('GW_ERR_DNS_TEMPORARY');
    expect(dns.queries).not.toContain('sf.test');
  });

  it('throws GW_ERR_DNS_NOT_FOUND when the domain does not exist at all', async () => {
    dns.setZone({ a: { 'other.test': ['127.0.0.1'] } });
    expect(await codeOf(resolver().resolveS2s('missing.test'))).toBe('GW_ERR_DNS_NOT_FOUND');
    // It did try SRV, then A/AAAA of the domain.
    expect(dns.queries).toEqual(expect.arrayContaining([srvName('missing.test'), 'missing.test']));
  });

  it('throws GW_ERR_DNS_NOT_FOUND when the domain exists but has no address', async () => {
    dns.setZone({ a: { 'sub.bare.test': ['127.0.0.1'] } }); // bare.test is an empty non-terminal
    expect(await codeOf(resolver().resolveS2s('bare.test'))).toBe('GW_ERR_DNS_NOT_FOUND');
  });

  it('skips an SRV target without addresses and keeps the others', async () => {
    dns.setZone({
      srv: {
        [srvName('skip.test')]: [
          { target: 'gone.skip.test', port: 5269, priority: 1 },
          { target: 'ok.skip.test', port: 5270, priority: 2 },
        ],
      },
      a: { 'ok.skip.test': ['127.0.0.13'] },
    });
    expect(hosts(await resolver().resolveS2s('skip.test'))).toEqual(['127.0.0.13:5270']);
  });

  it('reports NOT_FOUND when no SRV target resolves, and TEMPORARY when one failed temporarily', async () => {
    dns.setZone({ srv: { [srvName('dead.test')]: [{ target: 'gone.dead.test', port: 5269 }] } });
    expect(await codeOf(resolver().resolveS2s('dead.test'))).toBe('GW_ERR_DNS_NOT_FOUND');
    // SRV targets exist but fail: no fallback to the domain's own address (as Prosody).
    expect(dns.queries).not.toContain('dead.test');

    dns.setZone({
      srv: { [srvName('flaky.test')]: [{ target: 'x.flaky.test', port: 5269 }] },
      servfail: ['x.flaky.test'],
      a: { 'flaky.test': ['127.0.0.1'] },
    });
    expect(await codeOf(resolver().resolveS2s('flaky.test'))).toBe('GW_ERR_DNS_TEMPORARY');
  });

  it('merges _xmpps-server records (XEP-0368) as direct TLS, ordered with the others', async () => {
    dns.setZone({
      srv: {
        [srvName('tls.test')]: [{ target: 'starttls.tls.test', port: 5269, priority: 20 }],
        [srvsName('tls.test')]: [{ target: 'direct.tls.test', port: 5270, priority: 10 }],
      },
      a: { 'starttls.tls.test': ['127.0.0.14'], 'direct.tls.test': ['127.0.0.15'] },
    });
    expect(await resolver().resolveS2s('tls.test')).toEqual([
      { host: '127.0.0.15', port: 5270, directTls: true, source: 'srv' },
      { host: '127.0.0.14', port: 5269, directTls: false, source: 'srv' },
    ]);
    // And can be switched off.
    expect(await resolver({ directTlsSrv: false }).resolveS2s('tls.test')).toEqual([
      { host: '127.0.0.14', port: 5269, directTls: false, source: 'srv' },
    ]);
  });

  it('treats "." for _xmpps-server as "no direct TLS" only, and "." for _xmpp-server as "xmpps only"', async () => {
    dns.setZone({
      srv: {
        [srvName('m1.test')]: [{ target: 'xmpp.m1.test', port: 5269 }],
        [srvsName('m1.test')]: [{ target: '.', port: 0 }],
        [srvName('m2.test')]: [{ target: '.', port: 0 }],
        [srvsName('m2.test')]: [{ target: 'xmpp.m2.test', port: 5223 }],
      },
      a: { 'xmpp.m1.test': ['127.0.0.16'], 'xmpp.m2.test': ['127.0.0.17'] },
    });
    expect(await resolver().resolveS2s('m1.test')).toEqual([
      { host: '127.0.0.16', port: 5269, directTls: false, source: 'srv' },
    ]);
    expect(await resolver().resolveS2s('m2.test')).toEqual([
      { host: '127.0.0.17', port: 5223, directTls: true, source: 'srv' },
    ]);
  });

  it('ignores a failing _xmpps-server lookup', async () => {
    dns.setZone({
      srv: { [srvName('x.test')]: [{ target: 'xmpp.x.test', port: 5269 }] },
      servfail: [srvsName('x.test')],
      a: { 'xmpp.x.test': ['127.0.0.18'] },
    });
    expect(hosts(await resolver().resolveS2s('x.test'))).toEqual(['127.0.0.18:5269']);
  });

  it('converts the domain with domainToASCII before querying', async () => {
    dns.setZone({ srv: { [srvName('xn--bcher-kva.test')]: [{ target: '127.0.0.19', port: 5269 }] } });
    expect(hosts(await resolver().resolveS2s('Bücher.TEST'))).toEqual(['127.0.0.19:5269']);
    expect(dns.queries[0]).toBe(srvName('xn--bcher-kva.test'));
  });

  it('retries a truncated UDP answer over TCP', async () => {
    const many = Array.from({ length: 40 }, (_, i) => ({
      target: `127.0.1.${i + 1}`,
      port: 6000 + i,
      priority: i,
    }));
    dns.setZone({ srv: { [srvName('big.test')]: many } });
    const targets = await resolver().resolveS2s('big.test');
    expect(targets).toHaveLength(40);
    expect(targets[0]).toEqual({ host: '127.0.1.1', port: 6000, directTls: false, source: 'srv' });
    expect(targets[39]?.port).toBe(6039);
    // Asked twice: once over UDP (truncated), once over TCP.
    expect(dns.queries.filter((q) => q === srvName('big.test'))).toHaveLength(2);
  });

  it('caches answers within their TTL and can be told not to', async () => {
    dns.setZone({
      ttl: 30,
      srv: { [srvName('c.test')]: [{ target: 'xmpp.c.test', port: 5269 }] },
      a: { 'xmpp.c.test': ['127.0.0.20'] },
    });
    const cached = resolver();
    await cached.resolveS2s('c.test');
    const after = dns.queries.length;
    expect(hosts(await cached.resolveS2s('c.test'))).toEqual(['127.0.0.20:5269']);
    expect(dns.queries.length).toBe(after);

    const uncached = resolver({ maxCacheTtlMs: 0 });
    await uncached.resolveS2s('c.test');
    const first = dns.queries.length;
    await uncached.resolveS2s('c.test');
    expect(dns.queries.length).toBe(first + (first - after));
  });

  it('does not cache answers with TTL 0', async () => {
    dns.setZone({ ttl: 0, srv: { [srvName('z.test')]: [{ target: '127.0.0.21', port: 5269 }] } });
    const r = resolver();
    await r.resolveS2s('z.test');
    const once = dns.queries.length;
    await r.resolveS2s('z.test');
    expect(dns.queries.length).toBe(once * 2);
  });

  it('prefers a proxy over a route and DNS, and a route over DNS', async () => {
    dns.setZone({ srv: { [srvName('p.test')]: [{ target: '127.0.0.22', port: 5269 }] } });
    const r = resolver({ routes: { 'p.test': '127.0.0.23:5300', 'P2.test': '[::1]:5301', 'p3.test': '127.0.0.24' } });
    expect(await r.resolveS2s('p.test', 'proxy.example:5400')).toEqual([
      { host: 'proxy.example', port: 5400, directTls: false, source: 'proxy' },
    ]);
    expect(await r.resolveS2s('p.test', '127.0.0.25')).toEqual([
      { host: '127.0.0.25', port: 5269, directTls: false, source: 'proxy' },
    ]);
    expect(await r.resolveS2s('p.test')).toEqual([
      { host: '127.0.0.23', port: 5300, directTls: false, source: 'route' },
    ]);
    expect(await r.resolveS2s('p2.test')).toEqual([{ host: '::1', port: 5301, directTls: false, source: 'route' }]);
    expect(await r.resolveS2s('p3.test')).toEqual([
      { host: '127.0.0.24', port: 5269, directTls: false, source: 'route' },
    ]);
    expect(dns.queries).toEqual([]);
    // A domain without a route still goes to DNS.
    expect(await codeOf(r.resolveS2s('other.p.test'))).toBe('GW_ERR_DNS_NOT_FOUND');
    expect(dns.queries).toContain(srvName('other.p.test'));
  });

  it('connects straight to an IP-literal domain without DNS', async () => {
    expect(await resolver().resolveS2s('[::1]')).toEqual([
      { host: '::1', port: 5269, directTls: false, source: 'fallback' },
    ]);
    expect(await resolver().resolveS2s('127.0.0.26')).toEqual([
      { host: '127.0.0.26', port: 5269, directTls: false, source: 'fallback' },
    ]);
    expect(dns.queries).toEqual([]);
  });

  it('rejects an invalid domain name as not found, without querying', async () => {
    expect(await codeOf(resolver().resolveS2s('a..b'))).toBe('GW_ERR_DNS_NOT_FOUND');
    expect(await codeOf(resolver().resolveS2s(''))).toBe('GW_ERR_DNS_NOT_FOUND');
    expect(dns.queries).toEqual([]);
  });
});

describe('Resolver with several servers', () => {
  const cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    await Promise.all(cleanup.splice(0).map((f) => f()));
  });

  it('times out on a dead server, then asks the next one', async () => {
    const dead = await blackhole();
    const dns = await startTestDns({ srv: { [srvName('t.test')]: [{ target: '127.0.0.30', port: 5269 }] } });
    cleanup.push(dead.close, dns.close);
    const r = new Resolver({ servers: [dead.address, dns.address], timeoutMs: 150, directTlsSrv: false });
    const started = Date.now();
    expect(hosts(await r.resolveS2s('t.test'))).toEqual(['127.0.0.30:5269']);
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
    expect(dead.received()).toBeGreaterThanOrEqual(1);
    expect(dns.queries).toEqual([srvName('t.test')]);
  });

  it('throws GW_ERR_DNS_TEMPORARY when every server times out', async () => {
    const a = await blackhole();
    const b = await blackhole();
    cleanup.push(a.close, b.close);
    const r = new Resolver({ servers: [a.address, b.address], timeoutMs: 100 });
    expect(await codeOf(r.resolveS2s('t.test'))).toBe('GW_ERR_DNS_TEMPORARY');
    expect(a.received()).toBeGreaterThanOrEqual(1);
    expect(b.received()).toBeGreaterThanOrEqual(1);
  });

  it('asks the next server after a SERVFAIL', async () => {
    const failing = await startTestDns({ servfail: [srvName('s.test')] });
    const good = await startTestDns({ srv: { [srvName('s.test')]: [{ target: '127.0.0.31', port: 5269 }] } });
    cleanup.push(failing.close, good.close);
    const r = new Resolver({ servers: [failing.address, good.address], directTlsSrv: false });
    expect(hosts(await r.resolveS2s('s.test'))).toEqual(['127.0.0.31:5269']);
    expect(failing.queries).toEqual([srvName('s.test')]);
  });

  it('takes NXDOMAIN from the first server as final', async () => {
    const first = await startTestDns({});
    const second = await startTestDns({ srv: { [srvName('n.test')]: [{ target: '127.0.0.32', port: 5269 }] } });
    cleanup.push(first.close, second.close);
    const r = new Resolver({ servers: [first.address, second.address] });
    expect(await codeOf(r.resolveS2s('n.test'))).toBe('GW_ERR_DNS_NOT_FOUND');
    expect(second.queries).toEqual([]);
  });

  it('refuses a DNS server given by name', () => {
    expect(() => new Resolver({ servers: ['dns.example:53'] })).toThrow(
      expect.objectContaining({ code: 'GW_ERR_CONFIG' }),
    );
  });
});

describe('parseHostPort', () => {
  it('parses host:port, host, [v6]:port, [v6] and bare v6', () => {
    expect(parseHostPort('example.org:5270', 5269)).toEqual({ host: 'example.org', port: 5270 });
    expect(parseHostPort('Example.ORG', 5269)).toEqual({ host: 'example.org', port: 5269 });
    expect(parseHostPort('[::1]:5300', 5269)).toEqual({ host: '::1', port: 5300 });
    expect(parseHostPort('[2001:db8::1]', 53)).toEqual({ host: '2001:db8::1', port: 53 });
    expect(parseHostPort('2001:db8::1', 53)).toEqual({ host: '2001:db8::1', port: 53 });
    expect(parseHostPort('127.0.0.1:53', 5269)).toEqual({ host: '127.0.0.1', port: 53 });
  });

  it('rejects bad ports and hosts with GW_ERR_CONFIG', () => {
    for (const bad of ['host:0', 'host:65536', 'host:x', ':5269', '[nope]:1', 'a:b:c', 'host:']) {
      expect(() => parseHostPort(bad, 5269), bad).toThrow(expect.objectContaining({ code: 'GW_ERR_CONFIG' }));
    }
  });
});

describe('startTestDns answers', () => {
  let dns: TestDns;
  beforeEach(async () => {
    dns = await startTestDns({
      srv: { '_xmpp-server._tcp.a.test': [{ target: 'xmpp.a.test', port: 5269, priority: 5, weight: 7 }] },
      a: { 'xmpp.a.test': ['127.0.0.40'] },
      servfail: ['broken.test'],
    });
  });
  afterEach(async () => {
    await dns.close();
  });

  const ask = (name: string, type: string): Promise<Packet> =>
    UDPClient({ dns: '127.0.0.1', port: dns.port, timeout: 1000 })(name, type);

  it('answers authoritatively, echoing the question (case preserved) and the SRV fields', async () => {
    const res = await ask('_XMPP-server._tcp.A.test', 'SRV');
    expect(res.header.qr).toBe(1);
    expect(res.header.aa).toBe(1);
    expect(res.header.ra).toBe(0);
    expect(res.header.rcode).toBe(0);
    expect(res.questions).toEqual([
      expect.objectContaining({ name: '_XMPP-server._tcp.A.test', type: Packet.TYPE.SRV }),
    ]);
    expect(res.answers).toEqual([
      expect.objectContaining({
        name: '_XMPP-server._tcp.A.test',
        type: Packet.TYPE.SRV,
        priority: 5,
        weight: 7,
        port: 5269,
      }),
    ]);
    // dns2 compresses the target against the question's suffix, so its case may follow the question's
    // (legal: names compare case-insensitively, RFC 1035 section 2.3.3).
    expect(res.answers[0]?.target?.toLowerCase()).toBe('xmpp.a.test');
    expect(dns.questions).toEqual([{ name: '_xmpp-server._tcp.a.test', type: 'SRV' }]);
  });

  it('distinguishes NXDOMAIN, NODATA and empty non-terminals, with an SOA in the authority section', async () => {
    const nx = await ask('nothing.test', 'A');
    expect(nx.header.rcode).toBe(3);
    expect(nx.header.aa).toBe(1);
    expect(nx.answers).toEqual([]);
    expect(nx.authorities).toEqual([expect.objectContaining({ type: Packet.TYPE.SOA, name: 'test' })]);

    const nodata = await ask('xmpp.a.test', 'AAAA');
    expect(nodata.header.rcode).toBe(0);
    expect(nodata.answers).toEqual([]);
    expect(nodata.authorities).toEqual([expect.objectContaining({ type: Packet.TYPE.SOA })]);

    // _tcp.a.test owns nothing but has a name below it: it exists (RFC 8020), so NODATA.
    const ent = await ask('_tcp.a.test', 'SRV');
    expect(ent.header.rcode).toBe(0);
    expect(ent.answers).toEqual([]);
  });

  it('answers SERVFAIL for listed names, non-authoritatively', async () => {
    const res = await ask('broken.test', 'SRV');
    expect(res.header.rcode).toBe(2);
    expect(res.header.aa).toBe(0);
  });

  it('serves TCP on the same port', async () => {
    const { TCPClient } = await import('dns2');
    const res = await TCPClient({ dns: '127.0.0.1', port: dns.port })('xmpp.a.test', 'A');
    expect(res.answers).toEqual([expect.objectContaining({ type: Packet.TYPE.A, address: '127.0.0.40' })]);
  });
});
