/**
 * What a partner's user gets from the gateway itself (issue 3, until the relay exists): ping and
 * disco#info answered, everything else bounced with service-unavailable, and every reply sent
 * over an outbound stream to the partner, found through a real dns2 DNS server (SRV) and
 * negotiated per the same record: SASL EXTERNAL with the gateway's certificate, or dialback
 * that the partner verifies by calling the gateway back (our authoritative role).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dialbackKey, keysEqual } from '../../src/negotiation/dialback-key.js';
import { isElement } from '../../src/xml/stream-parser.js';
import { NS_DIALBACK, NS_DISCO_INFO, NS_STANZAS } from '../../src/xml/namespaces.js';
import type { Element } from '../../src/xml/ltx.js';
import { FakePartnerServer } from '../helpers/fake-partner-server.js';
import { attempt, PEER_DIALBACK_SECRET } from '../helpers/partner-attempt.js';
import { ScriptedPeer } from '../helpers/scripted-peer.js';
import { metricValue } from '../helpers/live-streams.js';
import { startTestDns, type TestDns } from '../helpers/test-dns.js';
import { startTestGateway, testPki, type TestGateway, type TestPki, adminHeaders } from '../helpers/test-gateway.js';

const GATEWAY_SECRET = 'gateway-test-dialback-secret-0123456789';

let pki: TestPki;
let dns: TestDns;
let gw: TestGateway;
let secure: FakePartnerServer; // ext.test: TLS + EXTERNAL only
let legacy: FakePartnerServer; // db.test: dialback only, verifies the gateway by calling it back
const callbacks: { from: string; to: string; type: string | undefined }[] = [];

/** The partner (receiving server) checks our db:result with our authoritative role, for real. */
async function verifyWithGateway(r: { from: string; to: string; key: string; streamId: string }): Promise<'valid' | 'invalid'> {
  const peer = await ScriptedPeer.connect(gw.port);
  try {
    peer.sendHeader({ from: 'db.test', to: r.from });
    await peer.header();
    await peer.features();
    peer.dialbackVerify('db.test', r.from, r.streamId, r.key);
    const answer = await peer.next();
    callbacks.push({ from: answer.attrs.from ?? '', to: answer.attrs.to ?? '', type: answer.attrs.type });
    return answer.attrs.type === 'valid' ? 'valid' : 'invalid';
  } finally {
    peer.destroy();
  }
}

beforeAll(async () => {
  pki = testPki();
  const extCert = pki.issue({ domain: 'ext.test' });
  secure = await FakePartnerServer.start({ domain: 'ext.test', cert: extCert.certPem, key: extCert.keyPem, ca: pki.ca.certPem, tls: 'required', sasl: true, dialback: false });
  legacy = await FakePartnerServer.start({
    domain: 'db.test',
    tls: 'none',
    sasl: false,
    dialback: true,
    answerVerify: (v) => (keysEqual(dialbackKey(PEER_DIALBACK_SECRET, v.from, v.to, v.id), v.key) ? 'valid' : 'invalid'),
    acceptResult: (r) => verifyWithGateway(r),
  });
  dns = await startTestDns({
    srv: {
      '_xmpp-server._tcp.ext.test': [{ target: 'ext-host.test', port: secure.port }],
      '_xmpp-server._tcp.db.test': [{ target: '127.0.0.1.', port: legacy.port }],
    },
    a: { 'ext-host.test': ['127.0.0.1'] },
  });
  gw = await startTestGateway({
    pki,
    dnsServer: dns.address,
    partners: `- Identity: ext.test
  SupportDialbackNegotiation: false
- Identity: db.test
  TlsNegotiation: NotSupported
  SaslNegotiation: NotSupported
`,
  });
});

afterAll(async () => {
  await gw?.close();
  await secure?.close();
  await legacy?.close();
  await dns?.close();
});

async function connectedPeer(domain: 'ext.test' | 'db.test'): Promise<ScriptedPeer> {
  const cert = domain === 'ext.test' ? pki.issue({ domain }) : undefined;
  const { outcome, peer } = await attempt({ port: gw.port, from: domain, ...(cert ? { cert } : {}) });
  expect(outcome).toBe(domain === 'ext.test' ? 'sasl-external' : 'dialback');
  return peer;
}

