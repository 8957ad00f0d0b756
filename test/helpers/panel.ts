/**
 * Admin users and JSON requests for the panel's API tests: users are written to the test
 * gateway's admin-users.yaml (where `xmpp-gateway admin-user add` puts them), requests carry
 * a bearer token or a session cookie with its CSRF token.
 */
import { join } from 'node:path';
import { AdminUserFile, newToken } from '../../src/admin/admin-users.js';
import type { RoleName } from '../../src/admin/roles.js';
import { http } from './admin-http.js';

export async function addUser(dir: string, name: string, role: RoleName): Promise<string> {
  const file = new AdminUserFile(join(dir, 'admin-users.yaml'));
  return file.edit(async (users) => {
    const t = await newToken();
    return { users: [...users, { name, role, id: t.id, tokenHash: t.tokenHash, created: new Date().toISOString() }], result: t.token };
  });
}

export interface JsonReply {
  status: number;
  json: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  headers: Record<string, string | string[] | undefined>;
}

/** One request with a bearer token (`token`) or a session (`{cookie, csrf}`); body sent as JSON unless a string. */
export async function call(
  port: number,
  who: string | { cookie: string; csrf?: string } | null,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<JsonReply> {
  const h: Record<string, string> = { ...headers };
  if (typeof who === 'string') h.authorization = `Bearer ${who}`;
  else if (who) {
    h.cookie = who.cookie;
    if (who.csrf !== undefined) h['x-csrf-token'] = who.csrf;
  }
  let payload: string | undefined;
  if (body !== undefined) {
    payload = typeof body === 'string' ? body : JSON.stringify(body);
    h['content-type'] = 'application/json';
  }
  const r = await http(port, method, path, { headers: h, ...(payload !== undefined ? { body: payload } : {}), auth: false });
  let json: unknown = null;
  try {
    json = r.body === '' ? null : JSON.parse(r.body);
  } catch {
    json = r.body;
  }
  return { status: r.status, json, headers: r.headers };
}

/** POST /login: the session cookie and CSRF token. */
export async function login(port: number, token: string): Promise<{ cookie: string; csrf: string }> {
  const r = await call(port, null, 'POST', '/login', { token });
  if (r.status !== 200) throw new Error(`login failed: ${r.status} ${JSON.stringify(r.json)}`);
  const set = String(r.headers['set-cookie']);
  return { cookie: set.split(';')[0]!, csrf: r.json.csrf as string };
}
