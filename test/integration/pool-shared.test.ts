/**
 * What the pool shares besides the partner list (issue 11; docs/design.md section 11): the
 * dialback secret, so that a key one node issued is verified by another (XEP-0220 section 2.1.2,
 * keys per XEP-0185), and the trust-tier approvals, so that a local user's first message through
 * one node opens the PublicUnverified gate on the others (docs/design.md section 5 step 4).
 *
 * Real etcd (three members, test/helpers/etcd-cluster.ts) and real gateway nodes in this process
 * (test/helpers/pool-test-nodes.ts), each with an internal link to one scripted internal server
 * (corp.test) and dialback-only partners (u1/u2/u3.test, PublicUnverified) served by one scripted
 * partner server. That server checks every key a node sends it the way a real receiving server
 * does: it calls the authoritative server back, and the test chooses which node answers (`verifier`).
 *
 * Addresses: etcd on 127.0.0.81-.83 with client/peer ports 32389/32390 (test/interop/README.md,
 * block 8x); everything else on 127.0.0.1, ports chosen by the OS.
 */
import { randomBytes } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectEtcd, type EtcdConnection } from '../../src/cluster/etcd.js';
import { PoolApprovalStore } from '../../src/cluster/pool-approvals.js';
import type { Logger } from '../../src/log.js';
import { freePort, tempConfig } from '../helpers/cli.js';
import type { EtcdCluster } from '../helpers/etcd-cluster.js';
import type { DbResultRecord, FakePartnerServer } from '../helpers/fake-partner-server.js';
import { eventually } from '../helpers/live-streams.js';
import { chat, poolTestNodes, PREFIX } from '../helpers/pool-test-nodes.js';
import { ScriptedPeer } from '../helpers/scripted-peer.js';
import { adminHeaders } from '../helpers/test-gateway.js';

/** Which node the partner server asks to verify the keys it receives (its callback, XEP-0220 section 2.1.2). */
let verifier = 'gw2';
/** Every verification the partner server asked for, and the answer. */
const verifications: { node: string; to: string; answer: string }[] = [];

const pool = poolTestNodes({
  clientPort: 32389,
  peerPort: 32390,
  partnerDomains: ['u1.test', 'u2.test', 'u3.test'],
  acceptResult: (r) => verifyAt(verifier, r),
  nodes: ['gw1', 'gw2'],
});
const { node, start, fromInside, fromPartner } = pool;
let etcd: EtcdCluster;
let internal: FakePartnerServer;
let partner: FakePartnerServer;
let secretInEtcd: string;

/** Asks `name`, as u*.test's receiving server, whether `key` is corp.test's key for the stream `streamId`. */
async function verifyAt(name: string, r: { from: string; to: string; key: string; streamId: string }): Promise<'valid' | 'invalid'> {
  const peer = await ScriptedPeer.connect(node(name).port);
  try {
    peer.sendHeader({ from: r.to, to: r.from });
    await peer.header();
    await peer.features();
    peer.dialbackVerify(r.to, r.from, r.streamId, r.key);
    const answer = await peer.next();
    const verdict = answer.attrs.type === 'valid' ? 'valid' : 'invalid';
    verifications.push({ node: name, to: r.to, answer: verdict });
    return verdict;
  } finally {
    peer.destroy();
  }
}

async function approvalsOn(name: string): Promise<{ local: string; remote: string }[]> {
  const port = node(name).adminPort;
  const res = await fetch(`http://127.0.0.1:${port}/approvals`, { headers: adminHeaders(port) });
  expect(res.status).toBe(200);
  return ((await res.json()) as { approvals: { local: string; remote: string }[] }).approvals;
}

const holds = async (name: string, local: string, remote: string): Promise<boolean> =>
  (await approvalsOn(name)).some((a) => a.local === local && a.remote === remote);

/** Every db:result (a node's key) the partner server received for `domain`, newest last. */
const resultsFor = (domain: string): DbResultRecord[] => partner.connections.flatMap((c) => c.dbResults).filter((r) => r.to === domain);

const keptSecret = async (name: string): Promise<string> => (await readFile(join(node(name).dir, 'state/dialback-secret'), 'utf8')).trim();

/**
 * `from` (a corp.test user) writes to `to` (on a partner domain) through node `via`; the partner
 * server has node `verifiedBy` check the key `via` sends it. Resolves once the message arrived there.
 */
async function sendThrough(m: { via: string; verifiedBy: string; from: string; to: string; id: string; timeoutMs?: number }): Promise<void> {
  verifier = m.verifiedBy;
  const inside = await fromInside(m.via, m.to.split('@')[1]!.split('/')[0]!);
  inside.send(chat(m.from, m.to, m.id));
  await partner.waitForStanza((el) => el.attrs.id === m.id, m.timeoutMs ?? 15_000);
}

