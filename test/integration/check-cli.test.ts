/**
 * `xmpp-gateway check` (issue 10), run as the built CLI against throw-away configurations and a
 * real DNS server (dns2): a sound setup has no error and exits 0; an expired certificate, a key
 * that does not match, a missing SRV record and an unknown config key are each found, named, and
 * make the exit status 1.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKeyPem } from '../../src/tls/cert-factory.js';
import { freePort, runCli } from '../helpers/cli.js';
import { startTestDns, type TestDns } from '../helpers/test-dns.js';
import { testPki, type TestPki } from '../helpers/test-gateway.js';

interface Finding { severity: 'error' | 'warning' | 'ok'; check: string; subject: string; message: string }

let pki: TestPki;
let dns: TestDns;
let dir: string;
let port: number;
const GOOD_ZONE = () => ({ srv: { '_xmpp-server._tcp.gw.test': [{ target: 'xmpp.gw.test.', port }] }, a: { 'xmpp.gw.test': ['127.0.0.1'], 'partner.test': ['127.0.0.1'] } });

beforeAll(async () => {
  pki = testPki();
  dns = await startTestDns();
  dir = await mkdtemp(join(tmpdir(), 'xgw-check-'));
  port = await freePort();
  await writeFile(join(dir, 'ca.pem'), pki.ca.certPem);
  await writeFile(join(dir, 'partners.yaml'), '- Identity: partner.test\n  AdditionalDomains: [gone.test]\n');
});

afterAll(async () => {
  await dns?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Writes a config named `name` with the given certificate and key, and runs check on it. */
async function check(name: string, opts: { cert?: string; key?: string; extra?: string; zone?: object } = {}) {
  const good = pki.issue({ domain: 'gw.test' });
  await writeFile(join(dir, `${name}.crt`), opts.cert ?? good.certPem);
  await writeFile(join(dir, `${name}.key`), opts.key ?? good.keyPem);
  const config = join(dir, `${name}.yaml`);
  await writeFile(config, [
    'localDomains:',
    `  - { domain: gw.test, certificate: ${name}.crt, privateKey: ${name}.key }`,
    'listen:',
    `  - { host: 127.0.0.1, port: ${port} }`,
    'partners: partners.yaml',
    'trust: { caFiles: [ca.pem] }',
    `dns: { servers: ["${dns.address}"] }`,
    opts.extra ?? '',
  ].join('\n'));
  dns.setZone(opts.zone ?? GOOD_ZONE());
  const r = await runCli(['--config', config, '--json', 'check']);
  const human = await runCli(['--config', config, 'check']);
  const { findings } = JSON.parse(r.stdout) as { findings: Finding[] };
  expect(human.code).toBe(r.code);
  return { code: r.code, findings, errors: findings.filter((f) => f.severity === 'error'), human: human.stdout };
}

describe('xmpp-gateway check', () => {
  it('a sound configuration: no error, exit 0, and each area reported', async () => {
    const r = await check('good');
    expect(r.errors).toEqual([]);
    expect(r.code).toBe(0);
    const checks = new Set(r.findings.map((f) => f.check));
    for (const c of ['config', 'partners', 'trust', 'key', 'certificate', 'port', 'dns', 'partner']) expect(checks).toContain(c);
    expect(r.findings.find((f) => f.check === 'certificate')!.message).toMatch(/gw\.test matched by DNS-ID/);
    expect(r.findings.find((f) => f.check === 'dns' && f.subject === '_xmpp-server._tcp.gw.test')).toMatchObject({ severity: 'ok' });
    // An additional domain that resolves nowhere is worth a warning, not an error.
    expect(r.findings.find((f) => f.check === 'partner' && /gone\.test/.test(f.message))).toMatchObject({ severity: 'warning', subject: 'partner.test' });
    expect(r.human).toMatch(/^OK {6}config/m);
  });

  it('an expired certificate is an error, and one expiring within 30 days a warning', async () => {
    const expired = pki.issue({ domain: 'gw.test', notBefore: new Date(Date.now() - 400 * 86_400_000), notAfter: new Date(Date.now() - 86_400_000) });
    const r = await check('expired', { cert: expired.certPem, key: expired.keyPem });
    expect(r.code).toBe(1);
    expect(r.errors).toEqual([expect.objectContaining({ check: 'certificate', subject: 'gw.test', message: expect.stringMatching(/^expired on \d{4}-\d\d-\d\d: partners refuse it; renew it$/) })]);

    const soon = pki.issue({ domain: 'gw.test', notAfter: new Date(Date.now() + 10 * 86_400_000) });
    const s = await check('soon', { cert: soon.certPem, key: soon.keyPem });
    expect(s.code).toBe(0);
    expect(s.findings.find((f) => f.check === 'certificate')).toMatchObject({ severity: 'warning', message: expect.stringMatching(/^expires in (9|10) days/) });
  });

  it('a private key that does not belong to the certificate is an error', async () => {
    const r = await check('mismatch', { key: generateKeyPem(2048) });
    expect(r.code).toBe(1);
    expect(r.errors).toEqual([expect.objectContaining({ check: 'key', subject: 'gw.test', message: expect.stringMatching(/mismatch\.key does not match the certificate/) })]);
  });

  it('a missing SRV record (and no address to fall back to) is an error naming the record to publish', async () => {
    const r = await check('nosrv', { zone: { a: { 'partner.test': ['127.0.0.1'] } } });
    expect(r.code).toBe(1);
    expect(r.errors).toEqual([expect.objectContaining({ check: 'dns', subject: '_xmpp-server._tcp.gw.test', message: expect.stringMatching(/no SRV record \(NXDOMAIN\).*partners cannot find this gateway; publish '_xmpp-server\._tcp\.gw\.test\. 3600 IN SRV 0 5 \d+ <this host>\.'/) })]);
  });

  it('an unknown config key is an error named with file:line, at the top level and inside a section', async () => {
    const r = await check('typo', { extra: 'keepAliveIntervalSecond: 30\ntrust2: {}\n' });
    expect(r.code).toBe(1);
    expect(r.errors.map((e) => `${e.subject} ${e.message.split(':')[0]}`)).toEqual([
      `${join(dir, 'typo.yaml')}:8 keepAliveIntervalSecond`,
      `${join(dir, 'typo.yaml')}:9 trust2`,
    ]);
    const nested = await check('nested', { extra: 'dns2: 1' });
    expect(nested.code).toBe(1);
    const inSection = await check('section', { extra: 'admin: { listen: { host: 127.0.0.1, port: 0 }, lisen: 1 }' });
    expect(inSection.errors).toEqual([expect.objectContaining({ check: 'config', message: expect.stringMatching(/^admin\.lisen: unknown setting/) })]);
  });
});
