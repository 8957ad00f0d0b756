/**
 * Self-test of the integration-test doubles: ScriptedPeer (initiating side) against
 * FakePartnerServer (receiving side) over real TCP and real TLS on 127.0.0.1, plus a few raw
 * servers to check the peer's parsing of segmentation, restarts and stream errors.
 */
import net, { type AddressInfo, type Server, type Socket } from 'node:net';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { dialbackKey, keysEqual } from '../../src/negotiation/dialback-key.js';
import { createCa, generateKeyPem, issueCertificate, type CertificateAndKey } from '../../src/tls/cert-factory.js';
import { NS_DIALBACK, NS_SASL, NS_SERVER, NS_STREAMS, NS_TLS } from '../../src/xml/namespaces.js';
import { isElement } from '../../src/xml/stream-parser.js';
import { FakePartnerServer, type FakePartnerOptions } from '../helpers/fake-partner-server.js';
import { ScriptedPeer, ScriptedPeerError, summarizeFeatures } from '../helpers/scripted-peer.js';

const SECRET = 's3cr3t-for-the-self-test';
let ca: CertificateAndKey;
let aCert: CertificateAndKey; // the initiating peer, a.test
let bCert: CertificateAndKey; // the fake partner, b.test
let rogueA: CertificateAndKey; // a.test from an untrusted CA

const cleanups: Array<() => Promise<unknown> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

beforeAll(() => {
  const key = generateKeyPem(); // one RSA key for everything (key generation dominates otherwise)
  ca = createCa({ commonName: 'Scripted Peer Test CA', keyPem: key });
  aCert = issueCertificate(ca, { domain: 'a.test', keyPem: key });
  bCert = issueCertificate(ca, { domain: 'b.test', keyPem: key });
  const rogueCa = createCa({ commonName: 'Rogue CA', keyPem: key });
  rogueA = issueCertificate(rogueCa, { domain: 'a.test', keyPem: key });
});

async function fake(opts: Partial<FakePartnerOptions> = {}): Promise<FakePartnerServer> {
  const f = await FakePartnerServer.start({
    domain: 'b.test', cert: bCert.certPem, key: bCert.keyPem, ca: ca.certPem,
    tls: 'required', sasl: true, dialback: true, ...opts,
  });
  cleanups.push(() => f.close());
  return f;
}

async function connect(port: number): Promise<ScriptedPeer> {
  const p = await ScriptedPeer.connect(port);
  cleanups.push(() => p.destroy());
  return p;
}

/** A raw TCP server whose accepted sockets the test scripts by hand. */
async function rawServer(onConn: (s: Socket) => void): Promise<number> {
  const server: Server = net.createServer(onConn);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  return (server.address() as AddressInfo).port;
}

const GW_HEADER = (id: string, version = " version='1.0'"): string =>
  `<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' ` +
  `xmlns:db='jabber:server:dialback' from='b.test' to='a.test' id='${id}'${version}>`;

