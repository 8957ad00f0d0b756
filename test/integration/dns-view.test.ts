/**
 * The internal DNS view (src/net/dns-view.ts) over real UDP and TCP on 127.0.0.1: answers as Node's
 * resolver (c-ares) and raw dns2-encoded queries see them, partner-list changes, malformed input, and the
 * port's life cycle. Every socket here is on loopback; the target addresses are only data in answers.
 */
import dgram from 'node:dgram';
import { promises as dns } from 'node:dns';
import net from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Packet } from 'dns2';
import type { Logger } from '../../src/log.js';
import { DnsView, type DnsViewOptions } from '../../src/net/dns-view.js';

const T = Packet.TYPE;
const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5, BADVERS: 16 };
const TARGET = { host: '127.0.0.10', port: 5270 };

interface LogEntry {
  level: string;
  event: string;
  fields: Record<string, unknown>;
}

function recordingLog(entries: LogEntry[]): Logger {
  const at =
    (level: string) =>
    (event: string, fields: Record<string, unknown> = {}): void => {
      entries.push({ level, event, fields });
    };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

/** A c-ares resolver asking only the view, once, with a short timeout. */
function resolver(port: number): dns.Resolver {
  const r = new dns.Resolver({ timeout: 1000, tries: 1 });
  r.setServers([`127.0.0.1:${port}`]);
  return r;
}

async function errorCode(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return String((err as NodeJS.ErrnoException).code);
  }
  throw new Error('expected a rejection');
}

let nextId = 1;
function query(
  name: string,
  type: number,
  opts: { id?: number; cls?: number; edns?: boolean; ednsVersion?: number } = {},
): Buffer {
  const p = new Packet();
  p.header.id = opts.id ?? nextId++;
  p.header.rd = 1;
  // A plain object: dns2's Question constructor would turn a class of 0 into ANY.
  p.questions.push({ name, type, class: opts.cls ?? Packet.CLASS.IN } as Packet['questions'][number]);
  if (opts.edns) {
    const opt = Packet.Resource.EDNS([]) as unknown as { ttl: number };
    opt.ttl = (opts.ednsVersion ?? 0) << 16;
    p.additionals.push(opt as unknown as Packet['additionals'][number]);
  }
  return p.toBuffer();
}

/** Send one datagram from a new socket; the reply, or undefined if none arrives within `waitMs`. */
function udpExchange(port: number, message: Buffer, waitMs = 1000): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const socket = dgram.createSocket('udp4');
    const timer = setTimeout(() => finish(undefined), waitMs);
    const finish = (reply: Buffer | undefined): void => {
      clearTimeout(timer);
      socket.close();
      resolve(reply);
    };
    socket.on('message', (msg) => finish(msg));
    socket.send(message, port, '127.0.0.1');
  });
}

async function udpAsk(port: number, message: Buffer): Promise<Packet> {
  const reply = await udpExchange(port, message);
  if (!reply) throw new Error('no UDP reply');
  return Packet.parse(reply);
}

const frame = (message: Buffer): Buffer => {
  const prefix = Buffer.alloc(2);
  prefix.writeUInt16BE(message.length, 0);
  return Buffer.concat([prefix, message]);
};

/**
 * Write `bytes` on a new TCP connection (half-closing after unless `keepOpen`) and collect the server's
 * length-prefixed replies until it closes, or `waitMs` passes. `closedByServer` tells which.
 */
