/**
 * Approvals for PublicUnverified partners (design: trust tiers). A remote user of such a partner
 * may send a local user a `<message>` or `<presence type='subscribe'>` only after that local user
 * reached out first (a message, subscribe or subscribed sent through the gateway); the relay
 * records those outbound stanzas here and asks `has` for each inbound one.
 *
 * JIDs are compared in the form of src/policy/bare-jid.ts: the whole bare JID lowercased (domain
 * and, per PRECIS UsernameCaseMapped, localpart), a resource ignored.
 *
 * The interface is small on purpose, so that a store shared by several gateway nodes replaces
 * the file store in a pool (src/cluster/pool-approvals.ts, on etcd). FileApprovalStore keeps the pairs in memory (bounded, least
 * recently seen evicted first) and persists them to one JSON file (src/policy/approval-file.ts),
 * written atomically, batched and serialised.
 */
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from '../log.js';
import { readApprovalFile, serializeApprovals } from './approval-file.js';
import { ApprovalIndex, type IndexEntry } from './approval-index.js';
import { writeFileAtomic } from './atomic-write.js';
import { normalizeBareJid } from './bare-jid.js';

/** A local user (bare JID, e.g. alice@corp.example) has reached out to a remote user (bare JID). */
export interface ApprovalStore {
  /**
   * Hot path: whether `localBare` has reached out to `remoteBare`. Synchronous, O(1), read-only.
   * Full JIDs are accepted too (compared in normalizeBareJid form: resource dropped, lowercased).
   */
  has(localBare: string, remoteBare: string): boolean;
  /**
   * Hot path: `localBare` reached out to `remoteBare` now. Synchronous; a new pair is persisted
   * later (batched), a known pair only has its lastSeen refreshed in memory.
   */
  record(localBare: string, remoteBare: string): void;
  /** Every approval, most recently seen first. */
  list(): Approval[];
  /** Removes one approval, or every approval of `localBare` when `remoteBare` is omitted; returns how many. */
  revoke(localBare: string, remoteBare?: string): number;
  /** Writes pending changes now; resolves once they are on disk. */
  flush(): Promise<void>;
  /** Flushes and stops timers; the store is not used afterwards. */
  close(): Promise<void>;
}

/** One approval as listed (admin endpoint, CLI). */
export interface Approval {
  /** Local user's bare JID, comparison form. */
  local: string;
  /** Remote user's bare JID, comparison form. */
  remote: string;
  /** ISO 8601 time the pair was first recorded. */
  since: string;
  /** ISO 8601 time the local user last reached out to the remote user. */
  lastSeen: string;
}

/** Options of FileApprovalStore.open. */
export interface FileApprovalStoreOptions {
  /** Absolute path of the JSON file (gateway.yaml `approvals.file`); its directory is created on first write. */
  file: string;
  /** Most approvals held, a positive integer (gateway.yaml `approvals.maxEntries`); beyond it the least recently seen go. */
  maxEntries: number;
  /**
   * Milliseconds from the first unsaved new pair or revocation to the write that saves it and
   * everything after it: a burst costs one write. Default 1000; 0 writes on the next timer turn.
   */
  flushDelayMs?: number;
  /**
   * Told of each pair that the `maxEntries` bound pushes out (not of revocations); in a pool the
   * node deletes it in etcd as well (src/cluster/pool-approvals.ts).
   */
  onEvict?: (local: string, remote: string) => void;
  log: Logger;
}

/** Default `flushDelayMs`, in milliseconds. */
export const DEFAULT_FLUSH_DELAY_MS = 1000;

/**
 * The approvals store of one gateway node: memory plus one JSON file. `open` loads the file (a
 * missing file is no approvals; a corrupt one rejects with GW_ERR_APPROVALS_FILE, one line naming
 * the file, and the file is left as it is).
 *
 * Persistence: a new pair or a revocation starts a timer of `flushDelayMs` (not restarted by
 * later changes, so steady traffic still writes once per interval); when it fires the whole set
 * is written with writeFileAtomic. Writes run one after another, never two at once. A refreshed
 * lastSeen alone starts no write: it reaches the file with the next one (or `flush`/`close`), so
 * after a crash the recency order may be slightly behind, never the set of pairs beyond one
 * interval. A failed write is logged (`approvals.write_failed`) and retried with the next change.
 */
