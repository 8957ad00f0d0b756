/**
 * Where the running gateway's partner list comes from (the reloader, src/policy/partner-reloader.ts,
 * applies what a source yields): partners.yaml on disk (FileSource, below; docs/design.md section
 * 6), or in a pool the list in etcd (CentralSource, src/cluster/central-source.ts; docs/design.md
 * section 11).
 */
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';

/** One version of the list: its text, and the etcd revision it was written at (null: a file). */
export interface ListText {
  readonly text: string;
  /** The key's mod_revision, shown by status and -LocalStore (0: etcd holds no list); null: a file. */
  readonly revision: number | null;
  /**
   * Where this version stands in etcd's history, so that versions apply in order (docs/design.md
   * section 11: "Revisions apply in order"): a watch event's revision (a put's mod_revision, or a
   * delete's own revision: `revision` 0 cannot order a deleted key after the put it removed), or
   * for a read etcd's revision when it answered (the key as read is current up to there). The
   * reloader never applies a version older than the last one it took. null: a file (no order).
   */
  readonly asOf: number | null;
}

/** What a source tells the reloader while it watches. */
export interface SourceEvents {
  /** The list may have changed: `next` is the new version, or absent for "read me again". */
  changed(next?: ListText): void;
  /** A change the source refuses to apply (reported like a failed reload; the list stays). */
  refused(error: Error): void;
}

export interface PartnerSource {
  /** Where the list lives, as logs, status and messages name it. */
  readonly location: string;
  /**
   * Whether a node may start from its local store when this source cannot be read or holds an
   * invalid list (a pool: etcd may be away). A file source must be readable and valid at start.
   */
  readonly fallsBackToLocalStore: boolean;
  /** What to do about an empty list, for the start-up warning (e.g. "run cluster import"). */
  readonly emptyHint: string | undefined;
  /** The list as it is now; throws when it cannot be read. */
  read(): Promise<ListText>;
  /** Starts watching for changes. */
  watch(events: SourceEvents): void;
  stop(): void;
}

/**
 * Watches a file: the directory is watched (the CLI replaces the file by rename, so watching the
 * file's inode would miss it), plus a one-second content poll for file systems where fs.watch
 * misses renames; changes are debounced. A missing file reads as empty (no partners).
 */
export class FileSource implements PartnerSource {
  readonly fallsBackToLocalStore = false;
  readonly emptyHint = undefined;
  private watcher: FSWatcher | undefined;
  private poll: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;

  constructor(readonly file: string, private readonly debounceMs: number) {}

  get location(): string {
    return this.file;
  }

  async read(): Promise<ListText> {
    return { text: await readTextOrEmpty(this.file), revision: null, asOf: null };
  }

  watch(events: SourceEvents): void {
    const schedule = () => {
      clearTimeout(this.debounce);
      this.debounce = setTimeout(() => events.changed(), this.debounceMs);
      this.debounce.unref();
    };
    const name = basename(this.file);
    this.watcher = watch(dirname(this.file), { persistent: false }, (_event, changed) => {
      if (changed === null || changed === name) schedule();
    });
    this.watcher.on('error', schedule);
    this.poll = setInterval(schedule, 1000);
    this.poll.unref();
  }

  stop(): void {
    this.watcher?.close();
    clearInterval(this.poll);
    clearTimeout(this.debounce);
  }
}

/** A file's text; a missing file reads as empty. */
export async function readTextOrEmpty(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw err;
  }
}