beforeAll(async () => { ({ etcd, internal, partner } = await pool.setUp()); }, 90_000);
afterAll(() => pool.tearDown(), 60_000);

describe('the dialback secret of a pool', () => {
  it('is created once in etcd and kept by every node (mode 0600)', async () => {
    secretInEtcd = (await etcd.client().get(`${PREFIX}dialback-secret`).string()) ?? '';
    expect(secretInEtcd).toMatch(/^[0-9a-f]{64}$/);
    for (const name of ['gw1', 'gw2']) {
      expect(await keptSecret(name), name).toBe(secretInEtcd);
      expect((await stat(join(node(name).dir, 'state/dialback-secret'))).mode & 0o777).toBe(0o600);
      expect(node(name).logs.find((l) => l.event === 'cluster.dialback-secret')?.source).toBe('etcd');
    }
  });

  it('a key node gw1 issued is verified by node gw2; a wrong key is invalid there (XEP-0220 section 2.4)', async () => {
    await sendThrough({ via: 'gw1', verifiedBy: 'gw2', from: 'keys@corp.test/r', to: 'bob@u1.test/r', id: 'via-gw1', timeoutMs: 10_000 });
    // Delivered: gw1's stream to u1.test was authenticated with gw1's key, which gw2 confirmed.
    expect(verifications).toContainEqual({ node: 'gw2', to: 'u1.test', answer: 'valid' });
    const issued = resultsFor('u1.test').at(-1)!;
    expect(await verifyAt('gw2', issued)).toBe('valid');
    const flipped = `${issued.key.slice(0, -1)}${issued.key.endsWith('0') ? '1' : '0'}`;
    expect(await verifyAt('gw2', { ...issued, key: flipped })).toBe('invalid');
    expect(await verifyAt('gw2', { ...issued, streamId: `${issued.streamId}x` })).toBe('invalid');
  });
});

describe('trust-tier approvals across the pool', () => {
  it('a local user writing first through gw1 opens the gate on gw2 within 2 s; a revoke on gw2 closes it on gw1', async () => {
    const bobAtGw2 = await fromPartner('gw2', 'u1.test');
    // Closed: bob may not write to alice before she wrote to him (the bounce travels back to u1.test).
    bobAtGw2.send(chat('bob@u1.test/r', 'alice@corp.test', 'before'));
    await partner.waitForStanza((el) => el.attrs.id === 'before' && el.attrs.type === 'error', 10_000);

    const inside = await fromInside('gw1', 'u1.test');
    inside.send(chat('alice@corp.test/r', 'bob@u1.test/r', 'alice-first'));
    await partner.waitForStanza((el) => el.attrs.id === 'alice-first', 10_000);
    expect(await eventually(() => holds('gw2', 'alice@corp.test', 'bob@u1.test'), 2_000, 20)).toBe(true);
    // Through gw2's relay: bob's message now reaches the internal server.
    bobAtGw2.send(chat('bob@u1.test/r', 'alice@corp.test', 'after'));
    await internal.waitForStanza((el) => el.attrs.id === 'after', 10_000);

    const port = node('gw2').adminPort;
    const res = await fetch(`http://127.0.0.1:${port}/approvals/revoke`, {
      method: 'POST',
      headers: { ...adminHeaders(port), 'content-type': 'application/json' },
      body: JSON.stringify({ local: 'alice@corp.test', remote: 'bob@u1.test' }),
    });
    expect(await res.json()).toEqual({ revoked: 1 });
    expect(await eventually(async () => !(await holds('gw1', 'alice@corp.test', 'bob@u1.test')), 2_000, 20)).toBe(true);
    const bobAtGw1 = await fromPartner('gw1', 'u1.test');
    bobAtGw1.send(chat('bob@u1.test/r', 'alice@corp.test', 'revoked'));
    await partner.waitForStanza((el) => el.attrs.id === 'revoked' && el.attrs.type === 'error', 10_000);
    expect(internal.stanzas.some((el) => el.attrs.id === 'revoked' || el.attrs.id === 'before')).toBe(false);
  });
});

