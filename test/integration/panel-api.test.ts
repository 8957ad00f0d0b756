/**
 * The admin listener's access control and the panel's JSON API on the real gateway: every role ×
 * endpoint, the session cookie and its CSRF token, stale writes (If-Match), bad JSON and bad
 * values (a clear error, the file byte-for-byte unchanged), warnings to confirm, the audit trail,
 * the what-if against live streams (the reload's own rules), and CLI + panel edits at the same
 * time losing nothing.
 */
import { readFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { authenticate, eventually } from '../helpers/live-streams.js';
import { addUser, call, login } from '../helpers/panel.js';
import type { ScriptedPeer } from '../helpers/scripted-peer.js';
import { startTestGateway, testPki, type TestGateway, type TestPki } from '../helpers/test-gateway.js';

let pki: TestPki;
let gw: TestGateway | undefined;
const peers: ScriptedPeer[] = [];

beforeAll(() => {
  pki = testPki();
});
afterEach(async () => {
  for (const p of peers.splice(0)) p.destroy();
  await gw?.close();
  gw = undefined;
});

const HAND_EDITED = [
  '# Partners of the gateway (hand-edited)',
  '',
  '# the oldest partner',
  '- Identity: alpha.test      # keep this comment',
  '  Description: "first one"',
  '',
  '- Identity: beta.org',
  '  TlsNegotiation: Required',
  '',
].join('\n');

async function start(partners = HAND_EDITED, adminConfig = ''): Promise<{ g: TestGateway; admin: string; viewer: string }> {
  gw = await startTestGateway({ pki, partners, admin: adminConfig });
  const admin = await addUser(gw.dir, 'alice', 'CsAdministrator');
  const viewer = await addUser(gw.dir, 'victor', 'CsViewOnlyAdministrator');
  return { g: gw, admin, viewer };
}

const record = (identity: string, over: Record<string, unknown> = {}) => ({
  Identity: identity, AdditionalDomains: [], ConnectionLimit: null, Description: null, EnableKeepAlive: true, PartnerType: 'PublicUnverified',
  ProxyFqdn: null, SaslNegotiation: 'Required', SupportDialbackNegotiation: true, TlsNegotiation: 'Required', ...over,
});

describe('roles × endpoints', () => {
  it('reads: both roles 200, no credentials 401; writes: the administrator succeeds, the viewer gets 403 and changes nothing', async () => {
    const { g, admin, viewer } = await start();
    const reads: [string, string, unknown?][] = [
      ['GET', '/status'], ['GET', '/metrics'], ['GET', '/approvals'], ['GET', '/api/partners'], ['GET', '/api/partners/alpha.test'],
      ['GET', '/api/streams'], ['GET', '/api/streams?partner=alpha.test'], ['GET', '/api/audit'], ['GET', '/api/session'], ['GET', '/api/roles'],
      ['POST', '/api/whatif', { action: 'remove', identity: 'alpha.test' }],
    ];
    for (const [method, path, body] of reads) {
      expect((await call(g.adminPort, admin, method, path, body)).status, `admin ${method} ${path}`).toBe(200);
      expect((await call(g.adminPort, viewer, method, path, body)).status, `viewer ${method} ${path}`).toBe(200);
      const anon = await call(g.adminPort, null, method, path, body);
      expect(anon.status, `anonymous ${method} ${path}`).toBe(401);
      expect(anon.headers['www-authenticate']).toBe('Bearer realm="xmpp-gateway"');
    }

    const writes: [string, string, unknown?][] = [
      ['POST', '/reload'], ['POST', '/approvals/revoke', { local: 'a@gw.test' }], ['POST', '/api/partners', record('new.test')],
      ['PUT', '/api/partners/beta.org', record('beta.org', { Description: 'changed' })], ['DELETE', '/api/partners/alpha.test'], ['POST', '/stop'],
    ];
    const before = await readFile(g.partnersFile, 'utf8');
    for (const [method, path, body] of writes) {
      const r = await call(g.adminPort, viewer, method, path, body);
      expect(r.status, `viewer ${method} ${path}`).toBe(403);
      expect(r.json.error).toMatch(/victor \(CsViewOnlyAdministrator\) may not .*CsAdministrator/);
      expect((await call(g.adminPort, null, method, path, body)).status, `anonymous ${method} ${path}`).toBe(401);
    }
    expect(await readFile(g.partnersFile, 'utf8')).toBe(before);

    const expected = [200, 200, 201, 200, 200, 501]; // the test gateway was not started by `serve`: /stop is 501
    for (const [i, [method, path, body]] of writes.entries()) {
      expect((await call(g.adminPort, admin, method, path, body)).status, `admin ${method} ${path}`).toBe(expected[i]);
    }
    const after = await readFile(g.partnersFile, 'utf8');
    expect(after).toContain('- Identity: new.test');
    expect(after).toContain('Description: changed');
    expect(after).not.toContain('alpha.test');

    // The panel's files need no credentials and come with a strict policy; /metrics is closed by default.
    const page = await call(g.adminPort, null, 'GET', '/');
    expect(page.status).toBe(200);
    expect(page.headers['content-security-policy']).toMatch(/default-src 'none'; script-src 'self'/);
    expect((await call(g.adminPort, null, 'GET', '/panel.js')).status).toBe(200);

    // The viewer's refused attempts are in the audit trail.
    const audit = (await call(g.adminPort, admin, 'GET', '/api/audit')).json.entries as Record<string, unknown>[];
    expect(audit.filter((e) => e.who === 'victor' && e.result === 'refused').map((e) => e.action)).toEqual(writes.map(([m, p]) => `${m} ${p}`));
  });

  it('admin.openMetrics leaves /metrics open for Prometheus, nothing else', async () => {
    const { g } = await start(HAND_EDITED, 'openMetrics: true');
    const m = await call(g.adminPort, null, 'GET', '/metrics');
    expect(m.status).toBe(200);
    expect(String(m.json)).toMatch(/^# HELP gw_streams /);
    expect((await call(g.adminPort, null, 'GET', '/status')).status).toBe(401);
  });
});

describe('the panel session', () => {
  it('login sets an HttpOnly SameSite=Strict cookie; writes need the CSRF token; a foreign Origin is refused; logout ends it', async () => {
    const { g, admin } = await start();
    const bad = await call(g.adminPort, null, 'POST', '/login', { token: 'xgw1.0123456789abcdef.not-a-real-token-not-a-real-token-not-a-real' });
    expect([bad.status, bad.json.field]).toEqual([401, 'token']);
    const r = await call(g.adminPort, null, 'POST', '/login', { token: admin });
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ user: 'alice', role: 'CsAdministrator' });
    expect(String(r.headers['set-cookie'])).toMatch(/^xgw_session=[\w-]+; Path=\/; HttpOnly; SameSite=Strict; Max-Age=\d+$/);
    const s = await login(g.adminPort, admin);

    expect((await call(g.adminPort, { cookie: s.cookie }, 'GET', '/api/session')).json).toMatchObject({ user: 'alice', csrf: s.csrf });
    const before = await readFile(g.partnersFile, 'utf8');
    let w = await call(g.adminPort, { cookie: s.cookie }, 'POST', '/api/partners', record('csrf.test'));
    expect([w.status, w.json.error]).toEqual([403, expect.stringMatching(/X-CSRF-Token/)]);
    w = await call(g.adminPort, { cookie: s.cookie, csrf: 'wrong' }, 'POST', '/api/partners', record('csrf.test'));
    expect(w.status).toBe(403);
    expect(await readFile(g.partnersFile, 'utf8')).toBe(before);
    w = await call(g.adminPort, s, 'POST', '/api/partners', record('csrf.test'), { origin: 'https://evil.example' });
    expect(w.status).toBe(403);
    w = await call(g.adminPort, s, 'POST', '/api/partners', record('csrf.test'), { origin: `http://127.0.0.1:${g.adminPort}` });
    expect(w.status).toBe(201);

    const out = await call(g.adminPort, s, 'POST', '/logout');
    expect(out.status).toBe(200);
    expect((await call(g.adminPort, { cookie: s.cookie }, 'GET', '/api/session')).status).toBe(401);
  });

  it('removing a user ends their sessions and tokens at once', async () => {
    const { g, admin } = await start();
    const s = await login(g.adminPort, admin);
    expect((await call(g.adminPort, s, 'GET', '/api/partners')).status).toBe(200);
    const r = await runCli(['--config', join(g.dir, 'gateway.yaml'), 'admin-user', 'remove', 'alice']);
    expect([r.code, r.stdout]).toEqual([0, 'removed admin user alice\n']);
    expect((await call(g.adminPort, s, 'GET', '/api/partners')).status).toBe(401);
    expect((await call(g.adminPort, admin, 'GET', '/api/partners')).status).toBe(401);
  });
});

