/**
 * Connection accounting (issue 3, docs/design.md section 3 ConnectionLimit):
 *  - the gateway-wide `connectionLimit` counts every s2s connection, any state, both directions;
 *  - a partner's ConnectionLimit (unset: `partnerConnectionLimit`) counts its *authenticated*
 *    streams per direction, across all its domains (s2s streams are one-way, so a limit of 1
 *    allows one inbound and one outbound stream);
 *  - unauthenticated inbound connections are capped per remote address (slowloris, floods), and
 *    gateway-wide below connectionLimit (`maxUnauthenticatedConnections`), so authenticated
 *    streams always have room; when that cap is full a new connection sheds the oldest
 *    unauthenticated one instead of being refused (an idle flood cannot lock partners out);
 *  - dialback verification connections are short-lived, counted apart and capped on their own,
 *    so a partner at its limit can still be verified.
 *
 * In a pool (docs/design.md section 11) a partner's ConnectionLimit and the connectionLimit of
 * authenticated partner streams hold across all nodes: after the local check, `admitPartnerStream`
 * asks the pool (`settings.pool`, cluster/pool-admission.ts), which decides with an etcd
 * transaction, so the answer is a promise. Without a pool it is the synchronous answer of old.
 */
import type { PartnerRecord } from '../policy/types.js';
import type { StreamDirection } from './stream-info.js';

export interface LimitSettings {
  readonly connectionLimit: number;
  readonly partnerConnectionLimit: number;
  readonly maxUnauthenticatedPerAddress: number;
  readonly maxDialbackVerifications: number;
  /** Unauthenticated inbound connections, gateway-wide (unset: no cap of its own). */
  readonly maxUnauthenticated?: number;
  /**
   * Closes an unauthenticated connection shed to admit a newer one (it is no longer counted);
   * without it, a new connection beyond `maxUnauthenticated` is refused instead.
   */
  readonly shed?: (oldest: Counted, rule: string, text: string) => void;
  /** The pool's admission (cluster mode); absent: every decision is local and synchronous. */
  readonly pool?: PoolGate;
}

/** What the pool is asked about one stream that authenticated (docs/design.md section 11). */
export interface PoolAdmissionRequest {
  /** The partner's Identity. */
  readonly partner: string;
  readonly direction: StreamDirection;
  /** The partner's limit L, and where it comes from (its record, or partnerConnectionLimit). */
  readonly limit: number;
  readonly limitName: 'ConnectionLimit' | 'partnerConnectionLimit';
  readonly stream: Counted;
  /** The stream's id in status (S2SStream.connectionId) and its remote domain, shown across the pool. */
  readonly streamId: string;
  readonly remoteDomain: string;
}

/** A partner's limit as a reload left it. */
export interface PartnerLimit {
  readonly limit: number;
  readonly limitName: 'ConnectionLimit' | 'partnerConnectionLimit';
}

/** One of this node's streams above its partner's lowered limit across the pool: to be closed. */
export interface PoolSurplus extends PartnerLimit {
  readonly stream: Counted;
  readonly partner: string;
  readonly direction: StreamDirection;
}

/** Admission across the pool: a slot of the partner's limit, given back by `release`. */
export interface PoolGate {
  /** Never rejects: when etcd cannot answer, the node decides on its local share. */
  admit(request: PoolAdmissionRequest): Promise<LimitVerdict>;
  release(stream: Counted): void;
  /**
   * After a reload: the limits in force (undefined: no longer a partner). Resolves with this
   * node's streams that hold no slot below their partner's limit and find no free one; `live`
   * says which streams still count (not already being closed by the reload).
   */
  applyLimits(limitOf: (partner: string) => PartnerLimit | undefined, live: (stream: Counted) => boolean): Promise<PoolSurplus[]>;
}

export type LimitVerdict = { readonly ok: true } | { readonly ok: false; readonly rule: string; readonly text: string };
const OK: LimitVerdict = { ok: true };

