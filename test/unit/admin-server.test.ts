import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startAdminServer, type AdminServer, type ReloadResult } from '../../src/admin/admin-server.js';
import { MetricsRegistry } from '../../src/admin/metrics.js';
import { formatAge, formatPoolTable, status } from '../../src/admin/status-command.js';
import { GatewayError } from '../../src/errors.js';
import type { StreamInfo } from '../../src/stream/stream-info.js';
import { AUTH, http, testAuth, writeTestCredential } from '../helpers/admin-http.js';

function stream(over: Partial<StreamInfo> = {}): StreamInfo {
  return {
    id: 's1', partner: 'a.example', direction: 'inbound', purpose: 'stream', localDomain: 'gw.example',
    remoteDomain: 'a.example', authenticatedDomains: ['a.example'], tls: 'TLSv1.3', auth: 'sasl-external',
    remoteAddress: '127.0.0.1:40000', ageSeconds: 65, stanzasIn: 12, stanzasOut: 3, bytesIn: 4096, bytesOut: 512,
    ...over,
  };
}

/** Resolves with the connect error code, or 'connected'. */
function tryConnect(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    s.once('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
  });
}

describe('admin server', () => {
  let live: StreamInfo[];
  let reloadCalls: number;
  let reloadResult: () => Promise<ReloadResult>;
  let registry: MetricsRegistry;
  let admin: AdminServer;

  beforeEach(async () => {
    live = [stream()];
    reloadCalls = 0;
    reloadResult = async () => ({ ok: true });
    registry = new MetricsRegistry();
    registry.counter('gw_test_total', 'Test.', ['partner']).inc(['a.example'], 7);
    admin = await startAdminServer({
      host: '127.0.0.1',
      port: 0, auth: testAuth(),
      streams: { list: () => live },
      metrics: registry,
      partnersInfo: () => ({ count: 2, lastReloadError: null, appliedAt: '2024-01-01T00:00:00.000Z' }),
      reload: () => {
        reloadCalls++;
        return reloadResult();
      },
    });
  });
  afterEach(async () => {
    await admin.close();
  });

  it('GET /status: the live streams (contract fields) and the partners info, as JSON', async () => {
    const r = await http(admin.port, 'GET', '/status');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toMatch(/^application\/json/);
    const body = JSON.parse(r.body) as { streams: unknown[]; partners: unknown };
    expect(body.streams).toEqual([
      expect.objectContaining({ partner: 'a.example', direction: 'inbound', localDomain: 'gw.example', remoteDomain: 'a.example', tls: 'TLSv1.3', auth: 'sasl-external' }),
    ]);
    expect(body.streams[0]).toEqual(stream());
    expect(body.partners).toEqual({ count: 2, lastReloadError: null, appliedAt: '2024-01-01T00:00:00.000Z' });

    live = [];
    expect(JSON.parse((await http(admin.port, 'GET', '/status?x=1')).body)).toMatchObject({ streams: [] });
  });

  it('GET /status in a pool: "pool" as poolInfo() answers it; absent on a single gateway', async () => {
    expect(JSON.parse((await http(admin.port, 'GET', '/status')).body)).not.toHaveProperty('pool');
    const pooled = await startAdminServer({
      host: '127.0.0.1', port: 0, auth: testAuth(), streams: { list: () => live }, metrics: registry,
      partnersInfo: () => ({ count: 2 }), reload: async () => ({ ok: true }),
      poolInfo: async () => ({ node: 'gw1', etcd: 'reachable', nodes: [{ name: 'gw1', self: true, streams: [] }] }),
    });
    try {
      const body = JSON.parse((await http(pooled.port, 'GET', '/status')).body) as Record<string, unknown>;
      expect(body).toEqual({ streams: [stream()], partners: { count: 2 }, pool: { node: 'gw1', etcd: 'reachable', nodes: [{ name: 'gw1', self: true, streams: [] }] } });
    } finally {
      await pooled.close();
    }
  });

  it('GET /metrics: the registry in text format 0.0.4', async () => {
    const r = await http(admin.port, 'GET', '/metrics');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(r.body).toBe(await registry.render());
    expect(r.body).toContain('gw_test_total{partner="a.example"} 7\n');
  });

  it('POST /reload: 200 when applied, 422 with the error when refused, 500 when it throws', async () => {
    let r = await http(admin.port, 'POST', '/reload');
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toEqual({ ok: true });

    reloadResult = async () => ({ ok: false, error: 'partners.yaml:3: TlsNegotiation: bad value' });
    r = await http(admin.port, 'POST', '/reload');
    expect(r.status).toBe(422);
    expect(r.headers['content-type']).toMatch(/^application\/json/);
    expect(JSON.parse(r.body)).toEqual({ ok: false, error: 'partners.yaml:3: TlsNegotiation: bad value' });

    reloadResult = async () => {
      throw new Error('disk on fire');
    };
    r = await http(admin.port, 'POST', '/reload');
    expect(r.status).toBe(500);
    expect(JSON.parse(r.body)).toEqual({ ok: false, error: 'disk on fire' });
    expect(reloadCalls).toBe(3);
  });

  it('404 for unknown paths, 405 (with Allow) for the wrong method', async () => {
    for (const path of ['/nope', '/status/', '/STATUS', '/constructor', '/__proto__']) {
      expect((await http(admin.port, 'GET', path)).status, path).toBe(404);
    }
    let r = await http(admin.port, 'POST', '/status');
    expect([r.status, r.headers.allow]).toEqual([405, 'GET']);
    r = await http(admin.port, 'DELETE', '/metrics');
    expect([r.status, r.headers.allow]).toEqual([405, 'GET']);
    r = await http(admin.port, 'GET', '/reload');
    expect([r.status, r.headers.allow]).toEqual([405, 'POST']);
    r = await http(admin.port, 'PUT', '/reload');
    expect(r.status).toBe(405);
    expect(reloadCalls).toBe(0);
  });

  it('caps the request body (413) without running the handler', async () => {
    const big = Buffer.alloc(64 * 1024, 'x');
    let r = await http(admin.port, 'POST', '/reload', { body: big });
    expect(r.status).toBe(413);
    expect(r.headers.connection).toBe('close');
    // Chunked, no Content-Length: the cap applies while reading.
    r = await http(admin.port, 'POST', '/reload', { body: big, headers: { 'transfer-encoding': 'chunked' } });
    expect(r.status).toBe(413);
    expect(reloadCalls).toBe(0);
    r = await http(admin.port, 'POST', '/reload', { body: 'small' });
    expect(r.status).toBe(200);
    expect(reloadCalls).toBe(1);
  });

  it('refuses a declared oversized body at once, without waiting for it', async () => {
    const answer = await new Promise<string>((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port: admin.port });
      let text = '';
      s.setEncoding('utf8').on('data', (d: string) => (text += d));
      s.on('end', () => resolve(text));
      s.on('error', reject);
      s.write(`POST /reload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10000000\r\n\r\nonly this`);
    });
    expect(answer).toMatch(/^HTTP\/1\.1 413 /);
    expect(reloadCalls).toBe(0);
  }, 5_000);

  it('refuses browsers: an Origin header (CSRF) or a non-IP Host name (DNS rebinding) on loopback', async () => {
    let r = await http(admin.port, 'POST', '/reload', { headers: { origin: 'https://evil.example' } });
    expect(r.status).toBe(403);
    r = await http(admin.port, 'GET', '/status', { headers: { host: `evil.example:${admin.port}` } });
    expect(r.status).toBe(403);
    expect(reloadCalls).toBe(0);
    r = await http(admin.port, 'GET', '/status', { headers: { host: `localhost:${admin.port}` } });
    expect(r.status).toBe(200);
    r = await http(admin.port, 'GET', '/status', { headers: { host: `[::1]:${admin.port}` } });
    expect(r.status).toBe(200);
  });

  it('listens on the given address only', async () => {
    expect(await tryConnect('127.0.0.1', admin.port)).toBe('connected');
    expect(await tryConnect('127.0.0.2', admin.port)).toBe('ECONNREFUSED');
  });

  it('serves several requests on one keep-alive connection, and close() does not wait for idle ones', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const ports = new Set<number>();
      for (let i = 0; i < 3; i++) {
        const r = await new Promise<number>((resolve, reject) => {
          const req = request({ host: '127.0.0.1', port: admin.port, headers: AUTH, path: '/status', agent }, (res) => {
            ports.add(res.socket.localPort ?? -1);
            res.resume().on('end', () => resolve(res.statusCode ?? 0));
          });
          req.on('error', reject);
          req.end();
        });
        expect(r).toBe(200);
      }
      expect(ports.size).toBe(1);
      const started = Date.now();
      await admin.close();
      expect(Date.now() - started).toBeLessThan(900);
      expect(await tryConnect('127.0.0.1', admin.port)).toBe('ECONNREFUSED');
      await admin.close(); // idempotent
    } finally {
      agent.destroy();
    }
  });

  it('reports a port in use as GW_ERR_LISTEN', async () => {
    const err = await startAdminServer({
      host: '127.0.0.1', port: admin.port, auth: testAuth(), streams: { list: () => [] }, metrics: registry,
      partnersInfo: () => ({}), reload: async () => ({ ok: true }),
    }).then(
      (s) => s.close().then(() => null),
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(GatewayError);
    expect((err as GatewayError).code).toBe('GW_ERR_LISTEN');
  });
});

