/**
 * The partner list in etcd (src/cluster/central-store.ts, central-source.ts; docs/design.md
 * section 11) against one real etcd member: compare-and-swap edits that re-apply on a lost race
 * and give up after a bound, one clear line when etcd is away, and the reloader on the etcd
 * source (each revision applied or refused as a reload, the local store written with text and
 * revision, start-up from the local store, catching up when etcd is back, hand edits refused).
 *
 * Addresses (test/interop/README.md, block 8x): one member on 127.0.0.81, ports 12389/12390
 * (the second pair of pool-partners; test/integration/pool-partners.test.ts uses 12379/12380).
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CentralPartnerStore, CentralStoreUnavailable, etcdPerCall, MAX_EDIT_ATTEMPTS, type EtcdAccess } from '../../src/cluster/central-store.js';
import { CentralSource } from '../../src/cluster/central-source.js';
import { connectEtcd, type EtcdConnection } from '../../src/cluster/etcd.js';
import type { ClusterConfig } from '../../src/config/schema.js';
import { ConfigError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { readLocalStore } from '../../src/policy/local-store.js';
import { createPartner, removePartners } from '../../src/policy/partner-ops.js';
import { PartnerReloader } from '../../src/policy/partner-reloader.js';
import type { ListText } from '../../src/policy/partner-source.js';
import { startEtcdCluster, type EtcdCluster } from '../helpers/etcd-cluster.js';

let etcd: EtcdCluster;
let dir: string;
let prefixN = 0;
let cluster: ClusterConfig;

beforeAll(async () => {
  etcd = await startEtcdCluster({ ips: ['127.0.0.81'], clientPort: 12389, peerPort: 12390 });
}, 60_000);
afterAll(async () => {
  await etcd?.close();
});
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'xgw-central-'));
  // A prefix of its own per test: no test sees another's list.
  cluster = { nodeName: 'n1', etcd: { endpoints: etcd.endpoints, prefix: `/xgw-unit-${process.pid}-${++prefixN}/` }, leaseTtlSeconds: 5 };
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const raw = () => etcd.client().namespace(cluster.etcd.prefix);
const identities = (records: readonly { Identity: string }[]) => records.map((r) => r.Identity);

function capture() {
  const lines: { level: string; event: string; [k: string]: unknown }[] = [];
  return { lines, log: createLogger('debug', (l) => lines.push(JSON.parse(l))) };
}

async function until(check: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * An etcd access on which every compare-and-swap is preceded by `rival()`: another admin's edit
 * that lands between this edit's read and its write (the race, made deterministic).
 */
function racedAccess(rival: () => Promise<void>): EtcdAccess {
  const inner = etcdPerCall(cluster);
  return {
    config: cluster,
    use: (fn) => inner.use((conn) => {
      const kv = new Proxy(conn.kv, {
        get(target, prop) {
          const value = Reflect.get(target, prop) as unknown;
          if (prop !== 'if') return typeof value === 'function' ? value.bind(target) : value;
          return (...args: Parameters<typeof target.if>) => {
            const txn = target.if(...args);
            const commit = txn.commit.bind(txn);
            txn.commit = async () => {
              await rival();
              return commit();
            };
            return txn;
          };
        },
      });
      return fn({ ...conn, kv });
    }),
  };
}