function tcpExchange(
  port: number,
  bytes: Buffer,
  opts: { keepOpen?: boolean; waitMs?: number } = {},
): Promise<{ replies: Buffer[]; closedByServer: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let data = Buffer.alloc(0);
    const timer = setTimeout(() => done(false), opts.waitMs ?? 2000);
    const done = (closedByServer: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      const replies: Buffer[] = [];
      let rest = data;
      while (rest.length >= 2 && rest.length >= 2 + rest.readUInt16BE(0)) {
        replies.push(rest.subarray(2, 2 + rest.readUInt16BE(0)));
        rest = rest.subarray(2 + rest.readUInt16BE(0));
      }
      resolve({ replies, closedByServer });
    };
    socket.on('data', (chunk: Buffer) => (data = Buffer.concat([data, chunk])));
    socket.on('close', () => done(true));
    socket.on('error', (err) => ((err as NodeJS.ErrnoException).code === 'ECONNRESET' ? done(true) : reject(err)));
    socket.on('connect', () => (opts.keepOpen ? socket.write(bytes) : socket.end(bytes)));
  });
}

/** Deterministic junk (so a failure can be replayed). */
const noise = (length: number): Buffer => Buffer.from(Array.from({ length }, (_, i) => (i * 151 + 7) & 0xff));

/** A 12-byte header: QR=0 unless `flags` says otherwise, and the four section counts. */
function header(id: number, counts: [number, number, number, number], flags = 0x0100): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16BE(id, 0);
  h.writeUInt16BE(flags, 2);
  counts.forEach((c, i) => h.writeUInt16BE(c, 4 + 2 * i));
  return h;
}

let log: LogEntry[];
let partners: Set<string>;
let asked: string[];
let view: DnsView;

async function startView(extra: Partial<DnsViewOptions> = {}): Promise<DnsView> {
  return DnsView.start({
    host: '127.0.0.1',
    port: 0,
    target: TARGET,
    isPartnerDomain: (d) => {
      asked.push(d);
      return partners.has(d);
    },
    log: recordingLog(log),
    ...extra,
  });
}

beforeEach(async () => {
  log = [];
  asked = [];
  partners = new Set(['partner.test', 'chat.example.org']);
  view = await startView();
});

afterEach(async () => {
  await view.close();
});

describe('answers, as Node resolver (c-ares) sees them over UDP', () => {
  it('SRV _xmpp-server._tcp.D points at the listener IP literal and port', async () => {
    const srv = await resolver(view.port).resolveSrv('_xmpp-server._tcp.partner.test');
    expect(srv).toEqual([{ name: '127.0.0.10', port: 5270, priority: 0, weight: 0 }]);
    expect(await resolver(view.port).resolveSrv('_xmpp-server._tcp.chat.example.org')).toHaveLength(1);
    expect(asked).toContain('partner.test');
  });

  it('A D is the listener address with the configured TTL; AAAA D is NOERROR without data', async () => {
    expect(await resolver(view.port).resolve4('partner.test', { ttl: true })).toEqual([
      { address: '127.0.0.10', ttl: 5 },
    ]);
    expect(await errorCode(resolver(view.port).resolve6('partner.test'))).toBe('ENODATA');
  });

  it('names compare case-insensitively and with or without the trailing dot', async () => {
    expect(await resolver(view.port).resolve4('PARTNER.Test.')).toEqual(['127.0.0.10']);
    expect(await resolver(view.port).resolveSrv('_XMPP-Server._TCP.Partner.TEST')).toHaveLength(1);
    expect(asked.every((d) => d === d.toLowerCase() && !d.endsWith('.'))).toBe(true);
  });

  it('every other name is NXDOMAIN (ENOTFOUND), including names below a partner domain', async () => {
    for (const name of ['other.test', 'www.partner.test', 'example.org', 'test']) {
      expect(await errorCode(resolver(view.port).resolve4(name))).toBe('ENOTFOUND');
    }
    expect(await errorCode(resolver(view.port).resolveSrv('_xmpp-server._tcp.other.test'))).toBe('ENOTFOUND');
    expect(await errorCode(resolver(view.port).resolveSrv('_xmpp-client._tcp.partner.test'))).toBe('ENOTFOUND');
    expect(await errorCode(resolver(view.port).resolveSrv('_xmpp-server._udp.partner.test'))).toBe('ENOTFOUND');
  });

  it('_xmpps-server._tcp.D and the empty non-terminal _tcp.D are NOERROR without data', async () => {
    expect(await errorCode(resolver(view.port).resolveSrv('_xmpps-server._tcp.partner.test'))).toBe('ENODATA');
    expect(await errorCode(resolver(view.port).resolveSrv('_tcp.partner.test'))).toBe('ENODATA');
    expect(await errorCode(resolver(view.port).resolve4('_xmpp-server._tcp.partner.test'))).toBe('ENODATA');
    expect(await errorCode(resolver(view.port).resolveMx('partner.test'))).toBe('ENODATA');
    // For a non-partner, the direct-TLS name is NXDOMAIN like everything else.
    expect(await errorCode(resolver(view.port).resolveSrv('_xmpps-server._tcp.other.test'))).toBe('ENOTFOUND');
  });

  it('refused names are logged at debug', async () => {
    await errorCode(resolver(view.port).resolve4('Other.Test'));
    expect(log).toContainEqual({
      level: 'debug',
      event: 'dns-view.refused',
      fields: { name: 'other.test', type: T.A, transport: 'udp' },
    });
    expect(log.filter((e) => e.level === 'warn')).toEqual([]);
  });
});

