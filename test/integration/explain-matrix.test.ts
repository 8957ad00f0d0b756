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
import { runCli } from '../helpers/cli.js';
import { CERT_STATES, matrixDomain, POLICIES, startMatrixGateway, type CertState, type MatrixGateway, type Policy } from '../helpers/matrix-gateway.js';
import { attempt, type Outcome } from '../helpers/partner-attempt.js';
import type { TestGateway } from '../helpers/test-gateway.js';

const domainOf = (p: Policy) => matrixDomain('e', p);

interface ExplainJson {
  partner: string | null;
  auth: 'sasl-external' | 'dialback' | null;
  refusal: { condition: string; rule: string; text: string } | null;
  recentRefusals: { rule: string; condition: string; text: string; direction: string }[] | null;
  steps: { name: string; ok: boolean; detail: string }[];
}

let matrix: MatrixGateway;
let gw: TestGateway;
let config: string;

beforeAll(async () => {
  matrix = await startMatrixGateway('e');
  gw = matrix.gw;
  // The same gateway.yaml, with the admin port the running gateway got, so explain can ask it for refusals.
  config = join(gw.dir, 'gateway-explain.yaml');
  const yaml = await readFile(join(gw.dir, 'gateway.yaml'), 'utf8');
  await writeFile(config, yaml.replace('admin: { listen: { host: 127.0.0.1, port: 0 } }', `admin: { listen: { host: 127.0.0.1, port: ${gw.adminPort} } }`));
});

afterAll(async () => {
  await matrix?.close();
});

const certFor = (domain: string, state: CertState) => matrix.certFor(domain, state);

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
