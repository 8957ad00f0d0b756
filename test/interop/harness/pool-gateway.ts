/**
 * Gateway pool nodes for the interop tests (issue 11; docs/design.md section 11): each node is a
 * relay gateway (relay-gateway.ts) for the internal server's domain, with a `cluster` section
 * naming its etcd, no dialbackSecret of its own (the pool shares etcd's), its s2s listener on its
 * own loopback address (port 5269 by default, so one SRV record can list every node), and its
 * internal listener and DNS view on that address too (ports chosen by the OS).
 *
 * Every node presents the same certificate for the local domain, as the nodes of a real pool
 * behind one SRV record do.
 */
import { rm } from 'node:fs/promises';
import type { CertificateAndKey, IssueOptions } from '../../../src/tls/cert-factory.js';
import { prepareGatewayDir, startPreparedGateway, type TestGateway, type TestPki } from '../../helpers/test-gateway.js';
import { assertLoopback } from './common.js';
import type { PeerCerts } from './peer-certs.js';
import { peerPki } from './relay-gateway.js';

export interface PoolNodeOptions {
  certs: PeerCerts;
  /** '127.0.0.1:PORT' of the harness DNS, through which the node finds the partners. */
  dnsServer: string;
  /** `cluster.nodeName`. */
  name: string;
  /** The node's own loopback address: s2s listener, internal listener, DNS view. */
  ip: string;
  /** The s2s listener's port (default 5269). */
  port?: number;
  /** The internal server (its domain becomes the node's local domain). */
  internal: { domain: string; ip: string; s2sPort: number };
  /** partners.yaml text (the same as the pool's list in etcd). */
  partnerRecords: string;
  etcd: { endpoints: readonly string[]; prefix: string };
  leaseTtlSeconds?: number;
  /** `queues:` settings (flow-style YAML body). */
  queues?: string;
}

/** A started node, and how to stop it and start it again on the same directory (its state/ kept). */
export interface PoolGatewayNode {
  readonly name: string;
  readonly ip: string;
  /** The running gateway (the last one started). */
  readonly current: TestGateway;
  readonly running: boolean;
  /** Stops the node (gracefully: streams closed with system-shutdown); its directory stays. */
  stop(): Promise<void>;
  /** Starts it again (stopping it first if it runs). */
  start(): Promise<TestGateway>;
  /** Stops the node and removes its directory. */
  close(): Promise<void>;
}

const samePki = new WeakMap<PeerCerts, TestPki>();

/** peerPki, but one certificate per domain, whoever asks: the pool's nodes present the same one. */
function poolPki(certs: PeerCerts): TestPki {
  let pki = samePki.get(certs);
  if (!pki) {
    const base = peerPki(certs);
    const issued = new Map<string, CertificateAndKey>();
    pki = {
      ca: base.ca,
      otherCa: base.otherCa,
      issue: (opts: IssueOptions, issuer?: CertificateAndKey) => {
        if (issuer !== undefined) return base.issue(opts, issuer);
        let cert = issued.get(opts.domain);
        if (!cert) issued.set(opts.domain, (cert = base.issue(opts)));
        return cert;
      },
    };
    samePki.set(certs, pki);
  }
  return pki;
}

export async function startPoolNode(o: PoolNodeOptions): Promise<PoolGatewayNode> {
  assertLoopback(o.ip, `pool node ${o.name}`);
  const prepared = await prepareGatewayDir({
    pki: poolPki(o.certs),
    localDomains: [o.internal.domain],
    dnsServer: o.dnsServer,
    partners: o.partnerRecords,
    listen: { host: o.ip, port: o.port ?? 5269 },
    dialbackSecret: null,
    config: [
      'cluster:',
      `  nodeName: ${o.name}`,
      `  etcd: { endpoints: [${o.etcd.endpoints.join(', ')}], prefix: ${o.etcd.prefix} }`,
      `  leaseTtlSeconds: ${o.leaseTtlSeconds ?? 4}`,
      'internal:',
      `  server: { host: ${o.internal.ip}, port: ${o.internal.s2sPort} }`,
      `  listen: { host: ${o.ip}, port: 0 }`,
      `  dns: { host: ${o.ip}, port: 0 }`,
      ...(o.queues ? [`queues: { ${o.queues} }`] : []),
    ].join('\n'),
  });
  let current = await startPreparedGateway(prepared, { keepDir: true });
  let running = true;
  const node: PoolGatewayNode = {
    name: o.name,
    ip: o.ip,
    get current() {
      return current;
    },
    get running() {
      return running;
    },
    async stop() {
      if (!running) return;
      running = false;
      await current.close();
    },
    async start() {
      await node.stop();
      current = await startPreparedGateway(prepared, { keepDir: true });
      running = true;
      return current;
    },
    async close() {
      await node.stop();
      await rm(prepared.dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
    },
  };
  return node;
}