describe('partner writes through the API', () => {
  it('PUT changes only what changed: comments, order and layout of the hand-edited file are kept; the audit line has before, after and the cmdlet', async () => {
    const { g, admin } = await start();
    const got = await call(g.adminPort, admin, 'GET', '/api/partners/alpha.test');
    expect(got.json).toEqual(record('alpha.test', { Description: 'first one' }));
    const put = await call(g.adminPort, admin, 'PUT', '/api/partners/alpha.test', record('alpha.test', { Description: 'first one', EnableKeepAlive: false, AdditionalDomains: ['muc.alpha.test'] }), { 'if-match': String(got.headers.etag) });
    expect(put.status).toBe(200);
    expect(put.json.warnings).toEqual([]);
    expect(await readFile(g.partnersFile, 'utf8')).toBe(HAND_EDITED.replace('  Description: "first one"\n', '  Description: "first one"\n  AdditionalDomains: [muc.alpha.test]\n  EnableKeepAlive: false\n'));
    const list = await call(g.adminPort, admin, 'GET', '/api/partners?filter=*.org');
    expect(list.json.map((p: { Identity: string }) => p.Identity)).toEqual(['beta.org']);

    const entries = (await call(g.adminPort, admin, 'GET', '/api/audit')).json.entries as Record<string, unknown>[];
    const set = entries.find((e) => e.action === 'Set-CsXmppAllowedPartner');
    expect(set).toMatchObject({
      who: 'alice', via: 'api', result: 'ok',
      cmdlet: 'Set-CsXmppAllowedPartner -Identity "alpha.test" -AdditionalDomains @{Add="muc.alpha.test"} -EnableKeepAlive $False',
      before: record('alpha.test', { Description: 'first one' }),
      after: record('alpha.test', { Description: 'first one', EnableKeepAlive: false, AdditionalDomains: ['muc.alpha.test'] }),
    });
    expect(Date.parse(set!.time as string)).toBeGreaterThan(Date.now() - 60_000);
  });

  it('bad JSON and bad values are refused with the field and a clear message; the file is unchanged; refusals are audited', async () => {
    const { g, admin } = await start();
    const before = await readFile(g.partnersFile, 'utf8');
    const cases: [string, string, unknown, number, string | null, RegExp][] = [
      ['PUT', '/api/partners/alpha.test', '{"Identity": "alpha.test",', 400, 'body', /body: not JSON/],
      ['POST', '/api/partners', '[1,2]', 400, 'body', /one partner record/],
      ['POST', '/api/partners', record('x.test', { TlsNegotiation: 'Sometimes' }), 400, 'TlsNegotiation', /'Sometimes' is not one of Required, Optional, NotSupported/],
      ['POST', '/api/partners', record('x.test', { TlsNegotiation: 'NotSupported' }), 400, 'TlsNegotiation', /invalid combination: TlsNegotiation NotSupported with SaslNegotiation Required/],
      ['POST', '/api/partners', { Identity: 'x.test', Bogus: 1 }, 400, 'Bogus', /unknown property/],
      ['POST', '/api/partners', record('alpha.test'), 400, 'Identity', /already exists/],
      ['POST', '/api/partners', record('y.test', { AdditionalDomains: ['beta.org'] }), 400, 'AdditionalDomains', /already belongs to partner 'beta.org'/],
      ['PUT', '/api/partners/alpha.test', record('other.test'), 400, 'Identity', /cannot be changed/],
      ['PUT', '/api/partners/nope.test', record('nope.test'), 404, 'Identity', /no partner with Identity 'nope.test'/],
      ['DELETE', '/api/partners/nope.test', undefined, 404, 'Identity', /no partner/],
      ['PUT', '/api/partners/alpha.test', record('alpha.test', { ConnectionLimit: 0 }), 400, 'ConnectionLimit', /0 would refuse every stream/],
    ];
    for (const [method, path, body, status, field, message] of cases) {
      const r = await call(g.adminPort, admin, method, path, body);
      expect([r.status, r.json.field], `${method} ${path} ${JSON.stringify(body)}`).toEqual([status, field]);
      expect(r.json.error).toMatch(message);
      expect(r.headers['content-type']).toMatch(/^application\/json/);
    }
    expect(await readFile(g.partnersFile, 'utf8')).toBe(before);
    // Reads of what is not there are 404s, and not audited.
    const missing = await call(g.adminPort, admin, 'GET', '/api/partners/nope.test');
    expect([missing.status, missing.json.field]).toEqual([404, 'Identity']);
    expect((await call(g.adminPort, admin, 'GET', '/api/partners/%zz')).status).toBe(404);
    const refused = ((await call(g.adminPort, admin, 'GET', '/api/audit')).json.entries as Record<string, unknown>[]).filter((e) => e.result === 'refused');
    expect(refused).toHaveLength(cases.length);
    expect(refused[3]).toMatchObject({ who: 'alice', action: 'New-CsXmppAllowedPartner', cmdlet: 'New-CsXmppAllowedPartner -Identity "x.test" -TlsNegotiation "NotSupported"' });
  });

  it('a warning combination needs confirming (?force=true), as -Force; unconfirmed, nothing is written', async () => {
    const { g, admin } = await start();
    const before = await readFile(g.partnersFile, 'utf8');
    const warned = record('warn.test', { TlsNegotiation: 'Optional', SupportDialbackNegotiation: false });
    const r = await call(g.adminPort, admin, 'POST', '/api/partners', warned);
    expect(r.status).toBe(409);
    expect(r.json.warnings).toEqual(['warn.test: TlsNegotiation Optional: without TLS this partner can never authenticate (it needs SASL EXTERNAL), so plain TCP is useless']);
    expect(await readFile(g.partnersFile, 'utf8')).toBe(before);
    const ok = await call(g.adminPort, admin, 'POST', '/api/partners?force=true', warned);
    expect([ok.status, ok.json.warnings.length]).toEqual([201, 1]);
    expect((await call(g.adminPort, admin, 'GET', '/api/partners/warn.test')).json).toEqual(warned);
  });

  it('a stale form is refused (412), never overwritten: the CLI changed the record after the panel read it', async () => {
    const { g, admin } = await start();
    const read = await call(g.adminPort, admin, 'GET', '/api/partners/beta.org');
    const etag = String(read.headers.etag);
    const cli = await runCli(['--config', join(g.dir, 'gateway.yaml'), 'partner', 'set', '--identity', 'beta.org', '--description', 'from the CLI']);
    expect(cli.code).toBe(0);
    const afterCli = await readFile(g.partnersFile, 'utf8');

    const put = await call(g.adminPort, admin, 'PUT', '/api/partners/beta.org', record('beta.org', { PartnerType: 'Federated' }), { 'if-match': etag });
    expect(put.status).toBe(412);
    expect(put.json.error).toMatch(/beta\.org was changed since this form was opened/);
    expect(put.json.current).toMatchObject({ Identity: 'beta.org', Description: 'from the CLI' });
    const del = await call(g.adminPort, admin, 'DELETE', '/api/partners/beta.org', undefined, { 'if-match': etag });
    expect(del.status).toBe(412);
    expect(await readFile(g.partnersFile, 'utf8')).toBe(afterCli);

    // With the current ETag the edit goes through, and keeps the CLI's change.
    const fresh = await call(g.adminPort, admin, 'GET', '/api/partners/beta.org');
    const ok = await call(g.adminPort, admin, 'PUT', '/api/partners/beta.org', { ...fresh.json, PartnerType: 'Federated' }, { 'if-match': String(fresh.headers.etag) });
    expect(ok.status).toBe(200);
    expect(ok.json.record).toMatchObject({ Description: 'from the CLI', PartnerType: 'Federated' });

    // The CLI's change is audited as the OS user.
    const entries = (await call(g.adminPort, admin, 'GET', '/api/audit')).json.entries as Record<string, unknown>[];
    expect(entries.find((e) => e.via === 'cli')).toMatchObject({ who: expect.stringContaining(userInfo().username), cmdlet: 'Set-CsXmppAllowedPartner -Identity "beta.org" -Description "from the CLI"' });
  });

  it('CLI and panel editing at the same time lose nothing', async () => {
    const { g, admin } = await start();
    const config = join(g.dir, 'gateway.yaml');
    const n = 6;
    const jobs: Promise<unknown>[] = [];
    for (let i = 0; i < n; i++) {
      jobs.push(runCli(['--config', config, 'partner', 'new', '--identity', `cli${i}.test`, '--description', `cli ${i}`]).then((r) => expect(r.code, r.stderr).toBe(0)));
      jobs.push(call(g.adminPort, admin, 'POST', '/api/partners', record(`web${i}.test`, { Description: `web ${i}` })).then((r) => expect(r.status, JSON.stringify(r.json)).toBe(201)));
    }
    // Both edit the same two records too, different properties, without If-Match (last writer of a property wins, nothing else is lost).
    jobs.push(runCli(['--config', config, 'partner', 'set', '--identity', 'alpha.test', '--partner-type', 'Federated']).then((r) => expect(r.code, r.stderr).toBe(0)));
    jobs.push(call(g.adminPort, admin, 'PUT', '/api/partners/beta.org', record('beta.org', { Description: 'web edit' })).then((r) => expect(r.status).toBe(200)));
    await Promise.all(jobs);
    const list = (await call(g.adminPort, admin, 'GET', '/api/partners')).json as Record<string, unknown>[];
    const ids = list.map((p) => p.Identity);
    for (let i = 0; i < n; i++) {
      expect(ids).toContain(`cli${i}.test`);
      expect(ids).toContain(`web${i}.test`);
    }
    expect(list.find((p) => p.Identity === 'alpha.test')).toMatchObject({ PartnerType: 'Federated', Description: 'first one' });
    expect(list.find((p) => p.Identity === 'beta.org')).toMatchObject({ Description: 'web edit' });
    const text = await readFile(g.partnersFile, 'utf8');
    expect(text.startsWith('# Partners of the gateway (hand-edited)\n\n# the oldest partner\n- Identity: alpha.test      # keep this comment\n')).toBe(true);
    // One audit line per change, from both sides.
    const entries = (await call(g.adminPort, admin, 'GET', '/api/audit')).json.entries as Record<string, unknown>[];
    const ok = entries.filter((e) => e.result === 'ok' && e.action !== 'reload');
    expect(ok.filter((e) => e.action === 'New-CsXmppAllowedPartner')).toHaveLength(2 * n);
    expect(ok.filter((e) => e.action === 'Set-CsXmppAllowedPartner')).toHaveLength(2);
  });
});

