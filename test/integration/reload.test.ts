/**
 * Reloading partners.yaml under live streams (docs/design.md section 6), with the real gateway
 * watching its file: a valid file is swapped in and every live stream re-checked (a removed
 * partner's streams are closed `policy-violation`, streams that no longer satisfy a tightened
 * TLS/SASL/dialback rule are closed, a lowered ConnectionLimit closes the newest streams above
 * it, nothing else is disturbed); an invalid file is not applied at all. Each test gets its own
 * gateway so that every test starts from a known list.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { dialbackKey, keysEqual } from '../../src/negotiation/dialback-key.js';
import { FakePartnerServer } from '../helpers/fake-partner-server.js';
import { authenticate, eventually, getStatus, sleep, statusOf, streamErrorOf, writeAndReload } from '../helpers/live-streams.js';
import { PEER_DIALBACK_SECRET } from '../helpers/partner-attempt.js';
import type { ScriptedPeer } from '../helpers/scripted-peer.js';
import { startTestGateway, testPki, type TestGateway, type TestPki } from '../helpers/test-gateway.js';

const DIALBACK_DOMAINS = ['tlsdb.test', 'plain.test'];

let pki: TestPki;
let authority: FakePartnerServer;
let gw: TestGateway | undefined;
const peers: ScriptedPeer[] = [];

beforeAll(async () => {
  pki = testPki();
  // Authoritative server for the dialback partners (STARTTLS offered: tlsdb.test requires it).
  const c = pki.issue({ domain: DIALBACK_DOMAINS[0]!, dnsNames: DIALBACK_DOMAINS });
  authority = await FakePartnerServer.start({
    domain: DIALBACK_DOMAINS[0]!,
    extraDomains: DIALBACK_DOMAINS.slice(1),
    cert: c.certPem,
    key: c.keyPem,
    tls: 'optional',
    sasl: false,
    dialback: true,
    answerVerify: (v) => (keysEqual(dialbackKey(PEER_DIALBACK_SECRET, v.from, v.to, v.id), v.key) ? 'valid' : 'invalid'),
  });
});

afterEach(async () => {
  for (const p of peers.splice(0)) p.destroy();
  await gw?.close();
  gw = undefined;
});

afterAll(async () => {
  await authority?.close();
});

async function gateway(partners: string): Promise<TestGateway> {
  gw = await startTestGateway({
    pki,
    partners,
    routes: Object.fromEntries(DIALBACK_DOMAINS.map((d) => [d, `127.0.0.1:${authority.port}`])),
  });
  return gw;
}

/** A partner that authenticates with SASL EXTERNAL only. */
const external = (domain: string, extra = ''): string =>
  `- Identity: ${domain}\n  TlsNegotiation: Required\n  SaslNegotiation: Required\n  SupportDialbackNegotiation: false\n${extra}`;

async function sasl(g: TestGateway, domain: string) {
  const c = pki.issue({ domain });
  const r = await authenticate({ port: g.port, from: domain, cert: { certPem: c.certPem, keyPem: c.keyPem } });
  peers.push(r.peer);
  return r;
}

async function dialback(g: TestGateway, domain: string, useTls: boolean) {
  const r = await authenticate({ port: g.port, from: domain, useTls });
  peers.push(r.peer);
  return r;
}

/** The stream is still open a moment after the reload, listed in /status, and has no stream error. */
async function expectUntouched(g: TestGateway, peer: ScriptedPeer, partner: string): Promise<void> {
  await sleep(300);
  const err = streamErrorOf(peer);
  expect(err && `${err.condition}: ${err.text ?? ''}`, 'a stream that should stay got a stream error').toBeUndefined();
  expect(peer.closedAlready).toBe(false);
  expect(await statusOf(g.adminPort, peer)).toMatchObject({ partner });
}

