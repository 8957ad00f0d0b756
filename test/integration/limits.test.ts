/**
 * Connection limits (docs/design.md sections 2 and 3, issue 3) against the real gateway, over real
 * sockets and TLS:
 *  - a partner's ConnectionLimit counts its authenticated streams per direction, across all its
 *    domains; the stream that would exceed it is refused `policy-violation` with a text naming
 *    the limit, and the streams already up are untouched;
 *  - a record without ConnectionLimit gets the gateway's partnerConnectionLimit;
 *  - the dialback verification connection the gateway opens to the partner's authoritative
 *    server never counts against the partner;
 *  - the gateway-wide connectionLimit refuses the one connection that exceeds it;
 *  - every refusal is counted in /metrics with the partner and the rule.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { dialbackKey, keysEqual } from '../../src/negotiation/dialback-key.js';
import { NS_STREAMS } from '../../src/xml/namespaces.js';
import { isElement } from '../../src/xml/stream-parser.js';
import { FakePartnerServer } from '../helpers/fake-partner-server.js';
import { authenticate, eventually, getStatus, metricValue, statusOf } from '../helpers/live-streams.js';
import { PEER_DIALBACK_SECRET } from '../helpers/partner-attempt.js';
import { ScriptedPeer, summarizeFeatures } from '../helpers/scripted-peer.js';
import { startTestGateway, testPki, type TestGateway, type TestPki } from '../helpers/test-gateway.js';

const REFUSALS = 'gw_stream_refusals_total';
const EXTERNAL_ONLY = 'TlsNegotiation: Required\n  SaslNegotiation: Required\n  SupportDialbackNegotiation: false';
const DIALBACK_ONLY = 'TlsNegotiation: NotSupported\n  SaslNegotiation: NotSupported\n  SupportDialbackNegotiation: true';

let pki: TestPki;
/** Every scripted peer a test opened; destroyed after each test. */
const peers: ScriptedPeer[] = [];
const track = <T extends { peer: ScriptedPeer }>(r: T): T => (peers.push(r.peer), r);

beforeAll(() => {
  pki = testPki();
});

afterEach(() => {
  for (const p of peers.splice(0)) p.destroy();
});

const cert = (domain: string) => pki.issue({ domain });

function ping(peer: ScriptedPeer, from: string, id: string): void {
  peer.send(`<iq xmlns='jabber:server' type='get' id='${id}' from='${from}' to='gw.test'><ping xmlns='urn:xmpp:ping'/></iq>`);
}

