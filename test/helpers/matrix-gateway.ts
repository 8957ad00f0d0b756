/**
 * The negotiation matrix's setup, shared by the tests that negotiate it for real
 * (negotiation-matrix.test.ts) and that compare `explain` with it (explain-matrix.test.ts): one
 * partner record per valid TLS × SASL × dialback cell, the partners' authoritative server
 * (a FakePartnerServer found through DNS SRV from a real dns2 server), the gateway, and the
 * certificate states a partner may present.
 */
import { dialbackKey, keysEqual } from '../../src/negotiation/dialback-key.js';
import { NEGOTIATION_MATRIX } from '../fixtures/negotiation-matrix.js';
import { FakePartnerServer } from './fake-partner-server.js';
import { PEER_DIALBACK_SECRET } from './partner-attempt.js';
import { startTestDns, type TestDns } from './test-dns.js';
import { startTestGateway, testPki, type TestGateway, type TestPki } from './test-gateway.js';

export const CERT_STATES = ['trusted', 'other-domain', 'untrusted', 'expired', 'serverauth-only'] as const;
export type CertState = (typeof CERT_STATES)[number];

export const POLICIES = NEGOTIATION_MATRIX.filter((row) => row.verdict !== 'invalid');
export type Policy = (typeof POLICIES)[number];
const short = { Required: 'req', Optional: 'opt', NotSupported: 'ns' } as Record<string, string>;

/** `<prefix>-req-opt-db.test`: the partner domain of one cell. */
export const matrixDomain = (prefix: string, p: Policy) => `${prefix}-${short[p.tls]}-${short[p.sasl]}-${p.dialback ? 'db' : 'nodb'}.test`;

export interface MatrixGateway {
  readonly pki: TestPki;
  readonly gw: TestGateway;
  /** A certificate for `domain` in `state`, from the gateway's test CA (or another). */
  certFor(domain: string, state: CertState): { certPem: string; keyPem: string };
  close(): Promise<void>;
}

export async function startMatrixGateway(prefix: string): Promise<MatrixGateway> {
  const pki = testPki();
  const domains = POLICIES.map((p) => matrixDomain(prefix, p));
  const fakeCert = pki.issue({ domain: 'authority.test', dnsNames: ['authority.test', ...domains] });
  // The partners' authoritative server: answers db:verify with the key the scripted peer derived.
  const authority: FakePartnerServer = await FakePartnerServer.start({
    domain: domains[0]!, extraDomains: domains.slice(1), cert: fakeCert.certPem, key: fakeCert.keyPem,
    tls: 'optional', sasl: false, dialback: true,
    answerVerify: (v) => (keysEqual(dialbackKey(PEER_DIALBACK_SECRET, v.from, v.to, v.id), v.key) ? 'valid' : 'invalid'),
  });
  const partners = POLICIES.map(
    (p) => `- Identity: ${matrixDomain(prefix, p)}\n  TlsNegotiation: ${p.tls}\n  SaslNegotiation: ${p.sasl}\n  SupportDialbackNegotiation: ${p.dialback}\n`,
  ).join('');
  // The authoritative server is found the way a real one is: DNS SRV, from a dns2 server.
  const dns: TestDns = await startTestDns({ srv: Object.fromEntries(domains.map((d) => [`_xmpp-server._tcp.${d}`, [{ target: '127.0.0.1.', port: authority.port }]])) });
  const gw = await startTestGateway({ pki, partners, dnsServer: dns.address });
  return {
    pki,
    gw,
    certFor(domain, state) {
      const yearAgo = new Date(Date.now() - 365 * 24 * 3600 * 1000);
      switch (state) {
        case 'trusted':
          return pki.issue({ domain });
        case 'other-domain':
          return pki.issue({ domain: 'someone-else.test' });
        case 'untrusted':
          return pki.issue({ domain }, pki.otherCa);
        case 'expired':
          return pki.issue({ domain, notBefore: new Date(yearAgo.getTime() - 30 * 24 * 3600 * 1000), notAfter: yearAgo });
        case 'serverauth-only':
          return pki.issue({ domain, extKeyUsage: ['serverAuth'] });
      }
    },
    async close() {
      await gw.close();
      await authority.close();
      await dns.close();
    },
  };
}
