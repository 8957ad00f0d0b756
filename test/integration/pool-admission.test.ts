/**
 * Admission across the pool (cluster/pool-admission.ts; docs/design.md section 11) against a
 * real 3-member etcd, without the gateway around it: several nodes (PoolNode + PoolAdmission
 * each, as gateway.ts builds them) on one etcd, each test under its own key prefix.
 *  - slots: a partner's limit holds across nodes, also when they all ask at once (600 at once
 *    for 20 slots: never more, and no local share while etcd answers); closing gives the slot
 *    back at once; the pool-wide connectionLimit counts every partner's streams; a lowered limit
 *    moves streams below it or returns them to be closed; a stream that closes while its slot
 *    moves leaves no slot behind, and a move whose answer is lost is reconciled by the syncs
 *    (a hook on the admission's transactions runs the close between etcd and the answer);
 *  - a lease that is lost (revoked here, as etcd does when it expires) takes the node's slots;
 *    with its next lease the node registers its live streams again, and a stream that finds
 *    its slot taken stays up, counted as over the limit, until a slot frees;
 *  - etcd gone while the node holds its lease: refused; lease lost: the local share; lease lost
 *    and granted again meanwhile: etcd again, under the new lease;
 *  - a node that cannot reach etcd admits within floor(L / N), N from its state file, and
 *    nothing when it has never seen its pool.
 * etcd: 127.0.0.81-.83, client port 22381, peer port 22382 (test/interop/README.md, block 8x).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ITxnResponse, Lease } from 'etcd3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { KnownNodes } from '../../src/cluster/known-nodes.js';
import { ADMISSION_DEADLINE_MS, PoolAdmission, type AdmissionResult, type SlotHolder } from '../../src/cluster/pool-admission.js';
import { PoolNode } from '../../src/cluster/pool-node.js';
import { poolStatus } from '../../src/cluster/pool-status.js';
import type { LimitVerdict, PoolAdmissionRequest } from '../../src/stream/connection-limits.js';
import { createLogger } from '../../src/log.js';
import { startEtcdCluster, type EtcdCluster } from '../helpers/etcd-cluster.js';

let etcd: EtcdCluster;
let dir: string;
let prefixes = 0;

interface TestNode {
  readonly name: string;
  readonly pool: PoolNode;
  readonly admission: PoolAdmission;
  readonly known: KnownNodes;
  readonly results: AdmissionResult[];
  readonly logs: { event: string; [k: string]: unknown }[];
  close(): Promise<void>;
}
const nodes: TestNode[] = [];

beforeAll(async () => {
  etcd = await startEtcdCluster({ ips: ['127.0.0.81', '127.0.0.82', '127.0.0.83'], clientPort: 22381, peerPort: 22382 });
  dir = await mkdtemp(join(tmpdir(), 'xgw-pool-admission-'));
});

afterEach(async () => {
  for (const n of nodes.splice(0)) await n.close();
});

afterAll(async () => {
  await etcd?.close();
  await rm(dir, { recursive: true, force: true });
});

/** A fresh key prefix: each test its own pool. */
function newPrefix(): string {
  return `/xgw-admission-${process.pid}-${++prefixes}/`;
}

/**
 * A hook on the admission's transactions (not on membership's): `hook`, while set, is given each
 * one's operations (resolved) and its commit, and answers in its place: it can run code between
 * a transaction being applied and its answer reaching the admission, or lose the answer.
 * `lease`, when set (undefined: the node's own), is the lease the admission sees.
 */
interface Gate {
  hook?: (ops: { success: Record<string, { key?: Buffer; lease?: string | number }>[] }, commit: () => Promise<ITxnResponse>) => Promise<ITxnResponse>;
  lease?: Lease | null;
}