describe('partner ConnectionLimit', () => {
  let gw: TestGateway;
  let partnersServer: FakePartnerServer;

  beforeAll(async () => {
    // The partners' own servers: the gateway's replies go out to them on outbound streams, and
    // db.test's dialback keys are verified here (its authoritative server).
    const serverCert = pki.issue({ domain: 'multi.test', dnsNames: ['multi.test', 'multi-alt.test', 'db.test'] });
    partnersServer = await FakePartnerServer.start({
      domain: 'multi.test',
      extraDomains: ['multi-alt.test', 'db.test'],
      cert: serverCert.certPem,
      key: serverCert.keyPem,
      ca: pki.ca.certPem,
      tls: 'optional',
      sasl: true,
      dialback: true,
      answerVerify: (v) => (keysEqual(dialbackKey(PEER_DIALBACK_SECRET, v.from, v.to, v.id), v.key) ? 'valid' : 'invalid'),
    });
    const route = `127.0.0.1:${partnersServer.port}`;
    gw = await startTestGateway({
      pki,
      config: 'partnerConnectionLimit: 2',
      routes: { 'multi.test': route, 'multi-alt.test': route, 'db.test': route },
      partners: `- Identity: multi.test
  AdditionalDomains: [multi-alt.test]
  ConnectionLimit: 1
  ${EXTERNAL_ONLY}
- Identity: dflt.test
  ${EXTERNAL_ONLY}
- Identity: roomy.test
  ConnectionLimit: 3
  ${EXTERNAL_ONLY}
- Identity: db.test
  ConnectionLimit: 1
  ${DIALBACK_ONLY}
`,
    });
  });

  afterAll(async () => {
    for (const p of peers.splice(0)) p.destroy();
    await gw?.close();
    await partnersServer?.close();
  });

  it('ConnectionLimit 1: a second inbound stream via another of the partner\'s domains is refused, the first keeps working', async () => {
    const refusalsBefore = await metricValue(gw.adminPort, REFUSALS, { partner: 'multi.test', rule: 'ConnectionLimit', condition: 'policy-violation' });
    const first = track(await authenticate({ port: gw.port, from: 'multi.test', cert: cert('multi.test') }));
    expect(first.outcome).toBe('sasl-external');

    const second = track(await authenticate({ port: gw.port, from: 'multi-alt.test', cert: cert('multi-alt.test') }));
    expect(second.outcome).toBe('refused:policy-violation');
    expect(second.error?.text).toMatch(/ConnectionLimit 1 of partner multi\.test reached \(inbound streams\)/);
    expect((await second.peer.closed()).streamEnd).toBe(true);

    // The first stream is still up, listed, and still carries traffic: its ping is answered on
    // the gateway's outbound stream to multi.test (the other direction has its own limit of 1).
    const listed = await statusOf(gw.adminPort, first.peer);
    expect(listed).toMatchObject({ partner: 'multi.test', remoteDomain: 'multi.test', auth: 'sasl-external' });
    ping(first.peer, 'multi.test', 'still-alive');
    const pong = await partnersServer.waitForStanza((el) => el.attrs.id === 'still-alive');
    expect(pong.attrs).toMatchObject({ type: 'result', from: 'gw.test', to: 'multi.test' });
    expect((await statusOf(gw.adminPort, first.peer))?.stanzasIn).toBe(1);
    expect(first.peer.closedAlready).toBe(false);
    const { streams } = await getStatus(gw.adminPort);
    expect(streams.filter((s) => s.partner === 'multi.test' && s.direction === 'inbound')).toHaveLength(1);
    expect(streams.filter((s) => s.partner === 'multi.test' && s.direction === 'outbound' && s.purpose === 'stream')).toHaveLength(1);

    expect(await metricValue(gw.adminPort, REFUSALS, { partner: 'multi.test', rule: 'ConnectionLimit', condition: 'policy-violation' }))
      .toBe(refusalsBefore + 1);
    const log = await gw.waitForLog((l) => l.event === 'stream.refused' && l.partner === 'multi.test' && l.rule === 'ConnectionLimit');
    expect(log.condition).toBe('policy-violation');

    // Once the first stream is gone its slot is free again, for any of the partner's domains.
    await first.peer.close();
    let again: Awaited<ReturnType<typeof authenticate>> | undefined;
    const freed = await eventually(async () => {
      again = track(await authenticate({ port: gw.port, from: 'multi-alt.test', cert: cert('multi-alt.test') }));
      return again.outcome === 'sasl-external';
    }, 2000, 100);
    expect(freed, `the slot was not released: last outcome ${again?.outcome}`).toBe(true);
  });

  it('without ConnectionLimit the partner gets partnerConnectionLimit; an explicit ConnectionLimit wins over it', async () => {
    const dflt = [];
    for (let i = 0; i < 2; i++) dflt.push(track(await authenticate({ port: gw.port, from: 'dflt.test', cert: cert('dflt.test') })));
    expect(dflt.map((r) => r.outcome)).toEqual(['sasl-external', 'sasl-external']);
    const third = track(await authenticate({ port: gw.port, from: 'dflt.test', cert: cert('dflt.test') }));
    expect(third.outcome).toBe('refused:policy-violation');
    expect(third.error?.text).toMatch(/partnerConnectionLimit/);
    expect(third.error?.text).toMatch(/\b2\b/);
    expect(third.error?.text).toMatch(/dflt\.test/);
    for (const r of dflt) expect(r.peer.closedAlready).toBe(false);

    const roomy = [];
    for (let i = 0; i < 3; i++) roomy.push(track(await authenticate({ port: gw.port, from: 'roomy.test', cert: cert('roomy.test') })));
    expect(roomy.map((r) => r.outcome)).toEqual(['sasl-external', 'sasl-external', 'sasl-external']);
    const fourth = track(await authenticate({ port: gw.port, from: 'roomy.test', cert: cert('roomy.test') }));
    expect(fourth.outcome).toBe('refused:policy-violation');
    expect(fourth.error?.text).toMatch(/ConnectionLimit 3 of partner roomy\.test/);

    const { streams } = await getStatus(gw.adminPort);
    expect(streams.filter((s) => s.partner === 'dflt.test' && s.direction === 'inbound')).toHaveLength(2);
    expect(streams.filter((s) => s.partner === 'roomy.test' && s.direction === 'inbound')).toHaveLength(3);
    expect(await metricValue(gw.adminPort, REFUSALS, { partner: 'dflt.test', rule: 'ConnectionLimit' })).toBe(1);
    expect(await metricValue(gw.adminPort, REFUSALS, { partner: 'roomy.test', rule: 'ConnectionLimit' })).toBe(1);
  });

  it('ConnectionLimit 1 still lets a stream authenticate by dialback: the verification connection is not counted', async () => {
    const verifiesBefore = partnersServer.verifies.length;
    const first = track(await authenticate({ port: gw.port, from: 'db.test', useTls: false }));
    expect(first.outcome).toBe('dialback');
    expect(partnersServer.verifies.length).toBe(verifiesBefore + 1);

    // Fill the outbound direction too: the ping's answer goes out on a stream to db.test.
    ping(first.peer, 'db.test', 'db-ping');
    await partnersServer.waitForStanza((el) => el.attrs.id === 'db-ping');
    let status = await getStatus(gw.adminPort);
    expect(status.streams.filter((s) => s.partner === 'db.test' && s.direction === 'outbound' && s.purpose === 'stream' && s.auth !== 'none')).toHaveLength(1);

    const second = track(await authenticate({ port: gw.port, from: 'db.test', useTls: false }));
    expect(second.outcome).toBe('refused:policy-violation');
    expect(second.error?.text).toMatch(/ConnectionLimit 1 of partner db\.test reached \(inbound streams\)/);
    expect(first.peer.closedAlready).toBe(false);

    // Replace the inbound stream: the new one is verified over a fresh connection to db.test's
    // authoritative server while db.test's outbound slot is taken; that must not matter.
    await first.peer.close();
    let third: Awaited<ReturnType<typeof authenticate>> | undefined;
    const ok = await eventually(async () => {
      third = track(await authenticate({ port: gw.port, from: 'db.test', useTls: false }));
      return third.outcome !== 'refused:policy-violation' || !/inbound streams/.test(third.error?.text ?? '');
    }, 2000, 100);
    expect(ok).toBe(true);
    expect(third?.outcome, JSON.stringify(third?.error)).toBe('dialback');
    expect(partnersServer.verifies.length).toBeGreaterThanOrEqual(verifiesBefore + 2);
    status = await getStatus(gw.adminPort);
    const db = status.streams.filter((s) => s.partner === 'db.test' && s.purpose === 'stream');
    expect(db.filter((s) => s.direction === 'inbound')).toHaveLength(1);
    expect(db.filter((s) => s.direction === 'outbound')).toHaveLength(1);
  });
});

