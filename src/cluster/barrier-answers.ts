/**
 * Answers to another node's delivery barriers, passed on through etcd (docs/design.md section 11,
 * "Delivery barriers"; the barriers themselves: src/routing/delivery-barriers.ts).
 *
 * A node sends a XEP-0199 ping as a barrier on its stream to a peer; the peer answers on its own
 * stream back (RFC 6120 section 2.5), which DNS may send to another node of the pool. That node
 * recognises the id as the pool's and names its issuer (src/cluster/barrier-ids.ts), consumes the
 * answer and hands it here; here it is queued and written, in batches, to the issuer's etcd key
 * `barrier-answers/<issuer>/<this node>` under this node's lease. Every node watches
 * `barrier-answers/<itself>/` and gives each id it reads to its DeliveryBarriers, as if the answer
 * had arrived on its own stream.
 *
 * Asynchronous on both sides: the stanza path only adds an id to a set. The rate is bounded: at
 * most one write per issuer every BATCH_MS (barriers are one per `queues.confirmEveryStanzas`
 * stanzas or `queues.confirmIntervalMs` per link anyway), and at most MAX_QUEUED ids wait; what
 * does not fit, or cannot be written (etcd away, no lease), is dropped with one warning per
 * outage: the issuer's barrier then times out after `queues.confirmTimeoutMs`, counted in its
 * gw_relay_unconfirmed_total, as any unanswered barrier is.
 *
 * Why one overwritten key per pair of nodes rather than one key per answer: etcd's watch delivers
 * every revision's put (in order, resuming after the last revision seen when its stream breaks),
 * so the issuer reads each batch without anyone deleting anything, and etcd holds at most one key
 * per pair of live nodes (the forwarder's lease removes its keys when it stops or dies).
 */
import type { Watcher } from 'etcd3';
import type { Logger } from '../log.js';
import type { BarrierPool } from '../routing/delivery-barriers.js';
import { PoolBarrierIds } from './barrier-ids.js';
import { poolKeys } from './etcd.js';
import type { PoolNode } from './pool-node.js';
import { startWatch } from './watch-start.js';

/** How long answers gather before one write per issuer. */
export const BATCH_MS = 20;
/** At most this many ids wait to be written (a peer sending made-up answers cannot grow memory or etcd). */
export const MAX_QUEUED = 1_000;
/** A batch bigger than this (bytes of JSON) read from etcd is ignored: no node writes one. */
const MAX_BATCH_BYTES = 256 * 1024;
/** How soon a watch that could not start is tried again. */
const WATCH_RETRY_MS = 1_000;

/** Who takes the answers this node's watch reads (its DeliveryBarriers). */
export interface ForwardedAnswerSink {
  answerForwarded(id: string): void;
}

export class PoolBarrierAnswers implements BarrierPool {
  private readonly ids: PoolBarrierIds;
  private readonly queued = new Map<string, Set<string>>();
  private queuedCount = 0;
  private flushTimer: NodeJS.Timeout | undefined;
  private flushing = false;
  private watcher: Watcher | null = null;
  private watchRetry: NodeJS.Timeout | undefined;
  private sink: ForwardedAnswerSink | null = null;
  private closed = false;
  /** Writing failed: said once until a write succeeds again. */
  private failing = false;
  private watchFailing = false;
  /** Counts, for logs and tests: ids written for other nodes, dropped unwritten, read for this node. */
  readonly counts = { forwarded: 0, dropped: 0, received: 0 };

  constructor(
    private readonly pool: PoolNode,
    /** The pool's dialback secret (src/cluster/shared-secret.ts), from which ids are derived. */
    secret: () => string,
    private readonly log: Logger,
  ) {
    this.ids = new PoolBarrierIds(pool.name, secret);
  }

  get nodeName(): string {
    return this.pool.name;
  }

  ownPrefix(): string {
    return this.ids.ownPrefix();
  }

  issuerOf(id: string): string | null {
    return this.ids.issuerOf(id);
  }

  /** Starts watching this node's answers (in the background: a node cut off from etcd starts anyway). */
  start(sink: ForwardedAnswerSink): void {
    this.sink = sink;
    void this.startWatch();
  }

