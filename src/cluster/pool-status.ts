/**
 * The pool as `status` shows it (docs/design.md section 11): every registered node with its
 * admitted partner streams, read from etcd (`nodes/`, and the `streams/` slots, whose values name
 * node and stream), and this node's own streams from memory, including those not registered in
 * etcd. When etcd cannot be reached within ADMISSION_DEADLINE_MS the answer says so and shows
 * this node only. `GET /status` carries it as "pool"; `xmpp-gateway status` prints it.
 */
import { poolKeys } from './etcd.js';
import type { PoolNodeInfo } from './membership.js';
import { ADMISSION_DEADLINE_MS, type LocalPoolStream, type PoolAdmission, type SlotHolder } from './pool-admission.js';
import type { KnownNodes } from './known-nodes.js';
import type { PoolNode } from './pool-node.js';

/** One stream of a node, as the pool knows it. */
export interface PoolStreamStatus extends SlotHolder {
  /** Its slot of the partner's limit; null for one of this node's streams not registered in etcd. */
  readonly slot: number | null;
  /** This node only: admitted on its share or lost its slot, and no free slot since. */
  readonly overLimit?: boolean;
}

export interface PoolNodeStatus {
  readonly name: string;
  /** The node answering this status. */
  readonly self: boolean;
  /** From its registration (`nodes/<name>`); absent when it holds slots but is not registered. */
  readonly pid?: number;
  readonly startedAt?: string;
  readonly streams: PoolStreamStatus[];
}

export interface PoolStatus {
  /** The node answering. */
  readonly node: string;
  readonly etcd: 'reachable' | 'unreachable';
  /** Why etcd could not be read (etcd 'unreachable'). */
  readonly error?: string;
  /** This node holds its lease. */
  readonly online: boolean;
  /** The pool's size as this node last saw it (the N of its local shares); null: never. */
  readonly knownNodes: number | null;
  /** Every node, this one included, by name. */
  readonly nodes: PoolNodeStatus[];
}

export async function poolStatus(pool: Pick<PoolNode, 'etcd' | 'membership' | 'name'>, admission: Pick<PoolAdmission, 'localStreams'>, knownNodes: Pick<KnownNodes, 'count'>): Promise<PoolStatus> {
  const own = admission.localStreams().map(localEntry);
  const base = { node: pool.name, online: pool.membership.online, knownNodes: knownNodes.count };
  const self = (info?: PoolNodeInfo): PoolNodeStatus => ({ name: pool.name, self: true, ...(info ? { pid: info.pid, startedAt: info.startedAt } : {}), streams: own });
  const deadline = Date.now() + ADMISSION_DEADLINE_MS;
  let registered: Record<string, string>;
  let slots: Record<string, string>;
  try {
    [registered, slots] = await Promise.all([
      pool.etcd.kv.getAll().prefix(poolKeys.nodes).options({ deadline }).strings(),
      pool.etcd.kv.getAll().prefix(poolKeys.streams).options({ deadline }).strings(),
    ]);
  } catch (err) {
    return { ...base, etcd: 'unreachable', error: (err as Error).message, nodes: [self()] };
  }
  const nodes = new Map<string, PoolNodeStatus>();
  for (const value of Object.values(registered)) {
    const info = parse<PoolNodeInfo>(value);
    if (!info || typeof info.name !== 'string') continue;
    nodes.set(info.name, info.name === pool.name ? self(info) : { name: info.name, self: false, pid: info.pid, startedAt: info.startedAt, streams: [] });
  }
  if (!nodes.has(pool.name)) nodes.set(pool.name, self());
  for (const [key, value] of Object.entries(slots)) {
    const holder = parse<SlotHolder>(value);
    if (!holder || typeof holder.node !== 'string' || holder.node === pool.name) continue; // ours: from memory
    let node = nodes.get(holder.node);
    if (!node) nodes.set(holder.node, (node = { name: holder.node, self: false, streams: [] }));
    node.streams.push({ ...holderFields(holder), slot: Number(key.slice(key.lastIndexOf('/') + 1)) });
  }
  const sorted = [...nodes.values()].sort((a, b) => a.name.localeCompare(b.name));
  for (const n of sorted) n.streams.sort((a, b) => a.partner.localeCompare(b.partner) || a.direction.localeCompare(b.direction) || (a.slot ?? -1) - (b.slot ?? -1));
  return { ...base, etcd: 'reachable', nodes: sorted };
}

function localEntry(s: LocalPoolStream): PoolStreamStatus {
  return { ...holderFields(s), slot: s.slot, overLimit: s.overLimit };
}

/** The holder's fields only (a value written by another version may carry more). */
function holderFields(h: SlotHolder): SlotHolder {
  return { node: h.node, stream: h.stream, partner: h.partner, direction: h.direction, remoteDomain: h.remoteDomain, since: h.since };
}

function parse<T>(value: string): T | null {
  try {
    return JSON.parse(value) as T;
  } catch {
    return null;
  }
}
