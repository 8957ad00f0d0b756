/**
 * Keeps the gateway's partner snapshot in step with partners.yaml (docs/design.md section 6): the
 * directory is watched (the CLI replaces the file by rename, so watching the file's inode would
 * miss it), changes are debounced, SIGHUP and the admin endpoint force a reload. A file that
 * fails validation is not applied: the previous snapshot stays in force and the error (file,
 * line, field) is reported. A valid one replaces the snapshot with one reference swap.
 *
 * A missing file and an empty file are the same thing everywhere (serve, reload, `partner get`):
 * no partners. Applied, so a list emptied on purpose takes effect, and logged as a warning.
 */
import { watch, type FSWatcher } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { EventEmitter } from 'node:events';
import { writeFileAtomic } from './atomic-write.js';
import { PartnerList } from './partner-list.js';
import { PartnerStore } from './partner-store.js';
import { toJsonRecord } from './record-json.js';

/** Who asked for a reload (the admin user, a signal); undefined for the file watcher. */
export interface ReloadRequester {
  readonly who: string;
  readonly via: string;
}

export interface ReloadEvents {
  reloaded: [list: PartnerList, previous: PartnerList, by: ReloadRequester | undefined];
  failed: [error: Error, by: ReloadRequester | undefined];
}

export class PartnerReloader extends EventEmitter<ReloadEvents> {
  private snapshot: PartnerList = PartnerList.EMPTY;
  private watcher: FSWatcher | undefined;
  private poll: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private lastText: string | undefined;
  private running: Promise<void> = Promise.resolve();
  /** The last reload error, shown in status until a valid file is applied. */
  lastError: Error | undefined;

  constructor(
    private readonly store: PartnerStore,
    private readonly localStorePath: string,
    private readonly debounceMs: number,
  ) {
    super();
  }

  /** The snapshot in force; the hot path reads this once per decision. */
  get current(): PartnerList {
    return this.snapshot;
  }

  /** Loads the file for the first time; an invalid file here is fatal for start-up. */
  async start(): Promise<void> {
    const text = await this.readText();
    this.snapshot = this.parse(text);
    this.lastText = text;
    await this.writeLocalStore();
    const dir = dirname(this.store.file);
    const name = basename(this.store.file);
    this.watcher = watch(dir, { persistent: false }, (_event, changed) => {
      if (changed === null || changed === name) this.schedule();
    });
    this.watcher.on('error', () => this.schedule());
    // Belt and braces for file systems where fs.watch misses renames: a cheap content check.
    this.poll = setInterval(() => this.schedule(), 1000);
    this.poll.unref();
  }

  stop(): void {
    this.watcher?.close();
    clearInterval(this.poll);
    clearTimeout(this.debounce);
  }

  schedule(): void {
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => void this.reload(false), this.debounceMs);
    this.debounce.unref();
  }

  /** Reloads now; `force` re-applies even when the text is unchanged (SIGHUP, admin endpoint). */
  reload(force = true, by?: ReloadRequester): Promise<void> {
    this.running = this.running.then(() => this.reloadOnce(force, by));
    return this.running;
  }

  private async reloadOnce(force: boolean, by: ReloadRequester | undefined): Promise<void> {
    let text: string;
    try {
      text = await this.readText();
    } catch (err) {
      this.fail(err as Error, by);
      return;
    }
    if (!force && text === this.lastText) return;
    this.lastText = text;
    let next: PartnerList;
    try {
      next = this.parse(text);
    } catch (err) {
      this.fail(err as Error, by);
      return;
    }
    const previous = this.snapshot;
    this.snapshot = next;
    this.lastError = undefined;
    await this.writeLocalStore().catch((err: Error) => this.emit('failed', err, by));
    this.emit('reloaded', next, previous, by);
  }

  private parse(text: string): PartnerList {
    return new PartnerList(this.store.parse(text).records);
  }

  private fail(err: Error, by?: ReloadRequester): void {
    this.lastError = err;
    this.emit('failed', err, by);
  }

  /** The file's text; a missing file reads as empty (no partners). */
  private async readText(): Promise<string> {
    try {
      return await readFile(this.store.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
      throw err;
    }
  }

  /** This node's replica of the applied list, read by `Get-CsXmppAllowedPartner -LocalStore`. */
  private async writeLocalStore(): Promise<void> {
    await mkdir(dirname(this.localStorePath), { recursive: true });
    const body = { appliedAt: new Date().toISOString(), source: this.store.file, partners: this.snapshot.records.map(toJsonRecord) };
    await writeFileAtomic(this.localStorePath, `${JSON.stringify(body, null, 2)}\n`);
  }
}
