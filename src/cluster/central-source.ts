/**
 * A pool node's partner source (docs/design.md section 11): the list in etcd, watched, for the
 * reloader (src/policy/partner-reloader.ts) to apply revision by revision exactly as it applies a
 * changed partners.yaml.
 *
 *  - Every put of the key is offered with its mod_revision; a revision not newer than one already
 *    seen (by a read or an earlier event) is not offered again.
 *  - Whenever the watch (re)connects, the reloader is asked to read the key again: a node that
 *    started from its local store, or lost etcd for a while, catches up with whatever it missed
 *    (also across a compaction, which ends a watch: it is then re-created).
 *  - A deleted key is an empty list, as a missing partners.yaml is.
 *  - partners.yaml is not read in cluster mode. It is still watched, so that a hand edit of it is
 *    refused with one line saying how to edit instead (`refused`: reported like a failed reload).
 */
import type { Watcher } from 'etcd3';
import type { GatewayConfig } from '../config/schema.js';
import { GatewayError } from '../errors.js';
import type { Logger } from '../log.js';
import { FileSource, readTextOrEmpty, type ListText, type PartnerSource, type SourceEvents } from '../policy/partner-source.js';
import { CentralList, sharedEtcd } from './central-store.js';
import { poolKeys, type EtcdConnection } from './etcd.js';

/** A watch etcd cancelled (e.g. its revision was compacted) is re-created after this long. */
const REWATCH_DELAY_MS = 1_000;

export class CentralSource implements PartnerSource {
  readonly fallsBackToLocalStore = true;
  readonly emptyHint = "etcd holds no partner list yet: load partners.yaml into it with 'xmpp-gateway cluster import'";
  private readonly list: CentralList;
  private readonly handEdits: FileSource;
  /** The newest etcd revision whose state of the key was offered or read. */
  private seenRevision = 0;
  private watcher: Watcher | undefined;
  private watchUp = false;
  private rewatch: NodeJS.Timeout | undefined;
  private fileText: string | undefined;
  private stopped = false;

  constructor(
    private readonly etcd: EtcdConnection,
    private readonly partnersFile: string,
    debounceMs: number,
    private readonly log: Logger,
  ) {
    this.list = new CentralList(sharedEtcd(etcd));
    this.handEdits = new FileSource(partnersFile, debounceMs);
  }

  get location(): string {
    return this.list.location;
  }

  async read(): Promise<ListText> {
    const current = await this.list.read();
    this.seenRevision = Math.max(this.seenRevision, current.clusterRevision);
    return { text: current.text, revision: current.revision, asOf: current.clusterRevision };
  }

  watch(events: SourceEvents): void {
    this.watchKey(events);
    void readTextOrEmpty(this.partnersFile).catch(() => '').then((text) => {
      this.fileText = text;
      if (this.stopped) return;
      try {
        this.handEdits.watch({ changed: () => void this.checkHandEdit(events), refused: () => {} });
      } catch (err) {
        // No directory to watch (partners.yaml is optional in a pool): there is no file to hand-edit.
        this.log.info('partners.file-not-watched', { file: this.partnersFile, error: (err as Error).message });
      }
    });
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.rewatch);
    this.handEdits.stop();
    void this.watcher?.cancel().catch(() => undefined);
    this.watcher = undefined;
  }

  private watchKey(events: SourceEvents): void {
    const watcher = this.etcd.kv.watch().key(poolKeys.partners).watcher();
    this.watcher = watcher;
    watcher.on('connected', () => {
      if (!this.watchUp) this.log.info('partners.watching', { source: this.location });
      this.watchUp = true;
      events.changed(); // catch up with anything missed while not watching
    });
    watcher.on('disconnected', (err: Error) => {
      if (this.watchUp) this.log.warn('partners.watch-lost', { source: this.location, error: err.message.split('\n')[0], message: 'the list in force stays; changes arrive once etcd answers again' });
      this.watchUp = false;
    });
    watcher.on('put', (kv) => this.offer(events, Number(kv.mod_revision), kv.value.toString('utf8')));
    watcher.on('delete', (kv) => this.offer(events, Number(kv.mod_revision), null));
    watcher.on('error', (err: Error) => {
      this.log.warn('partners.watch-ended', { source: this.location, error: err.message.split('\n')[0], retryInMs: REWATCH_DELAY_MS });
      this.watchUp = false;
      void watcher.cancel().catch(() => undefined);
      if (this.stopped) return;
      this.rewatch = setTimeout(() => {
        if (!this.stopped) this.watchKey(events);
      }, REWATCH_DELAY_MS);
      this.rewatch.unref();
    });
  }

  /**
   * `text` null: the key was deleted (no list: revision 0, as a read of the absent key says; the
   * delete's own revision orders it after the put it removed). This check only drops events older
   * than what was already offered or read; one queued behind a read that already returned a newer
   * version is dropped by the reloader, which compares `asOf` when it applies (docs/design.md 11).
   */
  private offer(events: SourceEvents, revision: number, text: string | null): void {
    if (revision <= this.seenRevision) return;
    this.seenRevision = revision;
    events.changed(text === null ? { text: '', revision: 0, asOf: revision } : { text, revision, asOf: revision });
  }

  private async checkHandEdit(events: SourceEvents): Promise<void> {
    const text = await readTextOrEmpty(this.partnersFile).catch(() => undefined);
    if (text === undefined || text === this.fileText || this.stopped) return;
    this.fileText = text;
    events.refused(new GatewayError('GW_ERR_CLUSTER_FILE',
      `${this.partnersFile} was changed, but partners.yaml is not used in cluster mode: the list lives in etcd (${this.location}); ` +
      "edit it with 'xmpp-gateway partner ...' or the panel, or replace it with this file: 'xmpp-gateway cluster import --force'. Nothing was applied"));
  }
}

/** The running gateway's partner source: the list in etcd in a pool (`etcd`: the node's connection), else partners.yaml. */
export function partnerSourceFor(config: GatewayConfig, etcd: EtcdConnection | null, log: Logger): PartnerSource {
  return etcd ? new CentralSource(etcd, config.partners, config.reloadDebounceMs, log) : new FileSource(config.partners, config.reloadDebounceMs);
}