describe('reload of a live stream\'s partner', () => {
  it('removing a partner closes its streams policy-violation; another partner\'s stream stays', async () => {
    const g = await gateway(external('keep.test') + external('gone.test'));
    const keep = await sasl(g, 'keep.test');
    const gone = await sasl(g, 'gone.test');
    expect([keep.outcome, gone.outcome]).toEqual(['sasl-external', 'sasl-external']);

    const reload = await writeAndReload(g, external('keep.test'));
    expect(reload.event).toBe('partners.reloaded');
    const err = await gone.peer.expectStreamError(2000);
    expect(err.condition).toBe('policy-violation');
    expect(err.text).toMatch(/gone\.test.*removed from the allowed-partner list/);
    expect((await gone.peer.closed()).streamEnd).toBe(true);
    await expectUntouched(g, keep.peer, 'keep.test');

    // And the removed partner cannot come back in.
    const again = await sasl(g, 'gone.test');
    expect(again.outcome).toBe('refused:policy-violation');
    const { streams } = await getStatus(g.adminPort);
    expect(streams.map((s) => s.partner)).toEqual(['keep.test']);
  });

  it('SupportDialbackNegotiation turned off closes the stream authenticated by dialback over TLS, not the SASL one', async () => {
    const record = (dialbackOn: boolean) =>
      `- Identity: tlsdb.test\n  TlsNegotiation: Required\n  SaslNegotiation: Optional\n  SupportDialbackNegotiation: ${dialbackOn}\n`;
    const g = await gateway(record(true));
    const db = await dialback(g, 'tlsdb.test', true);
    expect(db.outcome).toBe('dialback');
    expect(await statusOf(g.adminPort, db.peer)).toMatchObject({ auth: 'dialback', tls: expect.stringMatching(/^TLSv1\.[23]$/) });
    const ext = await sasl(g, 'tlsdb.test');
    expect(ext.outcome).toBe('sasl-external');

    expect((await writeAndReload(g, record(false))).event).toBe('partners.reloaded');
    const err = await db.peer.expectStreamError(2000);
    expect(err.condition).toBe('policy-violation');
    expect(err.text).toMatch(/SupportDialbackNegotiation/);
    await expectUntouched(g, ext.peer, 'tlsdb.test');
  });

  it('TlsNegotiation tightened to Required closes the plain-TCP stream, not the one on TLS', async () => {
    const record = (tls: string) =>
      `- Identity: plain.test\n  TlsNegotiation: ${tls}\n  SaslNegotiation: NotSupported\n  SupportDialbackNegotiation: true\n`;
    const g = await gateway(record('Optional'));
    const plain = await dialback(g, 'plain.test', false);
    expect(plain.outcome).toBe('dialback');
    expect(await statusOf(g.adminPort, plain.peer)).toMatchObject({ tls: null, auth: 'dialback' });
    const onTls = await dialback(g, 'plain.test', true);
    expect(onTls.outcome).toBe('dialback');

    expect((await writeAndReload(g, record('Required'))).event).toBe('partners.reloaded');
    const err = await plain.peer.expectStreamError(2000);
    expect(err.condition).toBe('policy-violation');
    expect(err.text).toMatch(/TlsNegotiation/);
    await expectUntouched(g, onTls.peer, 'plain.test');
  });

  it('ConnectionLimit lowered from 2 to 1 closes the newest stream only', async () => {
    const g = await gateway(external('lim.test', '  ConnectionLimit: 2\n') + external('other.test'));
    const older = await sasl(g, 'lim.test');
    await sleep(20);
    const newer = await sasl(g, 'lim.test');
    const other = await sasl(g, 'other.test');
    expect([older.outcome, newer.outcome, other.outcome]).toEqual(['sasl-external', 'sasl-external', 'sasl-external']);

    expect((await writeAndReload(g, external('lim.test', '  ConnectionLimit: 1\n') + external('other.test'))).event).toBe('partners.reloaded');
    const err = await newer.peer.expectStreamError(2000);
    expect(err.condition).toBe('policy-violation');
    expect(err.text).toMatch(/ConnectionLimit/);
    await expectUntouched(g, older.peer, 'lim.test');
    await expectUntouched(g, other.peer, 'other.test');

    // The limit now holds for new streams too.
    const third = await sasl(g, 'lim.test');
    expect(third.outcome).toBe('refused:policy-violation');
    expect(third.error?.text).toMatch(/ConnectionLimit 1 of partner lim\.test/);
  });

  it('a reload that tightens TLS and lowers ConnectionLimit at once closes only what it must', async () => {
    // Four streams of one partner (limit 4): two on TLS, two on plain TCP. The new record
    // requires TLS (the two plain ones go) and allows 3: the two TLS streams are within it.
    const record = (tls: string, limit: number) =>
      `- Identity: plain.test\n  TlsNegotiation: ${tls}\n  SaslNegotiation: NotSupported\n  SupportDialbackNegotiation: true\n  ConnectionLimit: ${limit}\n`;
    const g = await gateway(record('Optional', 4));
    const tlsOlder = await dialback(g, 'plain.test', true);
    const tlsNewer = await dialback(g, 'plain.test', true);
    const plainA = await dialback(g, 'plain.test', false);
    const plainB = await dialback(g, 'plain.test', false);
    expect([tlsOlder, tlsNewer, plainA, plainB].map((r) => r.outcome)).toEqual(['dialback', 'dialback', 'dialback', 'dialback']);

    expect((await writeAndReload(g, record('Required', 3))).event).toBe('partners.reloaded');
    for (const plain of [plainA, plainB]) {
      const err = await plain.peer.expectStreamError(2000);
      expect(err.condition).toBe('policy-violation');
      expect(err.text).toMatch(/TlsNegotiation/);
    }
    await expectUntouched(g, tlsOlder.peer, 'plain.test');
    await expectUntouched(g, tlsNewer.peer, 'plain.test');
    expect(g.logs.filter((l) => l.event === 'stream.refused' && l.rule === 'ConnectionLimit')).toEqual([]);
  });

  it('an invalid partners.yaml is not applied: live streams stay, the error names file, line and field, the old list stays in force', async () => {
    const g = await gateway(external('keep.test'));
    const live = await sasl(g, 'keep.test');
    expect(live.outcome).toBe('sasl-external');
    const stranger = await sasl(g, 'new.test');
    expect(stranger.outcome).toBe('refused:policy-violation');

    // Adds new.test (valid) and breaks keep.test: applying any part of it would change who gets in.
    const invalid = [
      '- Identity: new.test',
      '  TlsNegotiation: Required',
      '  SaslNegotiation: Required',
      '  SupportDialbackNegotiation: false',
      '- Identity: keep.test',
      '  TlsNegotiation: Sometimes',
      '  SaslNegotiation: Required',
      '  SupportDialbackNegotiation: false',
      '',
    ].join('\n');
    const badLine = invalid.split('\n').indexOf('  TlsNegotiation: Sometimes') + 1;
    const failed = await writeAndReload(g, invalid);
    expect(failed.event).toBe('partners.reload-failed');
    const message = JSON.stringify(failed);
    expect(message).toContain(`${g.partnersFile}:${badLine}`);
    expect(message).toContain('TlsNegotiation');
    expect(message).toContain('Sometimes');
    expect(g.logs.filter((l) => l.event === 'partners.reloaded')).toHaveLength(0);
    const status = await getStatus(g.adminPort);
    expect(status.partners.lastReloadError).toMatch(/TlsNegotiation/);

    await expectUntouched(g, live.peer, 'keep.test');
    const newcomer = await sasl(g, 'new.test');
    expect(newcomer.outcome).toBe('refused:policy-violation');
    expect(newcomer.error?.text).toMatch(/not an allowed partner/);
    const second = await sasl(g, 'keep.test');
    expect(second.outcome).toBe('sasl-external');
  });

  it('a newly added partner is accepted within 2 s of the write', async () => {
    const g = await gateway(external('keep.test'));
    const before = await sasl(g, 'fresh.test');
    expect(before.outcome).toBe('refused:policy-violation');

    const t0 = Date.now();
    await g.writePartners(external('keep.test') + external('fresh.test'));
    let last = '';
    const accepted = await eventually(async () => {
      const r = await sasl(g, 'fresh.test');
      last = r.outcome;
      return r.outcome === 'sasl-external';
    }, 2000, 50);
    const took = Date.now() - t0;
    expect(accepted, `fresh.test still ${last} after ${took} ms`).toBe(true);
    expect(took).toBeLessThan(2000);
  });

  it('a partners.yaml that disappears while running means no partners, as an empty one: applied, with a warning', async () => {
    const g = await gateway(external('keep.test'));
    const keep = await sasl(g, 'keep.test');
    expect(keep.outcome).toBe('sasl-external');
    const { rm } = await import('node:fs/promises');
    await rm(g.partnersFile);
    const warned = await g.waitForLog((l) => l.event === 'partners.empty' && l.before === 1, 3000);
    expect(warned).toMatchObject({ level: 'warn', message: '0 partners: all federation refused', file: g.partnersFile });
    const err = await keep.peer.expectStreamError(2000);
    expect(err.condition).toBe('policy-violation');
    expect((await sasl(g, 'keep.test')).outcome).toBe('refused:policy-violation');
    expect(g.logs.some((l) => l.event === 'partners.reload-failed')).toBe(false);
  });
});
