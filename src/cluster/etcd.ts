/**
 * The pool's connection to etcd (issue 11; docs/design.md section 11): one etcd3 client per node,
 * scoped to `cluster.etcd.prefix`, and the layout of every key the pool writes (`poolKeys`).
 *
 * Why etcd3 (the npm client) and its defaults changed here: it speaks etcd's v3 gRPC API with
 * transactions, leases and watches, which is everything the pool needs, and it is maintained.
 * Two defaults do not suit a gateway: unary calls have no deadline (a node cut off from etcd
 * would wait forever where it must fall back to its local store), and a broken watch is
 * retried with up to 30 s of backoff (a partner added through another node must arrive within
 * seconds once etcd is back). Calls here get `ETCD_CALL_TIMEOUT_MS`, watches at most 1 s of backoff.
 */
import { Etcd3, isRecoverableError, type Namespace } from 'etcd3';
import { circuitBreaker, ConsecutiveBreaker, ExponentialBackoff, handleWhen, retry, type IBackoff } from 'cockatiel';
import type { ClusterConfig } from '../config/schema.js';

/** Deadline of one etcd call (a read, a transaction, a lease grant). */
export const ETCD_CALL_TIMEOUT_MS = 2_000;

/**
 * Every key below `cluster.etcd.prefix`. One place, so the layout is visible:
 *  - `partners`: the allowed-partner list, as partners.yaml text (one key: one revision is one
 *    whole list, applied atomically by every node);
 *  - `dialback-secret`: the XEP-0185 secret every node derives its dialback keys from;
 *  - `nodes/<node>`: a live node (JSON), under that node's lease;
 *  - `streams/<partner>/<direction>/<slot>`: an admitted stream holding one slot of its partner's
 *    ConnectionLimit (JSON naming the node), under the node's lease;
 *  - `connections/<slot>`: the same stream's slot of the pool-wide `connectionLimit` (same JSON,
 *    same lease; cluster/pool-admission.ts puts and deletes both in one transaction);
 *  - `approvals/<local> <remote>`: a trust-tier approval (JSON: local, remote, since, lastSeen,
 *    node); bare JIDs in comparison form, which never contain a space, so `approvals/<local> `
 *    is the prefix of exactly one local user's approvals;
 *  - `barrier-answers/<issuer>/<forwarder>`: the answers node `forwarder` read for delivery
 *    barriers node `issuer` sent (JSON array of ids; src/cluster/barrier-answers.ts), under the
 *    forwarder's lease. One key per pair of nodes, overwritten by each batch: the issuer watches
 *    `barrier-answers/<issuer>/` and reads every put event, so nothing needs deleting.
 */
export const poolKeys = {
  partners: 'partners',
  dialbackSecret: 'dialback-secret',
  nodes: 'nodes/',
  node: (name: string) => `nodes/${name}`,
  streams: 'streams/',
  /** The slots of one partner's limit in one direction. */
  partnerSlots: (partner: string, direction: string) => `streams/${partner}/${direction}/`,
  connections: 'connections/',
  approvals: 'approvals/',
  approval: (local: string, remote: string) => `approvals/${local} ${remote}`,
  approvalsOf: (local: string) => `approvals/${local} `,
  barrierAnswersTo: (issuer: string) => `barrier-answers/${issuer}/`,
  barrierAnswers: (issuer: string, forwarder: string) => `barrier-answers/${issuer}/${forwarder}`,
} as const;

export interface EtcdConnection {
  readonly client: Etcd3;
  /** The client scoped to `cluster.etcd.prefix`: every key above is relative to it. */
  readonly kv: Namespace;
  readonly config: ClusterConfig;
  close(): void;
}

/** Opens a client (lazily: nothing is sent until the first call). */
export function connectEtcd(config: ClusterConfig): EtcdConnection {
  const client = new Etcd3({
    hosts: [...config.etcd.endpoints],
    dialTimeout: ETCD_CALL_TIMEOUT_MS,
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + ETCD_CALL_TIMEOUT_MS }),
    faultHandling: {
      // Another member is tried on a recoverable error (one member down changes nothing);
      // a member that keeps failing is skipped for a second.
      global: retry(handleWhen(isRecoverableError), { maxAttempts: config.etcd.endpoints.length }),
      host: () => circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: 1_000, breaker: new ConsecutiveBreaker(3) }),
      // etcd3's type says IBackoff, but its WatchManager calls `.next()` on it first, i.e. it
      // wants the factory (as its own default, `new ExponentialBackoff()`, is).
      watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 1_000 }) as unknown as IBackoff<unknown>,
    },
  });
  return {
    client,
    kv: client.namespace(config.etcd.prefix),
    config,
    close: () => client.close(),
  };
}
