/**
 * Every TLS × SASL × dialback policy that a record may hold, against every certificate state a
 * partner may present, negotiated for real: TLS handshakes with certificates from a test CA,
 * SASL EXTERNAL, and dialback verified by calling the partner's authoritative server back (a
 * FakePartnerServer found through DNS SRV answered by a real dns2 server).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dialbackKey, keysEqual } from '../../src/negotiation/dialback-key.js';
import { checkCombination, newRecord } from '../../src/policy/validate.js';
import type { Negotiation } from '../../src/policy/types.js';
import { NEGOTIATION_MATRIX } from '../fixtures/negotiation-matrix.js';
import { FakePartnerServer } from '../helpers/fake-partner-server.js';
import { startTestDns, type TestDns } from '../helpers/test-dns.js';
import { attempt, PEER_DIALBACK_SECRET, type Outcome } from '../helpers/partner-attempt.js';
import { startTestGateway, testPki, type TestGateway, type TestPki } from '../helpers/test-gateway.js';

const CERT_STATES = ['trusted', 'other-domain', 'untrusted', 'expired', 'serverauth-only'] as const;
type CertState = (typeof CERT_STATES)[number];

const POLICIES = NEGOTIATION_MATRIX.filter((row) => row.verdict !== 'invalid');
const short = { Required: 'req', Optional: 'opt', NotSupported: 'ns' } as Record<string, string>;
const domainOf = (p: (typeof POLICIES)[number]) => `t-${short[p.tls]}-${short[p.sasl]}-${p.dialback ? 'db' : 'nodb'}.test`;

/** What must happen, reasoned from docs/design.md sections 3 and 4 (not from the implementation). */
function expected(p: (typeof POLICIES)[number], cert: CertState): Outcome {
  const certOk = cert === 'trusted' || cert === 'serverauth-only';
  const dialbackOk = p.dialback && p.sasl !== 'Required';
  if (p.tls !== 'NotSupported') {
    if (p.sasl !== 'NotSupported' && certOk) return 'sasl-external';
    if (p.sasl === 'Required') return 'refused:not-authorized';
    return dialbackOk ? 'dialback' : 'refused:not-authorized';
  }
  return dialbackOk ? 'dialback' : 'refused:not-authorized';
}

let pki: TestPki;
let gw: TestGateway;
let authority: FakePartnerServer;
let dns: TestDns;

beforeAll(async () => {
  pki = testPki();
  const domains = POLICIES.map(domainOf);
  const fakeCert = pki.issue({ domain: 'authority.test', dnsNames: ['authority.test', ...domains] });
  // The partners' authoritative server: answers db:verify with the key the scripted peer derived.
  authority = await FakePartnerServer.start({
    domain: domains[0]!,
    extraDomains: domains.slice(1),
    cert: fakeCert.certPem,
    key: fakeCert.keyPem,
    tls: 'optional',
    sasl: false,
    dialback: true,
    answerVerify: (v) => (keysEqual(dialbackKey(PEER_DIALBACK_SECRET, v.from, v.to, v.id), v.key) ? 'valid' : 'invalid'),
  });
  const partners = POLICIES.map(
    (p) => `- Identity: ${domainOf(p)}\n  TlsNegotiation: ${p.tls}\n  SaslNegotiation: ${p.sasl}\n  SupportDialbackNegotiation: ${p.dialback}\n`,
  ).join('');
  // The authoritative server is found the way a real one is: DNS SRV, from a dns2 server.
  dns = await startTestDns({ srv: Object.fromEntries(domains.map((d) => [`_xmpp-server._tcp.${d}`, [{ target: '127.0.0.1.', port: authority.port }]])) });
  gw = await startTestGateway({ pki, partners, dnsServer: dns.address });
});

afterAll(async () => {
  await gw?.close();
  await authority?.close();
  await dns?.close();
});

function certFor(domain: string, state: CertState) {
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
}

describe('TLS × SASL × dialback × certificate state', () => {
  it('the fixture covers every valid record exactly once', () => {
    expect(POLICIES).toHaveLength(12);
    for (const p of POLICIES) {
      const r = { ...newRecord('x.test'), TlsNegotiation: p.tls as Negotiation, SaslNegotiation: p.sasl as Negotiation, SupportDialbackNegotiation: p.dialback };
      expect(checkCombination(r).errors).toEqual([]);
    }
  });

  for (const policy of POLICIES) {
    for (const cert of CERT_STATES) {
      const want = expected(policy, cert);
      it(`TLS ${policy.tls}, SASL ${policy.sasl}, dialback ${policy.dialback}, certificate ${cert} ⇒ ${want}`, async () => {
        const domain = domainOf(policy);
        const { outcome, peer, tls } = await attempt({ port: gw.port, from: domain, cert: certFor(domain, cert) });
        peer.destroy();
        expect(outcome).toBe(want);
        if (policy.tls === 'NotSupported') expect(tls).toBeNull();
        else expect(tls).toMatch(/^TLSv1\.[23]$/);
      });
    }
  }
});

describe('plaintext attempts against the record', () => {
  it('TLS Optional partner may use dialback over plain TCP', async () => {
    const { outcome, peer, tls } = await attempt({ port: gw.port, from: 't-opt-ns-db.test', useTls: false });
    peer.destroy();
    expect(tls).toBeNull();
    expect(outcome).toBe('dialback');
  });

  it('TLS Required partner sending db:result before TLS gets policy-violation naming TlsNegotiation', async () => {
    const { outcome, peer } = await attempt({ port: gw.port, from: 't-req-ns-db.test', useTls: false, forceDialback: true });
    peer.destroy();
    expect(outcome).toBe('refused:policy-violation');
    const log = await gw.waitForLog((l) => l.event === 'stream.refused' && l.partner === 't-req-ns-db.test' && l.rule === 'TlsNegotiation');
    expect(String(log.text)).toMatch(/TlsNegotiation is Required/);
  });

  it('SASL Required partner sending db:result gets policy-violation naming SaslNegotiation', async () => {
    const { outcome, peer } = await attempt({ port: gw.port, from: 't-opt-req-db.test', useTls: false, forceDialback: true });
    peer.destroy();
    expect(outcome).toBe('refused:policy-violation');
  });

  it('dialback disabled: db:result refused even over TLS', async () => {
    const { outcome, peer } = await attempt({ port: gw.port, from: 't-req-opt-nodb.test', cert: certFor('t-req-opt-nodb.test', 'untrusted'), forceDialback: true });
    peer.destroy();
    expect(outcome).toBe('refused:not-authorized');
  });

  it('a wrong dialback key is answered invalid and the stream closed', async () => {
    const peer = (await attempt({ port: gw.port, from: 't-ns-ns-db.test', useTls: false, forceDialback: false })).peer;
    peer.destroy();
    const { ScriptedPeer } = await import('../helpers/scripted-peer.js');
    const p2 = await ScriptedPeer.connect(gw.port);
    p2.sendHeader({ from: 't-ns-ns-db.test', to: 'gw.test' });
    await p2.header();
    await p2.features();
    p2.dialbackResult('t-ns-ns-db.test', 'gw.test', 'not-the-right-key');
    const answer = await p2.next(8000);
    expect(answer.attrs.type).toBe('invalid');
    expect(await p2.expectStreamError()).toMatchObject({ condition: 'not-authorized' });
  });
});
