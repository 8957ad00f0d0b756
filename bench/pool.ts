/**
 * Section 8 of the bench (bench/README.md): the gateway pool (issue 11; docs/design.md section 11).
 * A real 3-member etcd (Debian's etcd, test/helpers/etcd-cluster.ts) on 127.0.0.95-.97 (client
 * port 42379, peer port 42380: the other bench processes on those addresses use 25269 and OS
 * ports), and two pool nodes as their own processes on 127.0.0.99: `bench1`, the one measured,
 * configured exactly like the single relay gateway of section 1 (same partner record, same
 * limits) plus the `cluster` section and no dialbackSecret of its own; and `bench2`, an idle
 * second node, so that bench1 is one node of a pool and not a pool of one. bench1 relays to its
 * own fake internal server (a ReplySink, like section 1's), which answers its delivery barriers on
 * its own stream back to bench1 (a shared one would answer the single relay's stream instead).
 */
import { startEtcdCluster, type EtcdCluster } from '../test/helpers/etcd-cluster.js';
import { startGatewayProcess, type GatewayProcess } from './gateway-process.js';

export const POOL_ETCD = { ips: ['127.0.0.95', '127.0.0.96', '127.0.0.97'], clientPort: 42379, peerPort: 42380 } as const;
export const POOL_PREFIX = '/xmpp-gateway/';
/** The measured node: s2s listener, internal listener, admin, probe. */
export const GW_POOL = { ip: '127.0.0.99', port: 25269, internalPort: 25270, adminPort: 25280, probePort: 25281 } as const;
/** The idle second node. */
const GW_POOL_PEER = { ip: '127.0.0.99', port: 25279, internalPort: 25271 } as const;

export interface BenchPoolOptions {
  domain: string;
  certFile: string;
  keyFile: string;
  caFile: string;
  dnsServer: string;
  /** partners.yaml text: the pool's list in etcd, and each node's partners.yaml. */
  partners: string;
  /** The nodes' internal server (the measured node's own fake internal server; bench2 sends it nothing). */
  internal: { host: string; port: number };
  /** More gateway.yaml lines, as for the single relay (limits, queues). */
  extraConfig: string;
  cpuProfDir?: string;
}

export interface BenchPool {
  readonly etcd: EtcdCluster;
  /** The measured node. */
  readonly node: GatewayProcess;
  /** Keys under `streams/` now: ConnectionLimit slots the pool holds in etcd (docs/design.md section 11). */
  streamSlots(): Promise<number>;
  stop(): Promise<void>;
}

export async function startBenchPool(o: BenchPoolOptions): Promise<BenchPool> {
  const etcd = await startEtcdCluster({ ips: [...POOL_ETCD.ips], clientPort: POOL_ETCD.clientPort, peerPort: POOL_ETCD.peerPort });
  const client = etcd.client();
  const nodes: GatewayProcess[] = [];
  try {
    await client.put(`${POOL_PREFIX}partners`).value(o.partners);
    const cluster = (name: string): string => [
      'cluster:',
      `  nodeName: ${name}`,
      `  etcd: { endpoints: [${etcd.endpoints.join(', ')}], prefix: ${POOL_PREFIX} }`,
      '  leaseTtlSeconds: 10',
    ].join('\n');
    const internal = (server: { host: string; port: number }, port: number): string =>
      ['internal:', `  server: { host: ${server.host}, port: ${server.port} }`, `  listen: { host: ${GW_POOL.ip}, port: ${port} }`].join('\n');
    const common = { domain: o.domain, ip: GW_POOL.ip, certFile: o.certFile, keyFile: o.keyFile, caFile: o.caFile, dnsServer: o.dnsServer, partners: o.partners };
    // bench1 first: it creates the pool's dialback secret; bench2 joins.
    nodes.push(await startGatewayProcess({
      ...common, port: GW_POOL.port, adminPort: GW_POOL.adminPort, probePort: GW_POOL.probePort,
      extraConfig: [cluster('bench1'), internal(o.internal, GW_POOL.internalPort), o.extraConfig].join('\n'),
      ...(o.cpuProfDir !== undefined ? { cpuProfDir: o.cpuProfDir } : {}),
    }));
    nodes.push(await startGatewayProcess({
      ...common, port: GW_POOL_PEER.port,
      extraConfig: [cluster('bench2'), internal(o.internal, GW_POOL_PEER.internalPort), o.extraConfig].join('\n'),
    }));
  } catch (err) {
    await Promise.allSettled(nodes.map((n) => n.stop()));
    await etcd.close();
    throw err;
  }
  return {
    etcd,
    node: nodes[0]!,
    streamSlots: () => client.getAll().prefix(`${POOL_PREFIX}streams/`).count(),
    async stop() {
      await Promise.allSettled(nodes.map((n) => n.stop()));
      await etcd.close();
    },
  };
}