/** Something counted against a partner: a stream object, compared by identity. */
export type Counted = object;

export class ConnectionLimits {
  private total = 0;
  private readonly unauthByAddress = new Map<string, number>();
  /** Unauthenticated connections and their addresses, oldest first (Map insertion order). */
  private readonly unauthenticated = new Map<Counted, string>();
  /** Unauthenticated connections counted per address only (openUnauthenticated `global` false). */
  private readonly unauthenticatedApart = new Map<Counted, string>();
  private readonly byPartner = { inbound: new Map<string, Set<Counted>>(), outbound: new Map<string, Set<Counted>>() };
  private verifications = 0;

  constructor(private readonly settings: LimitSettings) {}

  get connections(): number {
    return this.total;
  }

  /** A new TCP connection (either direction). */
  openConnection(): LimitVerdict {
    if (this.total >= this.settings.connectionLimit) {
      return { ok: false, rule: 'connectionLimit', text: `the gateway's connectionLimit of ${this.settings.connectionLimit} connections is reached` };
    }
    this.total++;
    return OK;
  }

  closeConnection(): void {
    this.total = Math.max(0, this.total - 1);
  }

  get unauthenticatedConnections(): number {
    return this.unauthenticated.size;
  }

  /**
   * An inbound connection that has not authenticated yet: per remote address, then gateway-wide
   * unless `global` is false (the internal server's connections: never shed for a partner's).
   */
  openUnauthenticated(address: string, conn: Counted, global = true): LimitVerdict {
    if (this.unauthenticated.has(conn) || this.unauthenticatedApart.has(conn)) return OK;
    const n = this.unauthByAddress.get(address) ?? 0;
    if (n >= this.settings.maxUnauthenticatedPerAddress) {
      return { ok: false, rule: 'maxUnauthenticatedPerAddress', text: `too many unauthenticated connections from ${address} (limit ${this.settings.maxUnauthenticatedPerAddress})` };
    }
    if (!global) {
      this.unauthenticatedApart.set(conn, address);
      this.unauthByAddress.set(address, n + 1);
      return OK;
    }
    const max = this.settings.maxUnauthenticated ?? Infinity;
    if (this.unauthenticated.size >= max) {
      const text = `maxUnauthenticatedConnections (${max}) reached: the oldest unauthenticated connection makes room for a new one`;
      const shed = this.settings.shed;
      const oldest = this.unauthenticated.entries().next().value;
      if (!shed || !oldest) return { ok: false, rule: 'maxUnauthenticatedConnections', text: `too many unauthenticated connections (maxUnauthenticatedConnections ${max})` };
      this.closeUnauthenticated(oldest[1], oldest[0]);
      shed(oldest[0], 'maxUnauthenticatedConnections', text);
    }
    this.unauthenticated.set(conn, address);
    this.unauthByAddress.set(address, (this.unauthByAddress.get(address) ?? 0) + 1);
    return OK;
  }

  /** The connection authenticated or went away; a no-op for one not counted (e.g. shed). */
  closeUnauthenticated(address: string, conn: Counted): void {
    if (!this.unauthenticated.delete(conn) && !this.unauthenticatedApart.delete(conn)) return;
    const n = (this.unauthByAddress.get(address) ?? 1) - 1;
    if (n <= 0) this.unauthByAddress.delete(address);
    else this.unauthByAddress.set(address, n);
  }

  partnerLimit(partner: PartnerRecord): number {
    return partner.ConnectionLimit ?? this.settings.partnerConnectionLimit;
  }

  /** The partner's limit and the setting it comes from (its own ConnectionLimit, or the default). */
  private limitOf(partner: PartnerRecord): PartnerLimit {
    return { limit: this.partnerLimit(partner), limitName: partner.ConnectionLimit === null ? 'partnerConnectionLimit' : 'ConnectionLimit' };
  }

