/**
 * A gateway pool federates with a real Prosody (issue 11; docs/design.md section 11): three
 * gateway nodes for corp.test behind ONE SRV record `_xmpp-server._tcp.corp.test` with three
 * targets, sharing a real 3-member etcd; the partner a.test (Prosody, user alice) finds the pool
 * only through that record; the nodes relay to a real internal Prosody corp.test (user bob).
 *
 *  - messages alice → bob and bob → alice are delivered;
 *  - keys one node issued are verified by another: Prosody tries SRV targets in priority order
 *    (net/resolvers/service.lua sorts by priority), so with priorities 0/10/20 a.test always
 *    asks gw1 to verify corp.test's keys, while the internal Prosody resolves a.test through
 *    gw2's DNS view, so gw2 carries bob's messages out and sends the keys a.test verifies with
 *    gw1; the other way, gw1 carries alice's messages in and its keys for a.test are verified by
 *    the internal Prosody at gw2. Asserted from the nodes' streams (authenticated by dialback)
 *    and from each Prosody's log (the only addresses it connected to);
 *  - every delivery barrier is confirmed (docs/design.md section 11, "Delivery barriers"): a.test
 *    answers gw2's barrier pings on its stream to gw1, and the internal Prosody answers gw1's on its
 *    stream to gw2; the node that reads an answer passes it to its issuer through etcd. No
 *    `relay.unconfirmed` on any node, gw_relay_unconfirmed_total 0 (queues.confirmTimeoutMs is
 *    3 s here, so a barrier left unanswered would show within the test);
 *  - with gw1 stopped, alice → bob and bob → alice still work through the others.
 *
 * Dialback is forced on the partner link (SaslNegotiation NotSupported, over TLS), so that the
 * pool's keys are what authenticates it.
 *
 * Addresses (block 8x of test/interop/README.md): etcd .81-.83 (client/peer ports 32379/32380),
 * gateway nodes .84-.86 on port 5269 (internal listeners and DNS views on the same addresses,
 * ports chosen by the OS), partner Prosody a.test .87, internal Prosody corp.test .88.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Element } from '../../src/xml/ltx.js';
import { startEtcdCluster, type EtcdCluster } from '../helpers/etcd-cluster.js';
import { eventually } from '../helpers/live-streams.js';
import { startTestDns, type TestDns } from '../helpers/test-dns.js';
import {
  connectClient, createPeerCerts, peerZone, startPoolNode, startProsody, withPeerLogs,
  type C2sClient, type PeerCerts, type PeerServer, type PoolGatewayNode,
} from './harness/index.js';

const A = { domain: 'a.test', ip: '127.0.0.87', s2sPort: 25269, c2sPort: 25222 };
const CORP = { domain: 'corp.test', ip: '127.0.0.88', s2sPort: 25269, c2sPort: 25222 };
const NODE_IPS = ['127.0.0.84', '127.0.0.85', '127.0.0.86'] as const;
const PREFIX = '/xmpp-gateway/';
const CONFIRM_TIMEOUT_MS = 3_000;
const RECORD_A = `- Identity: ${A.domain}\n  TlsNegotiation: Required\n  SaslNegotiation: NotSupported\n  PartnerType: PublicVerified\n`;

let certs: PeerCerts;
let etcd: EtcdCluster;
let dns: TestDns;
let nodes: PoolGatewayNode[] = [];
let partner: PeerServer;
let internal: PeerServer;
let alice: C2sClient;
let bob: C2sClient;

beforeAll(async () => {
  certs = await createPeerCerts([A.domain, CORP.domain]);
  etcd = await startEtcdCluster({ ips: ['127.0.0.81', '127.0.0.82', '127.0.0.83'], clientPort: 32379, peerPort: 32380 });
  // The pool's partner list in etcd, and the same in each node's partners.yaml.
  await etcd.client().put(`${PREFIX}partners`).value(RECORD_A);
  // One SRV record for corp.test, three targets: gw1 first (priority 0), then gw2, then gw3.
  dns = await startTestDns(peerZone([A, { domain: CORP.domain, targets: NODE_IPS.map((ip, i) => ({ ip, port: 5269, priority: i * 10 })) }]));
  // Started together: the dialback secret is created once (put-if-absent) whoever comes first.
  nodes = await Promise.all(NODE_IPS.map((ip, i) => startPoolNode({
    certs, dnsServer: dns.address, name: `gw${i + 1}`, ip, internal: CORP, partnerRecords: RECORD_A,
    etcd: { endpoints: etcd.endpoints, prefix: PREFIX },
    // A barrier after every stanza (so all are in flight once the last message arrives), given up
    // after 3 s (so one nobody answers shows within the test).
    queues: `reconnectMinMs: 200, reconnectMaxMs: 1000, confirmEveryStanzas: 1, confirmTimeoutMs: ${CONFIRM_TIMEOUT_MS}`,
  })));
  const gw2 = nodes[1]!.current.gateway;
  [partner, internal] = await Promise.all([
    startProsody({ ...A, mode: 'any', certs, dns: { ip: '127.0.0.1', port: dns.port } }),
    // The internal server resolves the partners through gw2's DNS view: its streams go to gw2.
    startProsody({ ...CORP, mode: 'any', certs, dns: { ip: NODE_IPS[1], port: gw2.dnsView!.port } }),
  ]);
  await Promise.all([partner.register('alice', 'pw'), internal.register('bob', 'pw')]);
  [alice, bob] = await Promise.all([connectClient(partner, 'alice', 'pw'), connectClient(internal, 'bob', 'pw')]);
}, 180_000);

afterAll(async () => {
  await Promise.allSettled([alice?.close(), bob?.close()]);
  await Promise.allSettled([partner?.stop(), internal?.stop()]);
  for (const n of nodes) await n.close().catch(() => {});
  await dns?.close();
  await etcd?.close();
  await certs?.cleanup();
}, 60_000);

const message = (to: string, body: string): Element => new Element('message', { to, type: 'chat', id: body }).c('body').t(body).up();
const bodyOf = (el: Element): string => el.getChildText('body') ?? '';

/** Sends `count` numbered messages; resolves with the bodies the receiver got, in order. */
async function exchange(from: C2sClient, to: C2sClient, count: number, tag: string): Promise<string[]> {
  const bare = to.jid.split('/')[0]!;
  for (let i = 0; i < count; i++) from.send(message(bare, `${tag}-${i}`));
  const received: string[] = [];
  while (received.length < count) {
    const el = await to.waitFor((e) => e.name === 'message' && bodyOf(e).startsWith(`${tag}-`), 30_000, `${tag} message ${received.length}`);
    expect(el.attrs.type, `${tag}: ${el.toString()}`).not.toBe('error');
    received.push(bodyOf(el));
  }
  return received;
}

