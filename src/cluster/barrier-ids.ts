/**
 * Delivery-barrier ids in a pool (docs/design.md section 11, "Delivery barriers"): ids that every
 * node recognises as the pool's and that name the node which issued them.
 *
 * A barrier is a XEP-0199 ping on our stream to a peer; the peer answers on its own stream back to
 * us (RFC 6120 section 2.5: s2s streams are one-way), and in a pool DNS decides which node that
 * stream reaches. So the node that reads an answer must know it is a barrier answer (never relay
 * it) and whose: `gwb-<pool tag>-<node>:<incarnation>-<sequence>`.
 *
 *  - The pool tag is an HMAC of a fixed label under the pool's dialback secret (src/cluster/
 *    shared-secret.ts), so every node derives the same tag without another etcd key, and nobody
 *    who holds neither the secret nor one of our pings can guess it: a user cannot make a node
 *    swallow an iq result, nor confirm what was not received (delivery-barriers.ts). The tag
 *    follows the secret; the previous tag stays recognised after a change, so the answers to
 *    barriers in flight are not relayed on.
 *  - The node is `cluster.nodeName` (letters, digits, '.', '_', '-': never ':').
 *  - The incarnation is random per process, so an answer to a barrier of a previous run of the
 *    node never confirms one of this run.
 */
import { createHmac, randomBytes } from 'node:crypto';

/** What the tag is an HMAC of (a label: the dialback keys use the same secret for other input). */
const TAG_LABEL = 'xmpp-gateway delivery barrier ids';

/** The part of an id after the pool prefix: node, incarnation, sequence. */
const ISSUED = /^([A-Za-z0-9][A-Za-z0-9._-]{0,62}):[0-9a-f]{8}-[0-9a-z]{1,12}$/;

export class PoolBarrierIds {
  private readonly incarnation = randomBytes(4).toString('hex');
  private secretSeen = '';
  private current = '';
  /** The tag before the last change of the secret (answers to barriers in flight carry it). */
  private previous = '';

  constructor(
    readonly nodeName: string,
    /** The pool's dialback secret as it is now (read per call: it can change). */
    private readonly secret: () => string,
  ) {}

  /** What this node's next ids start with; the sequence follows. */
  ownPrefix(): string {
    return `${this.poolPrefix()}${this.nodeName}:${this.incarnation}-`;
  }

  /** The node that issued `id` when `id` is a pool barrier id (this node included), else null. */
  issuerOf(id: string): string | null {
    const current = this.poolPrefix();
    const prefix = id.startsWith(current) ? current : this.previous !== '' && id.startsWith(this.previous) ? this.previous : null;
    if (prefix === null) return null;
    return ISSUED.exec(id.slice(prefix.length))?.[1] ?? null;
  }

  private poolPrefix(): string {
    const secret = this.secret();
    if (secret !== this.secretSeen) {
      if (this.current !== '') this.previous = this.current;
      this.current = `gwb-${createHmac('sha256', secret).update(TAG_LABEL).digest('hex').slice(0, 16)}-`;
      this.secretSeen = secret;
    }
    return this.current;
  }
}
