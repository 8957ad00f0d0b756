/**
 * Trust-tier approvals shared by the pool (docs/design.md sections 5 step 4 and 11; issue 11: "a
 * local user's first message through node A opens the gate on node B").
 *
 * etcd holds the pool's set, one key per pair: `approvals/<local> <remote>` (src/cluster/etcd.ts),
 * valued `{"local","remote","since","lastSeen","node"}`. Every node keeps the whole set in memory,
 * in a FileApprovalStore (src/policy/approvals.ts: the bounded index of src/policy/approval-index.ts
 * plus its file), fed by one initial read of `approvals/` and a watch from the revision after it.
 * The hot path (`has`, `record`) touches memory only, never etcd:
 *
 *  - `record` of a NEW pair puts it in memory at once (the gate opens on this node with the
 *    stanza that opened it) and queues its etcd put; queued writes go out in one transaction per
 *    batch, `writeDelayMs` after the first, in order, one batch at a time. Every node's watch then
 *    adds the pair to its memory, within a watch round trip.
 *  - `record` of a KNOWN pair only moves its lastSeen in memory. lastSeen reaches etcd at most once
 *    per pair per `lastSeenSyncMs` (60 s): enough for every node to order the pairs alike for the
 *    bound below, without one etcd write per message. Other nodes move their lastSeen forward
 *    (never back) when they see it, and do not write it again (no echo).
 *  - `revoke` removes the pair(s) from memory and queues the etcd delete (all of a local user's
 *    approvals: one prefix delete, which also reaches pairs this node does not hold); every node
 *    forgets them when its watch sees the delete.
 *  - **The bound** (`approvals.maxEntries`): a pair the bound pushes out of a node's memory is
 *    deleted in etcd as well, so every node keeps the same set and etcd never holds more than the
 *    bound (a gate open on one node and closed on another would be a puzzle for users). Nodes
 *    order pairs by lastSeen, synchronised as above, so they choose (nearly) the same victims; when
 *    they differ, both victims go, which errs on the side of the bound.
 *
 * **While etcd cannot be reached** the node serves from memory, records new pairs there and keeps
 * its queued writes, which go out (in order) once etcd answers again; the watch resumes from the
 * last revision it saw, so nothing another node wrote meanwhile is missed. A watch that cannot
 * resume (the revision was compacted away) starts over with a full read.
 *
 * **The approvals file** (`approvals.file`) is kept in cluster mode as this node's local cache,
 * written as in single-node mode: a node that starts while etcd is unreachable starts with the
 * set it last knew. When it reaches etcd, etcd's set replaces the cache's (pairs revoked on other
 * nodes meanwhile must not come back), except for what this node still has queued. So a pair
 * recorded while etcd was unreachable and not written before the node stopped is forgotten at the
 * next start that reaches etcd; the local user's next message records it again.
 */
import { Range, type IKeyValue, type Watcher } from 'etcd3';
import { GatewayError } from '../errors.js';
import { normalizeBareJid } from '../policy/bare-jid.js';
import { FileApprovalStore, type Approval, type ApprovalStore } from '../policy/approvals.js';
import type { IndexEntry } from '../policy/approval-index.js';
import type { Logger } from '../log.js';
import { poolKeys, type EtcdConnection } from './etcd.js';
import { startWatch } from './watch-start.js';

export interface PoolApprovalStoreOptions {
  readonly etcd: EtcdConnection;
  /** `cluster.nodeName`, written with each pair this node records (who opened the gate first). */
  readonly nodeName: string;
  /** The local cache (gateway.yaml `approvals.file`). */
  readonly file: string;
  /** gateway.yaml `approvals.maxEntries`: the bound of every node's memory, and so of etcd's set. */
  readonly maxEntries: number;
  readonly log: Logger;
  /** From the first queued write to the transaction that carries it (default 20 ms). */
  readonly writeDelayMs?: number;
  /** How often refreshed lastSeen times are written (default 60 s). */
  readonly lastSeenSyncMs?: number;
  /** Retry interval while etcd cannot be reached (default 1 s). */
  readonly retryMs?: number;
  /**
   * False when the node could not join the pool at start (membership offline): etcd is not asked
   * during open (no second call deadline at start), the retry timer reads it later. Default true.
   */
  readonly etcdReachable?: boolean;
}

