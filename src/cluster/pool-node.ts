/**
 * One node of a gateway pool (docs/design.md section 11): the etcd connection and the node's
 * membership, started before anything that shares state through them (the partner list, the
 * dialback secret, approvals, ConnectionLimit admission) and closed after them.
 */
import type { ClusterConfig } from '../config/schema.js';
import type { Logger } from '../log.js';
import { connectEtcd, type EtcdConnection } from './etcd.js';
import { PoolMembership } from './membership.js';

export class PoolNode {
  private constructor(
    readonly config: ClusterConfig,
    readonly etcd: EtcdConnection,
    readonly membership: PoolMembership,
  ) {}

  /** Connects and joins; a node that cannot reach etcd starts anyway (offline) and keeps trying. */
  static async start(config: ClusterConfig, log: Logger): Promise<PoolNode> {
    const etcd = connectEtcd(config);
    const membership = new PoolMembership(etcd, log);
    await membership.start();
    return new PoolNode(config, etcd, membership);
  }

  get name(): string {
    return this.config.nodeName;
  }

  /** Leaves the pool (its lease revoked: its registrations go at once) and closes the client. */
  async close(): Promise<void> {
    await this.membership.close();
    this.etcd.close();
  }
}
