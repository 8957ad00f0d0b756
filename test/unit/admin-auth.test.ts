/**
 * Admin authentication on a real listener: tokens checked against slow salted hashes (never
 * stored in the clear), repeated bad tokens locking the address out with growing delays, the
 * session's lifetime, roles; and the users file written 0600.
 */
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startAdminServer, type AdminServer } from '../../src/admin/admin-server.js';
import { AdminUserFile, newToken, verifyToken, type AdminUser } from '../../src/admin/admin-users.js';
import { AdminAuth } from '../../src/admin/auth.js';
import { MetricsRegistry } from '../../src/admin/metrics.js';
import { http } from '../helpers/admin-http.js';

let dir: string;
let admin: AdminServer | undefined;
let clock: number;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'xgw-auth-'));
  clock = 1_000_000;
});
afterEach(async () => {
  await admin?.close();
  admin = undefined;
  await rm(dir, { recursive: true, force: true });
});

async function user(name: string, role: AdminUser['role']): Promise<{ user: AdminUser; token: string }> {
  const t = await newToken();
  return { user: { name, role, id: t.id, tokenHash: t.tokenHash, created: 'now' }, token: t.token };
}

async function serve(users: AdminUser[]): Promise<number> {
  const auth = new AdminAuth({ users: { read: async () => users, version: async () => 'v1' }, now: () => clock });
  admin = await startAdminServer({
    host: '127.0.0.1', port: 0, auth, streams: { list: () => [] }, metrics: new MetricsRegistry(),
    partnersInfo: () => ({}), reload: async () => ({ ok: true }),
  });
  return admin.port;
}

const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` }, auth: false });

describe('tokens', () => {
  it('are checked against scrypt hashes; the hash does not contain the token', async () => {
    const { user: u, token } = await user('alice', 'CsAdministrator');
    expect(token).toMatch(/^xgw1\.[0-9a-f]{16}\.[\w-]{43}$/);
    expect(u.tokenHash).toMatch(/^scrypt\$32768\$8\$1\$/);
    expect(u.tokenHash).not.toContain(token.split('.')[2]);
    expect(await verifyToken(u, token)).toBe(true);
    expect(await verifyToken(u, `${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}`)).toBe(false);
    expect(await verifyToken(u, 'Bearer nonsense')).toBe(false);
  });

  it('the users file is written atomically with mode 0600, and holds no token', async () => {
    const file = new AdminUserFile(join(dir, 'admin-users.yaml'));
    const { user: u, token } = await user('alice', 'CsAdministrator');
    await file.edit(async (users) => ({ users: [...users, u], result: undefined }));
    expect((await stat(file.file)).mode & 0o777).toBe(0o600);
    const text = await readFile(file.file, 'utf8');
    expect(text).toContain('name: alice');
    expect(text).not.toContain(token.split('.')[2]);
    expect(await file.read()).toEqual([u]);
  });
});

describe('the listener', () => {
  it('repeated bad tokens lock the address out (429, Retry-After), doubling; valid tokens wait too; it ends', async () => {
    const { user: u, token } = await user('alice', 'CsAdministrator');
    const port = await serve([u]);
    const bad = `xgw1.${u.id}.${'A'.repeat(43)}`;
    for (let i = 0; i < 5; i++) expect((await http(port, 'GET', '/status', bearer(bad))).status).toBe(401);
    // The sixth failure locks for 1 s; while locked nothing is even checked.
    expect((await http(port, 'GET', '/status', bearer(bad))).status).toBe(401);
    let r = await http(port, 'GET', '/status', bearer(token));
    expect([r.status, r.headers['retry-after']]).toEqual([429, '1']);
    expect(JSON.parse(r.body).error).toMatch(/too many failed logins/);
    expect((await http(port, 'POST', '/login', { body: JSON.stringify({ token }), headers: { 'content-type': 'application/json' }, auth: false })).status).toBe(429);
    clock += 1_001;
    expect((await http(port, 'GET', '/status', bearer(bad))).status).toBe(401); // seventh: 2 s
    r = await http(port, 'GET', '/status', bearer(token));
    expect([r.status, r.headers['retry-after']]).toEqual([429, '2']);
    clock += 2_001;
    expect((await http(port, 'GET', '/status', bearer(token))).status).toBe(200);
    // Success clears the record: five more tries before the next lock.
    for (let i = 0; i < 5; i++) expect((await http(port, 'GET', '/status', bearer(bad))).status).toBe(401);
    expect((await http(port, 'GET', '/status', bearer(token))).status).toBe(200);
    // No credentials at all is not a failed guess.
    for (let i = 0; i < 10; i++) expect((await http(port, 'GET', '/status', { auth: false })).status).toBe(401);
    expect((await http(port, 'GET', '/status', bearer(token))).status).toBe(200);
  });

  it('a session lasts 8 hours; a malformed Authorization header is refused', async () => {
    const { user: u, token } = await user('alice', 'CsViewOnlyAdministrator');
    const port = await serve([u]);
    const login = await http(port, 'POST', '/login', { body: JSON.stringify({ token }), headers: { 'content-type': 'application/json' }, auth: false });
    expect(JSON.parse(login.body)).toMatchObject({ user: 'alice', role: 'CsViewOnlyAdministrator' });
    const cookie = String(login.headers['set-cookie']).split(';')[0]!;
    expect((await http(port, 'GET', '/status', { headers: { cookie }, auth: false })).status).toBe(200);
    clock += 8 * 3600_000 + 1;
    expect((await http(port, 'GET', '/status', { headers: { cookie }, auth: false })).status).toBe(401);
    const r = await http(port, 'GET', '/status', { headers: { authorization: `Basic ${token}` }, auth: false });
    expect([r.status, JSON.parse(r.body).error]).toEqual([401, 'the Authorization header must be "Bearer <token>"']);
  });
});
