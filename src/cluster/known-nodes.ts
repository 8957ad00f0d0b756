/**
 * How many nodes the pool has, as this node last saw it (docs/design.md section 11, "Cut off from
 * etcd"): the N of every local share floor(L / N). Kept fresh by a watch on `nodes/` (a node
 * that joins or whose lease expires changes it within a moment), and written to the node's state
 * directory, so that a node restarted while etcd is away still knows the size of its pool.
 *
 * A node that has never seen the pool (never reached etcd, no state file) knows no N: `count` is
 * null and its share of every limit is 0. Such a node has no partner list from etcd either, so
 * nothing is lost by it.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Watcher } from 'etcd3';
import type { Logger } from '../log.js';
import { writeFileAtomic } from '../policy/atomic-write.js';
import { poolKeys, type EtcdConnection } from './etcd.js';
import type { PoolMembership } from './membership.js';

/**
 * A watch etcd ended (cancelled it, e.g. because the revision it resumes from was compacted
 * during an outage) is re-created after this long, as the partner list's watch is
 * (central-source.ts).
 */
const REWATCH_DELAY_MS = 1_000;

interface KnownNodesFile {
  readonly knownNodes: number;
  readonly at: string;
}

export class KnownNodes {
  private known: number | null = null;
  private watcher: Watcher | null = null;
  private rewatch: NodeJS.Timeout | undefined;
  private closed = false;
  /** Writes of the state file, one after the other (the last value wins). */
  private writing: Promise<void> = Promise.resolve();

  private constructor(
    private readonly etcd: EtcdConnection,
    private readonly membership: PoolMembership,
    private readonly stateFile: string,
    private readonly log: Logger,
  ) {}

  /**
   * Starts from the membership when it joined, else from the state file; then watches `nodes/`.
   * Never throws: a missing or unreadable file only means N is not known yet.
   */
  static async start(etcd: EtcdConnection, membership: PoolMembership, stateFile: string, log: Logger): Promise<KnownNodes> {
    const nodes = new KnownNodes(etcd, membership, stateFile, log);
    if (membership.online) nodes.learn(membership.lastKnownNodes);
    else nodes.known = await readKnownNodes(stateFile);
    membership.on('online', () => nodes.learn(membership.lastKnownNodes));
    nodes.watch();
    return nodes;
  }

  /** N: the nodes registered when this node last reached etcd (itself included); null if it never did. */
  get count(): number | null {
    return this.known;
  }

  /** Asks etcd again (after a join, a node's arrival or departure); keeps the last value on failure. */
  refresh(): void {
    if (this.closed) return;
    this.membership.nodes().then(
      (nodes) => this.learn(nodes.length),
      () => {},
    );
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.rewatch);
    void this.watcher?.cancel().catch(() => {});
    this.watcher = null;
  }

  private learn(count: number): void {
    const n = Math.max(1, count);
    if (n === this.known) return;
    this.log.info('pool.nodes', { node: this.etcd.config.nodeName, knownNodes: n, before: this.known });
    this.known = n;
    const text = `${JSON.stringify({ knownNodes: n, at: new Date().toISOString() } satisfies KnownNodesFile)}\n`;
    this.writing = this.writing
      .then(() => mkdir(dirname(this.stateFile), { recursive: true }))
      .then(() => writeFileAtomic(this.stateFile, text))
      .catch((err: Error) => this.log.warn('pool.state-write-failed', { file: this.stateFile, error: err.message }));
  }

  private watch(): void {
    // watcher() connects in the background and reconnects after etcd comes back (etcd.ts sets a
    // short backoff); every event, and every (re)connection, is a reason to count again.
    const watcher = this.etcd.kv.watch().prefix(poolKeys.nodes).watcher();
    watcher.on('put', () => this.refresh());
    watcher.on('delete', () => this.refresh());
    watcher.on('connected', () => this.refresh());
    // An 'error' ends the watcher for good: etcd3 does not reconnect it. Without a new one, N
    // would change only on this node's own joins, and nodes added meanwhile would leave it too
    // small, so that the local shares floor(L / N) of the next outage add up to more than L
    // (docs/design.md section 11, "Cut off from etcd"). So it is re-created after a moment; its
    // 'connected' counts again, which also catches up with what changed while none was watching.
    watcher.on('error', (err: Error) => {
      this.log.warn('pool.nodes-watch-ended', { node: this.etcd.config.nodeName, error: err.message.split('\n')[0], retryInMs: REWATCH_DELAY_MS });
      void watcher.cancel().catch(() => {});
      if (this.closed || this.watcher !== watcher) return;
      this.watcher = null;
      this.rewatch = setTimeout(() => {
        if (!this.closed) this.watch();
      }, REWATCH_DELAY_MS);
      this.rewatch.unref();
    });
    this.watcher = watcher;
  }
}

async function readKnownNodes(file: string): Promise<number | null> {
  try {
    const parsed = JSON.parse(await readFile(file, 'utf8')) as Partial<KnownNodesFile>;
    return Number.isInteger(parsed.knownNodes) && parsed.knownNodes! >= 1 ? parsed.knownNodes! : null;
  } catch {
    return null;
  }
}
