/**
 * ConnectionLimit across a pool (issue 11; docs/design.md section 11): a real 3-member etcd
 * cluster on loopback and three gateway nodes, each a process of its own (so one can be
 * SIGKILLed), partners authenticating with SASL EXTERNAL over real TLS:
 *  - a partner with ConnectionLimit 1 gets its stream on node 1 and is refused its second (same
 *    direction) on node 2, policy-violation / ConnectionLimit, the pool's limit;
 *  - a stream closed normally gives its slot back at once; a SIGKILLed node's slots go within
 *    the lease TTL, and another node then admits;
 *  - one etcd member killed changes nothing;
 *  - all of etcd stopped: streams keep flowing (a ping is answered over the streams already up);
 *    once its lease is lost a node admits only within its local share floor(L / N) (L = 2, N = 3:
 *    none; L = 3: one), and
 *    once etcd is back it registers the stream it admitted meanwhile;
 *  - `xmpp-gateway --json status` against one node lists all three and their streams; /metrics
 *    has the node label.
 * etcd members 127.0.0.81-.83, client port 22379, peer port 22380 (test/interop/README.md, block
 * 8x); the nodes listen on 127.0.0.1, ports chosen by the OS (admin ports fixed, for the CLI).
 */
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { writeFileAtomic } from '../../src/policy/atomic-write.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakePartnerServer } from '../helpers/fake-partner-server.js';
import { freePort, runCli } from '../helpers/cli.js';
import { startEtcdCluster, type EtcdCluster } from '../helpers/etcd-cluster.js';
import { startGatewayProcess, type GatewayProcess } from '../helpers/gateway-process.js';
import { authenticate, eventually, metricValue } from '../helpers/live-streams.js';
import { dialbackAuthority } from '../helpers/partner-attempt.js';
import type { ScriptedPeer } from '../helpers/scripted-peer.js';
import { adminHeaders, testPki, type TestPki } from '../helpers/test-gateway.js';

const PREFIX = '/xmpp-gateway/';
const LEASE_TTL_SECONDS = 2;
const EXTERNAL_ONLY = 'TlsNegotiation: Required\n  SaslNegotiation: Required\n  SupportDialbackNegotiation: false';
/** Each scenario its own partner, so they do not share slots. */
const LIMITS: Record<string, number> = { 'a.test': 1, 'closing.test': 1, 'member.test': 1, 'flow.test': 1, 'two.test': 2, 'three.test': 3 };
const DOMAINS = Object.keys(LIMITS);
/** A partner that authenticates with dialback (its authoritative server confirms its keys). */
const DIALBACK_PARTNER = '- Identity: db.test\n  ConnectionLimit: 1\n  TlsNegotiation: NotSupported\n  SaslNegotiation: NotSupported\n  SupportDialbackNegotiation: true\n';
const PARTNERS = DOMAINS.map((d) => `- Identity: ${d}\n  ConnectionLimit: ${LIMITS[d]}\n  ${EXTERNAL_ONLY}\n`).join('') + DIALBACK_PARTNER;

let pki: TestPki;
let etcd: EtcdCluster;
let client: Etcd3;
/** The partners' own server: the nodes' outbound streams (answers to pings) go there. */
let partnerServer: FakePartnerServer;
/** db.test's authoritative server (dialback). */
let authority: FakePartnerServer;
/** gw1, gw2, gw3; gw1 is replaced by a new process after it is SIGKILLed. */
const node: GatewayProcess[] = [];
const peers: ScriptedPeer[] = [];

async function startNode(i: number): Promise<GatewayProcess> {
  const route = `127.0.0.1:${partnerServer.port}`;
  const gw = await startGatewayProcess({
    pki,
    partners: PARTNERS,
    adminPort: await freePort(),
    routes: { ...Object.fromEntries(DOMAINS.map((d) => [d, route])), 'db.test': `127.0.0.1:${authority.port}` },
    config: [
      'cluster:',
      `  nodeName: gw${i + 1}`,
      `  etcd: { endpoints: [${etcd.endpoints.map((e) => `"${e}"`).join(', ')}], prefix: ${PREFIX} }`,
      `  leaseTtlSeconds: ${LEASE_TTL_SECONDS}`,
    ].join('\n'),
  });
  node[i] = gw;
  return gw;
}