  /** Streams of this partner counted in one direction. */
  partnerStreams(partner: PartnerRecord, direction: StreamDirection): ReadonlySet<Counted> {
    return this.byPartner[direction].get(partner.Identity) ?? new Set();
  }

  /** Would one more authenticated stream exceed the partner's limit? (Checked early, at the header.) */
  partnerHasRoom(partner: PartnerRecord, direction: StreamDirection): LimitVerdict {
    const { limit, limitName } = this.limitOf(partner);
    const used = this.byPartner[direction].get(partner.Identity)?.size ?? 0;
    if (used >= limit) {
      return { ok: false, rule: 'ConnectionLimit', text: `${limitName} ${limit} of partner ${partner.Identity} reached (${direction} streams)` };
    }
    return OK;
  }

  /** Counts an authenticated stream against its partner; refuses if that would exceed the limit. */
  addPartnerStream(partner: PartnerRecord, direction: StreamDirection, stream: Counted): LimitVerdict {
    const set = this.byPartner[direction].get(partner.Identity) ?? new Set<Counted>();
    if (set.has(stream)) return OK;
    const room = this.partnerHasRoom(partner, direction);
    if (!room.ok) return room;
    set.add(stream);
    this.byPartner[direction].set(partner.Identity, set);
    return OK;
  }

  /**
   * Counts an authenticated stream against its partner, locally and then (in a pool) across the
   * pool. Without a pool the verdict is synchronous, exactly `addPartnerStream`; in a pool it is a
   * promise, and the stream is counted here from the start (so this node never admits more than
   * the limit while the pool decides) and uncounted again if the pool refuses.
   */
  admitPartnerStream(partner: PartnerRecord, direction: StreamDirection, stream: Counted, ids: { streamId: string; remoteDomain: string }): LimitVerdict | Promise<LimitVerdict> {
    const pool = this.settings.pool;
    const counted = this.partnerStreams(partner, direction).has(stream);
    const local = this.addPartnerStream(partner, direction, stream);
    if (!pool || !local.ok || counted) return local;
    const request: PoolAdmissionRequest = {
      partner: partner.Identity,
      direction,
      ...this.limitOf(partner),
      stream,
      streamId: ids.streamId,
      remoteDomain: ids.remoteDomain,
    };
    return pool.admit(request).then((verdict) => {
      if (!verdict.ok) this.uncount(partner.Identity, direction, stream);
      return verdict;
    });
  }

  /**
   * In a pool, after a reload: applies the partners' limits across the pool (see PoolGate
   * `applyLimits`); resolves with the streams to close. Null without a pool.
   */
  applyPoolLimits(records: readonly PartnerRecord[], live: (stream: Counted) => boolean): Promise<PoolSurplus[]> | null {
    const pool = this.settings.pool;
    if (!pool) return null;
    const limits = new Map<string, PartnerLimit>();
    for (const r of records) limits.set(r.Identity, this.limitOf(r));
    return pool.applyLimits((partner) => limits.get(partner), live);
  }

  removePartnerStream(partnerIdentity: string, direction: StreamDirection, stream: Counted): void {
    if (this.uncount(partnerIdentity, direction, stream)) this.settings.pool?.release(stream);
  }

  private uncount(partnerIdentity: string, direction: StreamDirection, stream: Counted): boolean {
    const set = this.byPartner[direction].get(partnerIdentity);
    if (!set?.delete(stream)) return false;
    if (set.size === 0) this.byPartner[direction].delete(partnerIdentity);
    return true;
  }

  /** A dialback verification connection (not counted against any partner). */
  openVerification(): LimitVerdict {
    if (this.verifications >= this.settings.maxDialbackVerifications) {
      return { ok: false, rule: 'maxDialbackVerifications', text: `too many dialback verifications in progress (limit ${this.settings.maxDialbackVerifications})` };
    }
    this.verifications++;
    return OK;
  }

  closeVerification(): void {
    this.verifications = Math.max(0, this.verifications - 1);
  }
}