describe('answers on the wire', () => {
  it('are authoritative, never recursive, echo the question as asked and keep RD', async () => {
    const res = await udpAsk(view.port, query('_XMPP-server._tcp.PaRtNeR.test', T.SRV, { id: 4242 }));
    expect(res.header).toMatchObject({ id: 4242, qr: 1, aa: 1, ra: 0, rd: 1, rcode: RCODE.NOERROR });
    expect(res.questions).toEqual([{ name: '_XMPP-server._tcp.PaRtNeR.test', type: T.SRV, class: 1 }]);
    expect(res.answers).toHaveLength(1);
    expect(res.answers[0]).toMatchObject({
      name: '_XMPP-server._tcp.PaRtNeR.test',
      type: T.SRV,
      ttl: 5,
      priority: 0,
      weight: 0,
      port: 5270,
      target: '127.0.0.10',
    });
  });

  it('negative answers carry an SOA whose TTL and minimum are the TTL (RFC 2308)', async () => {
    const nx = await udpAsk(view.port, query('nobody.example', T.A));
    expect(nx.header.rcode).toBe(RCODE.NXDOMAIN);
    expect(nx.answers).toEqual([]);
    expect(nx.authorities[0]).toMatchObject({ name: 'example', type: T.SOA, ttl: 5, minimum: 5 });
    const nodata = await udpAsk(view.port, query('_xmpps-server._tcp.partner.test', T.SRV));
    expect(nodata.header.rcode).toBe(RCODE.NOERROR);
    expect(nodata.answers).toEqual([]);
    expect(nodata.authorities[0]).toMatchObject({ name: 'partner.test', type: T.SOA, minimum: 5 });
  });

  it('ANY at the SRV name gives the SRV; ANY at D gives the A; the root name exists', async () => {
    expect((await udpAsk(view.port, query('_xmpp-server._tcp.partner.test', T.ANY))).answers[0]).toMatchObject({
      type: T.SRV,
    });
    expect((await udpAsk(view.port, query('partner.test', T.ANY))).answers[0]).toMatchObject({
      type: T.A,
      address: '127.0.0.10',
    });
    const root = await udpAsk(view.port, query('', T.NS));
    expect(root.header.rcode).toBe(RCODE.NOERROR);
    expect(root.answers).toEqual([]);
  });

  it('the ttlSeconds option sets every TTL', async () => {
    const other = await startView({ ttlSeconds: 1 });
    try {
      const res = await udpAsk(other.port, query('partner.test', T.A));
      expect(res.answers[0]).toMatchObject({ ttl: 1 });
    } finally {
      await other.close();
    }
  });

  it('EDNS: an OPT is echoed; an unknown EDNS version gets BADVERS', async () => {
    const res = await udpAsk(view.port, query('partner.test', T.A, { edns: true }));
    expect(res.answers).toHaveLength(1);
    expect(res.additionals.find((r) => r.type === T.EDNS)).toBeDefined();
    const bad = await udpAsk(view.port, query('partner.test', T.A, { edns: true, ednsVersion: 1 }));
    expect(bad.header.rcode).toBe(RCODE.BADVERS);
    expect(bad.answers).toEqual([]);
  });

  it('classes other than IN and ANY are REFUSED', async () => {
    const res = await udpAsk(view.port, query('partner.test', T.A, { cls: 3 /* CH */ }));
    expect(res.header.rcode).toBe(RCODE.REFUSED);
    expect(res.answers).toEqual([]);
  });

  it('a query with two questions gets FORMERR', async () => {
    const p = new Packet();
    p.header.id = 77;
    p.questions.push({ name: 'partner.test', type: T.A, class: 1 } as Packet['questions'][number]);
    p.questions.push({ name: 'partner.test', type: T.AAAA, class: 1 } as Packet['questions'][number]);
    const reply = await udpExchange(view.port, p.toBuffer());
    expect(reply).toBeDefined();
    const res = Packet.parse(reply!);
    expect(res.header).toMatchObject({ id: 77, qr: 1, rcode: RCODE.FORMERR });
    expect(res.answers).toEqual([]);
  });
});