describe('xmpp-gateway status', () => {
  let dir: string;
  let admin: AdminServer | undefined;
  let live: StreamInfo[];
  let partners: object;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'xgw-status-'));
    live = [];
    partners = { count: 3, lastReloadError: null, appliedAt: '2024-01-01T00:00:00.000Z' };
  });
  afterEach(async () => {
    await admin?.close();
    admin = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  async function startFake(list: () => StreamInfo[] = () => live): Promise<AdminServer> {
    admin = await startAdminServer({
      host: '127.0.0.1', port: 0, auth: testAuth(), streams: { list }, metrics: new MetricsRegistry(),
      partnersInfo: () => partners, reload: async () => ({ ok: true }),
    });
    return admin;
  }

  async function writeConfig(adminPort: number | null): Promise<string> {
    const file = join(dir, 'gateway.yaml');
    await writeTestCredential(dir);
    const adminYaml = adminPort === null ? '' : `admin:\n  listen:\n    host: 127.0.0.1\n    port: ${adminPort}\n`;
    await writeFile(
      file,
      `localDomains:\n  - domain: gw.example\n    certificate: c.crt\n    privateKey: c.key\nlisten:\n  - host: 127.0.0.1\n    port: 0\n${adminYaml}`,
    );
    return file;
  }

  /** Runs status() with process.stdout.write captured. */
  async function runStatus(config: string, json: boolean): Promise<{ code: number; out: string }> {
    let out = '';
    const original = process.stdout.write;
    process.stdout.write = ((chunk: string | Uint8Array) => {
      out += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
      return true;
    }) as typeof process.stdout.write;
    try {
      const code = await status(config, json);
      return { code, out };
    } finally {
      process.stdout.write = original;
    }
  }

  async function statusError(config: string): Promise<GatewayError> {
    const err = await runStatus(config, false).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(GatewayError);
    return err as GatewayError;
  }

  it('--json prints what GET /status answered', async () => {
    live = [stream(), stream({ id: 's2', direction: 'outbound', auth: 'dialback', tls: null })];
    const server = await startFake();
    const { code, out } = await runStatus(await writeConfig(server.port), true);
    expect(code).toBe(0);
    expect(JSON.parse(out)).toEqual({ streams: live, partners });
    expect(out.endsWith('\n')).toBe(true);
  });

  it('prints a table of live streams and a partner line', async () => {
    live = [
      stream(),
      stream({ id: 's2', partner: 'b.example', direction: 'outbound', localDomain: 'gw.example', remoteDomain: 'b.example', tls: null, auth: 'dialback', ageSeconds: 4000, stanzasIn: 0, stanzasOut: 1234 }),
    ];
    partners = { count: 3, lastReloadError: 'partners.yaml:4: Identity: is required' };
    const server = await startFake();
    const { code, out } = await runStatus(await writeConfig(server.port), false);
    expect(code).toBe(0);
    const rows = out.trimEnd().split('\n');
    expect(rows[0]!.split(/\s+/)).toEqual(['PARTNER', 'DIRECTION', 'LOCAL', 'REMOTE', 'TLS', 'AUTH', 'AGE', 'IN', 'OUT']);
    expect(rows[1]!.split(/\s+/)).toEqual(['a.example', 'inbound', 'gw.example', 'a.example', 'TLSv1.3', 'sasl-external', '1m05s', '12', '3']);
    expect(rows[2]!.split(/\s+/)).toEqual(['b.example', 'outbound', 'gw.example', 'b.example', '-', 'dialback', '1h06m', '0', '1234']);
    // Columns line up: every row has its AUTH value where the header has AUTH.
    const authCol = rows[0]!.indexOf('AUTH');
    expect(rows[1]!.slice(authCol).startsWith('sasl-external')).toBe(true);
    expect(rows[2]!.slice(authCol).startsWith('dialback')).toBe(true);
    expect(rows.at(-1)).toMatch(/^3 allowed partners; last reload failed.*partners\.yaml:4: Identity: is required$/);
  });

  it('says "no live streams" when there are none', async () => {
    const server = await startFake();
    const { code, out } = await runStatus(await writeConfig(server.port), false);
    expect(code).toBe(0);
    expect(out).toBe('no live streams\n\n3 allowed partners\n');
  });

  it('reports a gateway that is not running as GW_ERR_USAGE naming the address', async () => {
    const server = await startFake();
    const port = server.port;
    await server.close();
    const err = await statusError(await writeConfig(port));
    expect(err.code).toBe('GW_ERR_USAGE');
    expect(err.message).toContain(`http://127.0.0.1:${port}`);
    expect(err.message).toMatch(/not running/);
    expect(err.message).not.toContain('\n');
  });

  it('reports a config without an admin listener as GW_ERR_USAGE', async () => {
    const err = await statusError(await writeConfig(null));
    expect(err.code).toBe('GW_ERR_USAGE');
    expect(err.message).toMatch(/admin/);
  });

  it('reports an admin endpoint that fails as GW_ERR_ADMIN', async () => {
    const server = await startFake(() => {
      throw new Error('registry broken');
    });
    const err = await statusError(await writeConfig(server.port));
    expect(err.code).toBe('GW_ERR_ADMIN');
    expect(err.message).toContain('500');
  });

  it('prints the pool: which node answered, every node with its streams, unregistered and over-limit slots', () => {
    const now = Date.parse('2024-05-01T12:00:00Z');
    const since = (s: number) => new Date(now - s * 1000).toISOString();
    const held = (node: string, partner: string, direction: string, stream: string, slot: number | null, age: number, overLimit?: boolean) =>
      ({ node, partner, direction, remoteDomain: partner, stream, slot, since: since(age), ...(overLimit === undefined ? {} : { overLimit }) });
    const out = formatPoolTable({
      node: 'gw1', etcd: 'reachable', online: true, knownNodes: 3,
      nodes: [
        { name: 'gw1', self: true, streams: [held('gw1', 'a.test', 'inbound', 'k1', 0, 65), held('gw1', 'b.test', 'inbound', 'k2', null, 5, false), held('gw1', 'c.test', 'outbound', 'k3', null, 3, true)] },
        { name: 'gw2', self: false, streams: [held('gw2', 'a.test', 'outbound', 'k4', 1, 4000)] },
        { name: 'gw3', self: false, streams: [] },
      ],
    }, now);
    const rows = out.trimEnd().split('\n');
    expect(rows[0]).toBe('');
    expect(rows[1]).toBe('pool: 3 nodes (this is gw1), 3 known for local shares');
    expect(rows.slice(2).map((r) => r.split(/\s+/))).toEqual([
      ['NODE', 'PARTNER', 'DIRECTION', 'REMOTE', 'STREAM', 'SLOT', 'AGE'],
      ['gw1*', 'a.test', 'inbound', 'a.test', 'k1', '0', '1m05s'],
      ['gw1*', 'b.test', 'inbound', 'b.test', 'k2', '-', '5s'],
      ['gw1*', 'c.test', 'outbound', 'c.test', 'k3', 'over', '3s'],
      ['gw2', 'a.test', 'outbound', 'a.test', 'k4', '1', '1h06m'],
      ['gw3', '-', '-', '-', '-', '-', '-'],
    ]);
    const cut = formatPoolTable({ node: 'gw1', etcd: 'unreachable', error: 'etcd did not answer\nmore', knownNodes: null, nodes: [{ name: 'gw1', self: true, streams: [] }] }, now);
    expect(cut.split('\n')[1]).toBe('pool: etcd unreachable (etcd did not answer): this node (gw1) only');
    expect(formatPoolTable(undefined)).toBe('');
  });

  it('formats ages compactly', () => {
    expect([0, 42, 60, 307, 3600, 10_920, 86_400, 187_200].map(formatAge)).toEqual(['0s', '42s', '1m00s', '5m07s', '1h00m', '3h02m', '1d00h', '2d04h']);
  });
});
