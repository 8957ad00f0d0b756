/**
 * The in-memory half of the approvals store: a bounded set of (local, remote) pairs ordered by
 * when each was last seen, least recently seen evicted first.
 *
 * Not lru-cache: the hot-path lookup takes two strings, and a flat cache would need a composite
 * key string built per lookup; revoking every pair of one local user would need a scan of the
 * whole cache. Here a map per local user answers `has` with two Map lookups and no allocation,
 * revokes a user's pairs in O(that user's pairs), and an intrusive doubly linked list keeps the
 * recency order (refresh, insert and evict in O(1), no allocation on refresh).
 *
 * Keys are taken as given: callers pass comparison forms (src/policy/bare-jid.ts).
 */

/** One pair; times are epoch milliseconds. */
export interface IndexEntry {
  readonly local: string;
  readonly remote: string;
  readonly since: number;
  readonly lastSeen: number;
}

interface Node extends IndexEntry {
  lastSeen: number;
  /** Towards the most recently seen end. */
  newer: Node | null;
  /** Towards the least recently seen end. */
  older: Node | null;
}

/** Bounded, recency-ordered set of (local, remote) pairs; see the file comment. */
export class ApprovalIndex {
  private readonly byLocal = new Map<string, Map<string, Node>>();
  private newest: Node | null = null;
  private oldest: Node | null = null;
  private count = 0;

  /**
   * @param capacity most pairs held (a positive integer); beyond it the least recently seen go.
   * @param onEvict told of each pair the bound pushes out (not of revocations): a pool node
   *   deletes it in etcd too, so that every node keeps the same set (docs/design.md section 11).
   */
  constructor(readonly capacity: number, private readonly onEvict?: (local: string, remote: string) => void) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`capacity must be a positive integer (got ${capacity})`);
  }

  /** How many pairs are held. */
  get size(): number {
    return this.count;
  }

  /** Whether the pair is held; does not change its recency. */
  has(local: string, remote: string): boolean {
    const remotes = this.byLocal.get(local);
    return remotes !== undefined && remotes.has(remote);
  }

  /** The pair as held, or undefined. */
  get(local: string, remote: string): IndexEntry | undefined {
    return this.byLocal.get(local)?.get(remote);
  }

  /**
   * Records that the pair was seen at `now`: a known pair gets `lastSeen = now` and becomes the
   * most recently seen; a new one is added (with `since = now` unless given) and, when that
   * exceeds the capacity, the least recently seen pair is evicted. Returns whether the pair is new.
   */
  touch(local: string, remote: string, now: number, since = now): boolean {
    let remotes = this.byLocal.get(local);
    const known = remotes?.get(remote);
    if (known !== undefined) {
      known.lastSeen = now;
      this.unlink(known);
      this.linkNewest(known);
      return false;
    }
    if (remotes === undefined) {
      remotes = new Map();
      this.byLocal.set(local, remotes);
    }
    const node: Node = { local, remote, since, lastSeen: now, newer: null, older: null };
    remotes.set(remote, node);
    this.linkNewest(node);
    this.count++;
    if (this.count > this.capacity && this.oldest !== null) {
      const evicted = this.oldest;
      this.remove(evicted);
      this.onEvict?.(evicted.local, evicted.remote);
    }
    return true;
  }

  /** Removes one pair, or every pair of `local` when `remote` is undefined; returns how many. */
  revoke(local: string, remote?: string): number {
    const remotes = this.byLocal.get(local);
    if (remotes === undefined) return 0;
    if (remote !== undefined) {
      const node = remotes.get(remote);
      if (node === undefined) return 0;
      this.remove(node);
      return 1;
    }
    const n = remotes.size;
    for (const node of [...remotes.values()]) this.remove(node);
    return n;
  }

  /** Every pair, most recently seen first. */
  *entries(): IterableIterator<IndexEntry> {
    for (let node = this.newest; node !== null; node = node.older) yield node;
  }

  private remove(node: Node): void {
    const remotes = this.byLocal.get(node.local);
    remotes?.delete(node.remote);
    if (remotes?.size === 0) this.byLocal.delete(node.local);
    this.unlink(node);
    this.count--;
  }

  private linkNewest(node: Node): void {
    node.older = this.newest;
    node.newer = null;
    if (this.newest !== null) this.newest.newer = node;
    this.newest = node;
    if (this.oldest === null) this.oldest = node;
  }

  private unlink(node: Node): void {
    if (node.newer !== null) node.newer.older = node.older;
    else this.newest = node.older;
    if (node.older !== null) node.older.newer = node.newer;
    else this.oldest = node.newer;
    node.newer = null;
    node.older = null;
  }
}
