/**
 * RFC 6125 section 6.4.4: a certificate's subject CN may identify a partner only where the
 * gateway is configured to allow it for that partner (trust.allowCommonNameFor), and only when
 * the certificate carries no DNS-ID, SRV-ID or XmppAddr at all.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attempt } from '../helpers/partner-attempt.js';
import { startTestGateway, testPki, type TestGateway, type TestPki } from '../helpers/test-gateway.js';

let pki: TestPki;
let gw: TestGateway;
const external = (d: string) => `- Identity: ${d}\n  SupportDialbackNegotiation: false\n`;

beforeAll(async () => {
  pki = testPki();
  gw = await startTestGateway({ pki, partners: external('strict-cn.test') + external('legacy-cn.test'), allowCommonNameFor: ['legacy-cn.test'] });
});
afterAll(async () => {
  await gw?.close();
});

async function outcomeFor(domain: string, cert: { certPem: string; keyPem: string }) {
  const { outcome, peer } = await attempt({ port: gw.port, from: domain, cert });
  peer.destroy();
  return outcome;
}

describe('CN-ID', () => {
  it('is not accepted by default', async () => {
    const cnOnly = pki.issue({ domain: 'strict-cn.test', dnsNames: [], commonName: 'strict-cn.test' });
    expect(await outcomeFor('strict-cn.test', cnOnly)).toBe('refused:not-authorized');
  });

  it('is accepted for a partner listed in trust.allowCommonNameFor', async () => {
    const cnOnly = pki.issue({ domain: 'legacy-cn.test', dnsNames: [], commonName: 'legacy-cn.test' });
    expect(await outcomeFor('legacy-cn.test', cnOnly)).toBe('sasl-external');
  });

  it('is still ignored when the certificate has DNS-IDs (which here name someone else)', async () => {
    const mixed = pki.issue({ domain: 'legacy-cn.test', dnsNames: ['elsewhere.test'], commonName: 'legacy-cn.test' });
    expect(await outcomeFor('legacy-cn.test', mixed)).toBe('refused:not-authorized');
  });
});
