/**
 * `xmpp-gateway probe` (issue 10) against real servers: the built CLI, run as an admin would,
 * tries each partner the way the gateway's outbound side does and reports the authentication
 * method or the failing step and the record property that decided.
 *
 * Addresses (block 7x of test/interop/README.md): the gateway's s2s address 127.0.0.70 (the probe
 * answers dialback verifications there itself: no gateway runs), Prosody a.test (STARTTLS + SASL
 * EXTERNAL) on 127.0.0.71, ejabberd b.test (dialback only) on 127.0.0.72, Prosody c.test with a
 * certificate from a CA the gateway does not trust on 127.0.0.73, d.test's SRV record pointing at
 * 127.0.0.74 where nothing listens, e.test with no DNS records at all, and ejabberd f.test (STARTTLS +
 * SASL EXTERNAL) on 127.0.0.75.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { startTestDns, type TestDns } from '../helpers/test-dns.js';
import { createPeerCerts, peerZone, startEjabberd, startProsody, withPeerLogs, type PeerCerts, type PeerServer } from './harness/index.js';

const GW = { domain: 'gw.test', ip: '127.0.0.70', s2sPort: 25269 };
const A = { domain: 'a.test', ip: '127.0.0.71', s2sPort: 25269, c2sPort: 25222 };
const B = { domain: 'b.test', ip: '127.0.0.72', s2sPort: 25269, c2sPort: 25222 };
const C = { domain: 'c.test', ip: '127.0.0.73', s2sPort: 25269, c2sPort: 25222 };
const CLOSED = { domain: 'd.test', ip: '127.0.0.74', s2sPort: 25269 };
const F = { domain: 'f.test', ip: '127.0.0.75', s2sPort: 25269, c2sPort: 25222 };

const PARTNERS = `- Identity: a.test
  TlsNegotiation: Required
  SaslNegotiation: Required
  SupportDialbackNegotiation: false
- Identity: b.test
  TlsNegotiation: NotSupported
  SaslNegotiation: NotSupported
  SupportDialbackNegotiation: true
- Identity: c.test
  TlsNegotiation: Required
  SaslNegotiation: Required
  SupportDialbackNegotiation: false
- Identity: d.test
- Identity: e.test
- Identity: f.test
  SupportDialbackNegotiation: false
`;

let certs: PeerCerts;
let dns: TestDns;
let dir: string;
let config: string;
const servers: PeerServer[] = [];

interface ProbeJson {
  domain: string;
  verdict: 'ok' | 'fail';
  auth: 'sasl-external' | 'dialback' | null;
  failedStep: string | null;
  rule: string | null;
  reason: string;
  steps: { name: string; ok: boolean; ms: number; detail: string }[];
}

async function probe(domain: string, ...extra: string[]): Promise<{ code: number | null; json: ProbeJson }> {
  const r = await runCli(['--config', config, '--json', 'probe', domain, '--timeout', '15', ...extra]);
  let json: ProbeJson;
  try {
    json = JSON.parse(r.stdout) as ProbeJson;
  } catch {
    throw new Error(`probe ${domain}: exit ${r.code}, not JSON:\n${r.stdout}\n${r.stderr}`);
  }
  return { code: r.code, json };
}

beforeAll(async () => {
  certs = await createPeerCerts([A.domain, B.domain, C.domain, F.domain]);
  const gwCert = await certs.issue(GW.domain, { dnsNames: [GW.domain] });
  await certs.issue(C.domain, { variant: '-untrusted', byUnrelatedCa: true });
  dns = await startTestDns(peerZone([A, B, C, CLOSED, F], { srv: { [`_xmpp-server._tcp.${GW.domain}`]: [{ target: `${GW.ip}.`, port: GW.s2sPort }] }, a: { [GW.domain]: [GW.ip] } }));
  dir = await mkdtemp(join(tmpdir(), 'xgw-probe-'));
  config = join(dir, 'gateway.yaml');
  await writeFile(join(dir, 'partners.yaml'), PARTNERS);
  await writeFile(config, [
    'localDomains:',
    `  - { domain: ${GW.domain}, certificate: ${gwCert.files.cert}, privateKey: ${gwCert.files.key} }`,
    'listen:',
    `  - { host: ${GW.ip}, port: ${GW.s2sPort} }`,
    'partners: partners.yaml',
    `trust: { caFiles: [${certs.caFile}] }`,
    `dns: { servers: ["${dns.address}"] }`,
    'dialbackSecret: "probe-test-dialback-secret-0123456789"',
    '',
  ].join('\n'));
  const common = { dns: { ip: '127.0.0.1', port: dns.port }, certs };
  const started = await Promise.allSettled([
    startProsody({ ...A, ...common, mode: 'external' }),
    startEjabberd({ ...B, ...common, mode: 'dialback' }),
    startProsody({ ...C, ...common, mode: 'external', certVariant: '-untrusted' }),
    startEjabberd({ ...F, ...common, mode: 'external' }),
  ]);
  for (const s of started) if (s.status === 'fulfilled') servers.push(s.value);
  for (const s of started) if (s.status === 'rejected') throw s.reason;
}, 90_000);

afterAll(async () => {
  await Promise.allSettled(servers.map((s) => s.stop()));
  await dns?.close();
  await certs?.cleanup();
  if (dir) await rm(dir, { recursive: true, force: true });
}, 30_000);

describe('probe against real servers', () => {
  it('Prosody with a valid certificate and EXTERNAL: auth sasl-external, every step ok', async () => {
    const { code, json } = await withPeerLogs(servers, () => probe(A.domain));
    expect(json.verdict, JSON.stringify(json, null, 2)).toBe('ok');
    expect(code).toBe(0);
    expect(json.auth).toBe('sasl-external');
    expect(json.steps.map((s) => s.name)).toEqual(expect.arrayContaining(['record', 'resolve', 'connect', 'stream', 'features', 'starttls', 'certificate', 'sasl-external']));
    expect(json.steps.every((s) => s.ok && s.ms >= 0)).toBe(true);
    expect(json.steps.find((s) => s.name === 'certificate')!.detail).toMatch(/a\.test matched by DNS-ID/);
    expect(json.steps.find((s) => s.name === 'resolve')!.detail).toMatch(/SRV _xmpp-server\._tcp\.a\.test.*127\.0\.0\.71:25269/);
  }, 40_000);

  it('ejabberd with a valid certificate and EXTERNAL: auth sasl-external', async () => {
    const { code, json } = await withPeerLogs(servers, () => probe(F.domain));
    expect(json.verdict, JSON.stringify(json, null, 2)).toBe('ok');
    expect(code).toBe(0);
    expect(json.auth).toBe('sasl-external');
    expect(json.steps.find((s) => s.name === 'sasl-external')).toMatchObject({ ok: true });
  }, 40_000);

  it('ejabberd with dialback only: auth dialback, verified through the probe\'s own authoritative listener', async () => {
    const { code, json } = await withPeerLogs(servers, () => probe(B.domain));
    expect(json.verdict, JSON.stringify(json, null, 2)).toBe('ok');
    expect(code).toBe(0);
    expect(json.auth).toBe('dialback');
    expect(json.steps.find((s) => s.name === 'authority')!.detail).toMatch(/127\.0\.0\.70:25269/);
    expect(json.steps.find((s) => s.name === 'dialback')).toMatchObject({ ok: true });
    expect(json.steps.some((s) => s.name === 'starttls')).toBe(false);
  }, 40_000);

  it('Prosody with an untrusted certificate against a SASL-Required record: fails at certificate, decided by SaslNegotiation', async () => {
    const { code, json } = await probe(C.domain);
    expect(code).toBe(1);
    expect(json).toMatchObject({ verdict: 'fail', auth: null, failedStep: 'certificate', rule: 'SaslNegotiation' });
    expect(json.steps.find((s) => s.name === 'certificate')!.detail).toMatch(/chain not trusted/);
    expect(json.reason).toMatch(/SaslNegotiation is Required for partner c\.test/);
  }, 40_000);

  it('a partner whose port is closed: fails at connect', async () => {
    const { code, json } = await probe(CLOSED.domain);
    expect(code).toBe(1);
    expect(json).toMatchObject({ verdict: 'fail', auth: null, failedStep: 'connect' });
    expect(json.steps.find((s) => s.name === 'connect')!.detail).toMatch(/127\.0\.0\.74:25269: .*ECONNREFUSED/);
  }, 40_000);

  it('a name with no SRV record (and no address): fails at resolve and says so', async () => {
    const { code, json } = await probe('e.test');
    expect(code).toBe(1);
    expect(json).toMatchObject({ verdict: 'fail', failedStep: 'resolve' });
    expect(json.steps.find((s) => s.name === 'resolve')!.detail).toMatch(/no _xmpp-server\._tcp\.e\.test SRV record/);
  }, 40_000);

  it('a domain that is not a partner is refused unless --unlisted, which says it used the default record', async () => {
    const refused = await runCli(['--config', config, 'probe', 'stranger.test']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/stranger\.test is not an allowed partner.*--unlisted/);
    const { json } = await probe('stranger.test', '--unlisted');
    expect(json.steps[0]!.detail).toMatch(/not an allowed partner; probed with --unlisted under the default record/);
    expect(json.failedStep).toBe('resolve');
  }, 40_000);
});
