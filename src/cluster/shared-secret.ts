/**
 * The dialback secret (XEP-0185 section 3: every key is an HMAC under it; src/negotiation/dialback-key.ts).
 * A partner verifies a key we sent it by asking our domain's authoritative server, found through
 * DNS (XEP-0220 section 2.1.2); in a pool that may be any node, so every node must hold the same
 * secret: issue 11, "a db:verify for a key that node A issued is answered correctly by node B".
 *
 * Where the secret comes from (docs/design.md section 11):
 *  1. `dialbackSecret` in gateway.yaml, when set, always: then it must be the same on every node.
 *  2. Without a pool: a random one per start (docs/design.md section 2).
 *  3. In a pool: etcd key `dialback-secret`, created once by the first node that finds it absent
 *     (one transaction: put only if the key does not exist, else read it; 32 random bytes, hex).
 *     Each node keeps it in its state directory (the directory of `localStore`, file
 *     `dialback-secret`, mode 0600), so a node that starts while etcd is unreachable uses the
 *     same secret.
 *  4. In a pool, with neither etcd nor a kept secret (a new node while etcd is down): a random one,
 *     kept as in 3 and logged as a warning: the keys this node issues cannot be verified by the
 *     other nodes, nor theirs by it, until it reaches etcd. It converges there: each time the
 *     node joins the pool ('online'), and every second while its secret is not etcd's, etcd's
 *     secret replaces its own, or its own becomes the pool's when etcd has none. A watch on the
 *     key does the same while the node runs: a changed secret is taken at once, a deleted one is
 *     created again. Keys sent under the secret that
 *     was replaced fail verification once; the partner's server tries again with a new stream.
 *
 * The secret is read per key (issued or checked), never cached by the streams, so a change
 * applies to the next dialback at once.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Watcher } from 'etcd3';
import type { GatewayConfig } from '../config/schema.js';
import type { Logger } from '../log.js';
import { writeFileAtomic } from '../policy/atomic-write.js';
import { poolKeys } from './etcd.js';
import type { PoolNode } from './pool-node.js';
import { startWatch } from './watch-start.js';

/** Where streams read the secret from (GatewayContext.dialbackSecret reads `current`). */
export interface DialbackSecret {
  readonly current: string;
  /** Where `current` came from, for logs and tests. */
  readonly source: 'gateway.yaml' | 'random' | 'etcd' | 'state' | 'local';
  close(): Promise<void>;
}

/** How often a node whose secret is not (yet) etcd's asks etcd again. */
const RETRY_MS = 1_000;

/** The longest secret accepted from etcd or the state file (a secret is hex; this is generous). */
const MAX_SECRET_LENGTH = 1024;

/** The file a pool node keeps the secret in: next to the local store (docs/design.md section 11). */
export function secretFile(config: Pick<GatewayConfig, 'localStore'>): string {
  return join(dirname(config.localStore), 'dialback-secret');
}

export async function openDialbackSecret(config: GatewayConfig, pool: PoolNode | null, log: Logger): Promise<DialbackSecret> {
  if (config.dialbackSecret !== null) {
    if (pool) log.info('cluster.dialback-secret', { node: pool.name, source: 'gateway.yaml', note: 'dialbackSecret in gateway.yaml: it must be the same on every node of the pool' });
    return fixed(config.dialbackSecret, 'gateway.yaml');
  }
  if (!pool) return fixed(randomBytes(32).toString('hex'), 'random');
  return SharedDialbackSecret.start(pool, secretFile(config), log);
}

function fixed(secret: string, source: DialbackSecret['source']): DialbackSecret {
  return { current: secret, source, close: async () => {} };
}

/** A pool node's secret: etcd's, kept in the state file, converging as the file comment says. */
class SharedDialbackSecret implements DialbackSecret {
  current = '';
  source: DialbackSecret['source'] = 'etcd';
  private watcher: Watcher | null = null;
  private closed = false;
  /**
   * Serialises what changes the secret (a rejoin and the watch may fire together); it starts once
   * `start` has settled the first secret, so a rejoin during start is handled after it.
   */
  private chain: Promise<void>;
  private started!: () => void;
  private readonly onOnline = () => this.enqueue(() => this.agree('rejoined the pool'));
  /** Asks etcd again every second while the secret is not etcd's or the key is not watched. */
  private retry: NodeJS.Timeout | undefined;
  private retrying = false;
  /** etcd could not be asked: said once per outage. */
  private unreachable = false;

  private constructor(private readonly pool: PoolNode, private readonly file: string, private readonly log: Logger) {
    this.chain = new Promise((resolve) => (this.started = resolve));
  }