beforeAll(async () => {
  pki = testPki();
  etcd = await startEtcdCluster({ ips: ['127.0.0.81', '127.0.0.82', '127.0.0.83'], clientPort: 22379, peerPort: 22380 });
  client = etcd.client();
  // In cluster mode the partner list is the etcd key <prefix>partners; each node's partners.yaml
  // holds the same list (read by a node that does not take it from etcd).
  await client.put(`${PREFIX}partners`).value(PARTNERS);
  const serverCert = pki.issue({ domain: DOMAINS[0]!, dnsNames: DOMAINS });
  partnerServer = await FakePartnerServer.start({
    domain: DOMAINS[0]!, extraDomains: DOMAINS.slice(1), cert: serverCert.certPem, key: serverCert.keyPem, ca: pki.ca.certPem,
    tls: 'required', sasl: true, dialback: false,
  });
  authority = await dialbackAuthority('db.test');
  await Promise.all([0, 1, 2].map(startNode));
  // Every node has seen the other two (its N for local shares).
  for (const gw of node) {
    expect(await eventually(async () => (await metricValue(gw.adminPort, 'gw_pool_nodes', {})) === 3, 5000), `${gw.configFile} sees 3 nodes`).toBe(true);
  }
}, 120_000);

afterAll(async () => {
  if (process.env.XGW_POOL_DEBUG) for (const gw of node) console.log(gw?.stderr().split('\n').filter((l) => /"event":"(pool|cluster)\./.test(l)).join('\n'));
  for (const p of peers.splice(0)) p.destroy();
  await Promise.all(node.map((gw) => gw?.close()));
  await partnerServer?.close();
  await authority?.close();
  await etcd?.close();
}, 60_000);

/** A partner's stream into `gw`, authenticated with SASL EXTERNAL (kept open when admitted). */
async function connect(gw: GatewayProcess, domain: string) {
  const r = await authenticate({ port: gw.port, from: domain, cert: pki.issue({ domain }) });
  if (r.outcome === 'sasl-external') peers.push(r.peer);
  return r;
}

/** The slots of a partner in one direction: slot key ⇒ holder. */
async function slotsOf(domain: string, direction = 'inbound'): Promise<Record<string, { node: string; stream: string }>> {
  const all = await client.getAll().prefix(`${PREFIX}streams/${domain}/${direction}/`).strings();
  return Object.fromEntries(Object.entries(all).map(([k, v]) => [k.slice(PREFIX.length), JSON.parse(v) as { node: string; stream: string }]));
}

const holders = async (domain: string, direction = 'inbound') => Object.values(await slotsOf(domain, direction)).map((h) => h.node);

function ping(peer: ScriptedPeer, from: string, id: string): void {
  peer.send(`<iq xmlns='jabber:server' type='get' id='${id}' from='${from}' to='gw.test'><ping xmlns='urn:xmpp:ping'/></iq>`);
}

interface PoolJson {
  node: string;
  etcd: string;
  nodes: { name: string; self: boolean; streams: { partner: string; direction: string; stream: string; slot: number | null; remoteDomain: string }[] }[];
}

async function statusJson(gw: GatewayProcess): Promise<{ streams: { id: string; partner: string }[]; pool: PoolJson }> {
  const r = await runCli(['--config', gw.configFile, '--json', 'status']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as { streams: { id: string; partner: string }[]; pool: PoolJson };
}

describe('ConnectionLimit across the pool', () => {
  it('admits a partner\'s stream on node 1 and refuses its second on node 2: the pool\'s limit', async () => {
    const first = await connect(node[0]!, 'a.test');
    expect(first.outcome).toBe('sasl-external');
    expect(await holders('a.test')).toEqual(['gw1']);

    const second = await connect(node[1]!, 'a.test');
    expect(second.outcome).toBe('refused:policy-violation');
    expect(second.error?.text).toBe('ConnectionLimit 1 of partner a.test reached across the pool (inbound streams)');
    expect(await metricValue(node[1]!.adminPort, 'gw_stream_refusals_total', { partner: 'a.test', rule: 'ConnectionLimit', condition: 'policy-violation', node: 'gw2' })).toBe(1);
    expect(await metricValue(node[1]!.adminPort, 'gw_pool_admissions_total', { result: 'refused', node: 'gw2' })).toBe(1);
    // Node 3 too; the first stream is untouched.
    expect((await connect(node[2]!, 'a.test')).outcome).toBe('refused:policy-violation');
    expect(first.peer.closedAlready).toBe(false);
    expect(await holders('a.test')).toEqual(['gw1']);
  });

  it('the same for a partner that authenticates with dialback', async () => {
    const first = await authenticate({ port: node[2]!.port, from: 'db.test' });
    expect(first.outcome).toBe('dialback');
    peers.push(first.peer);
    expect(await holders('db.test')).toEqual(['gw3']);
    const second = await authenticate({ port: node[0]!.port, from: 'db.test' });
    expect(second.outcome).toBe('refused:policy-violation');
    expect(second.error?.text).toBe('ConnectionLimit 1 of partner db.test reached across the pool (inbound streams)');
    expect(first.peer.closedAlready).toBe(false);
  });

  it('gives a closed stream\'s slot back at once', async () => {
    const up = await connect(node[1]!, 'closing.test');
    expect(up.outcome).toBe('sasl-external');
    expect(await holders('closing.test')).toEqual(['gw2']);
    const closedAt = Date.now();
    await up.peer.close();
    expect(await eventually(async () => (await holders('closing.test')).length === 0, 1000, 10), 'slot given back within 1 s').toBe(true);
    const freedMs = Date.now() - closedAt;
    console.log(`pool-limits: slot of a closed stream given back after ${freedMs} ms`);
    expect((await connect(node[2]!, 'closing.test')).outcome).toBe('sasl-external');
    expect(await holders('closing.test')).toEqual(['gw3']);
  });

  it('status --json against one node lists all three nodes and their streams; /metrics has the node label', async () => {
    const status = await statusJson(node[2]!);
    expect(status.pool).toMatchObject({ node: 'gw3', etcd: 'reachable' });
    expect(status.pool.nodes.map((n) => [n.name, n.self])).toEqual([['gw1', false], ['gw2', false], ['gw3', true]]);
    const streamsOf = (name: string) => status.pool.nodes.find((n) => n.name === name)!.streams.map((s) => `${s.partner} ${s.direction} ${s.slot}`);
    expect(streamsOf('gw1')).toEqual(['a.test inbound 0']);
    expect(streamsOf('gw2')).toEqual([]);
    expect(streamsOf('gw3')).toEqual(['closing.test inbound 0', 'db.test inbound 0']);
    // This node's entries name the streams as its own status does.
    for (const own of status.pool.nodes[2]!.streams) expect(status.streams.map((s) => s.id)).toContain(own.stream);

    const table = await runCli(['--config', node[0]!.configFile, 'status']);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/\npool: 3 nodes \(this is gw1\), 3 known for local shares\n/);
    expect(table.stdout).toMatch(/\ngw1\*\s+a\.test\s+inbound\s+a\.test\s+\S+\s+0\s/);
    expect(table.stdout).toMatch(/\ngw2\s+-/);

    const metrics = await (await fetch(`http://127.0.0.1:${node[1]!.adminPort}/metrics`, { headers: adminHeaders(node[1]!.adminPort) })).text();
    const samples = metrics.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
    expect(samples.length).toBeGreaterThan(20);
    expect(samples.filter((l) => !l.includes('node="gw2"'))).toEqual([]);
    expect(metrics).toMatch(/^gw_pool_online\{node="gw2"\} 1$/m);
  });

  it('SIGKILL of node 1 frees its slot within the lease TTL; node 2 then admits', async () => {
    expect(await holders('a.test')).toEqual(['gw1']);
    const killedAt = Date.now();
    await node[0]!.kill();
    expect(await eventually(async () => (await holders('a.test')).length === 0, LEASE_TTL_SECONDS * 1000 + 3000, 25)).toBe(true);
    const freedMs = Date.now() - killedAt;
    console.log(`pool-limits: SIGKILLed node's slot free after ${freedMs} ms (lease TTL ${LEASE_TTL_SECONDS} s)`);
    // etcd expires leases on its own clock, checked twice a second: the TTL plus a second at most.
    expect(freedMs).toBeLessThanOrEqual(LEASE_TTL_SECONDS * 1000 + 1000);
    expect((await connect(node[1]!, 'a.test')).outcome).toBe('sasl-external');
    expect(await holders('a.test')).toEqual(['gw2']);
    // A new gw1 for what follows: the pool has three nodes again.
    await node[0]!.close();
    await startNode(0);
    for (const gw of node) expect(await eventually(async () => (await metricValue(gw.adminPort, 'gw_pool_nodes', {})) === 3, 5000)).toBe(true);
  }, 30_000);

  it('killing one etcd member changes nothing', async () => {
    await etcd.kill(0);
    const admitted = await metricValue(node[2]!.adminPort, 'gw_pool_admissions_total', { result: 'admitted' });
    const up = await connect(node[2]!, 'member.test');
    expect(up.outcome).toBe('sasl-external');
    const refused = await connect(node[0]!, 'member.test');
    expect(refused.outcome).toBe('refused:policy-violation');
    expect(refused.error?.text).toBe('ConnectionLimit 1 of partner member.test reached across the pool (inbound streams)');
    // Decided by etcd, not on a local share.
    expect(await metricValue(node[2]!.adminPort, 'gw_pool_admissions_total', { result: 'admitted' })).toBe(admitted + 1);
    expect(await metricValue(node[2]!.adminPort, 'gw_pool_admissions_total', { result: 'local' })).toBe(0);
    // Leases are kept alive through the others: after twice the TTL every slot is still there
    // and every node still online.
    await new Promise((r) => setTimeout(r, 2 * LEASE_TTL_SECONDS * 1000));
    expect(await holders('member.test')).toEqual(['gw3']);
    expect(await holders('a.test')).toEqual(['gw2']);
    for (const gw of node) expect(await metricValue(gw.adminPort, 'gw_pool_online', {})).toBe(1);
  }, 30_000);

  it('all etcd stopped: streams keep flowing, a node admits within its local share, and registers it when etcd is back', async () => {
    // A stream in each direction before the outage: the answer to a ping goes out on the node's
    // outbound stream to the partner (admitted through the pool too).
    const flow = await connect(node[0]!, 'flow.test');
    expect(flow.outcome).toBe('sasl-external');
    ping(flow.peer, 'flow.test', 'before');
    await partnerServer.waitForStanza((el) => el.attrs.id === 'before');
    expect(await holders('flow.test', 'inbound')).toEqual(['gw1']);
    expect(await holders('flow.test', 'outbound')).toEqual(['gw1']);

    await etcd.stopAll();
    const sent = Date.now();
    ping(flow.peer, 'flow.test', 'during');
    const pong = await partnerServer.waitForStanza((el) => el.attrs.id === 'during');
    expect(pong.attrs).toMatchObject({ type: 'result', from: 'gw.test', to: 'flow.test' });
    // The hot path never waits on etcd.
    expect(Date.now() - sent).toBeLessThan(500);

    // Cut off once the lease is lost (etcd unanswered for twice the TTL, on the node's side;
    // until then what etcd cannot decide is refused: pool-admission.test.ts).
    expect(await eventually(async () => (await metricValue(node[1]!.adminPort, 'gw_pool_online', {})) === 0, 4 * LEASE_TTL_SECONDS * 1000, 100)).toBe(true);

    // L = 2 on 3 nodes: a share of 0.
    const two = await connect(node[1]!, 'two.test');
    expect(two.outcome).toBe('refused:policy-violation');
    expect(two.error?.text).toMatch(/^etcd cannot be reached \(this node holds no lease: .+\): this node's share of partner two\.test's ConnectionLimit 2 is floor\(2\/3 nodes\) = 0 \(inbound streams\), 0 in use$/);
    // L = 3: one stream, not two.
    const three = await connect(node[1]!, 'three.test');
    expect(three.outcome).toBe('sasl-external');
    const threeAgain = await connect(node[1]!, 'three.test');
    expect(threeAgain.outcome).toBe('refused:policy-violation');
    expect(threeAgain.error?.text).toMatch(/floor\(3\/3 nodes\) = 1 \(inbound streams\), 1 in use$/);
    expect(await metricValue(node[1]!.adminPort, 'gw_pool_admissions_total', { result: 'local' })).toBe(1);
    expect(await metricValue(node[1]!.adminPort, 'gw_pool_unregistered_streams', {})).toBe(1);
    // Status says etcd is away and shows this node, its unregistered stream included.
    const cut = await statusJson(node[1]!);
    expect(cut.pool).toMatchObject({ node: 'gw2', etcd: 'unreachable' });
    expect(cut.pool.nodes.map((n) => n.name)).toEqual(['gw2']);
    expect(cut.pool.nodes[0]!.streams.find((s) => s.partner === 'three.test')).toMatchObject({ slot: null });

    // Every node's lease lost on its side, then etcd returns.
    for (const gw of node) expect(await eventually(async () => (await metricValue(gw.adminPort, 'gw_pool_online', {})) === 0, 4 * LEASE_TTL_SECONDS * 1000, 100)).toBe(true);
    ping(flow.peer, 'flow.test', 'still');
    await partnerServer.waitForStanza((el) => el.attrs.id === 'still');
    await etcd.startAll();
    const back = Date.now();
    expect(await eventually(async () => (await holders('three.test')).join() === 'gw2', 15_000, 100), 'gw2 registers its three.test stream').toBe(true);
    console.log(`pool-limits: stream admitted on the local share registered ${Date.now() - back} ms after etcd was back`);
    // The streams up before the outage hold their slots again (under the nodes' new leases).
    expect(await eventually(async () => (await holders('flow.test')).join() === 'gw1' && (await holders('a.test')).join() === 'gw2', 10_000, 100)).toBe(true);
    expect(await eventually(async () => (await metricValue(node[1]!.adminPort, 'gw_pool_unregistered_streams', {})) === 0, 5000)).toBe(true);
    // And once every node is back in the pool, it decides again: the three.test stream counts, L = 3 allows two more.
    for (const gw of node) expect(await eventually(async () => (await metricValue(gw.adminPort, 'gw_pool_online', {})) === 1, 10_000, 100)).toBe(true);
    const admitted = await metricValue(node[2]!.adminPort, 'gw_pool_admissions_total', { result: 'admitted' });
    expect((await connect(node[2]!, 'three.test')).outcome).toBe('sasl-external');
    expect(await metricValue(node[2]!.adminPort, 'gw_pool_admissions_total', { result: 'admitted' })).toBe(admitted + 1);
    expect(flow.peer.closedAlready).toBe(false);
    expect(three.peer.closedAlready).toBe(false);
  }, 60_000);

  it('a ConnectionLimit lowered by a reload holds across the pool: one stream per node, one closes', async () => {
    const before = await slotsOf('three.test');
    expect(Object.values(before).map((h) => h.node).sort()).toEqual(['gw2', 'gw3']);
    // Each node has one three.test stream, within the new limit of 1 on its own; across the pool
    // the one above slot 0 moves there if it is free, else it closes.
    const lowered = PARTNERS.replace('- Identity: three.test\n  ConnectionLimit: 3', '- Identity: three.test\n  ConnectionLimit: 1');
    expect(lowered).not.toBe(PARTNERS);
    await client.put(`${PREFIX}partners`).value(lowered);
    await Promise.all(node.map((gw) => writeFileAtomic(join(gw.dir, 'partners.yaml'), lowered)));
    expect(await eventually(async () => Object.keys(await slotsOf('three.test')).join() === 'streams/three.test/inbound/0', 5000, 50), 'one three.test slot left').toBe(true);
    const closedOn = (await Promise.all(node.map((gw) => metricValue(gw.adminPort, 'gw_stream_refusals_total', { partner: 'three.test', rule: 'ConnectionLimit', condition: 'policy-violation' }))));
    // gw2 refused one earlier (its local share); the lowered limit closed one more stream somewhere.
    expect(closedOn.reduce((a, b) => a + b, 0)).toBe(2);
    const closing = node.map((gw) => gw.stderr()).join('').match(/"text":"ConnectionLimit of partner three\.test lowered to 1 \(inbound streams\)[^"]*"/g) ?? [];
    expect(closing).toHaveLength(1);
    expect(closing[0]).toContain('no slot below it is free across the pool');
  }, 30_000);
});