describe('with etcd stopped, and back', () => {
  it('a node restarted while etcd is down keeps the secret: gw1\'s keys verify there', async () => {
    await etcd.stopAll();
    await node('gw2').close();
    await start('gw2');
    expect(node('gw2').logs.find((l) => l.event === 'cluster.dialback-secret')?.source).toBe('state');
    expect(await keptSecret('gw2')).toBe(secretInEtcd);

    await sendThrough({ via: 'gw1', verifiedBy: 'gw2', from: 'carol@corp.test/r', to: 'dave@u2.test/r', id: 'while-down' });
    expect(verifications).toContainEqual({ node: 'gw2', to: 'u2.test', answer: 'valid' });
    // Recorded on gw1 while etcd is down: the gate is open there at once (memory).
    expect(await holds('gw1', 'carol@corp.test', 'dave@u2.test')).toBe(true);
  }, 60_000);

  it('a new node with neither etcd nor a kept secret warns, and takes the pool\'s secret once etcd is back', async () => {
    await start('gw3');
    expect(node('gw3').logs.some((l) => l.event === 'cluster.dialback-secret-local' && l.level === 'warn')).toBe(true);
    expect(await keptSecret('gw3')).not.toBe(secretInEtcd);

    await etcd.startAll();
    await node('gw3').waitForLog((l) => l.event === 'cluster.dialback-secret-changed', 20_000);
    expect(await keptSecret('gw3')).toBe(secretInEtcd);
    // gw3's keys now verify on gw1.
    await sendThrough({ via: 'gw3', verifiedBy: 'gw1', from: 'erin@corp.test/r', to: 'frank@u3.test/r', id: 'from-gw3' });
    expect(verifications).toContainEqual({ node: 'gw1', to: 'u3.test', answer: 'valid' });
    expect(await etcd.client().get(`${PREFIX}dialback-secret`).string()).toBe(secretInEtcd);
  }, 60_000);

  it('the approval recorded while etcd was down reaches the other nodes once it is back', async () => {
    for (const name of ['gw2', 'gw3']) {
      expect(await eventually(() => holds(name, 'carol@corp.test', 'dave@u2.test'), 10_000, 50), name).toBe(true);
    }
    const stored = JSON.parse((await etcd.client().get(`${PREFIX}approvals/carol@corp.test dave@u2.test`).string()) ?? '{}') as Record<string, unknown>;
    expect(stored).toMatchObject({ local: 'carol@corp.test', remote: 'dave@u2.test', node: 'gw1' });
  }, 30_000);
});

describe('the secret follows etcd while the nodes run', () => {
  it('a secret changed in etcd is taken by every node; a deleted one is created again with it', async () => {
    const rotated = randomBytes(32).toString('hex');
    await etcd.client().put(`${PREFIX}dialback-secret`).value(rotated);
    for (const name of ['gw1', 'gw2', 'gw3']) {
      expect(await eventually(async () => (await keptSecret(name)) === rotated, 3_000, 50), name).toBe(true);
    }
    await etcd.client().delete().key(`${PREFIX}dialback-secret`);
    expect(await eventually(async () => (await etcd.client().get(`${PREFIX}dialback-secret`).string()) === rotated, 3_000, 50)).toBe(true);
    // Still one secret: a key gw3 makes now verifies on gw2.
    const before = verifications.length;
    await sendThrough({ via: 'gw3', verifiedBy: 'gw2', from: 'grace@corp.test/r', to: 'heidi@u2.test/r', id: 'after-rotation' });
    expect(verifications.slice(before)).toEqual([{ node: 'gw2', to: 'u2.test', answer: 'valid' }]);
  }, 30_000);
});

