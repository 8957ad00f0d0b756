/**
 * XEP-0198 acknowledgements on the receiving side: offered after SASL EXTERNAL (not before, not
 * on dialback streams), `<enable/>` answered `<enabled/>`, every handled stanza counted (delivered
 * or bounced), `<r/>` answered with `<a h/>`; a second `<enable/>` fails.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NS_SM } from '../../src/negotiation/stream-management.js';
import { ScriptedPeer } from '../helpers/scripted-peer.js';
import { startTestGateway, testPki, type TestGateway, type TestPki } from '../helpers/test-gateway.js';

let pki: TestPki;
let gw: TestGateway;

beforeAll(async () => {
  pki = testPki();
  gw = await startTestGateway({
    pki,
    partners: '- Identity: sm.test\n  SupportDialbackNegotiation: false\n- Identity: db.test\n  TlsNegotiation: NotSupported\n  SaslNegotiation: NotSupported\n',
  });
});

afterAll(async () => {
  await gw?.close();
});

describe('XEP-0198 on inbound streams', () => {
  it('is offered after SASL EXTERNAL; <r/> is answered with the count of handled stanzas', async () => {
    const cert = pki.issue({ domain: 'sm.test' });
    const peer = await ScriptedPeer.connect(gw.port);
    try {
      const result = await peer.negotiate({ from: 'sm.test', to: 'gw.test', tls: { cert: cert.certPem, key: cert.keyPem }, sasl: true });
      expect(result.sasl).toBe('success');
      // Before authentication no <sm/>; after SASL success it is offered.
      expect(result.features.slice(0, -1).some((f) => f.getChild('sm', NS_SM))).toBe(false);
      expect(result.features.at(-1)!.getChild('sm', NS_SM)).toBeDefined();

      peer.sendRaw(`<r xmlns='${NS_SM}'/>`);
      await peer.expectNothing(300); // not enabled yet: requests are ignored
      peer.sendRaw(`<enable xmlns='${NS_SM}'/>`);
      await peer.expect('enabled', NS_SM);
      for (let i = 0; i < 3; i++) peer.sendRaw(`<message from='u@sm.test/r' to='nobody@gw.test' id='m${i}' type='chat'><body>x</body></message>`);
      peer.sendRaw(`<r xmlns='${NS_SM}'/>`);
      const a = await peer.expect('a', NS_SM);
      expect(a.attrs.h).toBe('3');
      peer.sendRaw(`<enable xmlns='${NS_SM}'/>`);
      const failed = await peer.expect('failed', NS_SM);
      expect(failed.getChildElements()[0]?.name).toBe('unexpected-request');
    } finally {
      peer.destroy();
    }
  });

  it('is not offered on a dialback stream, and <enable/> there fails', async () => {
    const peer = await ScriptedPeer.connect(gw.port);
    try {
      peer.sendHeader({ from: 'db.test', to: 'gw.test' });
      await peer.header();
      const features = await peer.features();
      expect(features.getChild('sm', NS_SM)).toBeUndefined();
      peer.sendRaw(`<enable xmlns='${NS_SM}'/>`);
      const failed = await peer.expect('failed', NS_SM);
      expect(failed.getChildElements()[0]?.name).toBe('unexpected-request');
    } finally {
      peer.destroy();
    }
  });
});