describe('partner list and target changes', () => {
  it('a predicate change takes effect on the very next query', async () => {
    const srv = '_xmpp-server._tcp.new.test';
    expect(await errorCode(resolver(view.port).resolveSrv(srv))).toBe('ENOTFOUND');
    partners.add('new.test');
    expect(await resolver(view.port).resolveSrv(srv)).toHaveLength(1);
    expect(await resolver(view.port).resolve4('new.test')).toEqual(['127.0.0.10']);
    partners.delete('new.test');
    expect(await errorCode(resolver(view.port).resolveSrv(srv))).toBe('ENOTFOUND');
    expect(await errorCode(resolver(view.port).resolve4('new.test'))).toBe('ENOTFOUND');
  });

  it('one long-lived Resolver sees the change at once too (Node does not cache answers)', async () => {
    const r = resolver(view.port);
    expect(await r.resolve4('partner.test')).toEqual(['127.0.0.10']);
    partners.delete('partner.test');
    expect(await errorCode(r.resolve4('partner.test'))).toBe('ENOTFOUND');
    partners.add('partner.test');
    expect(await r.resolve4('partner.test')).toEqual(['127.0.0.10']);
  });

  it('setTarget changes SRV and address answers at once; an IPv6 target answers AAAA, not A', async () => {
    view.setTarget({ host: '127.0.0.11', port: 15269 });
    expect(await resolver(view.port).resolveSrv('_xmpp-server._tcp.partner.test')).toEqual([
      { name: '127.0.0.11', port: 15269, priority: 0, weight: 0 },
    ]);
    expect(await resolver(view.port).resolve4('partner.test')).toEqual(['127.0.0.11']);
    view.setTarget({ host: '::1', port: 15270 });
    expect(await resolver(view.port).resolve6('partner.test')).toEqual(['::1']);
    expect(await errorCode(resolver(view.port).resolve4('partner.test'))).toBe('ENODATA');
    expect((await resolver(view.port).resolveSrv('_xmpp-server._tcp.partner.test'))[0]).toMatchObject({
      name: '::1',
      port: 15270,
    });
  });

  it('while the target port is 0 (listener not bound yet) SRV is SERVFAIL and A still answers', async () => {
    view.setTarget({ host: '127.0.0.10', port: 0 });
    expect(await errorCode(resolver(view.port).resolveSrv('_xmpp-server._tcp.partner.test'))).toBe('ESERVFAIL');
    expect(await resolver(view.port).resolve4('partner.test')).toEqual(['127.0.0.10']);
  });

  it('setTarget and start reject a host name, a mapped IPv6 address and a bad port', async () => {
    expect(() => view.setTarget({ host: 'gateway.internal', port: 5269 })).toThrow(TypeError);
    expect(() => view.setTarget({ host: '::ffff:127.0.0.1', port: 5269 })).toThrow(TypeError);
    expect(() => view.setTarget({ host: '127.0.0.1', port: 70000 })).toThrow(TypeError);
    await expect(startView({ target: { host: 'localhost', port: 5269 } })).rejects.toThrow(TypeError);
    await expect(startView({ host: 'localhost' })).rejects.toThrow(TypeError);
    // The rejected calls left the target as it was.
    expect(await resolver(view.port).resolve4('partner.test')).toEqual(['127.0.0.10']);
  });

  it('a predicate that throws gives SERVFAIL and a warning, and the view keeps serving', async () => {
    const failing = await startView({
      isPartnerDomain: (d) => {
        if (d === 'boom.test') throw new Error('store unavailable');
        return partners.has(d);
      },
    });
    try {
      expect(await errorCode(resolver(failing.port).resolve4('boom.test'))).toBe('ESERVFAIL');
      expect(log).toContainEqual(expect.objectContaining({ level: 'warn', event: 'dns-view.error' }));
      expect(await resolver(failing.port).resolve4('partner.test')).toEqual(['127.0.0.10']);
    } finally {
      await failing.close();
    }
  });
});

