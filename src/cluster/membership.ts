/**
 * This node's place in the pool (issue 11): a lease of `cluster.leaseTtlSeconds`, kept alive,
 * under which the node registers itself (`nodes/<name>`) and everything that must die with it
 * (its streams' ConnectionLimit slots). A node that is SIGKILLed stops renewing; etcd deletes
 * its keys when the TTL runs out, so its share of every limit is back within one TTL.
 *
 * When the lease is lost (etcd unreachable for longer than the TTL, or the lease revoked) the
 * node is *offline*. The node decides that by its own clock: a lease whose last renewal was
 * answered `leaseTtlSeconds` ago has expired in etcd too (etcd counts the TTL from the renewal it
 * received, which is earlier), so its keys are gone and other nodes may take their slots. The
 * etcd3 client only reports a loss after twice the TTL, which would leave a cut-off node
 * refusing new streams (it neither gets etcd's decision nor knows it is cut off) for that long.
 * Offline, it it says so ('offline'), keeps serving, and tries for a new lease every
 * second; with one it registers again and says 'online' with the new lease, so that whoever
 * holds keys under the old one can put them back.
 */
import { EventEmitter } from 'node:events';
import type { Lease } from 'etcd3';
import type { Logger } from '../log.js';
import { poolKeys, type EtcdConnection } from './etcd.js';

/** What a node publishes about itself under `nodes/<name>`. */
export interface PoolNodeInfo {
  readonly name: string;
  readonly pid: number;
  readonly startedAt: string;
}

export interface MembershipEvents {
  online: [lease: Lease];
  offline: [error: Error];
}

const REGRANT_INTERVAL_MS = 1_000;

export class PoolMembership extends EventEmitter<MembershipEvents> {
  private lease: Lease | null = null;
  private regrant: NodeJS.Timeout | undefined;
  /** Fires `leaseTtlSeconds` after the last answered renewal: the lease has expired in etcd. */
  private expiry: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly info: PoolNodeInfo;
  /** How many nodes were registered the last time this node could ask etcd (itself included). */
  lastKnownNodes = 1;

  constructor(private readonly etcd: EtcdConnection, private readonly log: Logger) {
    super();
    this.info = { name: etcd.config.nodeName, pid: process.pid, startedAt: new Date().toISOString() };
  }

  get nodeName(): string {
    return this.info.name;
  }

  /** The live lease, or null while offline. */
  get currentLease(): Lease | null {
    return this.lease;
  }

  get online(): boolean {
    return this.lease !== null;
  }

  /**
   * Tries once to join; never throws: a node that cannot reach etcd starts offline and keeps trying.
   * Resolves true when it joined.
   */
  async start(): Promise<boolean> {
    if (await this.join()) return true;
    this.scheduleRegrant();
    return false;
  }

  /** The nodes registered now (from etcd); updates lastKnownNodes. Throws when etcd cannot be reached. */
  async nodes(): Promise<PoolNodeInfo[]> {
    const all = await this.etcd.kv.getAll().prefix(poolKeys.nodes).strings();
    const nodes = Object.values(all).map((v) => JSON.parse(v) as PoolNodeInfo);
    this.lastKnownNodes = Math.max(1, nodes.length);
    return nodes.sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Leaves the pool: the lease is revoked, so this node's keys go at once (not after the TTL). */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.regrant);
    clearTimeout(this.expiry);
    const lease = this.lease;
    this.lease = null;
    await lease?.revoke().catch(() => {});
  }

  private async join(): Promise<boolean> {
    const lease = this.etcd.client.lease(this.etcd.config.leaseTtlSeconds);
    try {
      const grantedAt = Date.now();
      const id = await lease.grant();
      this.armExpiry(lease, grantedAt);
      await this.etcd.kv.put(poolKeys.node(this.info.name)).value(JSON.stringify(this.info)).lease(id);
      await this.nodes();
    } catch (err) {
      lease.release();
      this.log.warn('cluster.etcd-unreachable', { node: this.info.name, error: (err as Error).message });
      return false;
    }
    if (this.closed) {
      await lease.revoke().catch(() => {});
      return false;
    }
    lease.on('lost', (err) => this.lost(lease, err));
    // etcd counts the TTL from when it received a renewal, so the clock restarts from when the
    // answered renewal was sent (the last 'keepaliveFired'), never later.
    let firedAt = Date.now();
    lease.on('keepaliveFired', () => (firedAt = Date.now()));
    lease.on('keepaliveSucceeded', () => this.armExpiry(lease, firedAt));
    this.lease = lease;
    this.log.info('cluster.joined', { node: this.info.name, nodes: this.lastKnownNodes, leaseTtlSeconds: this.etcd.config.leaseTtlSeconds });
    this.emit('online', lease);
    return true;
  }

  /** (Re)starts the clock of a lease renewed (or granted) by a request sent at `sentAt`. */
  private armExpiry(lease: Lease, sentAt: number): void {
    clearTimeout(this.expiry);
    const ttlMs = this.etcd.config.leaseTtlSeconds * 1000;
    this.expiry = setTimeout(() => {
      this.lost(lease, new Error(`no renewal of the lease answered for leaseTtlSeconds (${this.etcd.config.leaseTtlSeconds} s): it has expired in etcd`));
    }, Math.max(0, sentAt + ttlMs - Date.now()));
    this.expiry.unref();
  }

  private lost(lease: Lease, err: Error): void {
    if (this.lease !== lease || this.closed) return;
    clearTimeout(this.expiry);
    // The old lease is dead in etcd: stop renewing it (a new one is granted on rejoining).
    lease.release();
    this.lease = null;
    this.log.warn('cluster.lease-lost', { node: this.info.name, error: err.message, knownNodes: this.lastKnownNodes });
    this.emit('offline', err);
    this.scheduleRegrant();
  }

  private scheduleRegrant(): void {
    if (this.closed) return;
    clearTimeout(this.regrant);
    this.regrant = setTimeout(() => {
      void this.join().then((ok) => {
        if (!ok) this.scheduleRegrant();
      });
    }, REGRANT_INTERVAL_MS);
    this.regrant.unref();
  }
}
