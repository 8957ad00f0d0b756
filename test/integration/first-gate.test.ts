/**
 * The gateway's first gate (issue 2): an incoming stream header from a non-partner gets our
 * header and a policy-violation; a partner gets our header and the features its record allows.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ScriptedPeer, summarizeFeatures } from '../helpers/scripted-peer.js';
import { startTestGateway, testPki, type TestGateway } from '../helpers/test-gateway.js';

let gw: TestGateway;
beforeAll(async () => {
  gw = await startTestGateway({
    pki: testPki(),
    partners: `- Identity: strict.test
  SupportDialbackNegotiation: false
- Identity: relaxed.test
  TlsNegotiation: Optional
  SaslNegotiation: Optional
- Identity: plain.test
  TlsNegotiation: NotSupported
  SaslNegotiation: NotSupported
`,
  });
});
afterAll(async () => {
  await gw?.close();
});

describe('first gate', () => {
  it('a non-partner gets our header, then policy-violation naming the reason', async () => {
    const peer = await ScriptedPeer.connect(gw.port);
    peer.sendHeader({ from: 'stranger.test', to: 'gw.test' });
    const header = await peer.header();
    expect(header).toMatchObject({ from: 'gw.test', to: 'stranger.test', version: '1.0' });
    expect(header.id?.length).toBeGreaterThanOrEqual(16);
    const err = await peer.expectStreamError();
    expect(err.condition).toBe('policy-violation');
    expect(err.text).toBe('stranger.test is not an allowed partner of this gateway');
    expect((await peer.closed()).streamEnd).toBe(true);
    const refusal = await gw.waitForLog((l) => l.event === 'stream.refused' && l.rule === 'AllowedPartner');
    expect(refusal.condition).toBe('policy-violation');
  });

  it('a partner requiring TLS gets <starttls><required/></starttls> only', async () => {
    const peer = await ScriptedPeer.connect(gw.port);
    peer.sendHeader({ from: 'strict.test', to: 'gw.test' });
    expect((await peer.header()).from).toBe('gw.test');
    const features = summarizeFeatures(await peer.features());
    expect(features).toMatchObject({ starttls: true, starttlsRequired: true, mechanisms: [], dialback: false });
    peer.destroy();
  });

  it('TLS Optional: <starttls/> without required, and the dialback feature', async () => {
    const peer = await ScriptedPeer.connect(gw.port);
    peer.sendHeader({ from: 'relaxed.test', to: 'gw.test' });
    await peer.header();
    const features = summarizeFeatures(await peer.features());
    expect(features).toMatchObject({ starttls: true, starttlsRequired: false, dialback: true });
    peer.destroy();
  });

  it('TLS NotSupported: no STARTTLS offered, and STARTTLS attempted anyway fails', async () => {
    const peer = await ScriptedPeer.connect(gw.port);
    peer.sendHeader({ from: 'plain.test', to: 'gw.test' });
    await peer.header();
    const features = summarizeFeatures(await peer.features());
    expect(features).toMatchObject({ starttls: false, dialback: true });
    peer.sendRaw("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    const failure = await peer.next();
    expect(failure.name).toBe('failure');
    expect((await peer.closed()).streamEnd).toBe(true);
  });

  it('to a domain we do not serve: host-unknown', async () => {
    const peer = await ScriptedPeer.connect(gw.port);
    peer.sendHeader({ from: 'strict.test', to: 'elsewhere.test' });
    await peer.header();
    expect(await peer.expectStreamError()).toMatchObject({ condition: 'host-unknown' });
  });

  it('a header claiming one of our own domains is refused', async () => {
    const peer = await ScriptedPeer.connect(gw.port);
    peer.sendHeader({ from: 'gw.test', to: 'gw.test' });
    await peer.header();
    expect(await peer.expectStreamError()).toMatchObject({ condition: 'invalid-from' });
  });

  it('a header without from gets the strictest features', async () => {
    const peer = await ScriptedPeer.connect(gw.port);
    peer.sendHeader({ to: 'gw.test' });
    const header = await peer.header();
    expect(header.to).toBeUndefined();
    expect(summarizeFeatures(await peer.features())).toMatchObject({ starttls: true, starttlsRequired: true });
    peer.destroy();
  });

  it('a version 2.0 header is unsupported-version', async () => {
    const peer = await ScriptedPeer.connect(gw.port);
    peer.sendHeader({ from: 'strict.test', to: 'gw.test', version: '2.0' });
    await peer.header();
    expect(await peer.expectStreamError()).toMatchObject({ condition: 'unsupported-version' });
  });
});

describe('unauthenticated connections per address', () => {
  it('the connection beyond maxUnauthenticatedConnectionsPerAddress is refused, naming the cap', async () => {
    const capped = await startTestGateway({ pki: testPki(), partners: '- Identity: strict.test\n', config: 'maxUnauthenticatedConnectionsPerAddress: 2' });
    try {
      const first = await ScriptedPeer.connect(capped.port);
      const second = await ScriptedPeer.connect(capped.port);
      const third = await ScriptedPeer.connect(capped.port);
      third.sendHeader({ from: 'strict.test', to: 'gw.test' });
      await third.header();
      const err = await third.expectStreamError();
      expect(err.condition).toBe('policy-violation');
      expect(err.text).toMatch(/maxUnauthenticatedPerAddress|unauthenticated connections from 127\.0\.0\.1 \(limit 2\)/);
      for (const p of [first, second]) {
        p.sendHeader({ from: 'strict.test', to: 'gw.test' });
        expect(summarizeFeatures(await p.features())).toMatchObject({ starttls: true });
        p.destroy();
      }
      // Slots are given back when connections go away.
      await new Promise((r) => setTimeout(r, 100));
      const fourth = await ScriptedPeer.connect(capped.port);
      fourth.sendHeader({ from: 'strict.test', to: 'gw.test' });
      await fourth.header();
      expect(summarizeFeatures(await fourth.features()).starttls).toBe(true);
      fourth.destroy();
    } finally {
      await capped.close();
    }
  });
});