describe('TCP (RFC 7766) on the same port', () => {
  it('answers a length-prefixed query', async () => {
    const { replies } = await tcpExchange(view.port, frame(query('_xmpp-server._tcp.partner.test', T.SRV, { id: 9 })));
    expect(replies).toHaveLength(1);
    const res = Packet.parse(replies[0]!);
    expect(res.header).toMatchObject({ id: 9, rcode: RCODE.NOERROR, aa: 1 });
    expect(res.answers[0]).toMatchObject({ type: T.SRV, target: '127.0.0.10', port: 5270 });
  });

  it('answers pipelined queries on one connection in order, split across writes or not', async () => {
    const both = Buffer.concat([
      frame(query('partner.test', T.A, { id: 1 })),
      frame(query('other.test', T.A, { id: 2 })),
      frame(query('_xmpp-server._tcp.chat.example.org', T.SRV, { id: 3 })),
    ]);
    const { replies, closedByServer } = await tcpExchange(view.port, both);
    expect(closedByServer).toBe(true); // after our half-close and its answers
    expect(replies.map((r) => Packet.parse(r).header.id)).toEqual([1, 2, 3]);
    expect(replies.map((r) => Packet.parse(r).header.rcode)).toEqual([0, 3, 0]);

    // The same bytes one at a time.
    const res = await new Promise<Buffer[]>((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port: view.port });
      const chunks: Buffer[] = [];
      socket.on('data', (c: Buffer) => chunks.push(c));
      socket.on('end', () => resolve(chunks));
      socket.on('error', reject);
      socket.on('connect', async () => {
        for (const byte of both) {
          socket.write(Buffer.from([byte]));
          if (byte % 4 === 0) await new Promise((r) => setImmediate(r));
        }
        socket.end();
      });
    });
    expect(Buffer.concat(res).equals(Buffer.concat(replies.map(frame)))).toBe(true);
  });
});