/** One queued etcd change; applied in queue order. */
export type EtcdOp =
  | { readonly kind: 'put'; readonly key: string; readonly value: string }
  | { readonly kind: 'delete'; readonly key: string }
  | { readonly kind: 'deletePrefix'; readonly prefix: string };

/** A pair as stored in etcd (times in epoch milliseconds). */
interface StoredApproval {
  readonly local: string;
  readonly remote: string;
  readonly since: number;
  readonly lastSeen: number;
}

/** etcd's default `--max-txn-ops` is 128; batches stay below it. */
const MAX_TXN_OPS = 100;
/** Keys per page of the initial read (gRPC messages stay far below their 4 MiB default). */
const LOAD_PAGE = 5_000;

export class PoolApprovalStore implements ApprovalStore {
  private cache!: FileApprovalStore;
  /** etcd changes not yet written, merged by key (bounded: see WriteQueue). */
  private readonly queue = new WriteQueue();
  /** Pairs whose lastSeen moved on this node since the last sync (the index's own entries: no allocation per record). */
  private readonly refreshed = new Set<IndexEntry>();
  private watcher: Watcher | null = null;
  /** etcd's set has been read (and the watch started) since the last start or watch failure. */
  private synced = false;
  private writing: Promise<void> | null = null;
  private syncing: Promise<void> | null = null;
  private timer: NodeJS.Timeout | undefined;
  private lastSeenTimer: NodeJS.Timeout | undefined;
  /** The last attempt failed: logged once per outage, not per retry. */
  private unreachable = false;
  private closed = false;
  private readonly writeDelayMs: number;
  private readonly retryMs: number;

  private constructor(private readonly opts: PoolApprovalStoreOptions) {
    this.writeDelayMs = opts.writeDelayMs ?? 20;
    this.retryMs = opts.retryMs ?? 1_000;
  }

  /**
   * Opens the local cache (a corrupt file stops the start with one line, as in single-node mode),
   * then reads etcd's set and starts the watch; when etcd cannot be reached the node starts from
   * the cache and keeps trying every `retryMs`.
   */
  static async open(opts: PoolApprovalStoreOptions): Promise<PoolApprovalStore> {
    const store = new PoolApprovalStore(opts);
    store.cache = await FileApprovalStore.open({
      file: opts.file,
      maxEntries: opts.maxEntries,
      log: opts.log,
      onEvict: (local, remote) => store.evicted(local, remote),
    });
    if (opts.etcdReachable !== false) await store.sync();
    else opts.log.warn('approvals.etcd-unreachable', { node: opts.nodeName, using: 'the local cache', approvals: store.cache.size });
    if (!store.synced) {
      store.unreachable = true;
      store.schedule(store.retryMs);
    }
    store.lastSeenTimer = setInterval(() => store.queueLastSeen(), opts.lastSeenSyncMs ?? 60_000);
    store.lastSeenTimer.unref();
    return store;
  }

  /** Whether this node holds etcd's set now (false while it serves from its cache). */
  get inSync(): boolean {
    return this.synced;
  }

  /** etcd changes waiting to be written. */
  get pendingWrites(): number {
    return this.queue.size;
  }

  has(localBare: string, remoteBare: string): boolean {
    return this.cache.has(localBare, remoteBare);
  }

  record(localBare: string, remoteBare: string): void {
    const local = normalizeBareJid(localBare);
    const remote = normalizeBareJid(remoteBare);
    // A space would make the etcd key ambiguous; no valid JID has one (RFC 7622 section 3).
    if (local === '' || remote === '' || local.includes(' ') || remote.includes(' ')) return;
    const now = Date.now();
    if (this.cache.learn(local, remote, now, now)) {
      this.queue.put(poolKeys.approval(local, remote), this.stored(local, remote, now, now), true);
      this.schedule(this.writeDelayMs);
    } else {
      const entry = this.cache.entry(local, remote);
      if (entry !== undefined) this.refreshed.add(entry);
    }
  }

