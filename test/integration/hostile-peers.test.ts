/**
 * Hostile peers against the real gateway over loopback (127.0.0.0/8 only), black box: each case
 * checks the stream error or refusal the gateway answers with, that it does not crash (an
 * exception would fail the run), and that a well-behaved partner on another connection still
 * authenticates and is answered meanwhile.
 *
 * Cases already covered elsewhere are not repeated here:
 *  - restricted XML after the header, unknown entities, NUL, invalid UTF-8, oversized stanza
 *    before authentication, plaintext injected after <starttls/>, stanzas from a domain the
 *    stream did not authenticate (invalid-from), a second STARTTLS: stream-rules.test.ts;
 *  - oversized stanza after authentication (maxStanzaBytes): caps.test.ts;
 *  - silent peer after connect and after the header, stalled TLS handshake: timers.test.ts;
 *  - connections beyond maxUnauthenticatedConnectionsPerAddress: first-gate.test.ts; beyond
 *    connectionLimit: limits.test.ts;
 *  - db:result from a non-partner on a header without `from`: dialback-details.test.ts;
 *  - a peer that never reads (dropped) and an unsolicited <success/>: hardening.test.ts;
 *  - memory per never-reading peer: hostile-memory.test.ts.
 */
import net from 'node:net';
import type { TLSSocket } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { dialbackKey } from '../../src/negotiation/dialback-key.js';
import { NS_DIALBACK, NS_SASL, NS_TLS } from '../../src/xml/namespaces.js';
import type { FakePartnerServer } from '../helpers/fake-partner-server.js';
import { eventually, metricValue, sleep } from '../helpers/live-streams.js';
import { churn, idleConnection as idle } from '../helpers/hostile-clients.js';
import { attempt, dialbackAuthority } from '../helpers/partner-attempt.js';
import { ScriptedPeer } from '../helpers/scripted-peer.js';
import { startTestGateway, testPki, type LogLine, type TestGateway, type TestPki } from '../helpers/test-gateway.js';

const EXTERNAL_ONLY = 'TlsNegotiation: Required\n  SaslNegotiation: Required\n  SupportDialbackNegotiation: false';

let pki: TestPki;

beforeAll(() => {
  pki = testPki();
});

const localNameOf = (el: { name: string }): string => el.name.slice(el.name.indexOf(':') + 1);

describe('floods of unauthenticated connections', () => {
  let gw: TestGateway;

  beforeAll(async () => {
    gw = await startTestGateway({
      pki,
      partners: `- Identity: ext.test\n  ${EXTERNAL_ONLY}\n`,
      config: 'connectionLimit: 40\nmaxUnauthenticatedConnectionsPerAddress: 2\nstreamEstablishmentTimeoutSeconds: 30',
    });
  });

  afterAll(async () => {
    await gw?.close();
  });

  it('idle sockets from 50 addresses cannot fill connectionLimit: the oldest are shed and a partner gets in', async () => {
    const sockets: net.Socket[] = [];
    try {
      // 100 idle connections, 2 from each of 127.0.0.10-59: beyond connectionLimit (40) and
      // maxUnauthenticatedConnections (default: half of it, 20).
      for (let i = 0; i < 100; i++) sockets.push(await idle(gw.port, `127.0.0.${10 + (i % 50)}`));
      await sleep(200);
      // A partner connecting now is admitted (shedding the oldest idle socket) and authenticates.
      const { outcome, peer } = await attempt({ port: gw.port, from: 'ext.test', cert: pki.issue({ domain: 'ext.test' }) });
      expect(outcome).toBe('sasl-external');
      peer.destroy();
      expect(gw.gateway.streams.size).toBeLessThanOrEqual(40);
      const shed = await metricValue(gw.adminPort, 'gw_stream_refusals_total', { rule: 'maxUnauthenticatedConnections', condition: 'policy-violation' });
      expect(shed).toBeGreaterThanOrEqual(100 - 20);
      expect(gw.logs.some((l) => l.event === 'stream.refused' && l.rule === 'connectionLimit')).toBe(false);
      // One more from an address already at its own cap is refused (it sheds nobody).
      const mine = [await ScriptedPeer.connect(gw.port), await ScriptedPeer.connect(gw.port)];
      const third = await ScriptedPeer.connect(gw.port);
      third.sendHeader({ from: 'ext.test', to: 'gw.test' });
      await third.header();
      expect((await third.expectStreamError()).text).toMatch(/too many unauthenticated connections from 127\.0\.0\.1 \(limit 2\)/);
      for (const p of mine) p.destroy();
    } finally {
      for (const s of sockets) s.destroy();
    }
  });
});

