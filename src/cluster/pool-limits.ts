/**
 * The pool's limits put together for gateway.ts (docs/design.md section 11): the pool's size as
 * this node sees it (known-nodes.ts, kept in `<state dir>/pool-nodes.json`), the admission of
 * partner streams across the pool (pool-admission.ts) with its metrics, and the pool's status.
 */
import { dirname, join } from 'node:path';
import type { PoolMetrics, PoolMetricsView } from '../admin/metrics.js';
import type { GatewayConfig } from '../config/schema.js';
import type { Logger } from '../log.js';
import { KnownNodes } from './known-nodes.js';
import { PoolAdmission } from './pool-admission.js';
import type { PoolNode } from './pool-node.js';
import { poolStatus, type PoolStatus } from './pool-status.js';

export interface PoolLimitsService {
  readonly admission: PoolAdmission;
  readonly knownNodes: KnownNodes;
  status(): Promise<PoolStatus>;
  /** Stops timers and the watch; the slots go with the lease (PoolNode.close revokes it). */
  close(): void;
}

/** `attachMetrics`: registers the pool's metrics on the gateway's registry (GatewayMetrics.attachPool). */
export async function startPoolLimits(pool: PoolNode, config: GatewayConfig, log: Logger, attachMetrics: (view: PoolMetricsView) => PoolMetrics): Promise<PoolLimitsService> {
  const knownNodes = await KnownNodes.start(pool.etcd, pool.membership, join(dirname(config.localStore), 'pool-nodes.json'), log);
  let metrics: PoolMetrics | null = null;
  const admission = new PoolAdmission(pool, knownNodes, log, {
    connectionLimit: config.connectionLimit,
    observe: (result, seconds) => metrics?.admission(result, seconds),
  });
  metrics = attachMetrics({
    get online() {
      return admission.online;
    },
    get knownNodes() {
      return knownNodes.count;
    },
    get unregistered() {
      return admission.unregistered;
    },
  });
  return {
    admission,
    knownNodes,
    status: () => poolStatus(pool, admission, knownNodes),
    close() {
      admission.close();
      knownNodes.close();
    },
  };
}
