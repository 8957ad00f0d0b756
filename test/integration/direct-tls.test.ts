/**
 * XEP-0368 direct TLS listeners (`listen: [{..., directTls: true}]`): TLS from the first byte,
 * SNI picks the local domain's certificate, the stream then starts post-TLS (no STARTTLS).
 */
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NS_SASL } from '../../src/xml/namespaces.js';
import { isElement } from '../../src/xml/stream-parser.js';
import { ScriptedPeer, summarizeFeatures } from '../helpers/scripted-peer.js';
import { startTestGateway, testPki, type TestGateway, type TestPki } from '../helpers/test-gateway.js';

let pki: TestPki;
let gw: TestGateway;

beforeAll(async () => {
  pki = testPki();
  gw = await startTestGateway({ pki, localDomains: ['gw.test', 'other-gw.test'], directTls: true, partners: '- Identity: direct.test\n  SupportDialbackNegotiation: false\n' });
});
afterAll(async () => {
  await gw?.close();
});

function connectTls(servername: string, cert?: { certPem: string; keyPem: string }): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port: gw.directTlsPort,
      servername,
      ca: pki.ca.certPem,
      ALPNProtocols: ['xmpp-server'],
      ...(cert ? { cert: cert.certPem, key: cert.keyPem } : {}),
    });
    socket.once('secureConnect', () => resolve(socket));
    socket.once('error', reject);
  });
}

describe('direct TLS listener', () => {
  it('SNI selects the certificate of the requested local domain; the chain is trusted', async () => {
    for (const domain of ['gw.test', 'other-gw.test']) {
      const socket = await connectTls(domain);
      expect(socket.authorized).toBe(true);
      expect(socket.getPeerX509Certificate()?.checkHost(domain)).toBe(domain);
      expect(socket.alpnProtocol).toBe('xmpp-server');
      socket.destroy();
    }
  });

  it('no STARTTLS is offered; SASL EXTERNAL with a trusted certificate succeeds', async () => {
    const socket = await connectTls('gw.test', pki.issue({ domain: 'direct.test' }));
    const peer = ScriptedPeer.wrap(socket);
    peer.sendHeader({ from: 'direct.test', to: 'gw.test' });
    await peer.header();
    const features = summarizeFeatures(await peer.features());
    expect(features.starttls).toBe(false);
    expect(features.mechanisms).toEqual(['EXTERNAL']);
    const reply = await peer.saslExternal();
    expect(isElement(reply, 'success', NS_SASL)).toBe(true);
    peer.destroy();
  });

  it('plaintext XML on the direct TLS port never reaches the stream', async () => {
    const { connect } = await import('node:net');
    const raw = connect(gw.directTlsPort, '127.0.0.1');
    await new Promise((r) => raw.once('connect', r));
    raw.write("<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' from='direct.test' to='gw.test' version='1.0'>");
    let received = '';
    raw.on('data', (d) => (received += d.toString('latin1')));
    await new Promise((r) => raw.once('close', r));
    expect(received).not.toContain('<stream:stream');
  });
});