  static async start(pool: PoolNode, file: string, log: Logger): Promise<SharedDialbackSecret> {
    const s = new SharedDialbackSecret(pool, file, log);
    pool.membership.on('online', s.onOnline);
    const kept = await s.readKept();
    // A node that did not join at start cannot reach etcd: no second timeout here.
    const agreed = pool.membership.online ? await s.agreeWith(kept).catch((err: unknown) => {
      log.warn('cluster.dialback-secret-unreachable', { node: pool.name, error: (err as Error).message });
      s.unreachable = true;
      return null;
    }) : null;
    if (agreed !== null) {
      s.current = agreed;
      s.source = 'etcd';
      if (agreed !== kept) await s.keep(agreed);
    } else if (kept !== null) {
      s.current = kept;
      s.source = 'state';
    } else {
      s.current = randomBytes(32).toString('hex');
      s.source = 'local';
      await s.keep(s.current);
      log.warn('cluster.dialback-secret-local', {
        node: pool.name,
        note: 'etcd cannot be reached and no dialback secret is kept here: using a new one; dialback keys this node issues cannot be verified by other nodes (nor theirs by it) until it reaches etcd',
      });
    }
    log.info('cluster.dialback-secret', { node: pool.name, source: s.source, file });
    if (s.source === 'etcd') s.enqueue(() => s.startWatch());
    // Also while the node stays in the pool (a short etcd outage loses no lease, so no 'online').
    s.retry = setInterval(() => {
      if (s.retrying || (s.source === 'etcd' && s.watcher !== null)) return;
      s.retrying = true;
      s.enqueue(() => s.agree('etcd answered').finally(() => (s.retrying = false)));
    }, RETRY_MS);
    s.retry.unref();
    s.started();
    return s;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.retry);
    this.pool.membership.off('online', this.onOnline);
    await this.chain;
    await this.watcher?.cancel().catch(() => {});
    this.watcher = null;
  }

  /**
   * The pool's secret: etcd's, or `candidate` (else a new one) written if the key is absent, in
   * one transaction. Throws when etcd cannot be reached.
   */
  private async agreeWith(candidate: string | null): Promise<string> {
    const kv = this.pool.etcd.kv;
    const proposal = candidate ?? randomBytes(32).toString('hex');
    const res = await kv.if(poolKeys.dialbackSecret, 'Create', '==', 0)
      .then(kv.put(poolKeys.dialbackSecret).value(proposal))
      .else(kv.get(poolKeys.dialbackSecret))
      .commit();
    if (res.succeeded) return proposal;
    const value = res.responses[0]?.response_range?.kvs[0]?.value.toString();
    if (value === undefined) throw new Error('etcd answered the dialback-secret transaction without the key');
    return this.checked(value, `etcd key ${poolKeys.dialbackSecret}`);
  }

  /** Takes etcd's secret (or makes ours the pool's), keeps it, and logs a change. */
  private async agree(why: string): Promise<void> {
    let secret: string;
    try {
      secret = await this.agreeWith(this.current);
    } catch (err) {
      if (!this.unreachable) this.log.warn('cluster.dialback-secret-unreachable', { node: this.pool.name, error: (err as Error).message });
      this.unreachable = true;
      return;
    }
    this.unreachable = false;
    await this.adopt(secret, why);
    if (!this.watcher) await this.startWatch();
  }

  private async adopt(secret: string, why: string): Promise<void> {
    if (this.closed) return;
    const changed = secret !== this.current;
    this.current = secret;
    this.source = 'etcd';
    if (!changed) return;
    await this.keep(secret);
    this.log.warn('cluster.dialback-secret-changed', { node: this.pool.name, why, note: 'dialback keys issued under the previous secret fail verification once; partners retry' });
  }

  /** Follows the key: a new value is taken, a deleted key is created again (with our secret). */
  private async startWatch(): Promise<void> {
    if (this.closed || this.watcher) return;
    try {
      const watcher = await startWatch(this.pool.etcd.kv.watch().key(poolKeys.dialbackSecret));
      if (this.closed) {
        await watcher.cancel();
        return;
      }
      watcher.on('put', (kv) => {
        let secret: string;
        try {
          secret = this.checked(kv.value.toString(), `etcd key ${poolKeys.dialbackSecret}`);
        } catch (err) {
          this.log.error('cluster.dialback-secret-invalid', { node: this.pool.name, error: (err as Error).message, note: 'the secret in use is kept' });
          return;
        }
        this.enqueue(() => this.adopt(secret, 'changed in etcd'));
      });
      watcher.on('delete', () => this.enqueue(() => this.agree('deleted in etcd')));
      watcher.on('error', (err: Error) => {
        // The watch cannot resume: the next 'online' (or this retry) starts another.
        if (this.watcher === watcher) this.watcher = null;
        this.log.warn('cluster.dialback-secret-watch-failed', { node: this.pool.name, error: err.message });
        void watcher.cancel().catch(() => {});
        this.enqueue(() => this.agree('watch restarted'));
      });
      this.watcher = watcher;
    } catch (err) {
      if (!this.unreachable) this.log.warn('cluster.dialback-secret-watch-failed', { node: this.pool.name, error: (err as Error).message });
      this.unreachable = true;
    }
  }

  private enqueue(step: () => Promise<void>): void {
    this.chain = this.chain.then(() => (this.closed ? undefined : step())).catch((err: unknown) => {
      this.log.error('cluster.dialback-secret-failed', { node: this.pool.name, error: (err as Error).message });
    });
  }

  /** The kept secret, or null when there is none; a damaged file is ignored with a warning (etcd or a new secret replaces it). */
  private async readKept(): Promise<string | null> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      this.log.warn('cluster.dialback-secret-file', { file: this.file, error: (err as Error).message, note: 'ignored' });
      return null;
    }
    try {
      return this.checked(text.trim(), this.file);
    } catch (err) {
      this.log.warn('cluster.dialback-secret-file', { file: this.file, error: (err as Error).message, note: 'ignored' });
      return null;
    }
  }

  /** Mode 0600: the secret lets anyone forge dialback keys for our domains. */
  private async keep(secret: string): Promise<void> {
    try {
      await mkdir(dirname(this.file), { recursive: true });
      await writeFileAtomic(this.file, `${secret}\n`, 0o600);
    } catch (err) {
      this.log.error('cluster.dialback-secret-file', { file: this.file, error: (err as Error).message, note: 'the secret is used but not kept: a restart without etcd would need a new one' });
    }
  }

  private checked(value: string, where: string): string {
    if (value === '' || value.length > MAX_SECRET_LENGTH || /[\s\u0000-\u001f]/.test(value)) {
      throw new Error(`${where}: not a dialback secret (1-${MAX_SECRET_LENGTH} characters without whitespace)`);
    }
    return value;
  }
}