describe('answers from the gateway itself', () => {
  it('ping over a SASL EXTERNAL partner: the result comes back on our outbound stream (SRV via dns2)', async () => {
    const peer = await connectedPeer('ext.test');
    peer.sendRaw(`<iq type='get' from='alice@ext.test/phone' to='gw.test' id='ping-1'><ping xmlns='urn:xmpp:ping'/></iq>`);
    const reply = await secure.waitForStanza((el) => el.attrs.id === 'ping-1', 8000);
    expect(reply.attrs).toMatchObject({ type: 'result', from: 'gw.test', to: 'alice@ext.test/phone' });
    const conn = secure.connections.find((c) => c.stanzas.some((s) => s.el.attrs.id === 'ping-1'))!;
    expect(conn.sasl).toBe('success');
    expect(conn.tls?.protocol).toMatch(/^TLSv1\.[23]$/);
    expect(dns.queries).toContain('_xmpp-server._tcp.ext.test');
    expect(peer.closedAlready).toBe(false);
    // Counters move while the streams live (not only when they close).
    expect(await metricValue(gw.adminPort, 'gw_stanzas_total', { partner: 'ext.test', direction: 'inbound' })).toBeGreaterThanOrEqual(1);
    expect(await metricValue(gw.adminPort, 'gw_stanzas_total', { partner: 'ext.test', direction: 'outbound' })).toBeGreaterThanOrEqual(1);
    expect(await metricValue(gw.adminPort, 'gw_bytes_total', { partner: 'ext.test', direction: 'inbound' })).toBeGreaterThan(100);
    const status = (await (await fetch(`http://127.0.0.1:${gw.adminPort}/status`, { headers: adminHeaders(gw.adminPort) })).json()) as { streams: Record<string, unknown>[] };
    expect(status.streams).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ partner: 'ext.test', direction: 'inbound', localDomain: 'gw.test', remoteDomain: 'ext.test', auth: 'sasl-external', tls: expect.stringMatching(/^TLSv1\.[23]$/) }),
        expect.objectContaining({ partner: 'ext.test', direction: 'outbound', localDomain: 'gw.test', remoteDomain: 'ext.test', auth: 'sasl-external' }),
      ]),
    );
    peer.destroy();
  });

  it('ping over a dialback partner: the partner verifies our key by calling the gateway back', async () => {
    const peer = await connectedPeer('db.test');
    peer.sendRaw(`<iq type='get' from='bob@db.test/r' to='gw.test' id='ping-2'><ping xmlns='urn:xmpp:ping'/></iq>`);
    const reply = await legacy.waitForStanza((el) => el.attrs.id === 'ping-2', 8000);
    expect(reply.attrs).toMatchObject({ type: 'result', from: 'gw.test', to: 'bob@db.test/r' });
    expect(callbacks).toContainEqual({ from: 'gw.test', to: 'db.test', type: 'valid' });
    peer.destroy();
  });

  it('disco#info names the gateway and its features', async () => {
    const peer = await connectedPeer('ext.test');
    peer.sendRaw(`<iq type='get' from='alice@ext.test/phone' to='gw.test' id='disco-1'><query xmlns='${NS_DISCO_INFO}'/></iq>`);
    const reply = await secure.waitForStanza((el) => el.attrs.id === 'disco-1', 8000);
    expect(reply.attrs.type).toBe('result');
    const query = reply.getChild('query', NS_DISCO_INFO)!;
    expect(query.getChild('identity')?.attrs).toMatchObject({ category: 'server', type: 'im' });
    expect(query.getChildren('feature').map((f) => f.attrs.var)).toEqual(expect.arrayContaining(['urn:xmpp:ping', NS_DISCO_INFO]));
    peer.destroy();
  });

  it('a message to a user is bounced with service-unavailable; errors are never bounced', async () => {
    const peer = await connectedPeer('ext.test');
    peer.sendRaw(`<message type='chat' from='alice@ext.test/phone' to='carol@gw.test' id='m-1'><body>hi</body></message>`);
    peer.sendRaw(`<message type='error' from='alice@ext.test/phone' to='carol@gw.test' id='m-err'/>`);
    const bounce = await secure.waitForStanza((el) => el.attrs.id === 'm-1', 8000);
    expect(bounce.attrs).toMatchObject({ type: 'error', from: 'carol@gw.test', to: 'alice@ext.test/phone' });
    expect(bounce.getChild('error')?.getChild('service-unavailable', NS_STANZAS)).toBeDefined();
    await new Promise((r) => setTimeout(r, 300));
    expect(secure.stanzas.some((el: Element) => el.attrs.id === 'm-err')).toBe(false);
    peer.destroy();
  });
});

describe('the authoritative role (XEP-0220 section 2.1.3)', () => {
  it('answers db:verify for our domain, valid for our key and invalid for another', async () => {
    const peer = await ScriptedPeer.connect(gw.port);
    peer.sendHeader({ from: 'db.test', to: 'gw.test' });
    await peer.header();
    await peer.features();
    const key = dialbackKey(GATEWAY_SECRET, 'db.test', 'gw.test', 'their-stream-id');
    peer.dialbackVerify('db.test', 'gw.test', 'their-stream-id', key);
    const ok = await peer.next();
    expect(isElement(ok, 'verify', NS_DIALBACK)).toBe(true);
    expect(ok.attrs).toMatchObject({ from: 'gw.test', to: 'db.test', id: 'their-stream-id', type: 'valid' });
    peer.dialbackVerify('db.test', 'gw.test', 'their-stream-id', key.replace(/^./, (c) => (c === 'a' ? 'b' : 'a')));
    expect((await peer.next()).attrs.type).toBe('invalid');
    peer.destroy();
  });

  it('answers db:verify on a stream whose own db:result is still pending (Prosody does this)', async () => {
    const peer = await ScriptedPeer.connect(gw.port);
    peer.sendHeader({ from: 'db.test', to: 'gw.test' });
    await peer.header();
    await peer.features();
    const myKey = dialbackKey(PEER_DIALBACK_SECRET, 'gw.test', 'db.test', peer.streamId);
    peer.dialbackResult('db.test', 'gw.test', myKey);
    const verifyKey = dialbackKey(GATEWAY_SECRET, 'db.test', 'gw.test', 'other-id');
    peer.dialbackVerify('db.test', 'gw.test', 'other-id', verifyKey);
    const first = await peer.next(8000);
    const second = await peer.next(8000);
    const verify = [first, second].find((e) => e.name === 'db:verify')!;
    const result = [first, second].find((e) => e.name === 'db:result')!;
    expect(verify.attrs.type).toBe('valid');
    expect(result.attrs.type).toBe('valid');
    peer.destroy();
  });
});
