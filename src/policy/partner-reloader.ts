/**
 * Keeps the gateway's partner snapshot in step with its source (docs/design.md section 6):
 * partners.yaml, or in a pool the list in etcd (docs/design.md section 11; the sources are in
 * src/policy/partner-source.ts and src/cluster/central-source.ts). The source says when the list
 * may have changed; SIGHUP and the admin endpoint force a reload. A list that fails validation is
 * not applied: the previous snapshot stays in force and the error (location, line, field) is
 * reported. A valid one replaces the snapshot with one reference swap, then the node's local store
 * (src/policy/local-store.ts) is rewritten with it.
 *
 * A missing file and an empty file are the same thing everywhere (serve, reload, `partner get`):
 * no partners. Applied, so a list emptied on purpose takes effect, and logged as a warning.
 *
 * Start-up: a file must be readable and valid (a bad file stops the start with its error). A pool
 * node whose etcd cannot be reached, or holds an invalid list, starts from its local store instead
 * (or with no partners when it has none) and keeps watching, so it catches up when etcd answers.
 */
import { EventEmitter } from 'node:events';
import { ConfigError } from '../errors.js';
import type { Logger } from '../log.js';
import { readLocalStore, writeLocalStore } from './local-store.js';
import { PartnerDocument } from './partner-file.js';
import { PartnerList } from './partner-list.js';
import type { ListText, PartnerSource, SourceEvents } from './partner-source.js';

