/**
 * Every TLS × SASL × dialback policy that a record may hold, against every certificate state a
 * partner may present, negotiated for real: TLS handshakes with certificates from a test CA,
 * SASL EXTERNAL, and dialback verified by calling the partner's authoritative server back (a
 * FakePartnerServer found through DNS SRV answered by a real dns2 server).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkCombination, newRecord } from '../../src/policy/validate.js';
import type { Negotiation } from '../../src/policy/types.js';
import { CERT_STATES, matrixDomain, POLICIES, startMatrixGateway, type CertState, type MatrixGateway, type Policy } from '../helpers/matrix-gateway.js';
import { attempt, type Outcome } from '../helpers/partner-attempt.js';
import type { TestGateway } from '../helpers/test-gateway.js';

const domainOf = (p: Policy) => matrixDomain('t', p);

/** What must happen, reasoned from docs/design.md sections 3 and 4 (not from the implementation). */
function expected(p: Policy, cert: CertState): Outcome {
  const certOk = cert === 'trusted' || cert === 'serverauth-only';
  const dialbackOk = p.dialback && p.sasl !== 'Required';
  if (p.tls !== 'NotSupported') {
    if (p.sasl !== 'NotSupported' && certOk) return 'sasl-external';
    if (p.sasl === 'Required') return 'refused:not-authorized';
    return dialbackOk ? 'dialback' : 'refused:not-authorized';
  }
  return dialbackOk ? 'dialback' : 'refused:not-authorized';
}

let matrix: MatrixGateway;
let gw: TestGateway;

beforeAll(async () => {
  matrix = await startMatrixGateway('t');
  gw = matrix.gw;
});

afterAll(async () => {
  await matrix?.close();
});

const certFor = (domain: string, state: CertState) => matrix.certFor(domain, state);

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
