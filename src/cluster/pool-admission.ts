/**
 * ConnectionLimit and connectionLimit across the pool (issue 11; docs/design.md section 11).
 *
 * **Slots.** A partner's limit L in one direction is L slots, `streams/<partner>/<direction>/<n>`
 * for n < L; the gateway-wide `connectionLimit` C is C slots `connections/<n>`, shared by the
 * authenticated partner streams of every node. An admitted stream holds one slot of each, both
 * put under the node's lease by one etcd transaction:
 *
 *     if   streams/P/D/p has never been created (create revision 0)  and  connections/c neither
 *     then put both, valued {node, stream, partner, direction, remoteDomain, since}, under the lease
 *     else get the keys of streams/P/D/ and of connections/ (the slots taken), and both slots
 *
 * so the answer to a lost race says which slots are taken: the next attempt picks free ones (at
 * random, so that nodes admitting at the same moment rarely pick the same), or the stream is
 * refused once L (or C) slots are taken. A transaction that failed without an answer (a member
 * died, a leader is being elected) is sent again, for the same slots: if the first one was
 * applied after all, the second finds the slots holding this stream's value and takes them.
 * Closing the stream deletes both (only if they still hold its value). A node that dies stops
 * renewing its lease, and etcd deletes its slots within `leaseTtlSeconds`.
 *
 * **Cut off from etcd**, i.e. without a lease (no renewal answered for `leaseTtlSeconds`,
 * membership.ts), the node keeps its streams and admits a new one only while its own streams of
 * that partner and direction number less than floor(L / N), and its own partner streams less
 * than floor(C / N), N being the pool's size as it last saw it (cluster/known-nodes.ts). The
 * shares of all nodes add up to at most L and C. A node that still holds its lease but gets no
 * decision from etcd within ADMISSION_DEADLINE_MS (etcd slow or away, or other nodes taking the
 * slots it picks) refuses the stream: its slots still count and the other nodes may be admitting
 * through etcd, so a local share added to theirs could exceed the limit. Which failure a call
 * reports says too little to tell an etcd that is gone from one electing a leader under load
 * (tried: killing a member then looked like an outage), the lease does not.
 *
 * **Registering again.** Streams admitted on the local share, and streams whose slots went with a
 * lost lease, are registered once etcd answers again: on 'online' (a new lease) and every
 * SYNC_INTERVAL_MS while some are not, this node's slots are read back, renewed under the current
 * lease or given back if no live stream of ours holds them, and the streams without slots take
 * free ones. A stream that finds none stays up (live traffic is never dropped) and is logged and
 * counted as over the pool's limit until a slot frees.
 *
 * Only admission and closing talk to etcd; the per-stanza path never does.
 */
import { randomInt } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Range, type IKeyValue, type IRangeResponse, type IRequestOp, type ITxnResponse, type Lease } from 'etcd3';
import type { Logger } from '../log.js';
import type { LimitVerdict, PartnerLimit, PoolAdmissionRequest, PoolGate, PoolSurplus } from '../stream/connection-limits.js';
import type { StreamDirection } from '../stream/stream-info.js';
import { poolKeys } from './etcd.js';
import type { KnownNodes } from './known-nodes.js';
import type { PoolNode } from './pool-node.js';

/**
 * How long an admission waits for etcd's decision: long enough to ride out the election of a new
 * etcd leader (etcd's election timeout is 1 s by default, and the client rests a member that
 * failed three times in a row for 1 s, etcd.ts), short enough that a partner's authentication
 * hardly notices. A node without a lease decides on its local share at once.
 */
export const ADMISSION_DEADLINE_MS = 3_000;
/**
 * One transaction's deadline within it: a call stuck on a member that died is abandoned and
 * tried again (the client moves to another member) instead of using up the whole wait.
 */
const ATTEMPT_DEADLINE_MS = 500;
/** Pause before a failed transaction is tried again, doubling up to RETRY_PAUSE_MAX_MS. */
const RETRY_PAUSE_MS = 50;
const RETRY_PAUSE_MAX_MS = 400;
/**
 * How long after a transaction that failed without an answer it may still be applied (etcd gives
 * up on a proposal after about 7 s): syncs go on until then, so a slot it took is given back.
 */