describe('CentralPartnerStore: edits with compare-and-swap', () => {
  it('creates the key on the first edit, and reads back what it wrote', async () => {
    const store = new CentralPartnerStore(etcdPerCall(cluster));
    expect((await store.read()).size).toBe(0);
    await createPartner(store, 'a.example', {}, {});
    expect(await raw().get('partners').string()).toMatch(/^- Identity: a\.example\n/);
    expect(identities((await store.read()).records)).toEqual(['a.example']);
  });

  it("an edit that loses the race reads the winner's list and applies itself on top: nothing is lost", async () => {
    const rival = new CentralPartnerStore(etcdPerCall(cluster));
    await createPartner(rival, 'a.example', {}, {});
    let rivals = 0;
    const store = new CentralPartnerStore(racedAccess(async () => {
      if (rivals++ === 0) await createPartner(rival, 'rival.example', {}, {});
    }));
    const commits: string[][] = [];
    store.onCommit = async (before, after) => void commits.push([...identities(before), '=>', ...identities(after)]);
    let runs = 0;
    const edit = store.edit.bind(store);
    store.edit = (fn, opts) => edit((doc) => (runs++, fn(doc)), opts);
    await createPartner(store, 'b.example', {}, {});
    expect(runs).toBe(2);
    expect(identities((await rival.read()).records)).toEqual(['a.example', 'rival.example', 'b.example']);
    expect(commits).toEqual([['a.example', 'rival.example', '=>', 'a.example', 'rival.example', 'b.example']]);
  });

  it(`gives up after ${MAX_EDIT_ATTEMPTS} lost races with one clear line, having written nothing`, async () => {
    const rival = new CentralPartnerStore(etcdPerCall(cluster));
    let rivals = 0;
    const store = new CentralPartnerStore(racedAccess(() => createPartner(rival, `r${rivals++}.example`, {}, {}).then(() => undefined)));
    const error = await createPartner(store, 'b.example', {}, {}).then(() => null, (err: Error) => err);
    expect(error).toBeInstanceOf(ConfigError);
    expect(error!.message).toBe(`etcd:${cluster.etcd.prefix}partners: the list kept changing under this edit (${MAX_EDIT_ATTEMPTS} attempts); nothing was changed, try again`);
    expect(rivals).toBe(MAX_EDIT_ATTEMPTS);
    const list = await rival.read();
    expect(list.size).toBe(MAX_EDIT_ATTEMPTS);
    expect(list.byIdentity('b.example')).toBeUndefined();
  });

  it('parallel edits through separate connections all land', async () => {
    const names = Array.from({ length: 12 }, (_, i) => `p${i}.example`);
    await Promise.all(names.map((n) => createPartner(new CentralPartnerStore(etcdPerCall(cluster)), n, {}, {})));
    expect(identities((await new CentralPartnerStore(etcdPerCall(cluster)).read()).records).sort()).toEqual([...names].sort());
  });

  it('an invalid edit writes nothing; WhatIf writes nothing', async () => {
    const store = new CentralPartnerStore(etcdPerCall(cluster), new Set(['gw.example']));
    await createPartner(store, 'a.example', {}, {});
    const before = await raw().get('partners').exec();
    await expect(createPartner(store, 'gw.example', {}, {})).rejects.toThrow(/gw\.example/);
    await createPartner(store, 'c.example', {}, { whatIf: true });
    await removePartners(store, ['a.example'], { whatIf: true });
    const after = await raw().get('partners').exec();
    expect(after.kvs[0]!.mod_revision).toBe(before.kvs[0]!.mod_revision);
  });

  it('etcd out of reach: one line naming the endpoints, nothing changed', async () => {
    const away: ClusterConfig = { ...cluster, etcd: { ...cluster.etcd, endpoints: ['http://127.0.0.81:12391'] } };
    const store = new CentralPartnerStore(etcdPerCall(away));
    const write = await createPartner(store, 'a.example', {}, {}).then(() => null, (err: Error) => err);
    expect(write).toBeInstanceOf(CentralStoreUnavailable);
    expect(write!.message).toMatch(/^cannot read the partner list: etcd \(http:\/\/127\.0\.0\.81:12391\) did not answer: .+; nothing was changed$/);
    expect(write!.message).not.toContain('\n');
    const read = await store.read().then(() => null, (err: Error) => err);
    expect(read!.message).toMatch(/did not answer: .+ \('partner get --local-store' shows the list this node last applied\)$/);
  });
});

