/**
 * The control panel in a real headless Chromium (Debian's `chromium`, driven by playwright-core;
 * `.ci/run` installs it; no browser is downloaded). The browser may load nothing but the loopback
 * admin listener: every other request is aborted and fails the test. Screenshots of the main
 * pages go to test/artifacts/ (ignored by git, kept by CI).
 *
 * An administrator logs in (keyboard only), filters, creates a partner with a warning
 * combination and confirms it, sees an invalid combination refused next to its field, edits a
 * partner (double-click), sees the streams a removal would close and removes the partner; a
 * viewer sees no write controls and is refused when trying anyway.
 */
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authenticate } from '../helpers/live-streams.js';
import { addUser } from '../helpers/panel.js';
import type { ScriptedPeer } from '../helpers/scripted-peer.js';
import { startTestGateway, testPki, type TestGateway, type TestPki } from '../helpers/test-gateway.js';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = resolve(import.meta.dirname, '../artifacts');
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-default-apps', '--disable-extensions'];

const PARTNERS = [
  '# hand-edited partners',
  '- Identity: alpha.test   # the first',
  '  Description: first',
  '- Identity: beta.org',
  '- Identity: live.test',
  '  TlsNegotiation: Required',
  '  SaslNegotiation: Required',
  '  SupportDialbackNegotiation: false',
  '',
].join('\n');

let pki: TestPki;
let gw: TestGateway;
let adminToken: string;
let viewerToken: string;
let profile: string;
let context: BrowserContext;
let livePeer: ScriptedPeer;
const blocked: string[] = [];
const pageErrors: string[] = [];

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(ARTIFACTS, `panel-${name}.png`), fullPage: true });
}

async function newPage(): Promise<Page> {
  const page = await context.newPage();
  page.on('pageerror', (err) => pageErrors.push(err.message));
  return page;
}

async function logIn(page: Page, token: string): Promise<void> {
  await page.goto(`http://127.0.0.1:${gw.adminPort}/`);
  const field = page.getByLabel('Admin token');
  await expect.poll(() => field.evaluate((el) => el === document.activeElement)).toBe(true);
  await page.keyboard.type(token);
  await page.keyboard.press('Enter');
  await page.locator('#partners').waitFor();
}

beforeAll(async () => {
  await mkdir(ARTIFACTS, { recursive: true });
  pki = testPki();
  gw = await startTestGateway({ pki, partners: PARTNERS });
  adminToken = await addUser(gw.dir, 'alice', 'CsAdministrator');
  viewerToken = await addUser(gw.dir, 'victor', 'CsViewOnlyAdministrator');
  const c = pki.issue({ domain: 'live.test' });
  const live = await authenticate({ port: gw.port, from: 'live.test', cert: { certPem: c.certPem, keyPem: c.keyPem } });
  expect(live.outcome).toBe('sasl-external');
  livePeer = live.peer;
  profile = await mkdtemp(join(tmpdir(), 'xgw-chromium-'));
  context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: FLAGS, viewport: { width: 1280, height: 900 } });
  // Only the admin listener on loopback; anything else is aborted and recorded.
  const origin = `http://127.0.0.1:${gw.adminPort}/`;
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith(origin)) return route.continue();
    blocked.push(url);
    return route.abort();
  });
}, 60_000);

afterAll(async () => {
  await context?.close();
  livePeer?.destroy();
  await gw?.close();
  if (profile) await rm(profile, { recursive: true, force: true });
});

