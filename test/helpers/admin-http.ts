/**
 * One HTTP request to an admin listener on loopback, without keep-alive unless an agent is given.
 * Admin servers started by tests authenticate with `testAuth()`; `http()` sends its token unless
 * the request sets its own Authorization header (or `auth: false`).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { request, type Agent } from 'node:http';
import { dirname, join } from 'node:path';
import type { AdminUser } from '../../src/admin/admin-users.js';
import { AdminAuth } from '../../src/admin/auth.js';

/** The local credential every `testAuth()` server accepts (as CsAdministrator, user `local`). */
export const TEST_TOKEN = 'xgw1-local.test-credential-for-admin-servers-started-by-tests';
export const AUTH = { authorization: `Bearer ${TEST_TOKEN}` } as const;

/** An AdminAuth that accepts TEST_TOKEN and the given users (in memory, no file). */
export function testAuth(users: AdminUser[] = []): AdminAuth {
  return new AdminAuth({ users: { read: async () => users, version: async () => String(users.length) }, localToken: TEST_TOKEN });
}

/** Writes TEST_TOKEN where a config in `configDir` (default admin.localCredential) makes the CLI look for it. */
export async function writeTestCredential(configDir: string, relative = 'state/admin.credential'): Promise<void> {
  const file = join(configDir, relative);
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, `${TEST_TOKEN}\n`, { mode: 0o600 });
}

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

export function http(
  port: number,
  method: string,
  path: string,
  opts: { headers?: Record<string, string>; body?: string | Buffer; agent?: Agent; host?: string; auth?: boolean } = {},
): Promise<Reply> {
  const headers = { ...(opts.auth === false ? {} : AUTH), ...opts.headers };
  return new Promise((resolve, reject) => {
    const req = request({ host: opts.host ?? '127.0.0.1', port, method, path, headers, agent: opts.agent ?? false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}