  list(): Approval[] {
    return this.cache.list();
  }

  revoke(localBare: string, remoteBare?: string): number {
    const local = normalizeBareJid(localBare);
    const n = this.cache.revoke(local, remoteBare);
    if (remoteBare === undefined) this.queue.deletePrefix(poolKeys.approvalsOf(local));
    else this.queue.delete(poolKeys.approval(local, normalizeBareJid(remoteBare)));
    this.schedule(this.writeDelayMs);
    return n;
  }

  /**
   * Writes everything queued to etcd now, and the cache file; rejects (naming etcd) when etcd
   * cannot be reached: the writes stay queued and go out when it can.
   */
  async flush(): Promise<void> {
    if (!this.synced) await this.sync();
    if (!this.synced) throw new GatewayError('GW_ERR_ETCD', 'etcd cannot be reached; the change is kept and written when it can');
    await this.writeQueued();
    if (this.queue.size > 0) throw new GatewayError('GW_ERR_ETCD', `etcd cannot be reached; ${this.queue.size} change(s) kept and written when it can`);
    await this.cache.flush();
  }

  /** Writes what it can (one attempt), stops the watch and timers, and saves the cache. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    clearInterval(this.lastSeenTimer);
    this.queueLastSeen();
    if (this.synced) await this.writeQueued();
    if (this.queue.size > 0) {
      this.opts.log.warn('approvals.etcd-unsaved', { node: this.opts.nodeName, changes: this.queue.size, note: 'etcd could not be reached at shutdown; these changes stay in this node\'s cache only' });
    }
    await this.watcher?.cancel().catch(() => {});
    this.watcher = null;
    await this.cache.close();
  }

  // ---- etcd: read and watch ---------------------------------------------------------------------

  /** Reads etcd's set into memory and starts the watch after it; never throws; one at a time. */
  private sync(): Promise<void> {
    this.syncing ??= this.readAndWatch().finally(() => {
      this.syncing = null;
    });
    return this.syncing;
  }

  private async readAndWatch(): Promise<void> {
    if (this.closed || this.synced) return;
    let loaded: { revision: string; entries: StoredApproval[] };
    try {
      loaded = await this.load();
    } catch (err) {
      this.failed('approvals.etcd-unreachable', err, { using: 'the local cache', approvals: this.cache.size });
      return;
    }
    if (this.closed) return;
    // Memory becomes etcd's set at `revision`; the watch then delivers everything after it, so
    // nothing written meanwhile is missed, whenever its events arrive.
    this.replaceWith(loaded.entries);
    let watcher: Watcher;
    try {
      watcher = await this.watch(loaded.revision);
    } catch (err) {
      this.failed('approvals.etcd-unreachable', err, { using: 'the set read at revision ' + loaded.revision });
      return;
    }
    if (this.closed) {
      await watcher.cancel().catch(() => {});
      return;
    }
    this.watcher = watcher;
    this.synced = true;
    this.recovered();
    this.opts.log.info('approvals.synced', { node: this.opts.nodeName, approvals: this.cache.size, revision: loaded.revision, pendingWrites: this.queue.size });
    if (this.queue.size > 0) this.schedule(0);
  }

  /** Every pair under `approvals/`, read page by page at one revision. */
  private async load(): Promise<{ revision: string; entries: StoredApproval[] }> {
    const range = Range.prefix(poolKeys.approvals);
    let start: Buffer = range.start;
    let revision: string | undefined;
    const entries: StoredApproval[] = [];
    for (;;) {
      const query = this.opts.etcd.kv.getAll().inRange({ start, end: range.end }).limit(LOAD_PAGE);
      if (revision !== undefined) query.revision(revision);
      const res = await query.exec();
      revision ??= res.header.revision;
      for (const kv of res.kvs) {
        const entry = this.parse(kv);
        if (entry !== null) entries.push(entry);
      }
      const last = res.kvs[res.kvs.length - 1];
      if (!res.more || last === undefined) return { revision, entries };
      start = Buffer.concat([last.key, Buffer.from([0])]);
    }
  }