describe('the reloader on the etcd source', () => {
  let conn: EtcdConnection;
  let reloader: PartnerReloader | undefined;
  beforeEach(() => {
    conn = connectEtcd(cluster);
  });
  afterEach(() => {
    reloader?.stop();
    reloader = undefined;
    conn.close();
  });

  function start(log = capture().log, localStore = join(dir, 'state', 'partners.local.json')) {
    reloader = new PartnerReloader(new CentralSource(conn, join(dir, 'partners.yaml'), 20, log), new Set(['gw.example']), localStore, log);
    const events: string[] = [];
    reloader.on('reloaded', (list) => events.push(`reloaded ${identities(list.records).join(',')}`));
    reloader.on('failed', (err) => events.push(`failed ${err.message}`));
    return { reloader, events, localStore };
  }

  it('applies each revision as a reload: invalid ones refused (the previous list stays), a deleted key is no list', async () => {
    const { reloader, events, localStore } = start();
    await reloader.start();
    expect(reloader.current.size).toBe(0);
    expect(reloader.revision).toBe(0);
    expect(reloader.emptyHint).toContain("'xmpp-gateway cluster import'");

    const put = await raw().put('partners').value('- Identity: a.example\n').exec();
    const revision = Number(put.header.revision);
    await until(() => events.length === 1); // the local store is written before 'reloaded'
    expect(reloader.revision).toBe(revision);
    const stored = await readLocalStore(localStore);
    expect(stored).toMatchObject({ source: `etcd:${cluster.etcd.prefix}partners`, revision, text: '- Identity: a.example\n' });
    expect(identities(stored!.records)).toEqual(['a.example']);

    await raw().put('partners').value('- Identity: a.example\n- Identity: b.example\n  TlsNegotiation: Sometimes\n').exec();
    await until(() => events.length === 2);
    expect(events[1]).toBe(`failed etcd:${cluster.etcd.prefix}partners:3: TlsNegotiation: 'Sometimes' is not one of Required, Optional, NotSupported`);
    expect(identities(reloader.current.records)).toEqual(['a.example']);
    expect(reloader.lastError?.message).toContain('TlsNegotiation');
    expect((await readLocalStore(localStore))!.revision).toBe(revision);

    await raw().delete().key('partners').exec();
    await until(() => events.length === 3);
    expect(events).toEqual(['reloaded a.example', expect.stringMatching(/^failed /), 'reloaded ']);
    expect(reloader.revision).toBe(0);
    expect(reloader.lastError).toBeUndefined();
  });

  it('orders versions by etcd revision: a read by etcd revision when it answered, a delete by its own revision', async () => {
    // docs/design.md section 11, "Revisions apply in order": the reloader compares `asOf`.
    const source = new CentralSource(conn, join(dir, 'partners.yaml'), 20, capture().log);
    const offered: (ListText | undefined)[] = [];
    try {
      const put = Number((await raw().put('partners').value('- Identity: a.example\n').exec()).header.revision);
      await raw().put('other').value('x').exec(); // etcd's revision moves past the key's mod_revision
      const read = await source.read();
      expect(read).toMatchObject({ text: '- Identity: a.example\n', revision: put });
      expect(read.asOf).toBeGreaterThan(put);
      source.watch({ changed: (next) => offered.push(next), refused: () => {} });
      await until(() => offered.length === 1); // connected: read again
      const put2 = Number((await raw().put('partners').value('- Identity: b.example\n').exec()).header.revision);
      const del = Number((await raw().delete().key('partners').exec()).header.revision);
      await until(() => offered.length === 3);
      expect(offered.slice(1)).toEqual([
        { text: '- Identity: b.example\n', revision: put2, asOf: put2 },
        { text: '', revision: 0, asOf: del },
      ]);
    } finally {
      source.stop();
    }
  });

  it('SIGHUP and the admin endpoint (a forced reload) read etcd again', async () => {
    const { reloader, events } = start();
    await raw().put('partners').value('- Identity: a.example\n').exec();
    await reloader.start();
    await reloader.reload(true, { who: 'SIGHUP', via: 'signal' });
    expect(events).toEqual(['reloaded a.example']);
  });

  it('starts from its local store when etcd cannot be reached, and catches up when etcd answers again', async () => {
    const first = start();
    await raw().put('partners').value('- Identity: a.example\n').exec();
    await first.reloader.start();
    first.reloader.stop();
    // Changed while this node is down, then etcd goes away.
    await raw().put('partners').value('- Identity: a.example\n- Identity: b.example\n').exec();
    await etcd.stopAll();
    try {
      const { lines, log } = capture();
      const second = start(log, first.localStore);
      const t0 = Date.now();
      await second.reloader.start();
      console.log(`started from the local store in ${Date.now() - t0} ms`);
      expect(identities(second.reloader.current.records)).toEqual(['a.example']);
      expect(second.reloader.origin).toBe(first.localStore);
      const warning = lines.find((l) => l.event === 'partners.from-local-store');
      expect(warning).toMatchObject({ level: 'warn', file: first.localStore, partners: 1 });
      expect(second.reloader.lastError?.message).toMatch(/^cannot read the partner list: etcd .* did not answer/);
      await etcd.startAll();
      const back = Date.now();
      await until(() => second.reloader.current.size === 2, 10_000);
      expect(second.reloader.origin).toBe(`etcd:${cluster.etcd.prefix}partners`);
      expect(second.reloader.lastError).toBeUndefined();
      console.log(`caught up ${Date.now() - back} ms after etcd was healthy again`);

      // A forced reload while etcd is away fails and says why, until etcd answers again.
      await etcd.stopAll();
      await second.reloader.reload(true, { who: 'SIGHUP', via: 'signal' });
      expect(second.reloader.lastError?.message).toMatch(/^cannot read the partner list: etcd .* did not answer/);
      expect(second.reloader.current.size).toBe(2);
      await etcd.startAll();
      await until(() => second.reloader.lastError === undefined, 10_000);
    } finally {
      await etcd.startAll();
    }
  });

  it('without etcd and without a local store it starts with 0 partners and says so', async () => {
    await etcd.stopAll();
    try {
      const { lines, log } = capture();
      const { reloader } = start(log, join(dir, 'none', 'partners.local.json'));
      const t0 = Date.now();
      await reloader.start();
      console.log(`started with no list in ${Date.now() - t0} ms`);
      expect(reloader.current.size).toBe(0);
      expect(lines.find((l) => l.event === 'partners.no-list')?.message).toMatch(/could not be read and there is no usable local store: starting with 0 partners/);
    } finally {
      await etcd.startAll();
    }
  });

  it('a hand edit of partners.yaml is refused with one line per change, and not applied', async () => {
    await writeFile(join(dir, 'partners.yaml'), '- Identity: a.example\n');
    await raw().put('partners').value('- Identity: a.example\n').exec();
    const { reloader, events } = start();
    await reloader.start();
    await new Promise((r) => setTimeout(r, 100)); // the file's first text is read when watching starts
    await writeFile(join(dir, 'partners.yaml'), '- Identity: a.example\n- Identity: hand.example\n');
    await until(() => events.length === 1);
    expect(events[0]).toBe(
      `failed ${join(dir, 'partners.yaml')} was changed, but partners.yaml is not used in cluster mode: the list lives in etcd (etcd:${cluster.etcd.prefix}partners); ` +
      "edit it with 'xmpp-gateway partner ...' or the panel, or replace it with this file: 'xmpp-gateway cluster import --force'. Nothing was applied",
    );
    // The one-second content poll sees the same text again: no second line.
    await new Promise((r) => setTimeout(r, 1300));
    expect(events).toHaveLength(1);
    expect(identities(reloader.current.records)).toEqual(['a.example']);
    await writeFile(join(dir, 'partners.yaml'), '');
    await until(() => events.length === 2);
    expect(identities(reloader.current.records)).toEqual(['a.example']);
    expect(await readFile(join(dir, 'partners.yaml'), 'utf8')).toBe('');
  });
});
