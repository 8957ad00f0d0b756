/**
 * The file-backed approvals store: comparison form of JIDs, the bound (least recently seen
 * evicted), persistence across reopen, one write per burst, serialised writes, a corrupt file
 * refused with one line, revocation. Writes are counted through a wrapper around the real
 * writeFileAtomic, so the files on disk are real.
 */
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { GatewayError } from '../../src/errors.js';
import type { Logger } from '../../src/log.js';
import { parseApprovals } from '../../src/policy/approval-file.js';
import { FileApprovalStore } from '../../src/policy/approvals.js';

const writes = vi.hoisted(() => ({ count: 0, active: 0, maxActive: 0, delayMs: 0, fail: false }));

vi.mock('../../src/policy/atomic-write.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../src/policy/atomic-write.js')>();
  return {
    writeFileAtomic: async (file: string, text: string) => {
      writes.active++;
      writes.maxActive = Math.max(writes.maxActive, writes.active);
      try {
        if (writes.delayMs > 0) await sleep(writes.delayMs);
        if (writes.fail) throw new Error('disk full');
        await real.writeFileAtomic(file, text);
        writes.count++; // completed writes: once it moves, the file holds the new text
      } finally {
        writes.active--;
      }
    },
  };
});

interface LogLine {
  level: string;
  event: string;
  fields?: Record<string, unknown>;
}

let dir: string;
let file: string;
let logs: LogLine[];
let open: FileApprovalStore[];

const log: Logger = {
  debug: (event, fields) => logs.push({ level: 'debug', event, fields }),
  info: (event, fields) => logs.push({ level: 'info', event, fields }),
  warn: (event, fields) => logs.push({ level: 'warn', event, fields }),
  error: (event, fields) => logs.push({ level: 'error', event, fields }),
};

async function openStore(maxEntries = 100, flushDelayMs = 20): Promise<FileApprovalStore> {
  const store = await FileApprovalStore.open({ file, maxEntries, flushDelayMs, log });
  open.push(store);
  return store;
}

const pairs = (store: FileApprovalStore) => store.list().map((a) => `${a.local}>${a.remote}`);

async function fileEntries(): Promise<string[]> {
  return parseApprovals(await readFile(file, 'utf8'), file).map((e) => `${e.local}>${e.remote}`);
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'xgw-approvals-'));
  file = join(dir, 'state', 'approvals.json');
  logs = [];
  open = [];
  Object.assign(writes, { count: 0, active: 0, maxActive: 0, delayMs: 0, fail: false });
});
afterEach(async () => {
  writes.fail = false;
  for (const s of open) await s.close();
  await rm(dir, { recursive: true, force: true });
});

describe('FileApprovalStore in memory', () => {
  it('starts empty without a file, and compares bare JIDs case-insensitively, resource ignored', async () => {
    const store = await openStore();
    expect(store.list()).toEqual([]);
    store.record('Alice@Corp.Example/laptop', 'BOB@Partner.EXAMPLE');
    expect(store.has('alice@corp.example', 'bob@partner.example')).toBe(true);
    expect(store.has('ALICE@corp.example', 'Bob@partner.example/x')).toBe(true);
    // Direction matters: bob has not reached out to alice.
    expect(store.has('bob@partner.example', 'alice@corp.example')).toBe(false);
    expect(store.has('alice@corp.example', 'carol@partner.example')).toBe(false);
    expect(store.list()).toEqual([{ local: 'alice@corp.example', remote: 'bob@partner.example', since: expect.any(String), lastSeen: expect.any(String) }]);
  });

  it('holds at most maxEntries, evicting the least recently seen; re-recording refreshes', async () => {
    const store = await openStore(3);
    store.record('a@corp.example', 'x@p.example');
    store.record('b@corp.example', 'x@p.example');
    store.record('c@corp.example', 'x@p.example');
    store.record('a@corp.example', 'x@p.example'); // a is now the most recently seen
    expect(store.has('b@corp.example', 'x@p.example')).toBe(true); // has() does not refresh
    store.record('d@corp.example', 'x@p.example');
    expect(store.size).toBe(3);
    expect(pairs(store)).toEqual(['d@corp.example>x@p.example', 'a@corp.example>x@p.example', 'c@corp.example>x@p.example']);
    expect(store.has('b@corp.example', 'x@p.example')).toBe(false);
    for (let i = 0; i < 50; i++) store.record(`u${i}@corp.example`, 'x@p.example');
    expect(store.size).toBe(3);
    expect(pairs(store)[0]).toBe('u49@corp.example>x@p.example');
  });

  it('keeps since when a pair is re-recorded and moves lastSeen on', async () => {
    const store = await openStore();
    store.record('a@corp.example', 'x@p.example');
    const [first] = store.list();
    await sleep(5);
    store.record('a@corp.example', 'x@p.example');
    const [again] = store.list();
    expect(again!.since).toBe(first!.since);
    expect(Date.parse(again!.lastSeen)).toBeGreaterThan(Date.parse(first!.lastSeen));
  });

  it('revokes one pair, or every pair of a local user, and says how many', async () => {
    const store = await openStore();
    store.record('a@corp.example', 'x@p.example');
    store.record('a@corp.example', 'y@p.example');
    store.record('a@corp.example', 'z@q.example');
    store.record('b@corp.example', 'x@p.example');
    expect(store.revoke('A@Corp.Example', 'Y@p.example')).toBe(1);
    expect(store.revoke('a@corp.example', 'y@p.example')).toBe(0);
    expect(store.has('a@corp.example', 'x@p.example')).toBe(true);
    expect(store.revoke('a@corp.example')).toBe(2);
    expect(store.revoke('nobody@corp.example')).toBe(0);
    expect(pairs(store)).toEqual(['b@corp.example>x@p.example']);
    // A revoked pair can be approved again.
    store.record('a@corp.example', 'x@p.example');
    expect(store.has('a@corp.example', 'x@p.example')).toBe(true);
  });
});