describe('what-if: the live streams a change would close', () => {
  const external = (domain: string, extra = '') =>
    `- Identity: ${domain}\n  TlsNegotiation: Required\n  SaslNegotiation: Required\n  SupportDialbackNegotiation: false\n${extra}`;

  async function sasl(g: TestGateway, domain: string) {
    const c = pki.issue({ domain });
    const r = await authenticate({ port: g.port, from: domain, cert: { certPem: c.certPem, keyPem: c.keyPem } });
    peers.push(r.peer);
    expect(r.outcome).toBe('sasl-external');
    return r.peer;
  }

  it('lists the streams removal or a lowered ConnectionLimit would close, with the reload\'s own rule and text; saving closes exactly those', async () => {
    const { g, admin } = await start(external('live.test') + external('other.test'));
    const first = await sasl(g, 'live.test');
    await new Promise((r) => setTimeout(r, 20));
    const second = await sasl(g, 'live.test');
    const other = await sasl(g, 'other.test');

    const remove = await call(g.adminPort, admin, 'POST', '/api/whatif', { action: 'remove', identity: 'live.test' });
    expect(remove.json.ok).toBe(true);
    expect(remove.json.close.map((c: { rule: string; partner: string; text: string }) => [c.partner, c.rule, c.text])).toEqual([
      ['live.test', 'AllowedPartner', 'live.test was removed from the allowed-partner list'],
      ['live.test', 'AllowedPartner', 'live.test was removed from the allowed-partner list'],
    ]);

    const current = (await call(g.adminPort, admin, 'GET', '/api/partners/live.test')).json;
    const lower = await call(g.adminPort, admin, 'POST', '/api/whatif', { action: 'set', identity: 'live.test', record: { ...current, ConnectionLimit: 1 } });
    expect(lower.json.close).toHaveLength(1);
    expect(lower.json.close[0]).toMatchObject({ partner: 'live.test', rule: 'ConnectionLimit', text: 'ConnectionLimit of partner live.test lowered to 1 (inbound streams)' });
    const newest = lower.json.close[0].stream as { remoteAddress: string; direction: string; auth: string };
    expect(newest).toMatchObject({ direction: 'inbound', auth: 'sasl-external' });
    expect(newest.remoteAddress.endsWith(`:${second.tcp.localPort}`)).toBe(true);

    const tighten = await call(g.adminPort, admin, 'POST', '/api/whatif', { action: 'set', identity: 'other.test', record: { ...current, Identity: 'other.test', TlsNegotiation: 'NotSupported', SaslNegotiation: 'NotSupported', SupportDialbackNegotiation: true } });
    expect(tighten.json.close.map((c: { partner: string; rule: string }) => `${c.partner} ${c.rule}`)).toEqual([expect.stringMatching(/^other\.test \w+/)]);

    const invalid = await call(g.adminPort, admin, 'POST', '/api/whatif', { action: 'set', identity: 'live.test', record: { ...current, TlsNegotiation: 'NotSupported' } });
    expect(invalid.json).toMatchObject({ ok: false, field: 'TlsNegotiation', close: [] });
    expect((await call(g.adminPort, admin, 'POST', '/api/whatif', '{nope')).json).toMatchObject({ ok: false, field: 'body' });

    // Saving the lowered limit closes exactly the stream the what-if named.
    const from = g.logs.length;
    const put = await call(g.adminPort, admin, 'PUT', '/api/partners/live.test', { ...current, ConnectionLimit: 1 });
    expect(put.status).toBe(200);
    const err = await second.expectStreamError(3000);
    expect([err.condition, err.text]).toEqual(['policy-violation', 'ConnectionLimit of partner live.test lowered to 1 (inbound streams)']);
    expect(await eventually(() => g.logs.slice(from).some((l) => l.event === 'partners.reloaded'), 2000)).toBe(true);
    expect(first.closedAlready).toBe(false);
    expect(other.closedAlready).toBe(false);
  });

  it('GET /api/streams?partner= shows the partner\'s live streams, refusals with rule and text, and traffic', async () => {
    const { g, admin } = await start(external('seen.test'));
    await sasl(g, 'seen.test');
    // A refused attempt: a non-partner at the header.
    const refused = await authenticate({ port: g.port, from: 'stranger.test' });
    expect(refused.outcome).toBe('refused:policy-violation');
    const r = await call(g.adminPort, admin, 'GET', '/api/streams?partner=seen.test');
    expect(r.json.streams).toEqual([expect.objectContaining({ partner: 'seen.test', direction: 'inbound', auth: 'sasl-external' })]);
    expect(Array.isArray(r.json.traffic)).toBe(true);
    const all = await call(g.adminPort, admin, 'GET', '/api/streams');
    expect(all.json.refusals).toEqual([expect.objectContaining({ partner: null, rule: 'AllowedPartner', condition: 'policy-violation', text: expect.stringContaining('stranger.test') })]);
  });
});