  /** Starts the watch of `approvals/` after `revision` (rejects when it does not start within the call deadline). */
  private async watch(revision: string): Promise<Watcher> {
    const watcher = await startWatch(this.opts.etcd.kv.watch().prefix(poolKeys.approvals).startRevision(String(BigInt(revision) + 1n)));
    watcher.on('put', (kv: IKeyValue) => this.applyPut(kv));
    watcher.on('delete', (kv: IKeyValue) => this.applyDelete(kv.key.toString()));
    // The library resumes a broken watch by itself from the last revision it saw; an error here
    // means it cannot (e.g. that revision was compacted away): start over with a full read.
    watcher.on('error', (err: Error) => {
      if (this.watcher !== watcher) return;
      this.watcher = null;
      this.synced = false;
      void watcher.cancel().catch(() => {});
      this.failed('approvals.watch-failed', err, { using: 'memory until the set is read again' });
      this.schedule(this.retryMs);
    });
    return watcher;
  }

  private applyPut(kv: IKeyValue): void {
    const entry = this.parse(kv);
    if (entry !== null) this.cache.learn(entry.local, entry.remote, entry.since, entry.lastSeen);
  }

  private applyDelete(key: string): void {
    const pair = key.slice(poolKeys.approvals.length);
    const space = pair.indexOf(' ');
    if (space > 0) this.cache.revoke(pair.slice(0, space), pair.slice(space + 1));
  }

  /**
   * etcd's set replaces memory (revocations made elsewhere while this node was away must not
   * come back), but what this node has queued and not yet written still counts.
   */
  private replaceWith(entries: StoredApproval[]): void {
    // One map lookup per pair (the queue is merged by key), not a scan of the queue per pair:
    // this runs on the event loop, with every stream waiting (issue 11 review, finding 2).
    const inEtcd = new Set(entries.map((e) => poolKeys.approval(e.local, e.remote)));
    for (const a of this.cache.list()) {
      const key = poolKeys.approval(a.local, a.remote);
      if (!inEtcd.has(key) && this.queue.pending(key)?.kind !== 'put') this.cache.revoke(a.local, a.remote);
    }
    // Oldest first, so that the most recently seen end up most recent in memory.
    for (const e of entries.sort((a, b) => a.lastSeen - b.lastSeen)) {
      if (!this.queue.deletes(poolKeys.approvalsOf(e.local), poolKeys.approval(e.local, e.remote))) this.cache.learn(e.local, e.remote, e.since, e.lastSeen);
    }
  }

  /** A stored pair, or null (logged) when the key or value is not one this code wrote. */
  private parse(kv: IKeyValue): StoredApproval | null {
    const key = kv.key.toString();
    try {
      const v = JSON.parse(kv.value.toString()) as Record<string, unknown>;
      const since = typeof v.since === 'string' ? Date.parse(v.since) : NaN;
      const lastSeen = typeof v.lastSeen === 'string' ? Date.parse(v.lastSeen) : NaN;
      if (typeof v.local !== 'string' || typeof v.remote !== 'string' || Number.isNaN(since) || Number.isNaN(lastSeen)) throw new Error('missing local, remote, since or lastSeen');
      const local = normalizeBareJid(v.local);
      const remote = normalizeBareJid(v.remote);
      if (poolKeys.approval(local, remote) !== key) throw new Error('the key does not name the pair in the value');
      return { local, remote, since, lastSeen };
    } catch (err) {
      this.opts.log.warn('approvals.etcd-invalid', { key, error: (err as Error).message, note: 'ignored' });
      return null;
    }
  }

  // ---- etcd: writes -----------------------------------------------------------------------------