describe('the control panel in Chromium', () => {
  it('an administrator logs in, filters, creates (confirming a warning), edits, sees the what-if and removes', async () => {
    const page = await newPage();
    await page.goto(`http://127.0.0.1:${gw.adminPort}/`);
    await page.getByLabel('Admin token').waitFor();
    await shot(page, '1-login');
    // A wrong token is refused on the page.
    await page.getByLabel('Admin token').fill('xgw1.0123456789abcdef.wrong-wrong-wrong-wrong-wrong-wrong-wrong-wr');
    await page.getByRole('button', { name: 'Log in' }).click();
    await expect.poll(() => page.locator('#login-error').textContent()).toMatch(/invalid token/);

    await logIn(page, adminToken);
    await expect.poll(() => page.locator('#who-name').textContent()).toBe('alice (CsAdministrator)');
    const identities = () => page.locator('#partners tbody tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-identity')));
    expect(await identities()).toEqual(['alpha.test', 'beta.org', 'live.test']);
    expect(await page.locator('#partners thead th').allTextContents()).toEqual(['Identity', 'AdditionalDomains', 'ConnectionLimit', 'Description', 'EnableKeepAlive',
      'PartnerType', 'ProxyFqdn', 'SaslNegotiation', 'SupportDialbackNegotiation', 'TlsNegotiation']);
    await shot(page, '2-partners');

    // Filter with a wildcard, as Get-CsXmppAllowedPartner -Filter.
    await page.getByLabel('Filter').fill('*.org');
    await page.getByRole('button', { name: 'Apply' }).click();
    await expect.poll(identities).toEqual(['beta.org']);
    await page.getByLabel('Filter').fill('');
    await page.getByRole('button', { name: 'Apply' }).click();
    await expect.poll(identities).toEqual(['alpha.test', 'beta.org', 'live.test']);

    // New: an invalid combination is refused next to its field...
    await page.getByRole('button', { name: 'New…' }).click();
    await page.getByLabel('Identity', { exact: true }).fill('gamma.test');
    await page.getByLabel('TlsNegotiation').selectOption('NotSupported');
    await page.getByRole('button', { name: 'Review change…' }).click();
    await expect.poll(() => page.locator('#err-TlsNegotiation').textContent()).toMatch(/invalid combination: TlsNegotiation NotSupported with SaslNegotiation Required/);
    expect(await page.getByLabel('TlsNegotiation').getAttribute('aria-invalid')).toBe('true');
    await shot(page, '3-new-invalid');
    // ...a warning combination is shown and must be confirmed before Save is possible.
    await page.getByLabel('TlsNegotiation').selectOption('Optional');
    await page.getByLabel('SupportDialbackNegotiation').uncheck();
    await page.getByLabel('Description').fill('made in the browser');
    await page.getByRole('button', { name: 'Review change…' }).click();
    await page.locator('#warnings').waitFor();
    expect(await page.locator('#warnings li').allTextContents()).toEqual(['gamma.test: TlsNegotiation Optional: without TLS this partner can never authenticate (it needs SASL EXTERNAL), so plain TCP is useless']);
    expect(await page.locator('#whatif-none').textContent()).toBe('No live stream would be closed.');
    expect(await page.locator('#confirm').isDisabled()).toBe(true);
    await shot(page, '4-new-warning');
    await page.getByLabel('I have read the warnings; save anyway').check();
    await page.locator('#confirm').click();
    await expect.poll(identities).toEqual(['alpha.test', 'beta.org', 'live.test', 'gamma.test']);
    const file = await readFile(gw.partnersFile, 'utf8');
    expect(file.startsWith('# hand-edited partners\n- Identity: alpha.test   # the first\n')).toBe(true);
    expect(file).toMatch(/- Identity: gamma\.test\n(.*\n)*  TlsNegotiation: Optional/);

    // Edit: double-click a row (as in Lync's Control Panel).
    await page.locator('#partners tr[data-identity="alpha.test"]').dblclick();
    await page.getByLabel('Description').fill('first, edited');
    await page.getByLabel('ConnectionLimit').fill('5');
    await page.getByRole('button', { name: 'Review change…' }).click();
    await page.locator('#whatif-none').waitFor();
    await page.locator('#confirm').click();
    await expect.poll(() => page.locator('#partners tr[data-identity="alpha.test"] td').nth(3).textContent()).toBe('first, edited');
    expect(await readFile(gw.partnersFile, 'utf8')).toContain('- Identity: alpha.test   # the first\n  Description: first, edited\n');

    // The live partner's page: its stream, then the what-if of removing it, then the removal.
    await page.goto(`http://127.0.0.1:${gw.adminPort}/#/partner/live.test`);
    await page.locator('#partner-streams').waitFor();
    expect(await page.locator('#partner-streams tbody tr td').nth(0).textContent()).toBe('inbound');
    expect(await page.locator('#partner-streams tbody tr td').nth(3).textContent()).toBe('sasl-external');
    expect(await page.locator('svg.spark').count()).toBe(1);
    await shot(page, '5-partner-live');
    await page.getByRole('button', { name: 'Remove…' }).click();
    await page.locator('#whatif').waitFor();
    expect(await page.locator('#whatif tbody tr td').allTextContents()).toEqual(['live.test', 'inbound', 'live.test', 'sasl-external', 'AllowedPartner', 'live.test was removed from the allowed-partner list']);
    await shot(page, '6-remove-whatif');
    await page.locator('#confirm').click();
    await expect.poll(identities).toEqual(['alpha.test', 'beta.org', 'gamma.test']);
    const err = await livePeer.expectStreamError(3000);
    expect([err.condition, err.text]).toEqual(['policy-violation', 'live.test was removed from the allowed-partner list']);

    // The audit trail page lists what was done, by whom.
    await page.getByRole('link', { name: 'Audit trail' }).click();
    await page.locator('#audit').waitFor();
    const audit = await page.locator('#audit tbody').textContent();
    expect(audit).toContain('Remove-CsXmppAllowedPartner -Identity "live.test"');
    expect(audit).toContain('New-CsXmppAllowedPartner -Identity "gamma.test"');
    expect(audit).toContain('alice (panel)');
    await shot(page, '7-audit');
    await page.getByRole('link', { name: 'Live streams' }).click();
    await page.locator('#all-live').waitFor();
    await shot(page, '8-streams');
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.getByLabel('Admin token').waitFor();
    await page.close();
  });

  it('a viewer sees no write controls and is refused when writing anyway; nothing changes', async () => {
    const page = await newPage();
    await logIn(page, viewerToken);
    expect(await page.getByRole('button', { name: 'New…' }).count()).toBe(0);
    // Double-click opens the read-only page, not the form.
    await page.locator('#partners tr[data-identity="beta.org"]').dblclick();
    await page.locator('#partner-streams-none').waitFor();
    expect(await page.getByRole('button', { name: 'Remove…' }).count()).toBe(0);
    const before = await readFile(gw.partnersFile, 'utf8');
    // The form by its address: the server still refuses the write.
    await page.goto(`http://127.0.0.1:${gw.adminPort}/#/edit/beta.org`);
    await page.getByLabel('Description').fill('viewer was here');
    await page.getByRole('button', { name: 'Review change…' }).click();
    await page.locator('#confirm').click();
    await expect.poll(() => page.locator('#status').textContent()).toMatch(/victor \(CsViewOnlyAdministrator\) may not PUT \/api\/partners\/beta\.org/);
    expect(await readFile(gw.partnersFile, 'utf8')).toBe(before);
    await shot(page, '9-viewer-refused');
    await page.close();
  });

  it('loaded nothing but the loopback admin listener, without script errors', () => {
    expect(blocked).toEqual([]);
    expect(pageErrors).toEqual([]);
  });
});