  /** On the stanza path: only queues the id. */
  forward(issuer: string, id: string): void {
    if (this.closed) return;
    let ids = this.queued.get(issuer);
    if (ids?.has(id)) return;
    if (this.queuedCount >= MAX_QUEUED) {
      this.dropped(1, `more than ${MAX_QUEUED} answers waiting to be written`);
      return;
    }
    if (!ids) this.queued.set(issuer, (ids = new Set()));
    ids.add(id);
    this.queuedCount++;
    this.schedule();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.flushTimer);
    clearTimeout(this.watchRetry);
    this.queued.clear();
    this.queuedCount = 0;
    await this.watcher?.cancel().catch(() => {});
    this.watcher = null;
  }

  private schedule(): void {
    if (this.flushTimer !== undefined || this.flushing) return;
    this.flushTimer = setTimeout(() => void this.flush(), BATCH_MS);
    this.flushTimer.unref();
  }

  /** One put per issuer, under this node's lease; one write at a time. */
  private async flush(): Promise<void> {
    this.flushTimer = undefined;
    const batch = [...this.queued].map(([issuer, ids]) => [issuer, [...ids]] as const);
    const count = this.queuedCount;
    this.queued.clear();
    this.queuedCount = 0;
    if (this.closed || count === 0) return;
    const lease = this.pool.membership.currentLease;
    if (lease === null) {
      this.dropped(count, 'this node holds no lease (etcd cannot be reached)');
      return;
    }
    this.flushing = true;
    try {
      const leaseId = await lease.grant();
      await Promise.all(batch.map(([issuer, ids]) =>
        this.pool.etcd.kv.put(poolKeys.barrierAnswers(issuer, this.pool.name)).value(JSON.stringify(ids)).lease(leaseId)));
      this.counts.forwarded += count;
      if (this.failing) this.log.info('cluster.barrier-answers-resumed', { node: this.pool.name });
      this.failing = false;
    } catch (err) {
      this.dropped(count, (err as Error).message);
    } finally {
      this.flushing = false;
      if (this.queuedCount > 0) this.schedule();
    }
  }

  private dropped(count: number, why: string): void {
    this.counts.dropped += count;
    if (this.failing) return;
    this.failing = true;
    this.log.warn('cluster.barrier-answers-failed', {
      node: this.pool.name,
      answers: count,
      error: why,
      note: 'answers to other nodes\' delivery barriers are not passed on: those barriers time out (queues.confirmTimeoutMs) and their stanzas count in gw_relay_unconfirmed_total there',
    });
  }

  private async startWatch(): Promise<void> {
    if (this.closed || this.watcher) return;
    try {
      const watcher = await startWatch(this.pool.etcd.kv.watch().prefix(poolKeys.barrierAnswersTo(this.pool.name)));
      if (this.closed) {
        await watcher.cancel();
        return;
      }
      watcher.on('put', (kv) => this.received(kv.value));
      watcher.on('error', (err: Error) => {
        // The watch cannot resume by itself: a new one starts (answers written meanwhile are missed: those barriers time out).
        if (this.watcher === watcher) this.watcher = null;
        this.log.warn('cluster.barrier-answers-watch-failed', { node: this.pool.name, error: err.message });
        void watcher.cancel().catch(() => {});
        this.retryWatch();
      });
      this.watcher = watcher;
      if (this.watchFailing) this.log.info('cluster.barrier-answers-watching', { node: this.pool.name });
      this.watchFailing = false;
    } catch (err) {
      if (!this.watchFailing) this.log.warn('cluster.barrier-answers-watch-failed', { node: this.pool.name, error: (err as Error).message, note: 'tried again every second' });
      this.watchFailing = true;
      this.retryWatch();
    }
  }

  private retryWatch(): void {
    if (this.closed) return;
    clearTimeout(this.watchRetry);
    this.watchRetry = setTimeout(() => void this.startWatch(), WATCH_RETRY_MS);
    this.watchRetry.unref();
  }

  /** A batch another node wrote for this one: every id goes to DeliveryBarriers (unknown ids are ignored there). */
  private received(value: Buffer): void {
    if (this.sink === null || value.length > MAX_BATCH_BYTES) return;
    let ids: unknown;
    try {
      ids = JSON.parse(value.toString());
    } catch {
      ids = null;
    }
    if (!Array.isArray(ids)) {
      this.log.warn('cluster.barrier-answers-invalid', { node: this.pool.name, note: 'not a JSON array of ids: ignored' });
      return;
    }
    for (const id of ids) {
      if (typeof id !== 'string') continue;
      this.counts.received++;
      this.sink.answerForwarded(id);
    }
  }
}
