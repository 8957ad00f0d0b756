/**
 * Dialback and header details: legacy headers without `from`, dialback errors only for peers
 * that advertised them (XEP-0220 section 2.4.2), ProxyFqdn instead of DNS for verification.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dialbackKey, keysEqual } from '../../src/negotiation/dialback-key.js';
import { NS_SASL, NS_STANZAS } from '../../src/xml/namespaces.js';
import { isElement } from '../../src/xml/stream-parser.js';
import { FakePartnerServer } from '../helpers/fake-partner-server.js';
import { PEER_DIALBACK_SECRET, sendDialbackResult } from '../helpers/partner-attempt.js';
import { ScriptedPeer, summarizeFeatures } from '../helpers/scripted-peer.js';
import { startTestGateway, testPki, type TestGateway, type TestPki } from '../helpers/test-gateway.js';

let pki: TestPki;
let gw: TestGateway;
let proxied: FakePartnerServer; // proxied.test's authoritative server, reached only through ProxyFqdn
let erring: FakePartnerServer; // answers verifications with a dialback error and advertises <errors/>
let mute: FakePartnerServer; // answers with a dialback error but never advertised <errors/>
let silent: FakePartnerServer; // never answers a verification

beforeAll(async () => {
  pki = testPki();
  const valid = (v: { from: string; to: string; id: string; key: string }) =>
    keysEqual(dialbackKey(PEER_DIALBACK_SECRET, v.from, v.to, v.id), v.key) ? ('valid' as const) : ('invalid' as const);
  proxied = await FakePartnerServer.start({ domain: 'proxied.test', tls: 'none', sasl: false, dialback: true, answerVerify: valid });
  erring = await FakePartnerServer.start({ domain: 'erring.test', tls: 'none', sasl: false, dialback: true, dialbackErrors: true, answerVerify: () => ({ error: 'remote-server-not-found' }) });
  mute = await FakePartnerServer.start({ domain: 'mute.test', tls: 'none', sasl: false, dialback: true, dialbackErrors: false, answerVerify: () => ({ error: 'remote-server-not-found' }) });
  silent = await FakePartnerServer.start({ domain: 'silent.test', tls: 'none', sasl: false, dialback: true, answerVerify: () => 'ignore' });
  const dialbackOnly = 'TlsNegotiation: NotSupported\n  SaslNegotiation: NotSupported';
  gw = await startTestGateway({
    pki,
    partners: `- Identity: proxied.test
  ${dialbackOnly}
  ProxyFqdn: 127.0.0.1:${proxied.port}
- Identity: erring.test
  ${dialbackOnly}
- Identity: mute.test
  ${dialbackOnly}
- Identity: legacy.test
  SaslNegotiation: Optional
- Identity: silent.test
  ${dialbackOnly}
`,
    routes: { 'erring.test': `127.0.0.1:${erring.port}`, 'mute.test': `127.0.0.1:${mute.port}`, 'silent.test': `127.0.0.1:${silent.port}` },
  });
});

afterAll(async () => {
  await gw?.close();
  await Promise.all([proxied?.close(), erring?.close(), mute?.close(), silent?.close()]);
});

const dialbackOn = (from: string) => sendDialbackResult(gw.port, from);

describe('dialback verification targets and errors', () => {
  it('ProxyFqdn: the authoritative server is reached at the proxy, no DNS (the gateway has none here)', async () => {
    const peer = await dialbackOn('proxied.test');
    const answer = await peer.next(8000);
    expect(answer.attrs).toMatchObject({ from: 'gw.test', to: 'proxied.test', type: 'valid' });
    expect(proxied.verifies.length).toBeGreaterThanOrEqual(1);
    expect(proxied.connections[0]?.headers[0]).toMatchObject({ from: 'gw.test', to: 'proxied.test' });
    peer.destroy();
  });

  it('a server that advertised dialback <errors/> gets a dialback error, and the stream stays', async () => {
    const peer = await dialbackOn('erring.test');
    const answer = await peer.next(8000);
    expect(answer.attrs).toMatchObject({ from: 'gw.test', to: 'erring.test', type: 'error' });
    expect(answer.getChild('error')?.getChild('remote-connection-failed', NS_STANZAS)).toBeDefined();
    await peer.expectNothing(200);
    expect(peer.closedAlready).toBe(false);
    peer.destroy();
  });

  it('a server that did not advertise <errors/> gets a stream error instead', async () => {
    const peer = await dialbackOn('mute.test');
    const err = await peer.expectStreamError(8000);
    expect(err.condition).toBe('remote-connection-failed');
    expect(err.text).toMatch(/answered the verification with an error/);
  });
});

describe('verification connections', () => {
  it('are dropped when the stream that asked goes away', async () => {
    const peer = await dialbackOn('silent.test');
    const connection = await silent.waitForConnection(0, 5000);
    await silent.waitForVerify(5000);
    let gone = false;
    void connection.closed.then(() => (gone = true));
    await new Promise((r) => setTimeout(r, 200));
    expect(gone).toBe(false);
    peer.destroy();
    for (let waited = 0; !gone && waited < 3000; waited += 50) await new Promise((r) => setTimeout(r, 50));
    expect(gone).toBe(true);
  });
});

/** A header without `from`, STARTTLS (no client certificate), the restarted header sent and answered. */
async function legacyStreamOnTls(): Promise<ScriptedPeer> {
  const peer = await ScriptedPeer.connect(gw.port);
  peer.sendHeader({ to: 'gw.test' });
  await peer.header();
  await peer.features();
  await peer.starttls({ servername: 'gw.test' });
  peer.sendHeader({ to: 'gw.test' });
  await peer.header();
  return peer;
}

