/**
 * Delivery confirmation for streams without XEP-0198: XEP-0199 pings as barriers.
 *
 * A server handles the stanzas of one incoming stream in order, so when it answers a ping we
 * sent after stanzas 1..n on a stream, stanzas 1..n were read and routed by it (a `result` or an
 * `error` answer both prove that). What was sent after the last answered barrier is
 * *unconfirmed*: if the stream dies (the peer restarts, a socket breaks), those stanzas may never
 * have been read. The pool keeps them and sends them again on the next stream (at least once:
 * a stanza the peer had read but not yet confirmed can arrive twice), or bounces them if no
 * stream can be had. Nothing written into a dying socket is silently lost.
 *
 * The answer comes back on the peer's own stream towards us (RFC 6120 section 2.5: s2s streams
 * are one-way), so the router hands every iq result/error whose id carries our prefix here
 * instead of relaying it. A barrier that stays unanswered for `timeoutMs` (a peer that cannot
 * reach us back) releases what it covered and counts it as unconfirmed: the one case where a
 * stanza may be lost, documented and counted (gw_relay_unconfirmed_total).
 *
 * In a pool (docs/design.md section 11, "Delivery barriers") the peer's stream back may reach
 * another node (DNS picks it). So ids are the pool's (src/cluster/barrier-ids.ts: a prefix every
 * node derives from the shared dialback secret, then the issuing node's name): any node consumes
 * any pool node's answers, never relays them, and hands an answer for another node's barrier to
 * the pool (src/cluster/barrier-answers.ts: through etcd, asynchronously), whose issuer confirms
 * it with `answerForwarded`. Nothing here waits on etcd; an answer etcd cannot carry lets the
 * barrier time out as above.
 *
 * References: XEP-0199 section 4.2 (server-to-server ping); XEP-0198 (what this stands in for).
 */
import { randomBytes } from 'node:crypto';
import { escapeXML } from '../xml/ltx.js';
import { NS_PING } from '../xml/namespaces.js';

/** Something waiting for barriers (a pool link): told when one is answered or given up. */
export interface BarrierOwner {
  barrierAnswered(id: string): void;
}

/** A pool node's side of barriers (src/cluster/barrier-answers.ts); absent without `cluster`. */
export interface BarrierPool {
  readonly nodeName: string;
  /** What this node's next ids start with (the pool's prefix, this node, this process). */
  ownPrefix(): string;
  /** The pool node that issued `id`, or null when `id` is not a pool barrier id. */
  issuerOf(id: string): string | null;
  /** Hands the answer to another node's barrier to that node: asynchronous, never throws. */
  forward(issuer: string, id: string): void;
}

export class DeliveryBarriers {
  /**
   * Unguessable per process, so a peer cannot confirm (or swallow) what it did not receive. In a
   * pool the ids come from `pool` instead (unguessable per pool, naming the node and the process).
   */
  private readonly prefix = `gw-${randomBytes(6).toString('hex')}-`;
  private seq = 0;
  private readonly owners = new Map<string, BarrierOwner>();

  constructor(private readonly pool: BarrierPool | null = null) {}

  /** A fresh barrier id, registered to `owner`. */
  next(owner: BarrierOwner): string {
    const id = `${this.pool === null ? this.prefix : this.pool.ownPrefix()}${(this.seq++).toString(36)}`;
    this.owners.set(id, owner);
    return id;
  }

  forget(id: string): void {
    this.owners.delete(id);
  }

  /**
   * Called by the router for every iq; true when it was a barrier answer (consumed, not
   * relayed): ours, or in a pool any node's. Cheap for the common case: one type test and one
   * prefix test.
   */
  answer(type: string | undefined, id: string | undefined): boolean {
    if ((type !== 'result' && type !== 'error') || id === undefined) return false;
    if (this.pool !== null) return this.poolAnswer(this.pool, id);
    if (!id.startsWith(this.prefix)) return false;
    this.answerForwarded(id);
    return true;
  }

  /**
   * An answer to one of this node's barriers (read here, or by another pool node and passed on
   * through etcd). An id this process did not issue, or has forgotten, is ignored.
   */
  answerForwarded(id: string): void {
    const owner = this.owners.get(id);
    if (owner) {
      this.owners.delete(id);
      owner.barrierAnswered(id);
    }
  }

  get pending(): number {
    return this.owners.size;
  }

  private poolAnswer(pool: BarrierPool, id: string): boolean {
    const issuer = pool.issuerOf(id);
    if (issuer === null) return false;
    if (issuer === pool.nodeName) this.answerForwarded(id);
    else pool.forward(issuer, id);
    return true;
  }
}

/** The ping that serves as a barrier, from the domain we speak as to the peer's domain. */
export function barrierPing(from: string, to: string, id: string): string {
  return `<iq type='get' from='${escapeXML(from)}' to='${escapeXML(to)}' id='${id}'><ping xmlns='${NS_PING}'/></iq>`;
}