export class FileApprovalStore implements ApprovalStore {
  private timer: NodeJS.Timeout | undefined;
  /** Memory differs from the file. */
  private unsaved = false;
  private writing: Promise<void> = Promise.resolve();
  private closed = false;

  private constructor(
    private readonly index: ApprovalIndex,
    /** The file, as given to `open`. */
    readonly file: string,
    private readonly flushDelayMs: number,
    private readonly log: Logger,
  ) {}

  static async open(opts: FileApprovalStoreOptions): Promise<FileApprovalStore> {
    const delay = opts.flushDelayMs ?? DEFAULT_FLUSH_DELAY_MS;
    if (!Number.isFinite(delay) || delay < 0) throw new RangeError(`flushDelayMs must be a number >= 0 (got ${delay})`);
    const index = new ApprovalIndex(opts.maxEntries, opts.onEvict);
    const entries = await readApprovalFile(opts.file);
    // Oldest first, so that the most recently seen pair ends up at the recent end. The file lists
    // the most recent first: reversed before the (stable) sort, pairs seen in the same millisecond
    // keep their order.
    const ordered = entries.slice().reverse().sort((a, b) => a.lastSeen - b.lastSeen);
    let distinct = 0;
    for (const e of ordered) if (index.touch(e.local, e.remote, e.lastSeen, e.since)) distinct++;
    const store = new FileApprovalStore(index, opts.file, delay, opts.log);
    if (distinct > index.size) {
      store.unsaved = true;
      opts.log.warn('approvals.truncated', { file: opts.file, kept: index.size, dropped: distinct - index.size, maxEntries: opts.maxEntries });
    }
    opts.log.info('approvals.loaded', { file: opts.file, count: index.size });
    return store;
  }

  /** How many approvals are held. */
  get size(): number {
    return this.index.size;
  }

  has(localBare: string, remoteBare: string): boolean {
    return this.index.has(normalizeBareJid(localBare), normalizeBareJid(remoteBare));
  }

  record(localBare: string, remoteBare: string): void {
    const local = normalizeBareJid(localBare);
    const remote = normalizeBareJid(remoteBare);
    if (local === '' || remote === '') return;
    this.unsaved = true;
    if (this.index.touch(local, remote, Date.now())) this.schedule();
  }

  /**
   * Adds a pair (comparison forms, as src/policy/bare-jid.ts makes them) with the times it
   * carries, or moves a known pair's lastSeen forward (never back): how a pool node takes in a
   * pair another node recorded (docs/design.md section 11). A new pair is saved like a recorded
   * one; returns whether it is new.
   */
  learn(local: string, remote: string, since: number, lastSeen: number): boolean {
    const known = this.index.get(local, remote);
    if (known !== undefined && known.lastSeen >= lastSeen) return false;
    this.unsaved = true;
    const added = this.index.touch(local, remote, lastSeen, since);
    if (added) this.schedule();
    return added;
  }

  /** The pair as held (comparison forms), or undefined: times in epoch milliseconds. */
  entry(local: string, remote: string): IndexEntry | undefined {
    return this.index.get(local, remote);
  }

  list(): Approval[] {
    const out: Approval[] = [];
    for (const e of this.index.entries()) {
      out.push({ local: e.local, remote: e.remote, since: new Date(e.since).toISOString(), lastSeen: new Date(e.lastSeen).toISOString() });
    }
    return out;
  }

  revoke(localBare: string, remoteBare?: string): number {
    const n = this.index.revoke(normalizeBareJid(localBare), remoteBare === undefined ? undefined : normalizeBareJid(remoteBare));
    if (n > 0) {
      this.unsaved = true;
      this.schedule();
    }
    return n;
  }

  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const run = this.writing.then(() => this.writeIfUnsaved());
    this.writing = run.catch(() => {});
    return run;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.flush();
  }

  private schedule(): void {
    if (this.timer !== undefined || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush().catch((err: unknown) => {
        this.log.error('approvals.write_failed', { file: this.file, error: err instanceof Error ? err.message : String(err) });
      });
    }, this.flushDelayMs);
    this.timer.unref();
  }

  private async writeIfUnsaved(): Promise<void> {
    if (!this.unsaved) return;
    // Cleared before the write: changes made while it runs are saved by the next one.
    this.unsaved = false;
    const text = serializeApprovals(this.index.entries());
    try {
      await mkdir(dirname(this.file), { recursive: true });
      await writeFileAtomic(this.file, text);
    } catch (err) {
      this.unsaved = true;
      throw err;
    }
  }
}
