/**
 * Revisions apply in order (docs/design.md section 11), whatever order a source delivers them in:
 * the reloader (src/policy/partner-reloader.ts) driven by an in-test source whose read and watch
 * events are delivered out of order, as the etcd source's are when its watch reconnects (a read is
 * queued, the watch replays an older revision behind it, the read returns a newer one).
 * No network: no addresses or ports.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PartnerReloader } from '../../src/policy/partner-reloader.js';
import type { ListText, PartnerSource, SourceEvents } from '../../src/policy/partner-source.js';

/** A source whose reads are answered by the test, when it chooses. */
class ScriptedSource implements PartnerSource {
  readonly location = 'etcd:/test/partners';
  readonly fallsBackToLocalStore = true;
  readonly emptyHint = undefined;
  events!: SourceEvents;
  private pending: ((v: ListText) => void)[] = [];
  reads = 0;

  constructor(private first: ListText) {}

  read(): Promise<ListText> {
    this.reads++;
    if (this.reads === 1) return Promise.resolve(this.first);
    return new Promise((resolve) => this.pending.push(resolve));
  }

  /** Answers the oldest read still waiting. */
  answer(v: ListText): void {
    this.pending.shift()!(v);
  }

  watch(events: SourceEvents): void {
    this.events = events;
  }

  stop(): void {}
}

const A = '- Identity: a.example\n';
const B = '- Identity: b.example\n';
const C = '- Identity: c.example\n';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'xgw-order-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function started(first: ListText) {
  const source = new ScriptedSource(first);
  const reloader = new PartnerReloader(source, new Set(['gw.example']), join(dir, 'partners.local.json'));
  const events: string[] = [];
  reloader.on('reloaded', (list) => events.push(`reloaded ${list.records.map((r) => r.Identity).join(',')}`));
  reloader.on('failed', (err) => events.push(`failed ${err.message}`));
  await reloader.start();
  return { source, reloader, events };
}

/** Lets the reloader's queue run (each step awaits the local store write). */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 5));
}

describe('the reloader applies revisions in order', () => {
  it('a replayed watch event queued behind a read that returned a newer revision is not applied', async () => {
    const { source, reloader, events } = await started({ text: A, revision: 5, asOf: 5 });
    source.events.changed(); // the watch reconnected: read again (queued)
    source.events.changed({ text: B, revision: 11, asOf: 11 }); // the replay of revision 11, queued behind the read
    await settle();
    source.answer({ text: C, revision: 13, asOf: 13 }); // the read sees revision 13 (its event is then dropped by the source)
    await settle();
    expect(events).toEqual(['reloaded c.example']);
    expect(reloader.current.records.map((r) => r.Identity)).toEqual(['c.example']);
    expect(reloader.revision).toBe(13);
  });

  it('a deleted key read after the delete is not undone by a replayed older put', async () => {
    const { source, reloader, events } = await started({ text: A, revision: 5, asOf: 5 });
    source.events.changed();
    source.events.changed({ text: B, revision: 11, asOf: 11 });
    await settle();
    source.answer({ text: '', revision: 0, asOf: 12 }); // deleted at revision 12: no list
    await settle();
    expect(events).toEqual(['reloaded ']);
    expect(reloader.current.size).toBe(0);
    expect(reloader.revision).toBe(0);
    // The delete's own event (revision 12) orders after the put at 11 too.
    source.events.changed({ text: B, revision: 11, asOf: 11 });
    await settle();
    expect(reloader.current.size).toBe(0);
  });

  it('a forced reload (SIGHUP) racing an edit does not go back to an older revision', async () => {
    const { source, reloader, events } = await started({ text: A, revision: 5, asOf: 5 });
    const forced = reloader.reload(true, { who: 'SIGHUP', via: 'signal' }); // reads (pending)
    source.events.changed({ text: B, revision: 11, asOf: 11 }); // an older event queued behind it
    await settle();
    source.answer({ text: C, revision: 13, asOf: 13 });
    await forced;
    await settle();
    expect(events).toEqual(['reloaded c.example']);
    expect(reloader.revision).toBe(13);
  });

  it('a forced re-read of the same revision re-applies it', async () => {
    const { source, reloader, events } = await started({ text: A, revision: 5, asOf: 5 });
    const forced = reloader.reload(true, { who: 'SIGHUP', via: 'signal' });
    await settle();
    source.answer({ text: A, revision: 5, asOf: 5 });
    await forced;
    expect(events).toEqual(['reloaded a.example']);
    expect(reloader.revision).toBe(5);
  });
});
