/**
 * The stream layer and the per-stanza rules, through the real gateway: restricted and malformed
 * XML, size limits before authentication, STARTTLS command injection, several domains of one
 * partner on one stream (AdditionalDomains), and spoofed or misaddressed stanzas.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dialbackKey, keysEqual } from '../../src/negotiation/dialback-key.js';
import { FakePartnerServer } from '../helpers/fake-partner-server.js';
import { attempt, PEER_DIALBACK_SECRET } from '../helpers/partner-attempt.js';
import { ScriptedPeer } from '../helpers/scripted-peer.js';
import { startTestGateway, testPki, type TestGateway, adminHeaders } from '../helpers/test-gateway.js';

let gw: TestGateway;
let authority: FakePartnerServer;

beforeAll(async () => {
  const domains = ['multi.test', 'muc.multi.test', 'other.test'];
  authority = await FakePartnerServer.start({
    domain: 'multi.test',
    extraDomains: domains.slice(1),
    tls: 'none',
    sasl: false,
    dialback: true,
    answerVerify: (v) => (keysEqual(dialbackKey(PEER_DIALBACK_SECRET, v.from, v.to, v.id), v.key) ? 'valid' : 'invalid'),
  });
  gw = await startTestGateway({
    pki: testPki(),
    partners: `- Identity: multi.test
  AdditionalDomains: [muc.multi.test]
  TlsNegotiation: NotSupported
  SaslNegotiation: NotSupported
- Identity: other.test
  TlsNegotiation: NotSupported
  SaslNegotiation: NotSupported
- Identity: tls.test
  TlsNegotiation: Optional
  SaslNegotiation: NotSupported
`,
    routes: Object.fromEntries(domains.map((d) => [d, `127.0.0.1:${authority.port}`])),
  });
});

afterAll(async () => {
  await gw?.close();
  await authority?.close();
});

async function headerThen(raw: string, from = 'multi.test') {
  const peer = await ScriptedPeer.connect(gw.port);
  peer.sendHeader({ from, to: 'gw.test' });
  await peer.header();
  await peer.features();
  peer.sendRaw(raw);
  return peer;
}

describe('XML the gateway refuses (RFC 6120 section 11)', () => {
  const cases: [string, string, string][] = [
    ['a comment', '<!-- hello -->', 'restricted-xml'],
    ['a processing instruction', "<?php echo 1 ?>", 'restricted-xml'],
    ['a DOCTYPE', '<!DOCTYPE x [<!ENTITY a "b">]>', 'restricted-xml'],
    ['an unknown entity', "<message from='a@multi.test' to='b@gw.test'>&ent;</message>", 'restricted-xml'],
    ['a mismatched end tag', '<message><body></message></body>', 'not-well-formed'],
    ['text at the top level', 'hello', 'not-well-formed'],
    ['a NUL character', '\u0000', 'not-well-formed'],
  ];
  for (const [name, raw, condition] of cases) {
    it(`${name} ⇒ ${condition}`, async () => {
      const peer = await headerThen(raw);
      expect((await peer.expectStreamError()).condition).toBe(condition);
    });
  }

  it('invalid UTF-8 bytes ⇒ unsupported-encoding', async () => {
    const peer = await ScriptedPeer.connect(gw.port);
    peer.sendHeader({ from: 'multi.test', to: 'gw.test' });
    await peer.header();
    await peer.features();
    peer.sendRaw(Buffer.from([0x3c, 0x61, 0xff, 0xfe, 0x3e]));
    expect((await peer.expectStreamError()).condition).toMatch(/unsupported-encoding|not-well-formed/);
  });

  it('a wrong default namespace ⇒ invalid-namespace', async () => {
    const peer = await ScriptedPeer.connect(gw.port);
    peer.sendHeader({ from: 'multi.test', to: 'gw.test', attrs: { xmlns: 'jabber:client' } });
    await peer.header();
    expect((await peer.expectStreamError()).condition).toBe('invalid-namespace');
  });

  it('a stanza larger than preAuthMaxStanzaBytes before authentication ⇒ policy-violation, refused early', async () => {
    const peer = await headerThen(`<message from='a@multi.test' to='b@gw.test'><body>${'x'.repeat(20_000)}`);
    const err = await peer.expectStreamError();
    expect(err.condition).toBe('policy-violation');
    expect(err.text).toMatch(/8192/);
  });
});

describe('STARTTLS', () => {
  it('plaintext sent after <starttls/> in the same packet is an injection: no <proceed/>', async () => {
    const peer = await ScriptedPeer.connect(gw.port);
    peer.sendHeader({ from: 'tls.test', to: 'gw.test' });
    await peer.header();
    await peer.features();
    peer.sendRaw("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><db:result from='tls.test' to='gw.test'>key</db:result>");
    const err = await peer.expectStreamError();
    expect(err.condition).toBe('policy-violation');
    expect(err.text).toMatch(/after <starttls\/>/);
  });

  it('a second STARTTLS after TLS is refused', async () => {
    const peer = await ScriptedPeer.connect(gw.port);
    peer.sendHeader({ from: 'tls.test', to: 'gw.test' });
    await peer.header();
    await peer.features();
    const info = await peer.starttls();
    expect(info.protocol).toMatch(/^TLSv1\.[23]$/);
    peer.sendHeader({ from: 'tls.test', to: 'gw.test' });
    await peer.header();
    await peer.features();
    peer.sendRaw("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    expect((await peer.expectStreamError()).condition).toBe('policy-violation');
  });
});

describe('several domains of one partner on one stream (AdditionalDomains)', () => {
  it('each domain authenticates on its own; stanzas from an unauthenticated one are invalid-from', async () => {
    const { outcome, peer } = await attempt({ port: gw.port, from: 'multi.test', useTls: false });
    expect(outcome).toBe('dialback');
    // Piggyback the additional domain on the same stream (XEP-0220 section 2.6).
    peer.dialbackResult('muc.multi.test', 'gw.test', dialbackKey(PEER_DIALBACK_SECRET, 'gw.test', 'muc.multi.test', peer.streamId));
    const second = await peer.next(8000);
    expect(second.attrs).toMatchObject({ from: 'gw.test', to: 'muc.multi.test', type: 'valid' });
    const status = (await (await fetch(`http://127.0.0.1:${gw.adminPort}/status`, { headers: adminHeaders(gw.adminPort) })).json()) as { streams: { authenticatedDomains: string[]; partner: string }[] };
    expect(status.streams.find((s) => s.partner === 'multi.test' && s.authenticatedDomains.length === 2)?.authenticatedDomains.sort()).toEqual(['muc.multi.test', 'multi.test']);
    peer.sendRaw(`<presence from='room@muc.multi.test/nick' to='user@gw.test'/>`);
    peer.sendRaw(`<presence from='x@elsewhere.test' to='user@gw.test'/>`);
    const err = await peer.expectStreamError();
    expect(err.condition).toBe('invalid-from');
    expect(err.text).toMatch(/elsewhere\.test is not authenticated/);
  });

  it('a domain of another partner cannot be piggybacked', async () => {
    const { peer } = await attempt({ port: gw.port, from: 'multi.test', useTls: false });
    peer.dialbackResult('other.test', 'gw.test', dialbackKey(PEER_DIALBACK_SECRET, 'gw.test', 'other.test', peer.streamId));
    const err = await peer.expectStreamError(8000);
    expect(err.condition).toBe('policy-violation');
    expect(err.text).toMatch(/belongs to partner other\.test/);
  });

  it('a stanza to a domain we do not serve ⇒ host-unknown; without from ⇒ improper-addressing', async () => {
    const a = (await attempt({ port: gw.port, from: 'multi.test', useTls: false })).peer;
    a.sendRaw(`<message from='u@multi.test' to='v@not-ours.test'/>`);
    expect((await a.expectStreamError()).condition).toBe('host-unknown');
    const b = (await attempt({ port: gw.port, from: 'multi.test', useTls: false })).peer;
    b.sendRaw(`<message to='v@gw.test'/>`);
    expect((await b.expectStreamError()).condition).toBe('improper-addressing');
  });

  it('a stanza before authentication ⇒ not-authorized', async () => {
    const peer = await headerThen(`<message from='u@multi.test' to='v@gw.test'/>`);
    expect((await peer.expectStreamError()).condition).toBe('not-authorized');
  });
});

describe('stream errors from the peer', () => {
  it('end the stream without an error in reply', async () => {
    const peer = await headerThen(`<stream:error><system-shutdown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>`);
    const closed = await peer.closed();
    expect(closed.streamEnd).toBe(true);
    expect(peer.received.some((r) => r.el.name === 'stream:error')).toBe(false);
  });
});