describe('FileApprovalStore persistence', () => {
  it('survives a reopen: same pairs, order and times', async () => {
    const store = await openStore();
    store.record('a@corp.example', 'x@p.example');
    await sleep(2);
    store.record('b@corp.example', 'y@p.example');
    const before = store.list();
    await store.close();
    const again = await openStore();
    expect(again.list()).toEqual(before);
    expect(again.has('a@corp.example', 'x@p.example')).toBe(true);
    expect(logs).toContainEqual({ level: 'info', event: 'approvals.loaded', fields: { file, count: 2 } });
  });

  it('keeps the order of pairs recorded within the same millisecond across a reopen', async () => {
    const store = await openStore();
    for (let i = 0; i < 20; i++) store.record(`u${i}@corp.example`, 'x@p.example');
    const before = pairs(store);
    await store.close();
    expect(pairs(await openStore())).toEqual(before);
  });

  it('writes a burst of new pairs once, after the delay', async () => {
    const store = await openStore(10_000, 50);
    for (let i = 0; i < 1000; i++) {
      store.record(`u${i}@corp.example`, 'x@p.example');
      store.record(`u${i}@corp.example`, 'x@p.example');
    }
    expect(writes.count).toBe(0);
    await sleep(10);
    expect(writes.count).toBe(0);
    await vi.waitFor(() => expect(writes.count).toBe(1), { timeout: 2_000, interval: 10 });
    expect(await fileEntries()).toHaveLength(1000);
    await sleep(120);
    expect(writes.count).toBe(1);

    store.record('late@corp.example', 'x@p.example');
    store.record('later@corp.example', 'x@p.example');
    await vi.waitFor(() => expect(writes.count).toBe(2), { timeout: 2_000, interval: 10 });
    expect((await fileEntries()).slice(0, 2)).toEqual(['later@corp.example>x@p.example', 'late@corp.example>x@p.example']);
  });

  it('does not write for a refreshed lastSeen alone; close() saves it', async () => {
    const store = await openStore(100, 20);
    store.record('a@corp.example', 'x@p.example');
    store.record('b@corp.example', 'x@p.example');
    await store.flush();
    expect(writes.count).toBe(1);
    store.record('a@corp.example', 'x@p.example');
    await sleep(80);
    expect(writes.count).toBe(1);
    expect((await fileEntries())[0]).toBe('b@corp.example>x@p.example');
    await store.close();
    expect(writes.count).toBe(2);
    expect((await fileEntries())[0]).toBe('a@corp.example>x@p.example');
  });

  it('flush() with nothing pending writes nothing; a revocation that removes nothing writes nothing', async () => {
    const store = await openStore();
    await store.flush();
    expect(store.revoke('a@corp.example')).toBe(0);
    await sleep(60);
    await store.close();
    expect(writes.count).toBe(0);
    await expect(stat(file)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('persists a revocation', async () => {
    const store = await openStore();
    store.record('a@corp.example', 'x@p.example');
    store.record('b@corp.example', 'x@p.example');
    await store.flush();
    expect(store.revoke('a@corp.example')).toBe(1);
    await vi.waitFor(async () => expect(await fileEntries()).toEqual(['b@corp.example>x@p.example']), { timeout: 2_000, interval: 10 });
  });

  it('never runs two writes at once', async () => {
    writes.delayMs = 30;
    const store = await openStore(100, 0);
    store.record('a@corp.example', 'x@p.example');
    const first = store.flush();
    await vi.waitFor(() => expect(writes.active).toBe(1), { timeout: 2_000, interval: 1 });
    // Changes made while a write runs: their flushes wait for it, then one write saves them all.
    store.record('b@corp.example', 'x@p.example');
    const second = store.flush();
    store.record('c@corp.example', 'x@p.example');
    await Promise.all([first, second, store.flush(), store.flush()]);
    expect(writes.maxActive).toBe(1);
    expect(writes.count).toBe(2);
    expect(await fileEntries()).toEqual(['c@corp.example>x@p.example', 'b@corp.example>x@p.example', 'a@corp.example>x@p.example']);
  });

  it('keeps changes whose write failed, logs the failure and saves them with the next write', async () => {
    const store = await openStore(100, 10);
    writes.fail = true;
    store.record('a@corp.example', 'x@p.example');
    await vi.waitFor(() => expect(logs.some((l) => l.event === 'approvals.write_failed')).toBe(true), { timeout: 2_000, interval: 10 });
    expect(logs.find((l) => l.event === 'approvals.write_failed')?.fields).toEqual({ file, error: 'disk full' });
    await expect(store.flush()).rejects.toThrow('disk full');
    writes.fail = false;
    await store.flush();
    expect(await fileEntries()).toEqual(['a@corp.example>x@p.example']);
  });

  it('loads the most recently seen maxEntries of a larger file, with a warning', async () => {
    const store = await openStore(100, 0);
    for (const u of ['a', 'b', 'c', 'd', 'e']) {
      store.record(`${u}@corp.example`, 'x@p.example');
      await sleep(2);
    }
    await store.close();
    const small = await openStore(2);
    expect(pairs(small)).toEqual(['e@corp.example>x@p.example', 'd@corp.example>x@p.example']);
    expect(logs).toContainEqual({ level: 'warn', event: 'approvals.truncated', fields: { file, kept: 2, dropped: 3, maxEntries: 2 } });
  });
});

describe('FileApprovalStore with a corrupt file', () => {
  const cases: [string, string, RegExp][] = [
    ['not JSON', '{"version":1,"approvals":[', /not JSON/],
    ['empty', '', /not JSON/],
    ['a list', '[]', /not a JSON object/],
    ['wrong version', '{"version":2,"approvals":[]}', /version: 2 is not 1/],
    ['no list', '{"version":1}', /approvals: not a list/],
    ['missing remote', '{"version":1,"approvals":[{"local":"a@corp.example","remote":"x@p.example","since":"2024-01-01T00:00:00.000Z","lastSeen":"2024-01-01T00:00:00.000Z"},{"local":"a@corp.example","since":"2024-01-01T00:00:00.000Z","lastSeen":"2024-01-01T00:00:00.000Z"}]}', /approvals\[1\]\.remote/],
    ['bad time', '{"version":1,"approvals":[{"local":"a@corp.example","remote":"x@p.example","since":"yesterday","lastSeen":"2024-01-01T00:00:00.000Z"}]}', /approvals\[0\]\.since: "yesterday" is not an ISO 8601 time/],
  ];
  for (const [name, text, why] of cases) {
    it(`refuses ${name} with one line naming the file, and leaves the file alone`, async () => {
      await mkdir(join(dir, 'state'));
      await writeFile(file, text);
      const err = await FileApprovalStore.open({ file, maxEntries: 10, log }).then(
        (s) => s.close().then(() => null),
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(GatewayError);
      expect((err as GatewayError).code).toBe('GW_ERR_APPROVALS_FILE');
      const message = (err as Error).message;
      expect(message.startsWith(`${file}: not a valid approvals file`)).toBe(true);
      expect(message).toMatch(why);
      expect(message).not.toContain('\n');
      expect(await readFile(file, 'utf8')).toBe(text);
      expect(writes.count).toBe(0);
    });
  }
});