/** Who asked for a reload (the admin user, a signal); undefined for the watcher. */
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
  /** The version last read or offered, applied or refused: an unchanged one is not re-applied. */
  private seen: ListText | undefined;
  /** The version in force (its etcd revision is shown by status and -LocalStore). */
  private applied: ListText | undefined;
  private running: Promise<void> = Promise.resolve();
  /** Why the source could not be read the last time it was tried; cleared by the next read that works. */
  private unreachable: Error | undefined;
  /** The last reload error, shown in status until a valid list is applied (or the source answers again). */
  lastError: Error | undefined;
  /** Where the list in force came from: the source, or the local store file it started from. */
  origin: string;

  constructor(
    private readonly source: PartnerSource,
    private readonly localDomains: ReadonlySet<string>,
    private readonly localStorePath: string,
    private readonly log?: Logger,
  ) {
    super();
    this.origin = source.location;
  }

  /** The snapshot in force; the hot path reads this once per decision. */
  get current(): PartnerList {
    return this.snapshot;
  }

  /** Where the list lives (partners.yaml's path, or `etcd:<prefix>partners`). */
  get location(): string {
    return this.source.location;
  }

  /** The etcd revision of the list in force (null: a file, or nothing applied). */
  get revision(): number | null {
    return this.applied?.revision ?? null;
  }

  /** What to do about an empty list, from the source (e.g. "run cluster import"). */
  get emptyHint(): string | undefined {
    return this.source.emptyHint;
  }

  /** Loads the list for the first time, then watches the source. */
  async start(): Promise<void> {
    let first: ListText;
    let list: PartnerList;
    try {
      first = await this.source.read();
      list = this.parse(first.text, this.source.location);
    } catch (err) {
      if (!this.source.fallsBackToLocalStore) throw err;
      await this.startFromLocalStore(err as Error);
      this.source.watch(this.events);
      return;
    }
    this.snapshot = list;
    this.seen = first;
    this.applied = first;
    await this.writeLocalStore();
    this.source.watch(this.events);
  }

  stop(): void {
    this.source.stop();
  }

  /** Reloads now; `force` re-applies even when the list is unchanged (SIGHUP, admin endpoint). */
  reload(force = true, by?: ReloadRequester): Promise<void> {
    return this.enqueue(() => this.reloadOnce(undefined, force, by));
  }

  /** What the source reports; queued behind any reload in progress, so versions apply in order. */
  private readonly events: SourceEvents = {
    changed: (next) => void this.enqueue(() => this.reloadOnce(next, false, undefined)),
    refused: (error) => void this.enqueue(async () => this.fail(error, undefined)),
  };

  /** One step at a time; a step that throws (a listener, say) is reported and does not stop the ones after it. */
  private enqueue(step: () => Promise<void>): Promise<void> {
    const run = this.running.then(step).catch((err: Error) => this.fail(err, undefined));
    this.running = run.catch(() => undefined);
    return run;
  }

  private async reloadOnce(offered: ListText | undefined, force: boolean, by: ReloadRequester | undefined): Promise<void> {
    let next: ListText;
    try {
      next = offered ?? (await this.source.read());
    } catch (err) {
      this.unreachable = err as Error;
      this.fail(err as Error, by);
      return;
    }
    if (!offered) this.reachedAgain();
    // Revisions apply in order (docs/design.md section 11): a version older than the last one
    // taken (applied or refused) is dropped, forced or not. A watch event queued behind a read
    // that already returned a newer revision would otherwise apply last and stay in force until
    // the next edit (its newer replay is not offered again). The same revision again is fine
    // (a forced re-read). Files have no order (asOf null) and keep the text comparison below.
    if (next.asOf !== null && this.seen && this.seen.asOf !== null && next.asOf < this.seen.asOf) {
      this.log?.debug('partners.stale-version', { source: this.source.location, revision: next.revision, asOf: next.asOf, newer: this.seen.asOf });
      return;
    }
    if (!force && this.seen && next.text === this.seen.text && next.revision === this.seen.revision) {
      if (this.applied === this.seen && this.origin !== this.source.location) this.confirmLocalStore();
      return;
    }
    this.seen = next;
    let list: PartnerList;
    try {
      list = this.parse(next.text, this.source.location);
    } catch (err) {
      this.fail(err as Error, by);
      return;
    }
    const previous = this.snapshot;
    this.snapshot = list;
    this.applied = next;
    this.origin = this.source.location;
    this.lastError = undefined;
    await this.writeLocalStore().catch((err: Error) => this.emit('failed', err, by));
    this.emit('reloaded', list, previous, by);
  }

  /** The source is unreachable or invalid at start-up (a pool node): its local store, else nothing. */
  private async startFromLocalStore(reason: Error): Promise<void> {
    this.lastError = reason;
    if (!(reason instanceof ConfigError)) this.unreachable = reason; // not an invalid list: etcd away
    const why = reason.message.split('\n')[0]!;
    let stored;
    try {
      stored = await readLocalStore(this.localStorePath);
      if (stored) this.snapshot = this.parse(stored.text, `${this.localStorePath} (text)`);
    } catch (err) {
      this.log?.error('partners.local-store-unusable', { file: this.localStorePath, error: (err as Error).message });
      stored = null;
    }
    if (!stored) {
      this.log?.warn('partners.no-list', {
        source: this.source.location,
        file: this.localStorePath,
        error: why,
        message: `${this.source.location} could not be read and there is no usable local store: starting with 0 partners until it can`,
      });
      return;
    }
    // No order (asOf null): the revision was read from a file, perhaps from an etcd since rebuilt
    // with lower revisions; the first read of etcd sets the order (docs/design.md section 11).
    const version = { text: stored.text, revision: stored.revision, asOf: null };
    this.seen = version;
    this.applied = version;
    this.origin = this.localStorePath;
    this.log?.warn('partners.from-local-store', {
      file: this.localStorePath,
      revision: stored.revision,
      appliedAt: stored.appliedAt,
      partners: this.snapshot.size,
      error: why,
      message: `${this.source.location} could not be read: serving the list this node last applied, from its local store ${this.localStorePath}, until it can`,
    });
  }

  /** A read worked: an error that said the source could not be read is no longer true. */
  private reachedAgain(): void {
    if (this.unreachable && this.lastError === this.unreachable) this.lastError = undefined;
    this.unreachable = undefined;
  }

  /** The source answers again with the very version the node started from: nothing to apply. */
  private confirmLocalStore(): void {
    this.origin = this.source.location;
    this.log?.info('partners.source-confirmed', { source: this.source.location, revision: this.revision, partners: this.snapshot.size });
  }

  private parse(text: string, location: string): PartnerList {
    return new PartnerList(PartnerDocument.parse(text, location, this.localDomains).records);
  }

  private fail(err: Error, by?: ReloadRequester): void {
    this.lastError = err;
    this.emit('failed', err, by);
  }

  /** This node's replica of the applied list, read by `Get-CsXmppAllowedPartner -LocalStore`. */
  private async writeLocalStore(): Promise<void> {
    const applied = this.applied ?? { text: '', revision: null, asOf: null };
    await writeLocalStore(this.localStorePath, { source: this.source.location, revision: applied.revision, text: applied.text, list: this.snapshot });
  }
}