describe('ScriptedPeer against FakePartnerServer', () => {
  it('STARTTLS + SASL EXTERNAL with cert-factory certificates, then a stanza', async () => {
    const f = await fake();
    const p = await connect(f.port);

    p.sendHeader({ from: 'a.test', to: 'b.test' });
    const h1 = await p.header();
    expect(h1).toMatchObject({ from: 'b.test', to: 'a.test', version: '1.0', 'xmlns:db': NS_DIALBACK });
    expect(p.streamId).toBe(h1['id']);
    expect(summarizeFeatures(await p.features())).toMatchObject({ starttls: true, starttlsRequired: true, mechanisms: [], dialback: false });

    const tls = await p.starttls({ cert: aCert.certPem, key: aCert.keyPem, ca: ca.certPem });
    expect(tls.protocol).toBe('TLSv1.3');
    expect(tls.authorized).toBe(true);
    expect(tls.identityError).toBeUndefined(); // SNI defaulted to the header `to`
    expect(tls.alpnProtocol).toBe('xmpp-server');
    expect(tls.peerX509?.subject).toBe('CN=b.test');

    p.restart();
    const h2 = await p.header();
    expect(h2['id']).not.toBe(h1['id']);
    expect(p.streamId).toBe(h2['id']);
    expect(summarizeFeatures(await p.features())).toMatchObject({ starttls: false, mechanisms: ['EXTERNAL'], dialback: true, dialbackErrors: false });

    const reply = await p.saslExternal();
    expect(isElement(reply, 'success', NS_SASL)).toBe(true);
    p.restart();
    const h3 = await p.header();
    expect(h3['id']).not.toBe(h2['id']);
    expect((await p.features()).children).toEqual([]);

    p.sendRaw("<message from='alice@a.test/r' to='bob@b.test' id='m1' type='chat'><body>hi &amp; bye</body></message>");
    const m = await f.waitForStanza((el) => el.attrs['id'] === 'm1');
    expect(m.getChildText('body')).toBe('hi & bye');
    expect(isElement(m, 'message', NS_SERVER)).toBe(true);

    const c = f.connections[0]!;
    expect(c.headers).toHaveLength(3);
    expect(c.streamIds).toEqual([h1['id'], h2['id'], h3['id']]);
    expect(c.tls).toMatchObject({ protocol: 'TLSv1.3', servername: 'b.test', alpn: 'xmpp-server', authorized: true, clientCertSubject: 'CN=a.test' });
    expect(c.tls?.check).toMatchObject({ chainValid: true, identity: { ok: true } });
    expect(c.sasl).toBe('success');
    expect(c.saslAuthzid).toBe('a.test');
    expect(c.stanzas[0]?.raw).toContain("id='m1'");
    expect(c.violations).toEqual([]);

    const closed = await p.close();
    expect(closed.streamEnd).toBe(true);
    expect(c.streamEndReceived).toBe(true);
  });

  it('negotiate(): untrusted certificate ⇒ no EXTERNAL offered, SASL fails, dialback on the same stream succeeds', async () => {
    const seen: Array<{ from: string; to: string; key: string; streamId: string }> = [];
    const f = await fake({
      dialbackErrors: true,
      acceptResult: ({ from, to, key, streamId }) => {
        seen.push({ from, to, key, streamId });
        return keysEqual(key, dialbackKey(SECRET, to, from, streamId)) ? 'valid' : 'invalid';
      },
    });
    const p = await connect(f.port);
    const r = await p.negotiate({
      from: 'a.test', to: 'b.test',
      tls: { cert: rogueA.certPem, key: rogueA.keyPem },
      sasl: true,
      dialback: { secret: SECRET },
    });
    expect(r.headers).toHaveLength(2);
    expect(summarizeFeatures(r.features[1]!)).toMatchObject({ mechanisms: [], dialback: true, dialbackErrors: true });
    expect(r.tls?.authorized).toBe(false); // no `ca` given to starttls: the gateway's cert is reported, not enforced
    expect(r.sasl).toBe('failure');
    expect(r.saslReply?.getChildElements()[0]?.name).toBe('not-authorized');
    expect(r.dialback?.type).toBe('valid');
    expect(r.dialback?.reply.attrs).toMatchObject({ from: 'b.test', to: 'a.test' });
    expect(r.established).toBe(true);
    expect(seen).toEqual([{ from: 'a.test', to: 'b.test', key: dialbackKey(SECRET, 'b.test', 'a.test', r.streamId), streamId: r.streamId }]);

    const c = f.connections[0]!;
    expect(c.tls?.check).toMatchObject({ chainValid: false, chainError: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });
    expect(c.sasl).toBe('failure:not-authorized');
    expect([...c.dialbackPairs]).toEqual(['a.test b.test']);

    // Authenticated pair: accepted. Spoofed sender domain: not-authorized (Prosody).
    p.sendRaw("<presence from='a.test' to='b.test'/>");
    await f.waitForStanza((el) => el.name === 'presence');
    p.sendRaw("<message from='mallory@evil.test' to='bob@b.test'><body>x</body></message>");
    const err = await p.expectStreamError();
    expect(err).toMatchObject({ condition: 'not-authorized', text: 'evil.test is not authenticated on this stream' });
    const closed = await p.closed();
    expect(closed.streamEnd).toBe(true);
    expect(c.violations[0]).toMatch(/unauthenticated domain/);
  });

  it('dialback key function, and an invalid result closes the stream', async () => {
    const f = await fake({ tls: 'optional', sasl: false, acceptResult: () => 'invalid' });
    const p = await connect(f.port);
    const r = await p.negotiate({ from: 'a.test', to: 'b.test', dialback: { key: (id) => `k-${id}` } });
    expect(summarizeFeatures(r.features[0]!)).toMatchObject({ starttls: true, starttlsRequired: false, dialback: true });
    expect(r.dialback?.type).toBe('invalid');
    expect(f.connections[0]!.dbResults[0]).toMatchObject({ key: `k-${r.streamId}`, answer: 'invalid' });
    expect((await p.expectStreamError()).condition).toBe('not-authorized');
    await p.closed();
  });

  it('db:verify is answered with from/to swapped and the id copied; waitForVerify sees each request', async () => {
    const f = await fake({
      tls: 'none', sasl: false,
      answerVerify: ({ from, to, id, key }) => (keysEqual(key, dialbackKey(SECRET, from, to, id)) ? 'valid' : 'invalid'),
    });
    const p = await connect(f.port);
    p.sendHeader({ from: 'gw.test', to: 'b.test' });
    await p.header();
    expect(summarizeFeatures(await p.features())).toMatchObject({ starttls: false, dialback: true });

    // gw.test received a db:result from b.test on stream S1 and asks b.test (authoritative) to verify.
    p.dialbackVerify('gw.test', 'b.test', 'S1', dialbackKey(SECRET, 'gw.test', 'b.test', 'S1'));
    const v1 = await p.expect('verify', NS_DIALBACK);
    expect(v1.attrs).toEqual({ from: 'b.test', to: 'gw.test', id: 'S1', type: 'valid' });
    p.dialbackVerify('gw.test', 'b.test', 'S2', 'wrong');
    expect((await p.expect('verify', NS_DIALBACK)).attrs).toMatchObject({ id: 'S2', type: 'invalid' });

    expect(await f.waitForVerify()).toMatchObject({ from: 'gw.test', to: 'b.test', id: 'S1', answer: 'valid' });
    expect(await f.waitForVerify()).toMatchObject({ id: 'S2', key: 'wrong', answer: 'invalid' });
    await expect(f.waitForVerify(50)).rejects.toThrow(/timed out after 50 ms waiting for a db:verify/);
    await p.close();
  });

  it('dialback error answers and ignored verifies', async () => {
    const f = await fake({
      tls: 'none', sasl: false, dialbackErrors: true,
      acceptResult: () => ({ error: 'remote-connection-failed' }),
      answerVerify: () => 'ignore',
    });
    const p = await connect(f.port);
    const r = await p.negotiate({ from: 'a.test', to: 'b.test', dialback: { key: 'k' } });
    expect(r.dialback?.type).toBe('error');
    expect(r.dialback?.reply.getChild('error')?.getChildElements()[0]?.name).toBe('remote-connection-failed');
    p.dialbackResult('a.test', 'other.test', 'k');
    const nf = await p.expect('result', NS_DIALBACK);
    expect(nf.attrs).toMatchObject({ from: 'other.test', to: 'a.test', type: 'error' });
    p.dialbackVerify('a.test', 'b.test', 'X', 'k');
    await p.expectNothing(50);
    expect((await f.waitForVerify()).answer).toBe('ignore');
  });

  it('refuses what a real receiving server refuses', async () => {
    const f = await fake();
    // db:result before the required STARTTLS ⇒ policy-violation (ejabberd).
    const p1 = await connect(f.port);
    const r = p1.negotiate({ from: 'a.test', to: 'b.test', dialback: { key: 'k' } });
    await expect(r).rejects.toThrow(/stream error <policy-violation\/> "TLS is required"/);
    // A restart with a different `from` ⇒ improper-addressing (Prosody).
    // (A header sent again mid-stream would be refused as restricted-xml: `<?xml` at depth 1.)
    const p2 = await connect(f.port);
    p2.sendHeader({ from: 'a.test', to: 'b.test' });
    await p2.header();
    await p2.features();
    await p2.starttls();
    p2.restart({ from: 'c.test' });
    await p2.header();
    expect((await p2.expectStreamError()).condition).toBe('improper-addressing');
    // Unknown target domain ⇒ our header first, then host-unknown.
    const p3 = await connect(f.port);
    p3.sendHeader({ from: 'a.test', to: 'nope.test' });
    expect((await p3.header())['from']).toBe('b.test');
    expect(await p3.expectStreamError()).toMatchObject({ condition: 'host-unknown' });
    // A stanza before authentication ⇒ not-authorized.
    const p4 = await connect(f.port);
    await p4.negotiate({ from: 'a.test', to: 'b.test', tls: true });
    p4.sendRaw("<message from='a.test' to='b.test'/>");
    expect((await p4.expectStreamError()).condition).toBe('not-authorized');
    expect(f.stanzas).toEqual([]);
  });

  it('drops a connection that injects plaintext after <starttls/> (no <proceed/>)', async () => {
    const f = await fake();
    const p = await connect(f.port);
    p.sendHeader({ from: 'a.test', to: 'b.test' });
    await p.header();
    await p.features();
    p.sendRaw(`<starttls xmlns='${NS_TLS}'/><message from='a.test' to='b.test'/>`);
    const closed = await p.closed();
    expect(closed.streamEnd).toBe(false);
    expect(p.received.some((r) => isElement(r.el, 'proceed', NS_TLS))).toBe(false);
    expect(f.connections[0]!.violations[0]).toMatch(/data after <starttls\/>/);
  });

  it('tls none: <starttls/> gets <failure/> and the stream is closed', async () => {
    const f = await fake({ tls: 'none', sasl: false });
    const p = await connect(f.port);
    p.sendHeader({ from: 'a.test', to: 'b.test' });
    await p.header();
    await p.features();
    await expect(p.starttls()).rejects.toThrow(/expected <proceed[^]*got <failure xmlns="urn:ietf:params:xml:ns:xmpp-tls"\/>/);
    expect((await p.closed()).streamEnd).toBe(true);
  });

  it('SASL details: authzid "=", a foreign authzid, and legacy (version-less) streams', async () => {
    const f = await fake();
    const p = await connect(f.port);
    const r = await p.negotiate({ from: 'a.test', to: 'b.test', tls: { cert: aCert.certPem, key: aCert.keyPem }, sasl: { authzid: '=' } });
    expect(r.sasl).toBe('success');
    expect(f.connections[0]!.saslAuthzid).toBe('');
    const p2 = await connect(f.port);
    const r2 = await p2.negotiate({ from: 'a.test', to: 'b.test', tls: { cert: aCert.certPem, key: aCert.keyPem }, sasl: { authzid: 'x.test' } });
    expect(r2.saslReply?.toString()).toBe('<failure xmlns="urn:ietf:params:xml:ns:xmpp-sasl"><invalid-authzid/></failure>');

    const legacy = await fake({ tls: 'none', sasl: false, legacy: true });
    const p3 = await connect(legacy.port);
    const r3 = await p3.negotiate({ from: 'a.test', to: 'b.test', header: { version: null }, dialback: { key: 'k' } });
    expect(r3.headers[0]?.['version']).toBeUndefined();
    expect(r3.features).toEqual([]);
    expect(r3.dialback?.type).toBe('valid');
  });

  it('records whitespace keep-alives both ways and onHeader can refuse a stream', async () => {
    const f = await fake({
      tls: 'none', sasl: false,
      onHeader: (attrs) => (attrs['from'] === 'banned.test' ? { condition: 'policy-violation', text: 'go away' } : undefined),
    });
    const p = await connect(f.port);
    await p.negotiate({ from: 'a.test', to: 'b.test', dialback: { key: 'k' } });
    p.sendWhitespace();
    await f.waitUntil(() => f.connections[0]!.whitespace === 1);
    f.connections[0]!.send(' ');
    await p.waitForWhitespace(1);
    expect(p.whitespaceCount).toBe(1);

    const p2 = await connect(f.port);
    p2.sendHeader({ from: 'banned.test', to: 'b.test' });
    await p2.header();
    expect(await p2.expectStreamError()).toMatchObject({ condition: 'policy-violation', text: 'go away' });
  });
});