describe('the pool approvals store itself (two stores on one prefix)', () => {
  const prefix = '/store-test/';
  const logLines: { event: string; fields?: Record<string, unknown> }[] = [];
  const log: Logger = {
    debug: () => {},
    info: (event, fields) => logLines.push({ event, fields }),
    warn: (event, fields) => logLines.push({ event, fields }),
    error: (event, fields) => logLines.push({ event, fields }),
  };
  const opened: PoolApprovalStore[] = [];
  const connections: EtcdConnection[] = [];
  const open = async (name: string, maxEntries: number, more: { lastSeenSyncMs?: number } = {}): Promise<PoolApprovalStore> => {
    const conn = connectEtcd({ nodeName: name, etcd: { endpoints: etcd.endpoints, prefix }, leaseTtlSeconds: 4 });
    connections.push(conn);
    const file = join(node('gw1').dir, `state/store-test-${name}.json`);
    const store = await PoolApprovalStore.open({ etcd: conn, nodeName: name, file, maxEntries, log, ...more });
    opened.push(store);
    return store;
  };
  const pairs = (s: PoolApprovalStore): string[] => s.list().map((a) => `${a.local} ${a.remote}`).sort();
  const inEtcd = async (): Promise<string[]> => Object.keys(await etcd.client().getAll().prefix(`${prefix}approvals/`).strings()).map((k) => k.slice(`${prefix}approvals/`.length)).sort();

  afterAll(async () => {
    for (const s of opened) await s.close();
    for (const c of connections) c.close();
  });

  it('the bound evicts on every node alike: what one node pushes out leaves etcd and the other node', async () => {
    const a = await open('a', 3);
    const b = await open('b', 3);
    for (const r of ['r1', 'r2', 'r3']) a.record('Alice@corp.test/phone', `${r}@u1.test`);
    expect(await eventually(() => pairs(b).length === 3, 2_000, 20)).toBe(true);
    a.record('alice@corp.test', 'r4@u1.test'); // r1 is the least recently seen: it goes
    const expected = ['alice@corp.test r2@u1.test', 'alice@corp.test r3@u1.test', 'alice@corp.test r4@u1.test'];
    expect(await eventually(async () => JSON.stringify(pairs(b)) === JSON.stringify(expected) && JSON.stringify(await inEtcd()) === JSON.stringify(expected), 2_000, 20)).toBe(true);
    expect(pairs(a)).toEqual(expected);
  });

  it('revoking all of a local user\'s approvals is one prefix delete that every node applies', async () => {
    const [a, b] = opened as [PoolApprovalStore, PoolApprovalStore];
    b.record('bob@corp.test', 'x@u2.test'); // the bound pushes out r2, on both nodes
    const expected = ['alice@corp.test r3@u1.test', 'alice@corp.test r4@u1.test', 'bob@corp.test x@u2.test'];
    expect(await eventually(() => JSON.stringify(pairs(a)) === JSON.stringify(expected), 2_000, 20)).toBe(true);
    expect(pairs(b)).toEqual(expected);
    expect(b.revoke('ALICE@corp.test')).toBe(2);
    await b.flush();
    expect(await eventually(() => pairs(a).length === 1, 2_000, 20)).toBe(true);
    expect(pairs(a)).toEqual(['bob@corp.test x@u2.test']);
    expect(await inEtcd()).toEqual(['bob@corp.test x@u2.test']);
  });

  it('a refreshed lastSeen reaches the other node with the next sync, and moves nothing back', async () => {
    const c = await open('c', 10, { lastSeenSyncMs: 100 });
    const d = await open('d', 10, { lastSeenSyncMs: 100 });
    c.record('carol@corp.test', 'y@u3.test');
    expect(await eventually(() => d.has('carol@corp.test', 'y@u3.test'), 2_000, 20)).toBe(true);
    const first = d.list().find((x) => x.local === 'carol@corp.test')!.lastSeen;
    await new Promise((r) => setTimeout(r, 20));
    c.record('carol@corp.test', 'y@u3.test');
    const refreshed = c.list().find((x) => x.local === 'carol@corp.test')!.lastSeen;
    expect(refreshed > first).toBe(true);
    expect(await eventually(() => d.list().find((x) => x.local === 'carol@corp.test')?.lastSeen === refreshed, 2_000, 20)).toBe(true);
  });

  it('a value it did not write is ignored with a warning naming the key', async () => {
    const [a] = opened as [PoolApprovalStore];
    await etcd.client().put(`${prefix}approvals/mallory@corp.test z@u1.test`).value('{"local":"someone@else.test"}');
    const warned = await eventually(() => logLines.some((l) => l.event === 'approvals.etcd-invalid' && l.fields?.key === 'approvals/mallory@corp.test z@u1.test'), 2_000, 20);
    expect(warned).toBe(true);
    expect(a.has('mallory@corp.test', 'z@u1.test')).toBe(false);
  });
});

describe('xmpp-gateway approvals with no node running (the built CLI)', () => {
  it('lists and revokes the pool\'s approvals in etcd, and says in one line when etcd is away', async () => {
    const c = await tempConfig(undefined, [
      `admin: { listen: { host: 127.0.0.1, port: ${await freePort()} } }`,
      'cluster:',
      '  nodeName: cli',
      `  etcd: { endpoints: [${etcd.endpoints.join(', ')}], prefix: /store-test/ }`,
      '',
    ].join('\n'));
    try {
      let r = await c.cli(['--json', 'approvals', 'list']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/reading the pool's approvals in etcd \(http:\/\/127\.0\.0\.81:32389, .*\) directly\n$/);
      const listed = (JSON.parse(r.stdout) as { approvals: { local: string; remote: string }[] }).approvals.map((a) => `${a.local} ${a.remote}`);
      expect(listed.sort()).toEqual(['bob@corp.test x@u2.test', 'carol@corp.test y@u3.test']);

      r = await c.cli(['approvals', 'revoke', '--local', 'bob@corp.test']);
      expect([r.code, r.stdout]).toEqual([0, 'revoked 1 approval\n']);
      expect(await etcd.client().get('/store-test/approvals/bob@corp.test x@u2.test').string()).toBeNull();

      await etcd.stopAll();
      r = await c.cli(['approvals', 'list']);
      expect(r.code).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr.trimEnd().split('\n').at(-1)).toMatch(/^error: cannot reach etcd at http:\/\/127\.0\.0\.81:32389, .*: the pool's approvals are there \(start a node, or bring etcd back\)$/);
    } finally {
      await c.cleanup();
    }
  }, 60_000);
});