  private stored(local: string, remote: string, since: number, lastSeen: number): string {
    return JSON.stringify({ local, remote, since: new Date(since).toISOString(), lastSeen: new Date(lastSeen).toISOString(), node: this.opts.nodeName });
  }

  /** A pair the bound pushed out of memory leaves etcd too (see the file comment). */
  private evicted(local: string, remote: string): void {
    // Before open() has run (the cache's own load) there is nothing to delete yet: etcd's set is read next.
    if (this.cache === undefined) return;
    this.queue.delete(poolKeys.approval(local, remote));
    this.schedule(this.writeDelayMs);
  }

  /**
   * Refreshed lastSeen times become puts (a pair revoked or evicted since is skipped). Not while
   * the node is out of sync: the refreshed pairs stay marked (only those still held, so the set
   * stays within the bound) and are written by the first call after the sync, instead of one put
   * per pair per minute piling up for the whole outage (issue 11 review, finding 2).
   */
  private queueLastSeen(): void {
    if (!this.synced) {
      for (const e of this.refreshed) if (this.cache.entry(e.local, e.remote) !== e) this.refreshed.delete(e);
      return;
    }
    for (const e of this.refreshed) {
      if (this.cache.entry(e.local, e.remote) !== e) continue;
      this.queue.put(poolKeys.approval(e.local, e.remote), this.stored(e.local, e.remote, e.since, e.lastSeen), false);
    }
    this.refreshed.clear();
    if (this.queue.size > 0) this.schedule(this.writeDelayMs);
  }

  private schedule(delayMs: number): void {
    if (this.closed || this.timer !== undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.tick();
    }, delayMs);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    if (!this.synced) await this.sync();
    if (this.synced) await this.writeQueued();
    if (!this.synced || this.queue.size > 0) this.schedule(this.retryMs);
  }

  /** Writes the queue batch by batch until it is empty or a batch fails; one writer at a time. */
  private writeQueued(): Promise<void> {
    this.writing ??= (async () => {
      try {
        while (this.queue.size > 0) {
          const batch = this.queue.take();
          await this.commit(batch);
          this.queue.written(batch);
        }
        this.recovered();
      } catch (err) {
        this.failed('approvals.etcd-write-failed', err, { pendingWrites: this.queue.size });
      } finally {
        this.writing = null;
      }
    })();
    return this.writing;
  }

  private async commit(batch: readonly EtcdOp[]): Promise<void> {
    const kv = this.opts.etcd.kv;
    const ops = batch.map((op) =>
      op.kind === 'put' ? kv.put(op.key).value(op.value)
        : op.kind === 'delete' ? kv.delete().key(op.key)
          : kv.delete().prefix(op.prefix));
    // etcd3 builds a transaction from a comparison; every key's version is > -1 (a missing key's
    // is 0), so this one always holds: an unconditional, atomic batch.
    await kv.if(poolKeys.approvals, 'Version', '>', -1).then(...ops).commit();
  }

  private failed(event: string, err: unknown, fields: Record<string, unknown>): void {
    if (this.unreachable) return;
    this.unreachable = true;
    this.opts.log.warn(event, { node: this.opts.nodeName, error: err instanceof Error ? err.message : String(err), ...fields });
  }

  private recovered(): void {
    if (!this.unreachable) return;
    this.unreachable = false;
    this.opts.log.info('approvals.etcd-reachable', { node: this.opts.nodeName, pendingWrites: this.queue.size });
  }
}

/**
 * The etcd changes not yet written, merged by key, in queue order (a Map keeps insertion order).
 *
 * Only the last pending change of a key counts, so a later one replaces the earlier in place
 * (put after put, delete after put, put after delete: what etcd ends up holding is the same),
 * and a prefix delete (all of a local user's approvals) drops the queued changes it covers and
 * goes last, so a put recorded after it still follows it. A put of a pair this node never wrote
 * ("fresh": nothing for its key was pending or sent) is cancelled outright by a delete of the
 * same key (a pair recorded and pushed out by the bound while etcd was away); a pair another node
 * wrote meanwhile is learnt at the next read of the set and bounded there. Without this the queue
 * grew for a whole outage (a put per refreshed pair a minute, a put and an eviction delete per
 * new pair), and the catch-up scanned it once per pair (issue 11 review, finding 2); it now holds
 * at most one change per key: about the pairs held plus those pushed out meanwhile, and the
 * pending prefix deletes (docs/design.md section 11, trust-tier approvals).
 */