const numbered = (tag: string, count: number): string[] => Array.from({ length: count }, (_, i) => `${tag}-${i}`);

const live = (n: PoolGatewayNode) => [...n.current.gateway.streams].filter((s) => !s.closed).map((s) => s.info());

/**
 * Waits until no running node has a barrier in flight (answered, or given up after
 * CONFIRM_TIMEOUT_MS), then asserts that none was given up: every relayed stanza was confirmed.
 */
async function expectEveryBarrierConfirmed(running: PoolGatewayNode[]): Promise<void> {
  const settled = await eventually(() => running.every((n) => n.current.gateway.barriers.pending === 0), CONFIRM_TIMEOUT_MS + 5_000, 50);
  expect(settled, running.map((n) => `${n.name}: ${n.current.gateway.barriers.pending} barriers in flight`).join(', ')).toBe(true);
  for (const n of running) {
    const g = n.current.gateway;
    expect(n.current.logs.filter((l) => l.event === 'relay.unconfirmed'), n.name).toEqual([]);
    expect([g.metrics.unconfirmed.get(['partners']), g.metrics.unconfirmed.get(['internal'])], n.name).toEqual([0, 0]);
  }
}

/** The addresses a Prosody's outgoing connections tried (net/connect.lua: "Next target to try is IP:PORT"). */
async function targetsTried(server: PeerServer): Promise<string[]> {
  const log = await readFile(server.logFile, 'utf8');
  return [...new Set([...log.matchAll(/Next target to try is ([\d.]+):(\d+)/g)].map((m) => `${m[1]}:${m[2]}`))].sort();
}

