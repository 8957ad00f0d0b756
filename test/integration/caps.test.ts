/**
 * Caps that have their own settings: dialback verification connections (gateway-wide, not
 * counted against partners), the post-authentication stanza size, and a partner file that does
 * not exist yet (no partners, not an error).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakePartnerServer } from '../helpers/fake-partner-server.js';
import { attempt, sendDialbackResult } from '../helpers/partner-attempt.js';
import { startTestGateway, testPki, type TestGateway, type TestPki } from '../helpers/test-gateway.js';

let gw: TestGateway;
let pki: TestPki;
let silent: FakePartnerServer;

beforeAll(async () => {
  silent = await FakePartnerServer.start({ domain: 'slow.test', extraDomains: ['slow2.test'], tls: 'none', sasl: false, dialback: true, answerVerify: () => 'ignore' });
  const dialbackOnly = 'TlsNegotiation: NotSupported\n  SaslNegotiation: NotSupported';
  pki = testPki();
  gw = await startTestGateway({
    pki,
    partners: `- Identity: slow.test\n  ${dialbackOnly}\n- Identity: slow2.test\n  ${dialbackOnly}\n- Identity: big.test\n  SupportDialbackNegotiation: false\n`,
    routes: { 'slow.test': `127.0.0.1:${silent.port}`, 'slow2.test': `127.0.0.1:${silent.port}` },
    config: 'maxDialbackVerifications: 1\nmaxStanzaBytes: 2048',
  });
});
afterAll(async () => {
  await gw?.close();
  await silent?.close();
});

const dialbackOn = (from: string) => sendDialbackResult(gw.port, from);

describe('caps', () => {
  it('maxDialbackVerifications: a verification beyond the cap is refused, naming it', async () => {
    const first = await dialbackOn('slow.test');
    await silent.waitForVerify(5000); // the first verification holds the only slot
    const second = await dialbackOn('slow2.test');
    const err = await second.expectStreamError(5000);
    expect(err.condition).toBe('remote-connection-failed');
    expect(err.text).toMatch(/too many dialback verifications in progress \(limit 1\)/);
    first.destroy();
  });

  it('maxStanzaBytes applies after authentication', async () => {
    const { outcome, peer } = await attempt({ port: gw.port, from: 'big.test', cert: pki.issue({ domain: 'big.test' }) });
    expect(outcome).toBe('sasl-external');
    peer.sendRaw(`<message from='a@big.test' to='b@gw.test' type='chat'><body>${'x'.repeat(1500)}</body></message>`);
    await peer.expectNothing(200); // within the limit: accepted (bounced to our outbound, not an error here)
    peer.sendRaw(`<message from='a@big.test' to='b@gw.test' type='chat'><body>${'x'.repeat(3000)}</body></message>`);
    const err = await peer.expectStreamError();
    expect(err.condition).toBe('policy-violation');
    expect(err.text).toMatch(/2048/);
  });

  it('a partner file that does not exist yet is an empty list, not a reload error', async () => {
    const fresh = await startTestGateway({ pki, noPartnersFile: true });
    try {
      await new Promise((r) => setTimeout(r, 1500)); // the watcher and the 1 s poll both run
      expect(fresh.logs.filter((l) => l.event === 'partners.reload-failed')).toEqual([]);
      await fresh.writePartners('- Identity: later.test\n');
      await fresh.waitForLog((l) => l.event === 'partners.reloaded' && l.partners === 1, 3000);
    } finally {
      await fresh.close();
    }
  });
});