describe('ScriptedPeer parsing against raw servers', () => {
  it('header and features in separate segments, then a stream error with text and app condition', async () => {
    const port = await rawServer((s) => {
      s.once('data', () => {
        s.write(GW_HEADER('ID1').slice(0, 40));
        setTimeout(() => s.write(GW_HEADER('ID1').slice(40)), 5);
        setTimeout(() => s.write('<stream:features><dialback xmlns="urn:xmpp:features:dialback"/></stream:fea'), 10);
        setTimeout(() => s.write('tures>'), 15);
        setTimeout(() => {
          s.write("<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" +
            "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>too big</text>" +
            "<stanza-too-big xmlns='urn:xmpp:errors'/></stream:error></stream:stream>");
          s.end();
        }, 20);
      });
    });
    const p = await connect(port);
    p.sendHeader({ from: 'a.test', to: 'b.test' });
    expect((await p.header())['id']).toBe('ID1');
    expect(p.streamId).toBe('ID1');
    expect(summarizeFeatures(await p.features()).dialback).toBe(true);
    const e = await p.expectStreamError();
    expect(e.condition).toBe('policy-violation');
    expect(e.text).toBe('too big');
    expect(e.app).toEqual({ name: 'stanza-too-big', ns: 'urn:xmpp:errors' });
    expect(await p.closed()).toMatchObject({ streamEnd: true });
    await expect(p.next(100)).rejects.toThrow(/stream ended/);
  });

  it('header, features and <success/> plus the next header in one segment: the restart splits them', async () => {
    const port = await rawServer((s) => {
      let n = 0;
      s.on('data', (d) => {
        n++;
        const text = d.toString();
        if (n === 1) s.write(GW_HEADER('ID1') + "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism></mechanisms></stream:features>");
        else if (text.includes('<auth')) s.write(`<success xmlns='${NS_SASL}'/>` + GW_HEADER('ID2') + '<stream:features/>');
      });
    });
    const p = await connect(port);
    p.sendHeader({ from: 'a.test', to: 'b.test' });
    await p.header();
    await p.features();
    const reply = await p.saslExternal();
    expect(reply.name).toBe('success');
    expect((await p.header())['id']).toBe('ID2');
    expect(p.streamId).toBe('ID2');
    expect(isElement(await p.features(), 'features', NS_STREAMS)).toBe(true);
  });

  it('rejects plaintext sent after <proceed/>, and a malformed gateway stream', async () => {
    const port = await rawServer((s) => {
      s.once('data', () => {
        s.write(GW_HEADER('ID1') + `<stream:features><starttls xmlns='${NS_TLS}'/></stream:features>`);
        s.once('data', () => s.write(`<proceed xmlns='${NS_TLS}'/><message/>`));
      });
    });
    const p = await connect(port);
    p.sendHeader({ from: 'a.test', to: 'b.test' });
    await p.header();
    await p.features();
    await expect(p.starttls()).rejects.toThrow(/plaintext after <proceed\/>: <message\/>/);

    const port2 = await rawServer((s) => s.once('data', () => s.write(GW_HEADER('ID1') + '<a></b>')));
    const p2 = await connect(port2);
    p2.sendHeader({ from: 'a.test', to: 'b.test' });
    await p2.header();
    const e = await p2.next().catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ScriptedPeerError);
    expect(String(e)).toMatch(/refused by the parser: not-well-formed/);
    expect(p2.parseError?.condition).toBe('not-well-formed');
  });

  it('times out with the transcript in the message; expectNothing sees stray elements', async () => {
    const port = await rawServer((s) => s.once('data', () => s.write(GW_HEADER('ID1', ''))));
    const p = await connect(port);
    p.sendHeader({ from: 'a.test', to: 'b.test', version: null, xmlDecl: false, id: '', attrs: { 'xml:lang': undefined } });
    expect(p.transcript[0]?.text).toBe(
      "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='a.test' to='b.test' id=''>",
    );
    const h = await p.header();
    expect(h['version']).toBeUndefined();
    const err = (await p.next(30).then(() => new Error('no timeout'), (x: unknown) => x)) as Error;
    expect(err.message).toMatch(/timed out after 30 ms waiting for a top-level element\ntranscript:\n.*->\] <stream:stream/s);
    await p.expectNothing(20);
  });
});