const UNCERTAIN_MS = 10_000;
/** While some streams are not registered, how often the node tries again. */
export const SYNC_INTERVAL_MS = 1_000;
/** ... and how often when the only ones left are over the pool's limit (no slot is free). */
const OVER_LIMIT_RETRY_MS = 5_000;

/** How an admission was decided, for gw_pool_admissions_total{result}. */
export type AdmissionResult = 'admitted' | 'refused' | 'local' | 'local-refused';

/** The value of both slots a stream holds: who holds them. */
export interface SlotHolder {
  readonly node: string;
  /** The stream's id in `status` (S2SStream.connectionId). */
  readonly stream: string;
  readonly partner: string;
  readonly direction: StreamDirection;
  readonly remoteDomain: string;
  /** ISO time of the admission. */
  readonly since: string;
}

/** One of this node's admitted streams, as `status` shows it. */
export interface LocalPoolStream extends SlotHolder {
  /** Its slot of the partner's limit; null while not registered in etcd. */
  readonly slot: number | null;
  /** Admitted while cut off, or its slots lost with a lease, and no free slot found since. */
  readonly overLimit: boolean;
}

export interface PoolAdmissionOptions {
  /** The gateway-wide connectionLimit, applied pool-wide to authenticated partner streams. */
  readonly connectionLimit: number;
  /** Told of every decision and the time it took. */
  readonly observe?: (result: AdmissionResult, seconds: number) => void;
}

interface Registration {
  readonly partnerSlot: number;
  readonly connectionSlot: number;
}

/** Slots known to be taken: of the partner's limit (one partner, one direction) and of connectionLimit. */
interface Taken {
  readonly partner: Set<number>;
  readonly connections: Set<number>;
}

class Holding {
  readonly holder: SlotHolder;
  /** The slots' value, byte for byte (closing deletes them only if they still hold it). */
  readonly value: string;
  registration: Registration | null = null;
  /** The partner's limit: the request's, until a reload changes it (applyLimits). */
  limit: number;
  limitName: PartnerLimit['limitName'];
  /** The admission has been answered; `admitted` says how. */
  decided = false;
  /** etcd gave no decision within the admission deadline. */
  undecided = false;
  admitted = false;
  released = false;
  /** Transactions under way that may register this stream: their answer, not a sync, decides. */
  inFlight = 0;
  overLimit = false;

  constructor(readonly request: PoolAdmissionRequest, node: string) {
    this.holder = { node, stream: request.streamId, partner: request.partner, direction: request.direction, remoteDomain: request.remoteDomain, since: new Date().toISOString() };
    this.value = JSON.stringify(this.holder);
    this.limit = request.limit;
    this.limitName = request.limitName;
  }

  get partnerPrefix(): string {
    return poolKeys.partnerSlots(this.request.partner, this.request.direction);
  }
}

export class PoolAdmission implements PoolGate {
  /** This node's admitted (or pending) partner streams, by stream object. */
  private readonly holdings = new Map<object, Holding>();
  /** The namespace prefix as bytes (transaction answers carry whole keys). */
  private readonly prefix: Buffer;
  private needsSync = false;
  /** The last sync's error (logged once per kind). */
  private syncError: string | null = null;
  /** Until then a transaction that failed without an answer may still be applied. */
  private uncertainUntil = 0;
  private syncing = false;
  private lastSyncAt = 0;
  private closed = false;
  private readonly timer: NodeJS.Timeout;
  private readonly connectionLimit: number;

  constructor(
    private readonly pool: Pick<PoolNode, 'etcd' | 'membership' | 'name'>,
    private readonly knownNodes: Pick<KnownNodes, 'count'>,
    private readonly log: Logger,
    private readonly options: PoolAdmissionOptions,
  ) {
    this.prefix = Buffer.from(pool.etcd.config.etcd.prefix);
    this.connectionLimit = options.connectionLimit;
    pool.membership.on('online', () => {
      // A new lease: every registration is renewed under it (or taken again).
      this.needsSync = true;
      void this.sync();
    });
    this.timer = setInterval(() => this.maybeSync(), SYNC_INTERVAL_MS);
    this.timer.unref();
  }