describe('malformed input never stops the view', () => {
  it('garbage UDP datagrams: dropped or FORMERR/NOTIMP, quickly, and a valid query still works', async () => {
    const pointerLoop = Buffer.concat([header(5, [1, 0, 0, 0]), Buffer.from([0xc0, 12, 0, 1, 0, 1])]);
    const cases: { name: string; bytes: Buffer; rcode?: number }[] = [
      { name: 'empty', bytes: Buffer.alloc(0) },
      { name: 'truncated header', bytes: Buffer.from([1, 2, 3, 4, 5]) },
      // Its third octet, 0x35, reads as QR=0 with opcode 6.
      { name: 'random bytes', bytes: noise(300), rcode: RCODE.NOTIMP },
      { name: 'random bytes, QR set', bytes: Buffer.from(noise(300).map((b, i) => (i === 2 ? b | 0x80 : b))) },
      // dns2's own parser spends over a second on this one (one exception per counted record).
      { name: 'all counts 0xffff', bytes: header(1, [0xffff, 0xffff, 0xffff, 0xffff]), rcode: RCODE.FORMERR },
      { name: 'no question', bytes: header(2, [0, 0, 0, 0]), rcode: RCODE.FORMERR },
      { name: 'question cut off', bytes: Buffer.concat([header(3, [1, 0, 0, 0]), Buffer.from([7, 0x70])]), rcode: RCODE.FORMERR },
      { name: 'name without type', bytes: Buffer.concat([header(4, [1, 0, 0, 0]), Buffer.from([1, 0x61, 0, 0])]), rcode: RCODE.FORMERR },
      { name: 'compression pointer loop', bytes: pointerLoop, rcode: RCODE.FORMERR },
      { name: 'answer records in a query', bytes: Buffer.concat([query('partner.test', T.A, { id: 6 }).subarray(0, 6), Buffer.from([0, 1]), query('partner.test', T.A).subarray(8)]), rcode: RCODE.FORMERR },
      { name: 'opcode UPDATE', bytes: Buffer.concat([header(7, [1, 0, 0, 0], 5 << 11), query('a.test', T.A).subarray(12)]), rcode: RCODE.NOTIMP },
      { name: 'a response', bytes: Buffer.concat([header(8, [1, 0, 0, 0], 0x8000), query('a.test', T.A).subarray(12)]) },
      { name: 'dot inside a label', bytes: Buffer.concat([header(9, [1, 0, 0, 0]), Buffer.from([12]), Buffer.from('partner.test'), Buffer.from([0, 0, 1, 0, 1])]), rcode: RCODE.REFUSED },
    ];
    const started = Date.now();
    for (const c of cases) {
      const reply = await udpExchange(view.port, c.bytes, c.rcode === undefined ? 200 : 1000);
      if (c.rcode === undefined) {
        expect(reply, c.name).toBeUndefined();
      } else {
        expect(reply, c.name).toBeDefined();
        expect(reply!.length, c.name).toBe(12); // header only: nothing of the message is echoed
        expect(reply![3]! & 0xf, c.name).toBe(c.rcode);
        expect(reply!.readUInt16BE(0), c.name).toBe(c.bytes.readUInt16BE(0));
      }
    }
    // Five silent cases wait out 200 ms each; everything else is immediate.
    expect(Date.now() - started).toBeLessThan(3000);
    expect(await resolver(view.port).resolveSrv('_xmpp-server._tcp.partner.test')).toHaveLength(1);
    // One warning, the rest held back (and counted in the next one).
    expect(log.filter((e) => e.event === 'dns-view.malformed')).toHaveLength(1);
  });

  it('garbage TCP frames close that connection only; a huge length prefix holds nothing up', async () => {
    // A length prefix promising 65535 octets that never come: the connection just waits (until idle timeout).
    const stalled = net.connect({ host: '127.0.0.1', port: view.port });
    await new Promise((r) => stalled.once('connect', r));
    stalled.write(Buffer.from([0xff, 0xff, 1, 2, 3]));
    try {
      // A message too short for a header: the framing cannot be trusted, so the server closes.
      const short = await tcpExchange(view.port, frame(Buffer.from([1, 2, 3])), { keepOpen: true });
      expect(short).toEqual({ replies: [], closedByServer: true });
      // A single byte (half a length prefix), then the client half-closes.
      expect((await tcpExchange(view.port, Buffer.from([0]))).replies).toEqual([]);
      // Junk whose first two octets promise 1950 octets, then the client half-closes: nothing to answer.
      expect(await tcpExchange(view.port, noise(700))).toEqual({ replies: [], closedByServer: true });
      // Header counts at 0xffff: FORMERR, and the connection stays usable for the next query.
      const mixed = await tcpExchange(
        view.port,
        Buffer.concat([frame(header(31, [0xffff, 0xffff, 0xffff, 0xffff])), frame(query('partner.test', T.A, { id: 32 }))]),
      );
      expect(mixed.replies.map((r) => Packet.parse(r).header)).toMatchObject([
        { id: 31, rcode: RCODE.FORMERR },
        { id: 32, rcode: RCODE.NOERROR },
      ]);
      // A valid TCP query and a UDP one still work while the stalled connection is open.
      const ok = await tcpExchange(view.port, frame(query('partner.test', T.A, { id: 33 })));
      expect(Packet.parse(ok.replies[0]!).answers[0]).toMatchObject({ address: '127.0.0.10' });
      expect(await resolver(view.port).resolve4('partner.test')).toEqual(['127.0.0.10']);
      expect(stalled.destroyed).toBe(false);
    } finally {
      stalled.destroy();
    }
  });

  it('close() does not wait for open TCP connections', async () => {
    const idle = net.connect({ host: '127.0.0.1', port: view.port });
    await new Promise((r) => idle.once('connect', r));
    const closedByServer = new Promise((r) => idle.once('close', r));
    const started = Date.now();
    await view.close();
    await closedByServer;
    expect(Date.now() - started).toBeLessThan(2000);
  });
});