describe('a pool of three gateway nodes behind one SRV record, with real Prosody on both sides', () => {
  it('every node holds the one dialback secret etcd has', async () => {
    const secret = await etcd.client().get(`${PREFIX}dialback-secret`).string();
    expect(secret).toMatch(/^[0-9a-f]{64}$/);
    for (const n of nodes) expect((await readFile(join(n.current.dir, 'state/dialback-secret'), 'utf8')).trim(), n.name).toBe(secret);
  });

  it('alice -> bob and bob -> alice are delivered, and each node\'s keys were verified by another node', async () => {
    await withPeerLogs([partner, internal], async () => {
      expect(await exchange(alice, bob, 10, 'in')).toEqual(numbered('in', 10));
      expect(await exchange(bob, alice, 10, 'out')).toEqual(numbered('out', 10));
    });
    const [gw1, gw2] = nodes as [PoolGatewayNode, PoolGatewayNode];
    // gw1 took alice's stream (the first SRV target) and relayed to the internal Prosody on its
    // own stream, authenticated by dialback as a.test...
    expect(live(gw1).some((s) => s.realm === 'partners' && s.direction === 'inbound' && s.partner === A.domain && s.auth === 'dialback')).toBe(true);
    expect(live(gw1).some((s) => s.realm === 'internal' && s.direction === 'outbound' && s.localDomain === A.domain && s.auth === 'dialback')).toBe(true);
    // ...which the internal Prosody verified with gw2: the only gateway address it ever connected to.
    expect(await targetsTried(internal)).toEqual([`${NODE_IPS[1]}:${gw2.current.gateway.internalListener!.port}`]);
    // gw2 took bob's messages out on its own stream to a.test, authenticated by dialback...
    expect(live(gw2).some((s) => s.realm === 'partners' && s.direction === 'outbound' && s.partner === A.domain && s.auth === 'dialback')).toBe(true);
    // ...which a.test verified with gw1: the only corp.test address it ever connected to.
    expect(await targetsTried(partner)).toEqual([`${NODE_IPS[0]}:5269`]);
    // The gateways' logs say the same from their side.
    expect(gw2.current.logs.some((l) => l.event === 'stream.authenticated' && l.direction === 'outbound' && l.partner === A.domain && l.method === 'dialback')).toBe(true);
    expect(gw2.current.logs.some((l) => l.event === 'stream.authenticated' && l.direction === 'inbound' && l.partner === A.domain)).toBe(false);
    // gw2's barriers to a.test were answered through gw1, gw1's to the internal Prosody through gw2.
    await expectEveryBarrierConfirmed(nodes);
    const passedOn = async (issuer: string, reader: string) => JSON.parse((await etcd.client().get(`${PREFIX}barrier-answers/${issuer}/${reader}`).string()) ?? '[]') as string[];
    expect((await passedOn('gw2', 'gw1')).length, 'answers gw1 read for gw2').toBeGreaterThan(0);
    expect((await passedOn('gw1', 'gw2')).length, 'answers gw2 read for gw1').toBeGreaterThan(0);
  }, 120_000);

  it('with gw1 stopped, alice -> bob and bob -> alice still work through the other nodes', async () => {
    const [gw1, gw2, gw3] = nodes as [PoolGatewayNode, PoolGatewayNode, PoolGatewayNode];
    await gw1.stop();
    await withPeerLogs([partner, internal], async () => {
      expect(await exchange(alice, bob, 10, 'in-without-gw1')).toEqual(numbered('in-without-gw1', 10));
      expect(await exchange(bob, alice, 10, 'out-without-gw1')).toEqual(numbered('out-without-gw1', 10));
    });
    // a.test moved to the next SRV target.
    expect([...live(gw2), ...live(gw3)].some((s) => s.realm === 'partners' && s.direction === 'inbound' && s.partner === A.domain && s.auth === 'dialback')).toBe(true);
    expect(await targetsTried(partner)).toContain(`${NODE_IPS[1]}:5269`);
    await expectEveryBarrierConfirmed([gw2, gw3]);
  }, 120_000);
});