describe('gateway-wide connectionLimit', () => {
  let gw: TestGateway;

  beforeAll(async () => {
    gw = await startTestGateway({
      pki,
      config: 'connectionLimit: 2',
      partners: `- Identity: big.test\n  ${EXTERNAL_ONLY}\n`,
    });
  });

  afterAll(async () => {
    for (const p of peers.splice(0)) p.destroy();
    await gw?.close();
  });

  it('refuses the connection beyond it with policy-violation naming connectionLimit; the others are untouched', async () => {
    const before = await metricValue(gw.adminPort, REFUSALS, { rule: 'connectionLimit', condition: 'policy-violation' });
    const authed = track(await authenticate({ port: gw.port, from: 'big.test', cert: cert('big.test') }));
    expect(authed.outcome).toBe('sasl-external');
    // A second connection, in the middle of its negotiation.
    const pending = await ScriptedPeer.connect(gw.port);
    peers.push(pending);
    pending.sendHeader({ from: 'big.test', to: 'gw.test' });
    await pending.header();
    expect(summarizeFeatures(await pending.features()).starttls).toBe(true);

    // The third connection exceeds the limit of 2.
    const over = await ScriptedPeer.connect(gw.port);
    peers.push(over);
    await over.header();
    const err = await over.expectStreamError();
    expect(err.condition).toBe('policy-violation');
    expect(err.text).toMatch(/connectionLimit/);
    expect((await over.closed()).streamEnd).toBe(true);

    // Untouched: the authenticated stream is still listed, the pending one completes EXTERNAL.
    expect(await statusOf(gw.adminPort, authed.peer)).toMatchObject({ partner: 'big.test', auth: 'sasl-external' });
    const c = cert('big.test');
    await pending.starttls({ cert: c.certPem, key: c.keyPem });
    pending.sendHeader({ from: 'big.test', to: 'gw.test' });
    await pending.header();
    expect(summarizeFeatures(await pending.features()).mechanisms).toContain('EXTERNAL');
    expect((await pending.saslExternal()).name).toBe('success');
    pending.sendHeader({ from: 'big.test', to: 'gw.test' });
    await pending.header();
    expect(isElement(await pending.next(), 'features', NS_STREAMS)).toBe(true);
    expect(authed.peer.closedAlready).toBe(false);
    const { streams } = await getStatus(gw.adminPort);
    expect(streams.filter((s) => s.partner === 'big.test' && s.auth === 'sasl-external')).toHaveLength(2);

    expect(await metricValue(gw.adminPort, REFUSALS, { rule: 'connectionLimit', condition: 'policy-violation' })).toBe(before + 1);

    // A closed connection frees its place.
    await authed.peer.close();
    const freed = await eventually(async () => {
      const p = await ScriptedPeer.connect(gw.port);
      peers.push(p);
      p.sendHeader({ from: 'big.test', to: 'gw.test' });
      await p.header();
      const el = await p.next();
      p.destroy();
      return isElement(el, 'features', NS_STREAMS);
    }, 2000, 100);
    expect(freed).toBe(true);
  });
});