describe('ports', () => {
  it('UDP and TCP share the port; close() releases both', async () => {
    const port = view.port;
    expect(port).toBeGreaterThan(0);
    await view.close();
    await view.close(); // idempotent
    const udp = dgram.createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(port, '127.0.0.1', () => resolve());
    });
    const tcp = net.createServer();
    await new Promise<void>((resolve, reject) => {
      tcp.once('error', reject);
      tcp.listen(port, '127.0.0.1', () => resolve());
    });
    await new Promise<void>((r) => udp.close(() => r()));
    await new Promise<void>((r) => tcp.close(() => r()));
    // A view can be started again on the released port.
    view = await startView({ port });
    expect(view.port).toBe(port);
    expect(await resolver(port).resolve4('partner.test')).toEqual(['127.0.0.10']);
  });

  it('an IPv6 bind address serves UDP and TCP on ::1', async () => {
    const six = await startView({ host: '::1' });
    try {
      expect(six.host).toBe('::1');
      const r = new dns.Resolver({ timeout: 1000, tries: 1 });
      r.setServers([`[::1]:${six.port}`]);
      expect(await r.resolveSrv('_xmpp-server._tcp.partner.test')).toHaveLength(1);
      const reply = await new Promise<Buffer>((resolve, reject) => {
        const socket = net.connect({ host: '::1', port: six.port });
        socket.on('data', (chunk: Buffer) => {
          socket.destroy();
          resolve(chunk);
        });
        socket.on('error', reject);
        socket.on('connect', () => socket.write(frame(query('partner.test', T.A, { id: 66 }))));
      });
      expect(Packet.parse(reply.subarray(2)).answers[0]).toMatchObject({ address: '127.0.0.10' });
    } finally {
      await six.close();
    }
  });

  it('a taken port rejects with EADDRINUSE and leaves nothing bound', async () => {
    // UDP free, TCP taken: start() binds UDP first, so this checks that it lets go of it again.
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      await expect(startView({ port })).rejects.toMatchObject({ code: 'EADDRINUSE' });
      const udp = dgram.createSocket('udp4');
      await new Promise<void>((resolve, reject) => {
        udp.once('error', reject);
        udp.bind(port, '127.0.0.1', () => resolve());
      });
      await new Promise<void>((r) => udp.close(() => r()));
    } finally {
      await new Promise<void>((r) => blocker.close(() => r()));
    }
    // And the same with the running view's port (both taken).
    await expect(startView({ port: view.port })).rejects.toMatchObject({ code: 'EADDRINUSE' });
    expect(await resolver(view.port).resolve4('partner.test')).toEqual(['127.0.0.10']);
  });
});
