/**
 * N, the pool size of the local shares floor(L / N) (cluster/known-nodes.ts; docs/design.md
 * section 11, "Cut off from etcd"), against a real 3-member etcd: it must follow the nodes that
 * join also after etcd ended the node-count watch. etcd ends a watch for good when the revision
 * it resumes from was compacted while etcd was away; the watch must then be re-created, or N
 * stays too small once nodes are added, and the shares of the next outage add up to more than L.
 * etcd: 127.0.0.81-.83, client port 62359, peer port 62360 (test/interop/README.md, block 8x).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { KnownNodes } from '../../src/cluster/known-nodes.js';
import { PoolNode } from '../../src/cluster/pool-node.js';
import { createLogger } from '../../src/log.js';
import { startEtcdCluster, type EtcdCluster } from '../helpers/etcd-cluster.js';

let etcd: EtcdCluster;
let dir: string;

interface TestNode {
  readonly known: KnownNodes;
  readonly logs: { event: string; [k: string]: unknown }[];
  close(): Promise<void>;
}
const nodes: TestNode[] = [];

beforeAll(async () => {
  etcd = await startEtcdCluster({ ips: ['127.0.0.81', '127.0.0.82', '127.0.0.83'], clientPort: 62359, peerPort: 62360 });
  dir = await mkdtemp(join(tmpdir(), 'xgw-known-nodes-'));
});

afterEach(async () => {
  for (const n of nodes.splice(0)) await n.close();
});

afterAll(async () => {
  await etcd?.close();
  await rm(dir, { recursive: true, force: true });
});

/** A pool node with its KnownNodes, as pool-limits.ts builds them. */
async function startNode(name: string, prefix: string): Promise<TestNode> {
  const logs: TestNode['logs'] = [];
  const log = createLogger('debug', (line) => logs.push(JSON.parse(line)));
  const pool = await PoolNode.start({ nodeName: name, etcd: { endpoints: etcd.endpoints, prefix }, leaseTtlSeconds: 5 }, log);
  const known = await KnownNodes.start(pool.etcd, pool.membership, join(dir, `${name}.json`), log);
  const node: TestNode = {
    known, logs,
    async close() {
      known.close();
      await pool.close();
    },
  };
  nodes.push(node);
  return node;
}

async function eventually(check: () => boolean, timeoutMs: number, what: string): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (check()) return Date.now() - started;
    if (Date.now() - started > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('the pool size N of the local shares', () => {
  it('follows a node that joins after etcd ended the watch (its revision compacted during an outage)', async () => {
    const prefix = `/xgw-known-nodes-${process.pid}/`;
    const a = await startNode('a', prefix);
    await startNode('b', prefix);
    await eventually(() => a.known.count === 2, 5000, 'a sees 2 nodes');

    // Move etcd's revision past the last one a's watch saw (writes outside the pool), and
    // compact up to it: the watch, live now, is not affected yet.
    const client = etcd.client();
    for (let i = 0; i < 5; i++) await client.put(`/xgw-known-nodes-other/${i}`).value(String(i));
    const revision = (await client.get('/xgw-known-nodes-other/4').exec()).header.revision;
    await client.kv.compact({ revision, physical: true });

    // An outage: the watch's stream breaks; when etcd is back it resumes from its last
    // revision + 1, which is compacted, so etcd cancels it (an 'error' on the watcher).
    await etcd.stopAll();
    await new Promise((r) => setTimeout(r, 1500));
    await etcd.startAll();
    // Let a's watch reconnect and be cancelled first (its reconnection backoff is at most 1 s):
    // a watch that (re)connects counts again, so a node joining before that would be counted
    // anyway, and the test would prove nothing.
    await new Promise((r) => setTimeout(r, 3000));
    const endedBeforeJoin = a.logs.filter((l) => l.event === 'pool.nodes-watch-ended').length;

    // A third node joins: a must count it.
    await startNode('c', prefix);
    const ms = await eventually(() => a.known.count === 3, 6000, 'a sees 3 nodes after the watch was ended');
    console.log(`known-nodes: N followed the third node ${ms} ms after it joined`);
    // The watch was indeed ended (else this test would prove nothing) and re-created. (etcd 3.4
    // gives no cancel reason for a compacted revision, only its compact_revision.)
    expect(endedBeforeJoin).toBeGreaterThan(0);
  }, 40_000);
});
