/**
 * The set-up the in-process pool tests share (test/integration/pool-barriers.test.ts,
 * pool-shared.test.ts): a real three-member etcd on 127.0.0.81-.83 (etcd-cluster.ts, with the
 * file's own client/peer ports), one scripted internal server (corp.test), one scripted
 * dialback-only partner server for every partner domain (all PublicUnverified), and gateway
 * nodes started in this process (test-gateway.ts) with a `cluster:` section, no dialback secret
 * of their own (the pool's comes from etcd) and an internal link to corp.test. Everything but
 * etcd is on 127.0.0.1 with ports chosen by the OS.
 *
 * `poolTestNodes()` only makes the helpers; the test file calls `setUp()` in its beforeAll and
 * `tearDown()` in its afterAll.
 */
import { rm } from 'node:fs/promises';
import { expect } from 'vitest';
import { startEtcdCluster, type EtcdCluster } from './etcd-cluster.js';
import { FakePartnerServer, type FakePartnerOptions } from './fake-partner-server.js';
import { attempt, verifyWithPeerSecret } from './partner-attempt.js';
import { ScriptedPeer } from './scripted-peer.js';
import { prepareGatewayDir, startPreparedGateway, testPki, type TestGateway, type TestPki } from './test-gateway.js';

/** The etcd prefix every node of the pool uses (the default `cluster.etcd.prefix`). */
export const PREFIX = '/xmpp-gateway/';

export interface PoolTestOptions {
  /** This file's etcd client and peer ports (test/interop/README.md, "Addresses", block 8x). */
  clientPort: number;
  peerPort: number;
  /** The partner domains, all served by the one partner server (the first is its `domain`). */
  partnerDomains: [string, ...string[]];
  /** How the partner server answers a node's db:result (FakePartnerServer `acceptResult`). */
  acceptResult: NonNullable<FakePartnerOptions['acceptResult']>;
  /** More keys of each node's `queues` mapping, after the short reconnect delays. */
  queues?: string;
  /** The nodes `setUp` starts, one after the other (the first creates the pool's dialback secret, the others read it). */
  nodes: string[];
}

export interface PoolTestNodes {
  /** Starts etcd (with the partner list in it), the two scripted servers and `nodes`. */
  setUp(): Promise<{ etcd: EtcdCluster; internal: FakePartnerServer; partner: FakePartnerServer }>;
  /** Closes every peer, node, server and etcd, and removes the nodes' directories. */
  tearDown(): Promise<void>;
  /** The running node `name` (throws if it is not running). */
  node(name: string): TestGateway;
  /** Starts node `name` (again: on the same directory, its state/ included). */
  start(name: string): Promise<TestGateway>;
  /** The internal server's stream to `name`'s internal listener, speaking to partner domain `to`. */
  fromInside(name: string, to: string): Promise<ScriptedPeer>;
  /** A partner server's stream from `from` to node `name` (dialback; the node calls the partner server back). */
  fromPartner(name: string, from: string): Promise<ScriptedPeer>;
}

/** partners.yaml (and the pool's partner list in etcd): each domain dialback-only, PublicUnverified. */
const partnersYaml = (domains: readonly string[]): string =>
  domains.map((d) => `- Identity: ${d}\n  TlsNegotiation: NotSupported\n  SaslNegotiation: NotSupported\n  PartnerType: PublicUnverified\n`).join('');

/** A chat message from `from` to `to`; `id` is also its body. */
export const chat = (from: string, to: string, id: string): string =>
  `<message from='${from}' to='${to}' type='chat' id='${id}'><body>${id}</body></message>`;

export function poolTestNodes(opts: PoolTestOptions): PoolTestNodes {
  const partners = partnersYaml(opts.partnerDomains);
  let pki: TestPki;
  let etcd: EtcdCluster | undefined;
  let internal: FakePartnerServer | undefined;
  let partner: FakePartnerServer | undefined;
  const nodes = new Map<string, TestGateway>();
  /** Each node's directory, kept across its restarts. */
  const dirs = new Map<string, Awaited<ReturnType<typeof prepareGatewayDir>>>();
  const peers: ScriptedPeer[] = [];

  const node = (name: string): TestGateway => {
    const n = nodes.get(name);
    if (!n) throw new Error(`node ${name} is not running`);
    return n;
  };

  const nodeOptions = (name: string) => ({
    pki,
    localDomains: ['corp.test'],
    partners,
    dialbackSecret: null,
    routes: Object.fromEntries(opts.partnerDomains.map((d) => [d, `127.0.0.1:${partner!.port}`])),
    config: [
      'cluster:',
      `  nodeName: ${name}`,
      `  etcd: { endpoints: [${etcd!.endpoints.join(', ')}], prefix: ${PREFIX} }`,
      '  leaseTtlSeconds: 4',
      'internal:',
      `  server: { host: 127.0.0.1, port: ${internal!.port} }`,
      '  listen: { host: 127.0.0.1, port: 0 }',
      `queues: { reconnectMinMs: 100, reconnectMaxMs: 400${opts.queues ? `, ${opts.queues}` : ''} }`,
    ].join('\n'),
  });

  const start = async (name: string): Promise<TestGateway> => {
    let prepared = dirs.get(name);
    if (!prepared) {
      prepared = await prepareGatewayDir(nodeOptions(name));
      dirs.set(name, prepared);
    }
    const started = await startPreparedGateway(prepared, { keepDir: true });
    nodes.set(name, started);
    return started;
  };

  return {
    node,
    start,
    async fromInside(name, to) {
      const peer = await ScriptedPeer.connect(node(name).gateway.internalListener!.port);
      peers.push(peer);
      const r = await peer.negotiate({ from: 'corp.test', to, dialback: { key: 'k'.repeat(64) } });
      expect(r.dialback?.type).toBe('valid');
      return peer;
    },
    async fromPartner(name, from) {
      const a = await attempt({ port: node(name).port, from, to: 'corp.test', useTls: false });
      expect(a.outcome).toBe('dialback');
      peers.push(a.peer);
      return a.peer;
    },
    async setUp() {
      pki = testPki();
      etcd = await startEtcdCluster({ ips: ['127.0.0.81', '127.0.0.82', '127.0.0.83'], clientPort: opts.clientPort, peerPort: opts.peerPort });
      // The partner list: in etcd (the pool's), and in each node's partners.yaml (until the nodes read etcd's).
      await etcd.client().put(`${PREFIX}partners`).value(partners);
      internal = await FakePartnerServer.start({ domain: 'corp.test', tls: 'none', sasl: false, dialback: true, answerVerify: () => 'valid', strictStanzas: false });
      const [domain, ...extraDomains] = opts.partnerDomains;
      partner = await FakePartnerServer.start({
        domain,
        extraDomains,
        tls: 'none',
        sasl: false,
        dialback: true,
        strictStanzas: false,
        answerVerify: verifyWithPeerSecret,
        acceptResult: opts.acceptResult,
      });
      for (const name of opts.nodes) await start(name);
      return { etcd, internal, partner };
    },
    async tearDown() {
      for (const p of peers) p.destroy();
      for (const n of nodes.values()) await n.close().catch(() => {});
      await partner?.close();
      await internal?.close();
      await etcd?.close();
      for (const d of dirs.values()) await rm(d.dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
    },
  };
}