describe('headers without from (legacy peers)', () => {
  it('STARTTLS is required first; then EXTERNAL with the authzid naming the partner succeeds', async () => {
    const peer = await ScriptedPeer.connect(gw.port);
    peer.sendHeader({ to: 'gw.test' });
    await peer.header();
    expect(summarizeFeatures(await peer.features())).toMatchObject({ starttls: true, starttlsRequired: true });
    const c = pki.issue({ domain: 'legacy.test' });
    await peer.starttls({ cert: c.certPem, key: c.keyPem, servername: 'gw.test' });
    peer.sendHeader({ to: 'gw.test' });
    await peer.header();
    expect(summarizeFeatures(await peer.features()).mechanisms).toEqual(['EXTERNAL']);
    const reply = await peer.saslExternal('legacy.test');
    expect(isElement(reply, 'success', NS_SASL)).toBe(true);
    peer.destroy();
  });

  it('the partner named by the authzid must be an allowed partner', async () => {
    const peer = await ScriptedPeer.connect(gw.port);
    peer.sendHeader({ to: 'gw.test' });
    await peer.header();
    await peer.features();
    const c = pki.issue({ domain: 'stranger.test' });
    await peer.starttls({ cert: c.certPem, key: c.keyPem, servername: 'gw.test' });
    peer.sendHeader({ to: 'gw.test' });
    await peer.header();
    await peer.features();
    const reply = await peer.saslExternal('stranger.test');
    expect(isElement(reply, 'failure', NS_SASL)).toBe(true);
    expect((await peer.expectStreamError()).condition).toBe('policy-violation');
  });

  it('EXTERNAL is not offered to a header without from unless the certificate chains to a trusted CA', async () => {
    const peer = await legacyStreamOnTls(); // no client certificate at all
    const features = summarizeFeatures(await peer.features());
    expect(features.mechanisms).toEqual([]);
    expect(features.dialback).toBe(true);
    peer.destroy();
  });

  it('dialback after STARTTLS on a header without from: the partner is known from db:result', async () => {
    const peer = await legacyStreamOnTls();
    await peer.features();
    peer.dialbackResult('proxied.test', 'gw.test', dialbackKey(PEER_DIALBACK_SECRET, 'gw.test', 'proxied.test', peer.streamId));
    expect((await peer.next(8000)).attrs).toMatchObject({ from: 'gw.test', to: 'proxied.test', type: 'valid' });
    peer.destroy();
  });

  it('a header without from and a db:result from a non-partner: refused, nothing dialled', async () => {
    const before = gw.logs.filter((l) => l.event === 'outbound.connect-failed').length;
    const peer = await legacyStreamOnTls();
    await peer.features();
    peer.dialbackResult('stranger.test', 'gw.test', 'key');
    expect((await peer.expectStreamError()).condition).toBe('policy-violation');
    expect(gw.logs.filter((l) => l.event === 'outbound.connect-failed').length).toBe(before);
  });

  it('authzid rules: another domain is invalid-authzid; "=" and a different letter case succeed', async () => {
    const c = pki.issue({ domain: 'legacy.test' });
    for (const [authzid, expected] of [['proxied.test', 'failure'], ['=', 'success'], ['LEGACY.test', 'success']] as const) {
      const peer = await ScriptedPeer.connect(gw.port);
      peer.sendHeader({ from: 'legacy.test', to: 'gw.test' });
      await peer.header();
      await peer.features();
      await peer.starttls({ cert: c.certPem, key: c.keyPem });
      peer.sendHeader({ from: 'legacy.test', to: 'gw.test' });
      await peer.header();
      await peer.features();
      const reply = await peer.saslExternal(authzid);
      expect(reply.name, authzid).toBe(expected);
      if (expected === 'failure') expect(reply.getChildElements()[0]?.name).toBe('invalid-authzid');
      peer.destroy();
    }
  });
});