describe('hostile peers', () => {
  let gw: TestGateway;
  let authority: FakePartnerServer;
  /** Never reached: the gateway must not connect out for domains that are not partners. */
  let trap: net.Server;
  let trapped = 0;
  const peers: ScriptedPeer[] = [];
  let pings = 0;

  beforeAll(async () => {
    authority = await dialbackAuthority('db.test');
    trap = net.createServer((s) => {
      trapped++;
      s.destroy();
    });
    await new Promise<void>((r) => trap.listen(0, '127.0.0.1', () => r()));
    const trapRoute = `127.0.0.1:${(trap.address() as net.AddressInfo).port}`;
    gw = await startTestGateway({
      pki,
      partners: `- Identity: db.test
  TlsNegotiation: Optional
  SaslNegotiation: NotSupported
- Identity: tls.test
  TlsNegotiation: Required
  SaslNegotiation: Optional
`,
      routes: { 'db.test': `127.0.0.1:${authority.port}`, 'tls.test': trapRoute, 'evil.test': trapRoute, 'gw.test': trapRoute },
      config: 'streamEstablishmentTimeoutSeconds: 2\nmaxStanzaBytes: 16384',
    });
  });

  afterEach(() => {
    for (const p of peers.splice(0)) p.destroy();
  });

  afterAll(async () => {
    await gw?.close();
    await authority?.close();
    trap?.close();
  });

  async function connect(): Promise<ScriptedPeer> {
    const p = await ScriptedPeer.connect(gw.port);
    peers.push(p);
    return p;
  }

  /** A connection that has sent db.test's header and read the features. */
  async function afterHeader(from = 'db.test'): Promise<ScriptedPeer> {
    const p = await connect();
    p.sendHeader({ from, to: 'gw.test' });
    await p.header();
    await p.features();
    return p;
  }

  /** A stream authenticated by dialback (db.test, plain TCP). */
  async function authenticated(): Promise<ScriptedPeer> {
    const { outcome, peer } = await attempt({ port: gw.port, from: 'db.test', useTls: false });
    peers.push(peer);
    expect(outcome).toBe('dialback');
    return peer;
  }

  function ping(peer: ScriptedPeer, id: string): Promise<unknown> {
    peer.send(`<iq type='get' id='${id}' from='db.test' to='gw.test'><ping xmlns='urn:xmpp:ping'/></iq>`);
    return authority.waitForStanza((el) => el.attrs.id === id && el.attrs.type === 'result');
  }

  /** A well-behaved partner authenticates on another connection and its ping is answered. */
  async function partnerStillServed(): Promise<void> {
    const peer = await authenticated();
    await ping(peer, `alive-${++pings}`);
    peer.destroy();
  }

  function refusalLogged(pred: (l: LogLine) => boolean, timeoutMs = 5000): Promise<LogLine> {
    return gw.waitForLog((l) => l.event === 'stream.refused' && pred(l), timeoutMs);
  }

  describe('restricted XML (RFC 6120 section 11) before the header and after authentication', () => {
    const HEADER = "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='db.test' to='gw.test' version='1.0'>";
    const constructs: [string, string][] = [
      ['a comment', '<!-- hello -->'],
      ['a processing instruction', "<?target data?>"],
      ['a DOCTYPE', '<!DOCTYPE stream:stream>'],
      ['a DOCTYPE with an internal subset', "<!DOCTYPE x [<!ENTITY boom 'aaaaaaaaaa'>]>"],
      ['an entity declaration', "<!ENTITY boom 'aaaaaaaaaa'>"],
    ];
    for (const [name, raw] of constructs) {
      it(`${name} before the header ⇒ restricted-xml`, async () => {
        const p = await connect();
        p.sendRaw(`<?xml version='1.0'?>${raw}${HEADER}`);
        await p.header();
        expect((await p.expectStreamError()).condition).toBe('restricted-xml');
        await partnerStillServed();
      });
    }
    for (const [name, raw] of [...constructs, ['a reference to a declared-looking entity', "<message from='a@db.test' to='b@gw.test'><body>&boom;</body></message>"] as [string, string]]) {
      it(`${name} after authentication ⇒ restricted-xml`, async () => {
        const p = await authenticated();
        p.sendRaw(raw);
        expect((await p.expectStreamError()).condition).toBe('restricted-xml');
        await partnerStillServed();
      });
    }
  });

  describe('sizes, depth, attributes', () => {
    it('a header above 4096 bytes ⇒ policy-violation naming maxHeaderBytes, before it is complete', async () => {
      const p = await connect();
      p.sendRaw(`<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' from='db.test' to='gw.test' x='${'a'.repeat(5000)}`);
      await p.header();
      const err = await p.expectStreamError();
      expect(err.condition).toBe('policy-violation');
      expect(err.text).toMatch(/maxHeaderBytes \(4096/);
      await partnerStillServed();
    });

    it('a stanza that never ends after authentication ⇒ policy-violation at maxStanzaBytes', async () => {
      const p = await authenticated();
      p.sendRaw(`<message from='a@db.test' to='b@gw.test'><body>`);
      for (let i = 0; i < 4; i++) p.sendRaw('x'.repeat(8192));
      const err = await p.expectStreamError();
      expect(err.condition).toBe('policy-violation');
      expect(err.text).toMatch(/maxStanzaBytes \(16384/);
      await partnerStillServed();
    });

    it('elements nested 40 deep ⇒ policy-violation naming maxDepth, before and after authentication', async () => {
      const nested = `<message from='a@db.test' to='b@gw.test'>${'<x>'.repeat(40)}`;
      const before = await afterHeader();
      before.sendRaw(nested);
      expect((await before.expectStreamError()).text).toMatch(/maxDepth \(32\)/);
      const after = await authenticated();
      after.sendRaw(nested);
      expect((await after.expectStreamError()).text).toMatch(/maxDepth \(32\)/);
      await partnerStillServed();
    });

    it('65 attributes on a stanza or on the header ⇒ policy-violation naming maxAttributes', async () => {
      const attrs = Array.from({ length: 65 }, (_, i) => ` a${i}='${i}'`).join('');
      const onHeader = await connect();
      onHeader.sendRaw(`<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'${attrs}>`);
      await onHeader.header();
      expect((await onHeader.expectStreamError()).text).toMatch(/maxAttributes \(64\)/);
      const onStanza = await authenticated();
      onStanza.sendRaw(`<message${attrs}/>`);
      expect((await onStanza.expectStreamError()).text).toMatch(/maxAttributes \(64\)/);
      await partnerStillServed();
    });
  });

  describe('UTF-8', () => {
    it('characters split across TCP reads at every byte are reassembled', async () => {
      const p = await authenticated();
      const id = 'é€😀-split';
      const bytes = Buffer.from(`<iq type='get' id='${id}' from='db.test' to='gw.test'><ping xmlns='urn:xmpp:ping'/></iq>`);
      const at = bytes.indexOf(Buffer.from('é'));
      p.sendRaw(bytes.subarray(0, at + 1));
      for (let i = at + 1; i < at + 12; i++) {
        await sleep(5); // separate reads
        p.sendRaw(bytes.subarray(i, i + 1));
      }
      await sleep(5);
      p.sendRaw(bytes.subarray(at + 12));
      const reply = await authority.waitForStanza((el) => el.attrs.id === id);
      expect(reply.attrs.type).toBe('result');
      expect(p.closedAlready).toBe(false);
    });

    const invalid: [string, number[]][] = [
      ['an overlong encoding of "/"', [0xc0, 0xaf]],
      ['an encoded surrogate', [0xed, 0xa0, 0x80]],
      ['a truncated sequence followed by ASCII', [0xe2, 0x82, 0x41]],
      ['a byte above F4', [0xf5, 0x80, 0x80, 0x80]],
      ['a lone continuation byte', [0x80]],
    ];
    for (const [name, seq] of invalid) {
      it(`${name} ⇒ unsupported-encoding`, async () => {
        const p = await afterHeader();
        p.sendRaw(Buffer.concat([Buffer.from("<db:result from='db.test' to='gw.test'>"), Buffer.from(seq), Buffer.from('</db:result>')]));
        expect((await p.expectStreamError()).condition).toBe('unsupported-encoding');
      });
    }
  });

  describe('slow and silent peers (streamEstablishmentTimeoutSeconds: 2)', () => {
    it('a header trickled one byte every 100 ms is closed connection-timeout, and the refusal is logged', async () => {
      const p = await connect();
      const header = "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' from='db.test' to='gw.test' version='1.0'>";
      let i = 0;
      const timer = setInterval(() => {
        if (p.closedAlready || i >= header.length) return clearInterval(timer);
        p.sendRaw(header[i++]!);
      }, 100);
      try {
        await p.header(6000);
        expect((await p.expectStreamError(6000)).condition).toBe('connection-timeout');
      } finally {
        clearInterval(timer);
      }
      expect(i).toBeLessThan(header.length);
      await refusalLogged((l) => l.rule === 'streamEstablishmentTimeoutSeconds' && l.condition === 'connection-timeout');
      await partnerStillServed();
    });

    it('a TLS handshake trickled one byte every 200 ms is dropped, logged and counted', async () => {
      const p = await afterHeader();
      p.sendRaw(`<starttls xmlns='${NS_TLS}'/>`);
      await p.expect('proceed', NS_TLS);
      const before = gw.logs.length;
      // The start of a TLS ClientHello record, byte by byte: never complete within the deadline.
      const hello = Buffer.from('16030100f4010000f00303' + '00'.repeat(32), 'hex');
      let i = 0;
      const timer = setInterval(() => {
        if (p.tcp.destroyed || i >= hello.length) return clearInterval(timer);
        p.tcp.write(hello.subarray(i, ++i));
      }, 200);
      try {
        await eventually(() => p.tcp.destroyed || p.closedAlready, 6000);
      } finally {
        clearInterval(timer);
      }
      const line = await refusalLogged((l) => gw.logs.indexOf(l) >= before && l.partner === 'db.test');
      expect(line.condition).toBe('connection-timeout');
      await partnerStillServed();
    });

    it('a TLS handshake that fails (garbage instead of a ClientHello) is logged and counted, not silent', async () => {
      const before = await metricValue(gw.adminPort, 'gw_stream_refusals_total', { rule: 'tlsHandshake' });
      const p = await afterHeader();
      p.sendRaw(`<starttls xmlns='${NS_TLS}'/>`);
      await p.expect('proceed', NS_TLS);
      p.tcp.write(Buffer.from('GET / HTTP/1.1\r\nHost: gw.test\r\n\r\n'));
      const line = await refusalLogged((l) => l.rule === 'tlsHandshake');
      expect(line).toMatchObject({ partner: 'db.test', condition: 'tls-handshake-failed' });
      expect(await metricValue(gw.adminPort, 'gw_stream_refusals_total', { rule: 'tlsHandshake' })).toBe(before + 1);
      await partnerStillServed();
    });
  });

  describe('dialback abuse', () => {
    it('a db:verify id longer than 128 characters ⇒ policy-violation; 128 characters are answered', async () => {
      const ok = await afterHeader();
      ok.dialbackVerify('db.test', 'gw.test', 'i'.repeat(128), 'k');
      expect((await ok.expect('verify', NS_DIALBACK)).attrs).toMatchObject({ type: 'invalid', id: 'i'.repeat(128) });
      const p = await afterHeader();
      p.dialbackVerify('db.test', 'gw.test', 'i'.repeat(4000), 'k');
      const err = await p.expectStreamError();
      expect(err.condition).toBe('policy-violation');
      expect(err.text).toMatch(/db:verify id longer than 128 characters/);
      await partnerStillServed();
    });

    it('unsolicited db:result and db:verify with type="valid" authenticate nothing', async () => {
      const p = await afterHeader();
      p.sendRaw("<db:result from='db.test' to='gw.test' type='valid'/><db:verify from='db.test' to='gw.test' id='x' type='valid'/>");
      await p.expectNothing(100);
      p.sendRaw("<message from='a@db.test' to='b@gw.test'><body>hi</body></message>");
      expect((await p.expectStreamError()).condition).toBe('not-authorized');
      await partnerStillServed();
    });

    it('a wrong dialback key ⇒ type="invalid" and not-authorized', async () => {
      const p = await afterHeader();
      p.dialbackResult('db.test', 'gw.test', dialbackKey('another-secret-0123456789', 'gw.test', 'db.test', p.streamId));
      expect((await p.expect('result', NS_DIALBACK, 8000)).attrs.type).toBe('invalid');
      expect((await p.expectStreamError()).condition).toBe('not-authorized');
      await partnerStillServed();
    });

    it('db:result for domains that are not partners (or ours) never makes the gateway connect out', async () => {
      for (const from of ['evil.test', 'gw.test', 'sub.db.test']) {
        const p = await afterHeader();
        p.dialbackResult(from, 'gw.test', 'key');
        expect((await p.expectStreamError()).condition).toMatch(/policy-violation|invalid-from/);
      }
      // Not even on a stream whose header named no partner yet.
      const p = await connect();
      p.sendHeader({ to: 'gw.test' });
      await p.header();
      await p.features();
      p.dialbackResult('evil.test', 'gw.test', 'key');
      await p.expectStreamError();
      await partnerStillServed();
      expect(trapped).toBe(0);
    });
  });

  describe('TLS', () => {
    it('TLS stripping: a TLS-Required partner gets nothing in plaintext (dialback, SASL, stanzas)', async () => {
      const db = await afterHeader('tls.test');
      db.dialbackResult('tls.test', 'gw.test', 'key');
      expect((await db.expectStreamError()).condition).toBe('policy-violation');
      const sasl = await afterHeader('tls.test');
      sasl.sendRaw(`<auth xmlns='${NS_SASL}' mechanism='EXTERNAL'>=</auth>`);
      expect(localNameOf(await sasl.next())).toBe('failure');
      expect((await sasl.expectStreamError()).condition).toBe('policy-violation');
      const stanza = await afterHeader('tls.test');
      stanza.sendRaw("<message from='a@tls.test' to='b@gw.test'/>");
      expect((await stanza.expectStreamError()).condition).toBe('not-authorized');
      expect(trapped).toBe(0);
      await partnerStillServed();
    });

    it('a TLS renegotiation attempt (TLS 1.2) on an authenticated stream drops the connection', async () => {
      // Authenticated by SASL EXTERNAL, so no establishment deadline runs meanwhile.
      const p = await afterHeader('tls.test');
      const c = pki.issue({ domain: 'tls.test' });
      const info = await p.starttls({ maxVersion: 'TLSv1.2', cert: c.certPem, key: c.keyPem });
      expect(info.protocol).toBe('TLSv1.2');
      p.restart();
      await p.header();
      await p.features();
      expect(localNameOf(await p.saslExternal())).toBe('success');
      p.restart();
      await p.header();
      await p.features();
      const before = gw.logs.length;
      (p.socket as TLSSocket).renegotiate({ rejectUnauthorized: false }, () => {});
      const line = await refusalLogged((l) => gw.logs.indexOf(l) >= before && l.partner === 'tls.test');
      expect(line).toMatchObject({ rule: 'tlsRenegotiation', condition: 'policy-violation' });
      await p.closed(3000);
      await partnerStillServed();
    });

    // Found by the negotiation fuzzer: after a restart the gateway sent <stream:error> without
    // a header for the new stream document, which the peer cannot parse.
    it('a restart (TLS, then SASL) followed by something other than a header: our header, then the error', async () => {
      const afterTls = await afterHeader();
      await afterTls.starttls();
      afterTls.sendRaw(`<starttls xmlns='${NS_TLS}'/>`);
      expect((await afterTls.header()).from).toBe('gw.test');
      expect((await afterTls.expectStreamError()).condition).toBe('invalid-namespace');
      expect(afterTls.parseError).toBeNull();

      const afterSasl = await afterHeader('tls.test');
      const c = pki.issue({ domain: 'tls.test' });
      await afterSasl.starttls({ cert: c.certPem, key: c.keyPem });
      afterSasl.restart();
      await afterSasl.header();
      await afterSasl.features();
      expect(localNameOf(await afterSasl.saslExternal())).toBe('success');
      afterSasl.sendRaw("<message from='a@tls.test' to='b@gw.test'/>");
      expect((await afterSasl.header()).from).toBe('gw.test');
      expect((await afterSasl.expectStreamError()).condition).toBe('invalid-namespace');
      expect(afterSasl.parseError).toBeNull();
      await partnerStillServed();
    });

    it('plaintext after <starttls/> in the same packet, against a TLS-Required partner: no <proceed/>', async () => {
      const p = await afterHeader('tls.test');
      p.sendRaw(`<starttls xmlns='${NS_TLS}'/><auth xmlns='${NS_SASL}' mechanism='EXTERNAL'>=</auth>`);
      const err = await p.expectStreamError();
      expect(err.condition).toBe('policy-violation');
      expect(p.received.some((r) => localNameOf(r.el) === 'proceed')).toBe(false);
    });
  });

  describe('stream and connection churn', () => {
    it('a header whose stream prefix is bound to another namespace ⇒ invalid-namespace (RFC 6120 section 4.8.1)', async () => {
      const p = await connect();
      p.sendRaw("<stream:stream xmlns='jabber:server' xmlns:stream='urn:not-streams' from='db.test' to='gw.test' version='1.0'>");
      await p.header();
      expect((await p.expectStreamError()).condition).toBe('invalid-namespace');
    });

    it('500 rapid connect/close cycles (some mid-header, some mid-TLS) leave no stream or slot behind', async () => {
      const header = "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' from='db.test' to='gw.test' version='1.0'>";
      const partial = Array.from({ length: 50 }, (_, i) => header.slice(0, 40 + i));
      await churn(gw.port, {
        rounds: 10,
        perRound: 50,
        address: (i) => `127.0.0.${100 + (i % 20)}`,
        payloads: ['', partial[17]!, `${header}<starttls xmlns='${NS_TLS}'/>`, partial[43]!, '', `${header}<starttls xmlns='${NS_TLS}'/>`],
      });
      const inbound = () => [...gw.gateway.streams].filter((x) => x.direction === 'inbound');
      const clean = await eventually(() => inbound().length === 0, 5000);
      expect(clean, `${inbound().length} inbound streams left`).toBe(true);
      // No unauthenticated slot leaked: 20 more from one address fit (maxUnauthenticatedConnectionsPerAddress is 32).
      const again = await Promise.all(Array.from({ length: 20 }, () => idle(gw.port, '127.0.0.100')));
      expect(await eventually(() => inbound().length === 20, 2000)).toBe(true);
      for (const s of again) s.destroy();
      await partnerStillServed();
    });
  });

  describe('flow control', () => {
    it('an authenticated peer that stops reading is paused, not dropped, and gets every answer once it reads', async () => {
      const p = await authenticated();
      const stream = [...gw.gateway.streams].find((x) => x.direction === 'inbound' && x.remotePort === p.tcp.localPort)!;
      const socketOf = (x: object) => (x as { socket: net.Socket }).socket;
      p.tcp.pause(); // stop reading
      const n = 100_000;
      const received = p.received.length;
      let batch = '';
      for (let i = 0; i < n; i++) {
        batch += `<db:verify from='db.test' to='gw.test' id='q${i}'>k</db:verify>`;
        if (batch.length > 60_000 || i === n - 1) {
          p.tcp.write(batch);
          batch = '';
        }
      }
      // Once the kernel buffers are full and 64 KiB of answers wait, the gateway stops reading.
      let seen = -1;
      const stopped = await eventually(() => {
        const still = stream.bytesIn === seen && socketOf(stream).isPaused();
        seen = stream.bytesIn;
        return still;
      }, 15_000, 500);
      expect(stopped, 'the gateway never stopped reading').toBe(true);
      expect(stream.bytesIn).toBeLessThan(n * 60); // it did not read everything
      expect(stream.closed).toBe(false);
      expect(socketOf(stream).writableLength).toBeLessThan(256 * 1024);
      p.tcp.resume();
      expect(await eventually(() => p.received.length >= received + n, 20_000)).toBe(true);
      const ids = p.received.slice(received).map((r) => r.el.attrs.id);
      expect(ids).toEqual(Array.from({ length: n }, (_, i) => `q${i}`));
      expect(p.closedAlready).toBe(false);
      await ping(p, 'after-flow-control');
    }, 45_000);
  });
});