function gated(pool: PoolNode, gate: Gate): Pick<PoolNode, 'etcd' | 'membership' | 'name'> {
  const real = pool.etcd.kv;
  const kv = new Proxy(real, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target) as unknown;
      if (typeof value !== 'function') return value;
      if (prop !== 'if') return value.bind(target);
      return (...args: unknown[]) => {
        const builder = (value as (...a: unknown[]) => { commit(): Promise<ITxnResponse>; request: { success: Promise<never>[] } }).apply(target, args);
        const commit = builder.commit.bind(builder);
        builder.commit = async () => {
          const hook = gate.hook;
          return hook ? hook({ success: await Promise.all(builder.request.success) }, commit) : commit();
        };
        return builder;
      };
    },
  });
  const membership = new Proxy(pool.membership, {
    get(target, prop) {
      if (prop === 'currentLease' && gate.lease !== undefined) return gate.lease;
      if (prop === 'online' && gate.lease !== undefined) return gate.lease !== null;
      const value = Reflect.get(target, prop, target) as unknown;
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { name: pool.name, membership, etcd: { ...pool.etcd, kv } as PoolNode['etcd'] };
}

async function startNode(name: string, prefix: string, opts: { endpoints?: string[]; connectionLimit?: number; stateFile?: string; leaseTtlSeconds?: number; gate?: Gate } = {}): Promise<TestNode> {
  const logs: TestNode['logs'] = [];
  const log = createLogger('debug', (line) => logs.push(JSON.parse(line)));
  const pool = await PoolNode.start({ nodeName: name, etcd: { endpoints: opts.endpoints ?? etcd.endpoints, prefix }, leaseTtlSeconds: opts.leaseTtlSeconds ?? 2 }, log);
  const known = await KnownNodes.start(pool.etcd, pool.membership, opts.stateFile ?? join(dir, `${prefix.replaceAll('/', '_')}${name}.json`), log);
  const results: AdmissionResult[] = [];
  const admission = new PoolAdmission(opts.gate ? gated(pool, opts.gate) : pool, known, log, { connectionLimit: opts.connectionLimit ?? 1000, observe: (r) => results.push(r) });
  const node: TestNode = {
    name, pool, admission, known, results, logs,
    async close() {
      admission.close();
      known.close();
      await pool.close();
    },
  };
  nodes.push(node);
  return node;
}

let streamIds = 0;
function request(partner: string, limit: number, direction: 'inbound' | 'outbound' = 'inbound'): PoolAdmissionRequest {
  const id = `s${++streamIds}`;
  return { partner, direction, limit, limitName: 'ConnectionLimit', stream: { id }, streamId: id, remoteDomain: partner };
}

/** The slots under `prefix` + `streams/` (or `connections/`), key ⇒ holder. */
async function slots(prefix: string, which: 'streams/' | 'connections/' = 'streams/'): Promise<Record<string, SlotHolder>> {
  const all = await etcd.client().namespace(prefix).getAll().prefix(which).strings();
  return Object.fromEntries(Object.entries(all).map(([k, v]) => [k, JSON.parse(v) as SlotHolder]));
}

async function eventually(check: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (await check()) return Date.now() - started;
    if (Date.now() - started > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('admission across the pool', () => {
  it('holds a partner\'s limit across nodes, per direction, and gives a closed stream\'s slot back at once', async () => {
    const prefix = newPrefix();
    const [a, b] = [await startNode('a', prefix), await startNode('b', prefix)];
    const first = request('p.test', 2);
    const second = request('p.test', 2);
    expect(await a.admission.admit(first)).toEqual({ ok: true });
    expect(await b.admission.admit(second)).toEqual({ ok: true });
    const third = await a.admission.admit(request('p.test', 2));
    expect(third).toEqual({ ok: false, rule: 'ConnectionLimit', text: 'ConnectionLimit 2 of partner p.test reached across the pool (inbound streams)' });
    // The other direction has its own slots; another partner too.
    expect(await b.admission.admit(request('p.test', 2, 'outbound'))).toEqual({ ok: true });
    expect(await b.admission.admit(request('q.test', 1))).toEqual({ ok: true });
    expect(a.results).toEqual(['admitted', 'refused']);

    const held = await slots(prefix);
    expect(Object.keys(held)).toHaveLength(4);
    expect(Object.keys(held).filter((k) => k.startsWith('streams/p.test/inbound/')).sort()).toEqual(['streams/p.test/inbound/0', 'streams/p.test/inbound/1']);
    expect(Object.keys(held).filter((k) => k.startsWith('streams/p.test/outbound/'))[0]).toMatch(/^streams\/p\.test\/outbound\/[01]$/);
    expect(Object.keys(held)).toContain('streams/q.test/inbound/0');
    const inbound = Object.entries(held).filter(([k]) => k.startsWith('streams/p.test/inbound/')).map(([, v]) => v);
    expect(inbound.map((v) => `${v.node} ${v.stream}`).sort()).toEqual([`a ${first.streamId}`, `b ${second.streamId}`]);
    expect(inbound[0]).toMatchObject({ partner: 'p.test', direction: 'inbound', remoteDomain: 'p.test' });
    expect(Object.keys(await slots(prefix, 'connections/'))).toHaveLength(4);

    a.admission.release(first.stream);
    await eventually(async () => Object.values(await slots(prefix)).every((v) => v.stream !== first.streamId), 1000, 'the slot given back');
    expect(Object.keys(await slots(prefix, 'connections/'))).toHaveLength(3);
    expect(await b.admission.admit(request('p.test', 2))).toEqual({ ok: true });
  });

  it('admits exactly L when several nodes ask at once', async () => {
    const prefix = newPrefix();
    const pool = [await startNode('a', prefix), await startNode('b', prefix), await startNode('c', prefix)];
    const verdicts: LimitVerdict[] = await Promise.all(Array.from({ length: 24 }, (_, i) => pool[i % 3]!.admission.admit(request('busy.test', 5))));
    expect(verdicts.filter((v) => v.ok)).toHaveLength(5);
    expect(Object.keys(await slots(prefix))).toHaveLength(5);
    expect(Object.keys(await slots(prefix, 'connections/'))).toHaveLength(5);
  });

  it('never admits more than L under heavy contention, and never falls back to a local share while etcd answers', async () => {
    const prefix = newPrefix();
    const pool = [await startNode('a', prefix), await startNode('b', prefix), await startNode('c', prefix)];
    const started = Date.now();
    const verdicts = await Promise.all(Array.from({ length: 600 }, (_, i) => pool[i % 3]!.admission.admit(request('hot.test', 20))));
    const admitted = verdicts.filter((v) => v.ok).length;
    console.log(`pool-admission: 600 at once for L = 20 on 3 nodes: ${admitted} admitted in ${Date.now() - started} ms`);
    if (process.env.XGW_POOL_DEBUG) console.log([...new Set(pool.flatMap((n) => n.logs).filter((l) => l.event === 'pool.local-admission').map((l) => String(l.text ?? 'admitted').slice(0, 200)))]);
    expect(admitted).toBeLessThanOrEqual(20);
    expect(admitted).toBeGreaterThan(0);
    // Transactions still under way for refused streams give their slots back when they answer.
    await eventually(async () => Object.keys(await slots(prefix)).length === admitted, 3000, 'only the admitted streams hold slots');
    expect(pool.flatMap((n) => n.results).filter((r) => r === 'local' || r === 'local-refused')).toEqual([]);
  });

  it('applies connectionLimit to the partner streams of the whole pool', async () => {
    const prefix = newPrefix();
    const a = await startNode('a', prefix, { connectionLimit: 3 });
    const b = await startNode('b', prefix, { connectionLimit: 3 });
    expect(await a.admission.admit(request('x.test', 5))).toEqual({ ok: true });
    expect(await b.admission.admit(request('y.test', 5))).toEqual({ ok: true });
    expect(await a.admission.admit(request('z.test', 5, 'outbound'))).toEqual({ ok: true });
    expect(await b.admission.admit(request('x.test', 5))).toEqual({ ok: false, rule: 'connectionLimit', text: 'the pool\'s connectionLimit of 3 authenticated partner streams is reached' });
  });

  it('registers live streams again under a new lease; one whose slot was taken meanwhile stays up, over the limit', async () => {
    const prefix = newPrefix();
    const a = await startNode('a', prefix);
    const b = await startNode('b', prefix);
    const kept = request('r.test', 1);
    const other = request('s.test', 1);
    expect(await a.admission.admit(kept)).toEqual({ ok: true });
    expect(await a.admission.admit(other)).toEqual({ ok: true });

    // The lease goes (as when etcd expires it): a's slots with it. b takes s.test's slot first.
    const online = new Promise((r) => a.pool.membership.once('online', r));
    await etcd.client().leaseClient.leaseRevoke({ ID: await a.pool.membership.currentLease!.grant() });
    await eventually(async () => Object.keys(await slots(prefix)).length === 0, 2000, 'a\'s slots gone with its lease');
    const taker = request('s.test', 1);
    expect(await b.admission.admit(taker)).toEqual({ ok: true });
    await online;

    await eventually(async () => Object.values(await slots(prefix)).some((v) => v.stream === kept.streamId), 3000, 'r.test registered again');
    const held = await slots(prefix);
    expect(held['streams/r.test/inbound/0']).toMatchObject({ node: 'a', stream: kept.streamId });
    expect(held['streams/s.test/inbound/0']).toMatchObject({ node: 'b' });
    await eventually(() => a.logs.some((l) => l.event === 'pool.over-limit' && l.stream === other.streamId), 2000, 'over-limit logged');
    expect(a.admission.unregistered).toBe(1);
    expect(a.admission.localStreams().find((s) => s.stream === other.streamId)).toMatchObject({ slot: null, overLimit: true });
    // The slots under a's new lease: they go when a leaves.
    const lease = await a.pool.membership.currentLease!.grant();
    const kvs = (await etcd.client().namespace(prefix).getAll().prefix('streams/r.test/').exec()).kvs;
    expect(kvs.map((kv) => kv.lease)).toEqual([lease]);

    // Once b's stream closes, a's over-limit stream takes the slot (the retry is slower: 5 s).
    b.admission.release(taker.stream);
    await eventually(() => a.admission.unregistered === 0, 8000, 'the over-limit stream registered');
    expect((await slots(prefix))['streams/s.test/inbound/0']).toMatchObject({ node: 'a', stream: other.streamId });
  });

  it('a lowered limit holds across the pool: streams above it move to a free slot below it, or are returned to close', async () => {
    const prefix = newPrefix();
    const a = await startNode('a', prefix);
    const b = await startNode('b', prefix);
    const held = [request('lo.test', 3), request('lo.test', 3), request('lo.test', 3)];
    for (const [i, r] of held.entries()) expect(await [a, b, b][i]!.admission.admit(r)).toEqual({ ok: true });
    const slotOf = async (r: PoolAdmissionRequest) => Object.entries(await slots(prefix)).find(([, v]) => v.stream === r.streamId)?.[0];
    // 3 ⇒ 2 with slot 1 free: the stream on slot 2 moves to slot 1, nothing closes.
    const onOne = (await Promise.all(held.map(slotOf))).indexOf('streams/lo.test/inbound/1');
    const [gone] = held.splice(onOne, 1);
    [a, b, b].splice(onOne, 1)[0]!.admission.release(gone!.stream);
    await eventually(async () => Object.keys(await slots(prefix)).length === 2, 1000, 'slot 1 free');
    const two = { limit: 2, limitName: 'ConnectionLimit' as const };
    const all = () => true;
    expect([...(await a.admission.applyLimits(() => two, all)), ...(await b.admission.applyLimits(() => two, all))]).toEqual([]);
    expect(Object.keys(await slots(prefix)).sort()).toEqual(['streams/lo.test/inbound/0', 'streams/lo.test/inbound/1']);
    // 2 ⇒ 1, both nodes at once: one stream keeps slot 0, the other is returned to be closed.
    const one = { limit: 1, limitName: 'ConnectionLimit' as const };
    const surplus = (await Promise.all([a.admission.applyLimits(() => one, all), b.admission.applyLimits(() => one, all)])).flat();
    expect(surplus).toHaveLength(1);
    expect(surplus[0]).toMatchObject({ partner: 'lo.test', direction: 'inbound', limit: 1, limitName: 'ConnectionLimit' });
    expect(held.map((r) => r.stream)).toContain(surplus[0]!.stream);
    const kept = held.find((r) => r.stream !== surplus[0]!.stream)!;
    expect(await slots(prefix)).toMatchObject({ 'streams/lo.test/inbound/0': { stream: kept.streamId } });
    // A new stream finds the pool full (the surplus stream still holds slot 1 until it closes).
    expect((await a.admission.admit(request('lo.test', 1))).ok).toBe(false);
  });

  /** Node a holding one mv.test stream on slot 2 of 3, the only slot taken: a limit of 1 moves it to slot 0. */
  async function streamOnSlotTwo(prefix: string, gate: Gate): Promise<{ a: TestNode; top: PoolAdmissionRequest }> {
    const a = await startNode('a', prefix, { gate });
    const held = [request('mv.test', 3), request('mv.test', 3), request('mv.test', 3)];
    for (const r of held) expect(await a.admission.admit(r)).toEqual({ ok: true });
    const all = await slots(prefix);
    const top = held.find((r) => all['streams/mv.test/inbound/2']?.stream === r.streamId)!;
    for (const r of held) if (r !== top) a.admission.release(r.stream);
    await eventually(async () => Object.keys(await slots(prefix)).length === 1 && Object.keys(await slots(prefix, 'connections/')).length === 1, 1000, 'only slot 2 taken');
    return { a, top };
  }
  /** The move's transaction: it puts the new slot and deletes the old one. */
  const isMove = (ops: Parameters<NonNullable<Gate['hook']>>[0]) => ops.success.some((o) => 'request_put' in o) && ops.success.some((o) => 'request_delete_range' in o);
  const limitOne = () => ({ limit: 1, limitName: 'ConnectionLimit' as const });

  it('a stream closed while its slot is being moved leaves no slot behind', async () => {
    const prefix = newPrefix();
    const gate: Gate = {};
    const { a, top } = await streamOnSlotTwo(prefix, gate);
    // The stream closes after the move is applied in etcd and before its answer arrives.
    let moved: boolean | undefined;
    gate.hook = async (ops, commit) => {
      if (!isMove(ops)) return commit();
      gate.hook = undefined;
      const answer = await commit();
      moved = answer.succeeded;
      a.admission.release(top.stream);
      return answer;
    };
    expect(await a.admission.applyLimits(limitOne, () => true)).toEqual([]);
    expect(moved).toBe(true);
    await eventually(async () => Object.keys(await slots(prefix)).length === 0 && Object.keys(await slots(prefix, 'connections/')).length === 0, 2000, 'no slot of the closed stream left');
    expect(a.admission.localStreams()).toEqual([]);
  });

  it('a move whose answer is lost is found out by the syncs: the stream holds what etcd says, and closing gives it back', async () => {
    const prefix = newPrefix();
    const gate: Gate = {};
    const { a, top } = await streamOnSlotTwo(prefix, gate);
    // Applied in etcd, but the call fails (as a deadline that ran out just after etcd applied it).
    gate.hook = async (ops, commit) => {
      if (!isMove(ops)) return commit();
      gate.hook = undefined;
      await commit();
      throw new Error('test: the answer was lost');
    };
    expect(await a.admission.applyLimits(limitOne, () => true)).toEqual([]);
    expect(a.logs.some((l) => l.event === 'pool.limit-not-applied' && l.stream === top.streamId)).toBe(true);
    // What the node believes it holds and what etcd holds agree again, below the limit.
    await eventually(async () => {
      const [mine] = a.admission.localStreams();
      const keys = Object.keys(await slots(prefix));
      return mine?.slot === 0 && keys.length === 1 && keys[0] === 'streams/mv.test/inbound/0';
    }, 5000, 'the stream registered on slot 0');
    a.admission.release(top.stream);
    await eventually(async () => Object.keys(await slots(prefix)).length === 0 && Object.keys(await slots(prefix, 'connections/')).length === 0, 2000, 'no slot of the closed stream left');
  });

  it('status lists every node with its streams, this node from memory', async () => {
    const prefix = newPrefix();
    const a = await startNode('a', prefix);
    const b = await startNode('b', prefix);
    await startNode('c', prefix);
    const ra = request('st.test', 3);
    const rb = request('st.test', 3, 'outbound');
    await a.admission.admit(ra);
    await b.admission.admit(rb);
    const status = await poolStatus(a.pool, a.admission, a.known);
    expect(status).toMatchObject({ node: 'a', etcd: 'reachable', online: true, knownNodes: 3 });
    expect(status.nodes.map((n) => [n.name, n.self, n.streams.map((s) => s.stream)])).toEqual([
      ['a', true, [ra.streamId]],
      ['b', false, [rb.streamId]],
      ['c', false, []],
    ]);
    expect(status.nodes[1]!.streams[0]).toMatchObject({ partner: 'st.test', direction: 'outbound', slot: expect.any(Number) });
    expect(status.nodes[1]).toMatchObject({ pid: process.pid, startedAt: expect.any(String) });
  });

  it('knows the pool\'s size from the watch on nodes/: a node that joins or leaves changes N at once', async () => {
    const prefix = newPrefix();
    const a = await startNode('a', prefix);
    expect(a.known.count).toBe(1);
    const b = await startNode('b', prefix);
    await startNode('c', prefix);
    await eventually(() => a.known.count === 3, 2000, 'a sees 3 nodes');
    await b.close();
    nodes.splice(nodes.indexOf(b), 1);
    await eventually(() => a.known.count === 2, 2000, 'a sees 2 nodes');
  });
});

describe('etcd away', () => {
  it('while the node holds its lease, what etcd cannot decide is refused, not put on the local share; etcd back, it admits again', async () => {
    const prefix = newPrefix();
    // A lease that outlives the admission deadline: lost one TTL after the last answered renewal (membership.ts).
    const a = await startNode('a', prefix, { leaseTtlSeconds: 6 });
    await startNode('b', prefix, { leaseTtlSeconds: 6 });
    await eventually(() => a.known.count === 2, 2000, 'a sees 2 nodes');
    // All members at once, as a power cut would (stopAll's SIGTERM shutdown takes seconds).
    await Promise.all(etcd.members.map((_, i) => etcd.kill(i)));
    try {
      expect(a.pool.membership.online).toBe(true);
      const started = Date.now();
      const verdict = await a.admission.admit(request('away.test', 4));
      // It tried until its deadline (less the last pause between tries, at most 400 ms).
      expect(Date.now() - started).toBeGreaterThanOrEqual(ADMISSION_DEADLINE_MS - 500);
      expect(a.pool.membership.online).toBe(true);
      expect(verdict).toMatchObject({ ok: false, rule: 'ConnectionLimit' });
      expect((verdict as { text: string }).text).toMatch(/^the pool could not decide on partner away\.test's ConnectionLimit 4 within 3000 ms \(.+\) \(inbound streams\)$/);
      expect(a.results).toEqual(['refused']);
      // Lease lost: cut off, the local share decides at once (floor(4/2) = 2).
      await eventually(() => !a.pool.membership.online, 8000, 'lease lost');
      expect(await a.admission.admit(request('away.test', 4))).toEqual({ ok: true });
      expect(a.results).toEqual(['refused', 'local']);
    } finally {
      await etcd.startAll();
    }
    await eventually(() => a.admission.unregistered === 0, 10_000, 'the local admission registered');
    expect(await a.admission.admit(request('away.test', 4))).toEqual({ ok: true });
    expect(a.results).toEqual(['refused', 'local', 'admitted']);
  }, 40_000);

  it('a node whose lease runs out while etcd does not answer decides on its local share, not a refusal', async () => {
    const prefix = newPrefix();
    // TTL 2 s: the lease is lost within the 3 s admission deadline.
    const a = await startNode('a', prefix, { leaseTtlSeconds: 2 });
    await startNode('b', prefix, { leaseTtlSeconds: 2 });
    await eventually(() => a.known.count === 2, 2000, 'a sees 2 nodes');
    await Promise.all(etcd.members.map((_, i) => etcd.kill(i)));
    try {
      expect(a.pool.membership.online).toBe(true);
      const verdict = await a.admission.admit(request('late.test', 4));
      expect(a.pool.membership.online).toBe(false);
      expect(verdict).toEqual({ ok: true });
      expect(a.results).toEqual(['local']);
      expect(a.logs.some((l) => l.event === 'pool.local-admission' && l.admitted === true && l.partner === 'late.test')).toBe(true);
    } finally {
      await etcd.startAll();
    }
    await eventually(() => a.admission.unregistered === 0, 10_000, 'the local admission registered');
  }, 40_000);
  it('a node whose lease is lost and granted again while etcd does not answer asks etcd again under the new lease, not its local share', async () => {
    const prefix = newPrefix();
    const gate: Gate = {};
    const a = await startNode('a', prefix, { gate });
    const first = a.pool.membership.currentLease!;
    const firstId = String(await first.grant());
    const second = etcd.client().lease(30, { autoKeepAlive: true });
    const secondId = String(await second.grant());
    try {
      // No answer to any claim under the first lease; meanwhile the node's lease is another one.
      gate.hook = async (ops, commit) => {
        if (!ops.success.some((o) => 'request_put' in o && String(o.request_put.lease) === firstId)) return commit();
        gate.lease = second;
        throw new Error('test: etcd did not answer');
      };
      const verdict = await a.admission.admit(request('regrant.test', 4));
      expect(gate.lease).toBe(second);
      expect(verdict).toEqual({ ok: true });
      expect(a.results).toEqual(['admitted']);
      expect(a.logs.some((l) => l.event === 'pool.local-admission')).toBe(false);
      expect(a.admission.unregistered).toBe(0);
      const held = await etcd.client().namespace(prefix).getAll().prefix('streams/regrant.test/').exec();
      expect(held.kvs.map((kv) => String(kv.lease))).toEqual([secondId]);
    } finally {
      gate.hook = undefined;
      await second.revoke();
    }
  }, 20_000);
});

describe('a node cut off from etcd', () => {
  // Nothing listens here: every call fails at once, no lease is ever granted.
  const nowhere = ['http://127.0.0.81:22389'];

  it('admits within floor(L / N), N from its state file, and says so', async () => {
    const stateFile = join(dir, 'known-3.json');
    await writeFile(stateFile, JSON.stringify({ knownNodes: 3, at: new Date().toISOString() }));
    const node = await startNode('cut', newPrefix(), { endpoints: nowhere, stateFile });
    expect(node.known.count).toBe(3);
    const started = Date.now();
    expect(await node.admission.admit(request('share.test', 3))).toEqual({ ok: true });
    const second = await node.admission.admit(request('share.test', 3));
    expect(Date.now() - started).toBeLessThan(2 * ADMISSION_DEADLINE_MS);
    expect(second.ok).toBe(false);
    expect(second).toMatchObject({ rule: 'ConnectionLimit' });
    expect((second as { text: string }).text).toMatch(/etcd cannot be reached .*share of partner share\.test's ConnectionLimit 3 is floor\(3\/3 nodes\) = 1 \(inbound streams\), 1 in use/);
    // L = 2 with N = 3: a share of 0.
    expect((await node.admission.admit(request('small.test', 2))).ok).toBe(false);
    expect(node.results).toEqual(['local', 'local-refused', 'local-refused']);
    expect(node.admission.unregistered).toBe(1);
    const status = await poolStatus(node.pool, node.admission, node.known);
    expect(status).toMatchObject({ etcd: 'unreachable', online: false, knownNodes: 3, nodes: [{ name: 'cut', self: true, streams: [{ partner: 'share.test', slot: null }] }] });
  });

  it('admits nothing when it has never seen its pool', async () => {
    const node = await startNode('new', newPrefix(), { endpoints: nowhere, stateFile: join(dir, 'absent.json') });
    expect(node.known.count).toBeNull();
    const verdict = await node.admission.admit(request('any.test', 10));
    expect(verdict).toMatchObject({ ok: false, rule: 'ConnectionLimit' });
    expect((verdict as { text: string }).text).toMatch(/has not seen its pool yet/);
  });

  it('writes N to its state file once it has seen the pool', async () => {
    const prefix = newPrefix();
    const stateFile = join(dir, 'sub', 'pool-nodes.json');
    const a = await startNode('a', prefix, { stateFile });
    await startNode('b', prefix);
    await eventually(() => a.known.count === 2, 2000, 'a sees 2 nodes');
    const { readFile } = await import('node:fs/promises');
    await eventually(async () => (await readFile(stateFile, 'utf8').catch(() => '')).includes('"knownNodes":2'), 2000, 'state file written');
  });
});