  /** Whether this node holds a lease (it can register streams). */
  get online(): boolean {
    return this.pool.membership.online;
  }

  /** This node's admitted partner streams without slots in etcd (local share, or over the limit). */
  get unregistered(): number {
    let n = 0;
    for (const h of this.holdings.values()) if (h.admitted && h.registration === null) n++;
    return n;
  }

  /** This node's admitted partner streams, for `status`. */
  localStreams(): LocalPoolStream[] {
    const out: LocalPoolStream[] = [];
    for (const h of this.holdings.values()) {
      if (h.admitted) out.push({ ...h.holder, slot: h.registration?.partnerSlot ?? null, overLimit: h.overLimit });
    }
    return out;
  }

  async admit(request: PoolAdmissionRequest): Promise<LimitVerdict> {
    const started = performance.now();
    const h = new Holding(request, this.pool.name);
    this.holdings.set(request.stream, h);
    const lease = this.closed ? null : this.pool.membership.currentLease;
    let verdict: LimitVerdict = { ok: false, rule: 'ConnectionLimit', text: 'not decided' };
    let result: AdmissionResult = 'refused';
    if (lease) {
      verdict = await this.register(h, lease).catch((err: Error) => this.undecided(h, err.message));
      result = verdict.ok ? 'admitted' : 'refused';
      const now = this.closed ? null : this.pool.membership.currentLease;
      if (h.undecided && now !== null && now !== lease) {
        // The lease was lost and granted again while etcd did not answer: this node is not cut
        // off, so etcd decides, not the local share (docs/design.md section 11: a node holding a
        // lease never adds a local share to what the others admit through etcd). Once more,
        // within a fresh deadline, under the new lease.
        h.undecided = false;
        verdict = await this.register(h, now).catch((err: Error) => this.undecided(h, err.message));
        result = verdict.ok ? 'admitted' : 'refused';
      }
    }
    if (!lease || (h.undecided && !this.closed && this.pool.membership.currentLease === null)) {
      // Without a lease, or having lost it while etcd did not answer, this node is cut off: the
      // cut-off rule decides (its slots are gone with the lease, so refusing protects nothing).
      verdict = this.localShare(h, lease ? 'the lease was lost while etcd did not answer' : 'this node holds no lease: etcd unanswered for longer than leaseTtlSeconds');
      result = verdict.ok ? 'local' : 'local-refused';
      if (verdict.ok) this.needsSync = true;
    }
    h.decided = true;
    h.admitted = verdict.ok;
    if (!verdict.ok && this.holdings.get(request.stream) === h) this.holdings.delete(request.stream);
    this.options.observe?.(result, (performance.now() - started) / 1000);
    if (result === 'local' || result === 'local-refused') {
      this.log.info('pool.local-admission', { node: this.pool.name, partner: request.partner, direction: request.direction, stream: request.streamId, admitted: verdict.ok, ...(verdict.ok ? {} : { text: verdict.text }) });
    }
    return verdict;
  }

  release(stream: object): void {
    const h = this.holdings.get(stream);
    if (!h) return;
    this.holdings.delete(stream);
    h.released = true;
    const registration = h.registration;
    h.registration = null;
    if (registration) void this.unregister(h, registration);
  }

