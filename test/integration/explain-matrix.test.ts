/**
 * `xmpp-gateway explain` agrees with the live gateway: for every cell of the negotiation matrix
 * (every valid TLS × SASL × dialback record against five certificate states, and the plaintext
 * attempts), a scripted partner negotiates with the running gateway for real and the built CLI
 * explains the same stream; the outcomes must be the same. Then the refusals the live gateway
 * made show up in `status --json` and in `explain`, with their rule.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dialbackKey, keysEqual } from '../../src/negotiation/dialback-key.js';
import { NEGOTIATION_MATRIX } from '../fixtures/negotiation-matrix.js';
import { runCli } from '../helpers/cli.js';
import { FakePartnerServer } from '../helpers/fake-partner-server.js';
import { attempt, PEER_DIALBACK_SECRET, type Outcome } from '../helpers/partner-attempt.js';
import { startTestDns, type TestDns } from '../helpers/test-dns.js';
import { startTestGateway, testPki, type TestGateway, type TestPki } from '../helpers/test-gateway.js';

const CERT_STATES = ['trusted', 'other-domain', 'untrusted', 'expired', 'serverauth-only'] as const;
type CertState = (typeof CERT_STATES)[number];
const POLICIES = NEGOTIATION_MATRIX.filter((row) => row.verdict !== 'invalid');
const short = { Required: 'req', Optional: 'opt', NotSupported: 'ns' } as Record<string, string>;
const domainOf = (p: (typeof POLICIES)[number]) => `e-${short[p.tls]}-${short[p.sasl]}-${p.dialback ? 'db' : 'nodb'}.test`;

interface ExplainJson {
  partner: string | null;
  auth: 'sasl-external' | 'dialback' | null;
  refusal: { condition: string; rule: string; text: string } | null;
  recentRefusals: { rule: string; condition: string; text: string; direction: string }[] | null;
  steps: { name: string; ok: boolean; detail: string }[];
}

let pki: TestPki;
let gw: TestGateway;
let authority: FakePartnerServer;
let dns: TestDns;
let config: string;

beforeAll(async () => {
  pki = testPki();
  const domains = POLICIES.map(domainOf);
  const fakeCert = pki.issue({ domain: 'authority.test', dnsNames: ['authority.test', ...domains] });
  authority = await FakePartnerServer.start({
    domain: domains[0]!, extraDomains: domains.slice(1), cert: fakeCert.certPem, key: fakeCert.keyPem,
    tls: 'optional', sasl: false, dialback: true,
    answerVerify: (v) => (keysEqual(dialbackKey(PEER_DIALBACK_SECRET, v.from, v.to, v.id), v.key) ? 'valid' : 'invalid'),
  });
  const partners = POLICIES.map(
    (p) => `- Identity: ${domainOf(p)}\n  TlsNegotiation: ${p.tls}\n  SaslNegotiation: ${p.sasl}\n  SupportDialbackNegotiation: ${p.dialback}\n`,
  ).join('');
  dns = await startTestDns({ srv: Object.fromEntries(domains.map((d) => [`_xmpp-server._tcp.${d}`, [{ target: '127.0.0.1.', port: authority.port }]])) });
  gw = await startTestGateway({ pki, partners, dnsServer: dns.address });
  // The same gateway.yaml, with the admin port the running gateway got, so explain can ask it for refusals.
  config = join(gw.dir, 'gateway-explain.yaml');
  const yaml = await readFile(join(gw.dir, 'gateway.yaml'), 'utf8');
  await writeFile(config, yaml.replace('admin: { listen: { host: 127.0.0.1, port: 0 } }', `admin: { listen: { host: 127.0.0.1, port: ${gw.adminPort} } }`));
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

async function explain(args: string[]): Promise<ExplainJson> {
  const r = await runCli(['--config', config, '--json', 'explain', ...args]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as ExplainJson;
}

const asOutcome = (e: ExplainJson): Outcome => e.auth ?? `refused:${e.refusal!.condition}`;

describe('explain agrees with the live gateway', () => {
  for (const policy of POLICIES) {
    it(`TLS ${policy.tls}, SASL ${policy.sasl}, dialback ${policy.dialback}: every certificate state`, async () => {
      const domain = domainOf(policy);
      for (const state of CERT_STATES) {
        const cert = certFor(domain, state);
        const { outcome: live, peer } = await attempt({ port: gw.port, from: domain, cert });
        peer.destroy();
        const file = join(gw.dir, `${domain}-${state}.pem`);
        await writeFile(file, cert.certPem);
        const explained = await explain(['--from', domain, '--certificate', file]);
        expect({ state, outcome: asOutcome(explained) }).toEqual({ state, outcome: live });
      }
    });
  }

  const plain: [string, string, boolean][] = [
    ['TLS Optional partner, dialback on plain TCP', 'e-opt-ns-db.test', false],
    ['TLS Required partner, db:result before TLS', 'e-req-ns-db.test', true],
    ['SASL Required partner, db:result on plain TCP', 'e-opt-req-db.test', true],
  ];
  for (const [name, domain, forceDialback] of plain) {
    it(`${name}: same outcome`, async () => {
      const { outcome: live, peer } = await attempt({ port: gw.port, from: domain, useTls: false, forceDialback });
      peer.destroy();
      expect(asOutcome(await explain(['--from', domain]))).toBe(live);
    });
  }

  it('a domain that is not a partner: no record applies, refused at the header like the live gateway', async () => {
    const { outcome: live, peer } = await attempt({ port: gw.port, from: 'stranger.test' });
    peer.destroy();
    const e = await explain(['--from', 'stranger.test', '--tls']);
    expect(asOutcome(e)).toBe(live);
    expect(e.partner).toBeNull();
    expect(e.refusal!.rule).toBe('AllowedPartner');
    expect(e.recentRefusals!.some((r) => r.rule === 'AllowedPartner')).toBe(true);
  });
});

describe('recent refusals', () => {
  it('a refused partner\'s last refusals are in status --json and explain shows them with their rule', async () => {
    const domain = 'e-req-req-nodb.test';
    const { outcome, peer } = await attempt({ port: gw.port, from: domain, cert: certFor(domain, 'untrusted') });
    peer.destroy();
    expect(outcome).toBe('refused:not-authorized');
    const status = await runCli(['--config', config, '--json', 'status']);
    const body = JSON.parse(status.stdout) as { partners: { recentRefusals: Record<string, { rule: string; condition: string; text: string; time: string }[]> } };
    const mine = body.partners.recentRefusals[domain]!;
    expect(mine.at(-1)).toMatchObject({ rule: 'SaslNegotiation', condition: 'not-authorized' });
    expect(Date.now() - Date.parse(mine.at(-1)!.time)).toBeLessThan(60_000);

    const human = await runCli(['--config', config, 'explain', '--from', domain, '--tls']);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/verdict: refused, stream error not-authorized, rule SaslNegotiation/);
    expect(human.stdout).toMatch(/last \d+ refusal\(s\):\n.*inbound {2}not-authorized {2}rule SaslNegotiation: SaslNegotiation is Required for partner e-req-req-nodb\.test/);
  });
});
