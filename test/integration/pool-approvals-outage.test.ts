/**
 * The pool approvals store's etcd write queue while etcd cannot be reached (issue 11 review,
 * finding 2; docs/design.md section 11, trust-tier approvals): it holds at most one change per
 * pair however long the outage and however often pairs are refreshed, and once etcd answers
 * again the final state (pairs and their last lastSeen) is what etcd holds.
 *
 * Addresses: etcd on 127.0.0.81-.83 with client/peer ports 62379/62380; an endpoint where nothing
 * listens at 127.0.0.81:62399.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectEtcd, type EtcdConnection } from '../../src/cluster/etcd.js';
import { PoolApprovalStore } from '../../src/cluster/pool-approvals.js';
import type { Logger } from '../../src/log.js';
import { startEtcdCluster, type EtcdCluster } from '../helpers/etcd-cluster.js';
import { eventually, sleep } from '../helpers/live-streams.js';

const log: Logger = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };
const MAX = 50;
let dir: string;
let etcd: EtcdCluster | undefined;
const connections: EtcdConnection[] = [];
const stores: PoolApprovalStore[] = [];

const connect = (endpoints: string[], prefix: string): EtcdConnection => {
  const conn = connectEtcd({ nodeName: 'q', etcd: { endpoints, prefix }, leaseTtlSeconds: 4 });
  connections.push(conn);
  return conn;
};

/** Records 200 new pairs (the bound keeps the last 50), then refreshes the 50 held `rounds` times, letting the lastSeen timer run in between. */
async function churn(store: PoolApprovalStore, rounds: number): Promise<void> {
  for (let i = 0; i < 200; i++) store.record(`n${i}@corp.test`, 'r@u1.test');
  for (let round = 0; round < rounds; round++) {
    for (let i = 150; i < 200; i++) store.record(`n${i}@corp.test`, 'r@u1.test');
    await sleep(10);
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'xgw-approvals-outage-'));
});

afterAll(async () => {
  for (const s of stores) await s.close();
  for (const c of connections) c.close();
  await etcd?.close();
}, 30_000);

describe('the approvals write queue while etcd is away', () => {
  it('holds one change per pair, whatever the refreshes (nothing listens at the endpoint)', async () => {
    const store = await PoolApprovalStore.open({
      etcd: connect(['http://127.0.0.81:62399'], '/queue-test/'),
      nodeName: 'q', file: join(dir, 'unreachable.json'), maxEntries: MAX, log,
      lastSeenSyncMs: 5, retryMs: 60_000, etcdReachable: false,
    });
    stores.push(store);
    await churn(store, 20);
    expect(store.inSync).toBe(false);
    expect(store.list()).toHaveLength(MAX);
    // The 50 pairs held, each one put; the 150 recorded and pushed out meanwhile were never written.
    expect(store.pendingWrites).toBe(MAX);
  });

  it('stays bounded through an outage of a real etcd, and writes the final state when it is back', async () => {
    etcd = await startEtcdCluster({ ips: ['127.0.0.81', '127.0.0.82', '127.0.0.83'], clientPort: 62379, peerPort: 62380 });
    await etcd.healthy();
    const prefix = '/outage-test/';
    const file = join(dir, 'cache.json');
    // Before the outage: 20 pairs in etcd and in the node's cache.
    const before = await PoolApprovalStore.open({ etcd: connect(etcd.endpoints, prefix), nodeName: 'a', file, maxEntries: MAX, log });
    for (let i = 0; i < 20; i++) before.record(`old${i}@corp.test`, 'r@u1.test');
    await before.flush();
    await before.close();

    await etcd.stopAll();
    const store = await PoolApprovalStore.open({
      etcd: connect(etcd.endpoints, prefix), nodeName: 'b', file, maxEntries: MAX, log,
      lastSeenSyncMs: 5, retryMs: 100, etcdReachable: false,
    });
    stores.push(store);
    expect(store.list()).toHaveLength(20);
    await churn(store, 20);
    expect(store.revoke('n199@corp.test')).toBe(1); // a prefix delete
    expect(store.revoke('n198@corp.test', 'r@u1.test')).toBe(1);
    expect(store.inSync).toBe(false);
    // 48 puts (pairs held), 20 deletes (the cached pairs the bound pushed out), 1 prefix delete.
    expect(store.pendingWrites).toBeLessThanOrEqual(MAX + 20 + 1);

    await etcd.startAll();
    await etcd.healthy(15_000);
    const client = etcd.client();
    const inEtcd = async (): Promise<string[]> => Object.values(await client.getAll().prefix(`${prefix}approvals/`).strings())
      .map((v) => { const o = JSON.parse(v) as Record<string, string>; return `${o.local} ${o.remote} ${o.lastSeen}`; }).sort();
    const inMemory = (): string[] => store.list().map((a) => `${a.local} ${a.remote} ${a.lastSeen}`).sort();
    const converged = await eventually(async () => store.inSync && store.pendingWrites === 0 && JSON.stringify(await inEtcd()) === JSON.stringify(inMemory()), 20_000, 100);
    expect(converged).toBe(true);
    expect(inMemory()).toHaveLength(48);
    expect((await inEtcd()).some((p) => p.startsWith('old') || p.startsWith('n199@') || p.startsWith('n198@'))).toBe(false);
  }, 60_000);
});
