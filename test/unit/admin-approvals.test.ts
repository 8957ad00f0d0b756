/**
 * The admin listener's approvals endpoints over a real FileApprovalStore, on a real server on
 * 127.0.0.1 port 0: listing, revoking (saved before the answer), 400s naming the field, 404
 * without a store.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startAdminServer, type AdminServer, type AdminServerOptions } from '../../src/admin/admin-server.js';
import { MetricsRegistry } from '../../src/admin/metrics.js';
import { createLogger } from '../../src/log.js';
import { parseApprovals } from '../../src/policy/approval-file.js';
import { FileApprovalStore, type ApprovalStore } from '../../src/policy/approvals.js';
import { http, testAuth, writeTestCredential } from '../helpers/admin-http.js';

let dir: string;
let file: string;
let store: FileApprovalStore;
let admin: AdminServer | undefined;

async function start(approvals?: ApprovalStore): Promise<AdminServer> {
  const opts: AdminServerOptions = {
    host: '127.0.0.1', port: 0, auth: testAuth(), streams: { list: () => [] }, metrics: new MetricsRegistry(),
    partnersInfo: () => ({}), reload: async () => ({ ok: true }),
  };
  admin = await startAdminServer(approvals ? { ...opts, approvals } : opts);
  return admin;
}

const post = (port: number, body: string) =>
  http(port, 'POST', '/approvals/revoke', { body, headers: { 'content-type': 'application/json' } });

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'xgw-admin-approvals-'));
  file = join(dir, 'approvals.json');
  // A long delay: anything on disk during a test was written by an explicit flush.
  store = await FileApprovalStore.open({ file, maxEntries: 100, flushDelayMs: 60_000, log: createLogger('error') });
  store.record('alice@corp.example', 'bob@partner.example');
  store.record('alice@corp.example', 'carol@partner.example');
  store.record('dave@corp.example', 'bob@partner.example');
});
afterEach(async () => {
  await admin?.close();
  admin = undefined;
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

describe('admin /approvals', () => {
  it('GET /approvals lists them, most recently seen first', async () => {
    const { port } = await start(store);
    const r = await http(port, 'GET', '/approvals');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toMatch(/^application\/json/);
    const body = JSON.parse(r.body) as { approvals: Record<string, string>[] };
    expect(body).toEqual({ approvals: store.list() });
    expect(body.approvals.map((a) => `${a.local}>${a.remote}`)).toEqual([
      'dave@corp.example>bob@partner.example', 'alice@corp.example>carol@partner.example', 'alice@corp.example>bob@partner.example',
    ]);
    expect(Object.keys(body.approvals[0]!)).toEqual(['local', 'remote', 'since', 'lastSeen']);
  });

  it('POST /approvals/revoke removes one approval and answers once it is saved', async () => {
    const { port } = await start(store);
    const r = await post(port, '{"local":"Alice@corp.example","remote":"bob@partner.example"}');
    expect([r.status, JSON.parse(r.body)]).toEqual([200, { revoked: 1 }]);
    expect(store.has('alice@corp.example', 'bob@partner.example')).toBe(false);
    expect(store.has('alice@corp.example', 'carol@partner.example')).toBe(true);
    const saved = parseApprovals(await readFile(file, 'utf8'), file).map((e) => `${e.local}>${e.remote}`);
    expect(saved).toEqual(['dave@corp.example>bob@partner.example', 'alice@corp.example>carol@partner.example']);
  });

  it('POST /approvals/revoke without remote removes all of the local user\'s; none left is 0', async () => {
    const { port } = await start(store);
    let r = await post(port, '{"local":"alice@corp.example"}');
    expect([r.status, JSON.parse(r.body)]).toEqual([200, { revoked: 2 }]);
    r = await post(port, '{"local":"alice@corp.example"}');
    expect([r.status, JSON.parse(r.body)]).toEqual([200, { revoked: 0 }]);
    expect(store.list().map((a) => a.local)).toEqual(['dave@corp.example']);
  });

  it.each([
    ['', /^body: not JSON/],
    ['{"local":', /^body: not JSON/],
    ['["alice@corp.example"]', /^body: must be a JSON object/],
    ['{}', /^local: a bare JID \(user@domain\) is required/],
    ['{"remote":"bob@partner.example"}', /^local: /],
    ['{"local":42}', /^local: /],
    ['{"local":"alice"}', /^local: "alice" is not a bare JID/],
    ['{"local":"alice@corp.example","remote":"bob@partner.example/phone"}', /^remote: .* has a resource/],
    ['{"local":"alice@corp.example","remote":null}', /^remote: /],
    ['{"local":"alice@corp.example","remtoe":"bob@partner.example"}', /^"remtoe": unknown field/],
  ])('400 for %j, naming what is wrong, and revokes nothing', async (body, error) => {
    const { port } = await start(store);
    const r = await post(port, body);
    expect(r.status).toBe(400);
    expect(r.headers['content-type']).toMatch(/^application\/json/);
    expect((JSON.parse(r.body) as { error: string }).error).toMatch(error);
    expect(store.list()).toHaveLength(3);
  });

  it('405 for the wrong method; 403 for a browser (Origin) even with a valid body', async () => {
    const { port } = await start(store);
    let r = await http(port, 'GET', '/approvals/revoke');
    expect([r.status, r.headers.allow]).toEqual([405, 'POST']);
    r = await http(port, 'POST', '/approvals', { body: '{}' });
    expect([r.status, r.headers.allow]).toEqual([405, 'GET']);
    r = await http(port, 'POST', '/approvals/revoke', { body: '{"local":"alice@corp.example"}', headers: { origin: 'https://evil.example' } });
    expect(r.status).toBe(403);
    expect(store.list()).toHaveLength(3);
  });

  it('500 naming the failure when the revocation cannot be saved', async () => {
    const failing: ApprovalStore = {
      has: () => false, record: () => {}, list: () => [], close: async () => {},
      revoke: () => 2,
      flush: async () => {
        throw new Error('EROFS: read-only file system');
      },
    };
    const { port } = await start(failing);
    const r = await post(port, '{"local":"alice@corp.example"}');
    expect(r.status).toBe(500);
    expect(JSON.parse(r.body)).toEqual({ revoked: 2, error: 'revoked in memory but not saved: EROFS: read-only file system' });
  });

  it('404 for both paths when the server has no approvals store', async () => {
    const { port } = await start();
    expect((await http(port, 'GET', '/approvals')).status).toBe(404);
    expect((await post(port, '{"local":"alice@corp.example"}')).status).toBe(404);
    expect((await http(port, 'GET', '/status')).status).toBe(200);
  });
});