  /**
   * After a reload (docs/design.md sections 6 and 11): each of this node's streams takes its
   * partner's new limit; one whose slot is at or above a lowered limit moves to a free slot below
   * it (one transaction: the new slot must not exist and the old one must still be ours), and is
   * returned, to be closed, when none is free. Every node does the same, so the pool ends with at
   * most L streams per partner and direction. Streams without a slot are left to the sync (which
   * takes only slots below the limit); while etcd cannot be reached nothing moves or closes here
   * (the reload's own per-node check still applies).
   */
  async applyLimits(limitOf: (partner: string) => PartnerLimit | undefined, live: (stream: object) => boolean): Promise<PoolSurplus[]> {
    const surplus: PoolSurplus[] = [];
    const lease = this.pool.membership.currentLease;
    for (const [stream, h] of this.holdings) {
      const now = limitOf(h.request.partner);
      if (!now || !live(stream)) continue;
      h.limit = now.limit;
      h.limitName = now.limitName;
      const slots = h.registration;
      if (!slots || slots.partnerSlot < now.limit || h.inFlight > 0 || !lease || this.closed) continue;
      try {
        if (!(await this.moveBelowLimit(h, slots, await lease.grant()))) {
          surplus.push({ stream, partner: h.request.partner, direction: h.request.direction, limit: now.limit, limitName: now.limitName });
        }
      } catch (err) {
        this.log.warn('pool.limit-not-applied', { node: this.pool.name, partner: h.request.partner, stream: h.holder.stream, error: (err as Error).message });
      }
    }
    return surplus;
  }

  /** Moves `h` from `from` to a free slot below its limit; false when none is free. */
  private async moveBelowLimit(h: Holding, from: Registration, leaseId: string): Promise<boolean> {
    const kv = this.pool.etcd.kv;
    const oldKey = h.partnerPrefix + from.partnerSlot;
    const deadline = Date.now() + ADMISSION_DEADLINE_MS;
    const taken = new Set<number>([from.partnerSlot]);
    for (;;) {
      const below = [...taken].filter((n) => n < h.limit);
      if (below.length >= h.limit) return false;
      const to = freeSlot(h.limit, new Set(below));
      const newKey = h.partnerPrefix + to;
      h.inFlight++;
      let answer: ITxnResponse;
      try {
        answer = await kv
          .if(newKey, 'Create', '==', 0)
          .and(oldKey, 'Value', '==', h.value)
          .then(kv.put(newKey).value(h.value).lease(leaseId), kv.delete().key(oldKey))
          .else(this.keysOnly(h.partnerPrefix), kv.get(oldKey))
          .options({ deadline })
          .commit();
      } catch (err) {
        // Applied or not, nobody knows: the stream may now hold `newKey`, not the old slot that
        // h.registration (and a release() meanwhile) names. The syncs read its slots back and
        // renew or give back what etcd really holds (docs/design.md section 11).
        this.uncertain();
        throw err;
      } finally {
        h.inFlight--;
      }
      if (h.released) {
        // Closed meanwhile: release() gave back the old slot and the connection slot, the ones it
        // knew of. A move that was applied put `newKey` under the lease (and deleted the old slot
        // in the same transaction), where it would stay, held by no stream, until the lease goes:
        // closing deletes the stream's slots (docs/design.md section 11), this one too, if it still
        // holds this stream's value (the connection slot again: release() may not have got to it).
        if (answer.succeeded) void this.unregister(h, { partnerSlot: to, connectionSlot: from.connectionSlot });
        return true;
      }
      if (answer.succeeded) {
        h.registration = { partnerSlot: to, connectionSlot: from.connectionSlot };
        this.log.info('pool.slot-moved', { node: this.pool.name, partner: h.request.partner, direction: h.request.direction, stream: h.holder.stream, from: from.partnerSlot, to, limit: h.limit });
        return true;
      }
      if (answer.responses[1]?.response_range?.kvs[0]?.value.toString() !== h.value) {
        // No longer ours (gone with a lease): the sync registers the stream again, below the limit.
        h.registration = null;
        this.needsSync = true;
        return true;
      }
      taken.clear();
      for (const n of this.slotNumbers(answer.responses[0]?.response_range, h.partnerPrefix)) taken.add(n);
      if (Date.now() >= deadline) throw new Error(`no slot could be moved within ${ADMISSION_DEADLINE_MS} ms`);
    }
  }

  /** Stops the timer; slots are left to the lease, which PoolNode.close() revokes (all go at once). */
  close(): void {
    this.closed = true;
    clearInterval(this.timer);
  }

  // Admission ---------------------------------------------------------------------------------