export class WriteQueue {
  /** `k<key>` or `p<prefix>` → the change pending for it. */
  private readonly ops = new Map<string, EtcdOp>();
  /** Puts not yet sent of pairs this node never wrote (see above). */
  private readonly fresh = new Set<EtcdOp>();

  get size(): number {
    return this.ops.size;
  }

  /** The change pending for `key` itself (a prefix delete covering it is not one). */
  pending(key: string): EtcdOp | undefined {
    return this.ops.get('k' + key);
  }

  /**
   * Whether the queue deletes `key`: a pending delete of it, or a pending delete of `prefix`, the
   * prefix of its local user's approvals (the only prefix this store deletes).
   */
  deletes(prefix: string, key: string): boolean {
    return this.ops.has('p' + prefix) || this.ops.get('k' + key)?.kind === 'delete';
  }

  /** `fresh`: the pair is new in this node's memory (a record, not a lastSeen refresh). */
  put(key: string, value: string, fresh: boolean): void {
    const id = 'k' + key;
    const prev = this.ops.get(id);
    const op: EtcdOp = { kind: 'put', key, value };
    this.ops.set(id, op);
    if (prev === undefined ? fresh : this.fresh.delete(prev)) this.fresh.add(op);
  }

  delete(key: string): void {
    const id = 'k' + key;
    const prev = this.ops.get(id);
    if (prev !== undefined && this.fresh.delete(prev)) this.ops.delete(id);
    else this.ops.set(id, { kind: 'delete', key });
  }

  deletePrefix(prefix: string): void {
    for (const [id, op] of this.ops) {
      if ((op.kind === 'deletePrefix' ? op.prefix : op.key).startsWith(prefix)) {
        this.ops.delete(id);
        this.fresh.delete(op);
      }
    }
    this.ops.set('p' + prefix, { kind: 'deletePrefix', prefix });
  }

  /** The next transaction's changes; they stay queued (and count as sent) until `written`. */
  take(): EtcdOp[] {
    const batch = nextBatch(this.ops.values());
    for (const op of batch) this.fresh.delete(op);
    return batch;
  }

  /** `batch` is in etcd: its changes leave the queue, unless a later change replaced one meanwhile. */
  written(batch: readonly EtcdOp[]): void {
    for (const op of batch) {
      const id = op.kind === 'deletePrefix' ? 'p' + op.prefix : 'k' + op.key;
      if (this.ops.get(id) === op) this.ops.delete(id);
    }
  }
}

/**
 * The longest prefix of `queue` that one transaction may carry: etcd refuses a transaction that
 * touches a key twice (a put and a delete of it, or a put inside a deleted range), and one of more
 * than `--max-txn-ops` operations. Keys are looked up in a set (not compared with every operation
 * taken so far); only prefix deletes, rare, are compared one by one.
 */
export function nextBatch(queue: Iterable<EtcdOp>): EtcdOp[] {
  const batch: EtcdOp[] = [];
  const keys = new Set<string>();
  const prefixes: string[] = [];
  for (const op of queue) {
    if (batch.length >= MAX_TXN_OPS) break;
    if (op.kind === 'deletePrefix') {
      if (prefixes.some((p) => p.startsWith(op.prefix) || op.prefix.startsWith(p))) break;
      let covers = false;
      for (const k of keys) if (k.startsWith(op.prefix)) covers = true;
      if (covers) break;
      prefixes.push(op.prefix);
    } else {
      if (keys.has(op.key) || prefixes.some((p) => op.key.startsWith(p))) break;
      keys.add(op.key);
    }
    batch.push(op);
  }
  return batch;
}