  /**
   * Takes slots for `h` within ADMISSION_DEADLINE_MS and resolves with the pool's verdict. Each
   * call has its deadline; a timer backs them up and refuses. A transaction still under way after
   * the verdict is not lost: its answer gives the slots back.
   */
  private async register(h: Holding, lease: Lease): Promise<LimitVerdict> {
    const leaseId = await lease.grant();
    const deadline = Date.now() + ADMISSION_DEADLINE_MS;
    const attempt = this.takeSlots(h, leaseId, deadline, { partner: new Set(), connections: new Set() });
    attempt.catch(() => {});
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<LimitVerdict>((resolve) => {
      timer = setTimeout(() => resolve(this.undecided(h, 'etcd did not answer')), ADMISSION_DEADLINE_MS + ATTEMPT_DEADLINE_MS);
    });
    try {
      return await Promise.race([attempt, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * One transaction per attempt (see the file comment), each answer narrowing the choice, until
   * the stream holds its slots or none is free. A failed try (a member gone, a leader being
   * elected, a call timing out) is sent again until the deadline; a stream still undecided then
   * (also when other nodes kept taking the slots picked) is refused (see the file comment).
   */
  private async takeSlots(h: Holding, leaseId: string, deadline: number, taken: Taken): Promise<LimitVerdict> {
    let pick: Registration | null = null;
    let pause = RETRY_PAUSE_MS;
    for (;;) {
      if (pick === null) {
        const next = this.pick(h, taken);
        if (!('partnerSlot' in next)) return next;
        pick = next;
      }
      let answer: ITxnResponse;
      h.inFlight++;
      try {
        answer = await this.claim(h, pick, leaseId, Math.min(deadline, Date.now() + ATTEMPT_DEADLINE_MS));
      } catch (err) {
        // Applied or not, nobody knows: the same slots again (see the file comment) while time
        // remains; if it runs out, the syncs find out.
        this.uncertain();
        if (Date.now() + pause >= deadline) return this.undecided(h, `etcd: ${(err as Error).message.split('\n')[0]}`);
        await new Promise((r) => setTimeout(r, pause));
        pause = Math.min(2 * pause, RETRY_PAUSE_MAX_MS);
        continue;
      } finally {
        h.inFlight--;
      }
      const mine = (i: number) => answer.responses[i]?.response_range?.kvs[0]?.value.toString() === h.value;
      if (answer.succeeded || (mine(2) && mine(3))) {
        this.registered(h, pick);
        return { ok: true };
      }
      pick = null;
      taken.partner.clear();
      for (const n of this.slotNumbers(answer.responses[0]?.response_range, h.partnerPrefix)) taken.partner.add(n);
      taken.connections.clear();
      for (const n of this.slotNumbers(answer.responses[1]?.response_range, poolKeys.connections)) taken.connections.add(n);
      if (Date.now() >= deadline) return this.undecided(h, 'other nodes took the slots picked first');
    }
  }

  /** The refusal of a stream the pool could not decide on in time (see takeSlots). */
  private undecided(h: Holding, why: string): LimitVerdict {
    h.undecided = true;
    return { ok: false, rule: 'ConnectionLimit', text: `the pool could not decide on partner ${h.request.partner}'s ${h.limitName} ${h.limit} within ${ADMISSION_DEADLINE_MS} ms (${why}) (${h.request.direction} streams)` };
  }

  /** Free slots for `h` given what is known to be taken, or the refusal when there are none. */
  private pick(h: Holding, taken: Taken): Registration | LimitVerdict {
    const { partner, direction } = h.request;
    const { limit, limitName } = h;
    if (taken.partner.size >= limit) {
      return { ok: false, rule: 'ConnectionLimit', text: `${limitName} ${limit} of partner ${partner} reached across the pool (${direction} streams)` };
    }
    if (taken.connections.size >= this.connectionLimit) {
      return { ok: false, rule: 'connectionLimit', text: `the pool's connectionLimit of ${this.connectionLimit} authenticated partner streams is reached` };
    }
    return { partnerSlot: freeSlot(limit, taken.partner), connectionSlot: freeSlot(this.connectionLimit, taken.connections) };
  }

  private claim(h: Holding, slots: Registration, leaseId: string, deadline: number): Promise<ITxnResponse> {
    const kv = this.pool.etcd.kv;
    const partnerKey = h.partnerPrefix + slots.partnerSlot;
    const connectionKey = poolKeys.connections + slots.connectionSlot;
    return kv
      .if(partnerKey, 'Create', '==', 0)
      .and(connectionKey, 'Create', '==', 0)
      .then(kv.put(partnerKey).value(h.value).lease(leaseId), kv.put(connectionKey).value(h.value).lease(leaseId))
      .else(this.keysOnly(h.partnerPrefix), this.keysOnly(poolKeys.connections), kv.get(partnerKey), kv.get(connectionKey))
      .options({ deadline })
      .commit();
  }

  /** The stream now holds `slots`, unless it was refused or went away meanwhile: then they go back. */
  private registered(h: Holding, slots: Registration): void {
    if (h.released || (h.decided && (!h.admitted || h.registration !== null))) {
      void this.unregister(h, slots);
      return;
    }
    h.registration = slots;
    if (h.overLimit) {
      h.overLimit = false;
      this.log.info('pool.registered', { node: this.pool.name, partner: h.request.partner, direction: h.request.direction, stream: h.holder.stream, slot: slots.partnerSlot });
    }
  }

  private async unregister(h: Holding, slots: Registration): Promise<void> {
    if (this.closed) return;
    const kv = this.pool.etcd.kv;
    const deadline = Date.now() + ADMISSION_DEADLINE_MS;
    const drop = (key: string) => kv.if(key, 'Value', '==', h.value).then(kv.delete().key(key)).options({ deadline }).commit();
    try {
      await Promise.all([drop(h.partnerPrefix + slots.partnerSlot), drop(poolKeys.connections + slots.connectionSlot)]);
    } catch {
      // Maybe still ours in etcd: the syncs give them back (or the lease does, if this node dies).
      this.uncertain();
    }
  }

  /** The decision of a node cut off from etcd: its fixed local share of each limit. */
  private localShare(h: Holding, why: string): LimitVerdict {
    const { partner, direction, limit, limitName } = h.request;
    const nodes = this.knownNodes.count;
    if (nodes === null) {
      return { ok: false, rule: 'ConnectionLimit', text: `etcd cannot be reached (${why}) and this node has not seen its pool yet, so its share of partner ${partner}'s ${limitName} ${limit} is 0 (${direction} streams)` };
    }
    let own = 0;
    let ownAll = 0;
    for (const other of this.holdings.values()) {
      if (other === h) continue;
      ownAll++;
      if (other.request.partner === partner && other.request.direction === direction) own++;
    }
    const share = Math.floor(limit / nodes);
    if (own >= share) {
      return { ok: false, rule: 'ConnectionLimit', text: `etcd cannot be reached (${why}): this node's share of partner ${partner}'s ${limitName} ${limit} is floor(${limit}/${nodes} nodes) = ${share} (${direction} streams), ${own} in use` };
    }
    const connectionShare = Math.floor(this.connectionLimit / nodes);
    if (ownAll >= connectionShare) {
      return { ok: false, rule: 'connectionLimit', text: `etcd cannot be reached (${why}): this node's share of the pool's connectionLimit ${this.connectionLimit} is floor(${this.connectionLimit}/${nodes} nodes) = ${connectionShare}, ${ownAll} in use` };
    }
    return { ok: true };
  }

  // Registering again -------------------------------------------------------------------------

  private maybeSync(): void {
    if (!this.needsSync || this.syncing || this.closed) return;
    let overLimit = 0;
    let other = 0;
    for (const h of this.holdings.values()) if (h.admitted && h.registration === null) h.overLimit ? overLimit++ : other++;
    const onlyOverLimit = overLimit > 0 && other === 0 && Date.now() >= this.uncertainUntil;
    if (onlyOverLimit && Date.now() - this.lastSyncAt < OVER_LIMIT_RETRY_MS) return;
    void this.sync();
  }

  /**
   * Brings etcd in line with this node's live streams (see the file comment): its slots that a
   * live stream holds are kept (renewed under the current lease), the others deleted, and live
   * streams without slots take free ones.
   */
  private async sync(): Promise<void> {
    const lease = this.pool.membership.currentLease;
    if (this.syncing || this.closed || !lease) return;
    this.syncing = true;
    this.lastSyncAt = Date.now();
    try {
      await this.syncUnder(lease);
      this.syncError = null;
    } catch (err) {
      this.needsSync = true;
      const error = (err as Error).message.split('\n')[0]!;
      if (error !== this.syncError) this.log.info('pool.sync-failed', { node: this.pool.name, error, note: 'tried again every second' });
      this.syncError = error;
      return;
    } finally {
      this.syncing = false;
    }
    this.needsSync = this.unregistered > 0 || Date.now() < this.uncertainUntil;
  }

  /** A transaction failed without an answer: sync until it can no longer be applied. */
  private uncertain(): void {
    this.needsSync = true;
    this.uncertainUntil = Date.now() + UNCERTAIN_MS;
  }

  private async syncUnder(lease: Lease): Promise<void> {
    const kv = this.pool.etcd.kv;
    const leaseId = await lease.grant();
    // The streams this sync may touch, and their registrations, as they are before etcd is read:
    // one whose registration changes meanwhile (its own transaction answered) is left alone.
    const settled = new Map<Holding, Registration | null>();
    for (const h of this.holdings.values()) if (h.admitted && h.inFlight === 0) settled.set(h, h.registration);
    const untouched = (h: Holding) => !h.released && h.inFlight === 0 && settled.has(h) && settled.get(h) === h.registration;

    const deadline = Date.now() + ADMISSION_DEADLINE_MS;
    const [streams, connections] = await Promise.all([
      kv.getAll().prefix(poolKeys.streams).options({ deadline }).exec(),
      kv.getAll().prefix(poolKeys.connections).options({ deadline }).exec(),
    ]);
    // What is taken, and which slots name this node, by stream id.
    const takenByPrefix = new Map<string, Set<number>>();
    const takenConnections = new Set<number>();
    const ours = new Map<string, OwnSlot[]>();
    const note = (holder: SlotHolder | null, slot: OwnSlot) => {
      if (holder?.node === this.pool.name) ours.set(holder.stream, [...(ours.get(holder.stream) ?? []), slot]);
    };
    for (const entry of streams.kvs) {
      const key = entry.key.toString();
      const prefix = key.slice(0, key.lastIndexOf('/') + 1);
      const n = Number(key.slice(prefix.length));
      let set = takenByPrefix.get(prefix);
      if (!set) takenByPrefix.set(prefix, (set = new Set()));
      set.add(n);
      note(parseHolder(entry.value), { key, kv: entry, prefix, n });
    }
    for (const entry of connections.kvs) {
      const key = entry.key.toString();
      const n = Number(key.slice(poolKeys.connections.length));
      takenConnections.add(n);
      note(parseHolder(entry.value), { key, kv: entry, prefix: poolKeys.connections, n });
    }
    const current = new Map<string, Holding>();
    for (const h of this.holdings.values()) current.set(h.holder.stream, h);

    let renewed = 0;
    let given = 0;
    for (const [stream, slots] of ours) {
      const h = current.get(stream);
      if (h && !untouched(h)) continue; // being decided, or just registered: not this sync's business
      const partner = slots.filter((s) => s.prefix !== poolKeys.connections);
      const connection = slots.filter((s) => s.prefix === poolKeys.connections);
      const registration = partner.length === 1 && connection.length === 1 && partner[0]!.prefix === h?.partnerPrefix
        ? { partnerSlot: partner[0]!.n, connectionSlot: connection[0]!.n }
        : null;
      if (h && registration && (h.registration === null || sameSlots(h.registration, registration))) {
        if (slots.every((k) => k.kv.lease === leaseId)) {
          h.registration = registration;
          continue;
        }
        // Put again under the current lease, if nobody changed them meanwhile.
        const txn = kv.if(slots[0]!.key, 'Mod', '==', slots[0]!.kv.mod_revision).and(slots[1]!.key, 'Mod', '==', slots[1]!.kv.mod_revision);
        const answer = await txn.then(...slots.map((k) => kv.put(k.key).value(h.value).lease(leaseId))).options({ deadline }).commit();
        h.registration = answer.succeeded ? registration : null;
        if (answer.succeeded) renewed++;
        settled.set(h, h.registration);
        continue;
      }
      // Held by no live stream of ours (it closed while etcd was away), or not a whole
      // registration: given back, unless someone changed it meanwhile.
      for (const k of slots) {
        const answer = await kv.if(k.key, 'Mod', '==', k.kv.mod_revision).then(kv.delete().key(k.key)).options({ deadline }).commit();
        if (!answer.succeeded) continue;
        if (k.prefix === poolKeys.connections) takenConnections.delete(k.n);
        else takenByPrefix.get(k.prefix)?.delete(k.n);
      }
      if (h) {
        h.registration = null;
        settled.set(h, null);
      }
      given++;
    }

    let taken = 0;
    let over = 0;
    for (const h of settled.keys()) {
      if (!untouched(h)) continue;
      // A registration that etcd no longer has went with an old lease.
      if (h.registration !== null && !ours.has(h.holder.stream)) h.registration = null;
      if (h.registration !== null) continue;
      const partnerTaken = takenByPrefix.get(h.partnerPrefix) ?? new Set<number>();
      const verdict = await this.takeSlots(h, leaseId, Date.now() + ADMISSION_DEADLINE_MS, { partner: new Set(partnerTaken), connections: new Set(takenConnections) });
      const got = h.registration as Registration | null;
      if (verdict.ok && got !== null) {
        takenByPrefix.set(h.partnerPrefix, partnerTaken.add(got.partnerSlot));
        takenConnections.add(got.connectionSlot);
        taken++;
      } else if (!verdict.ok) {
        over++;
        if (!h.overLimit) {
          h.overLimit = true;
          this.log.warn('pool.over-limit', { node: this.pool.name, partner: h.request.partner, direction: h.request.direction, stream: h.holder.stream, text: `${verdict.text}; the stream stays up and takes a slot when one frees` });
        }
      }
    }
    if (renewed + given + taken + over > 0) this.log.info('pool.synced', { node: this.pool.name, renewed, givenBack: given, registered: taken, overLimit: over });
  }

  // etcd details ------------------------------------------------------------------------------

  /** A range request for the keys (not the values) under `relative` (a namespaced prefix). */
  private keysOnly(relative: string): IRequestOp {
    const range = Range.prefix(Buffer.concat([this.prefix, Buffer.from(relative)]));
    return { request_range: { key: range.start, range_end: range.end, keys_only: true } };
  }

  /** The slot numbers in a range answer of keys under `relative`. */
  private slotNumbers(answer: IRangeResponse | undefined, relative: string): number[] {
    const skip = this.prefix.length + Buffer.byteLength(relative);
    return (answer?.kvs ?? []).map((kv) => Number(kv.key.subarray(skip).toString())).filter((n) => Number.isInteger(n));
  }
}

/** A slot below `limit` not in `taken` (which holds fewer than `limit` below it): at random, else the first. */
function freeSlot(limit: number, taken: ReadonlySet<number>): number {
  for (let i = 0; i < 8; i++) {
    const n = limit <= 1 ? 0 : randomInt(Math.min(limit, 2 ** 47));
    if (!taken.has(n)) return n;
  }
  let n = 0;
  while (taken.has(n)) n++;
  return n;
}


/** One of this node's slots as read back from etcd. */
interface OwnSlot {
  /** Relative to the namespace: `<prefix><n>`. */
  readonly key: string;
  readonly kv: IKeyValue;
  /** `streams/<partner>/<direction>/` or `connections/`. */
  readonly prefix: string;
  readonly n: number;
}

function sameSlots(a: Registration, b: Registration): boolean {
  return a.partnerSlot === b.partnerSlot && a.connectionSlot === b.connectionSlot;
}

function parseHolder(value: Buffer): SlotHolder | null {
  try {
    const parsed = JSON.parse(value.toString()) as SlotHolder;
    return typeof parsed?.node === 'string' && typeof parsed.stream === 'string' ? parsed : null;
  } catch {
    return null;
  }
}
