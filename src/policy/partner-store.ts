/**
 * Where the CLI and the panel read and edit the partner list. Two implementations: the file on
 * disk (PartnerStore, below) and, in a pool, the list in etcd (CentralPartnerStore,
 * src/cluster/central-store.ts; docs/design.md section 11). Partner operations
 * (src/policy/partner-ops.ts) run on either.
 */
export interface PartnerListStore {
  /** Where the list lives, as messages name it: partners.yaml's path, or `etcd:<prefix>partners`. */
  readonly location: string;
  /** The gateway's own domains, which no partner record may name. */
  readonly localDomains: ReadonlySet<string>;
  /** Called once an edit is committed, with the records before and after (the audit trail). */
  onCommit: CommitHook | undefined;
  /** Parses and validates partner-list text as read from this store. */
  parse(text: string): PartnerDocument;
  readDocument(): Promise<PartnerDocument>;
  read(): Promise<PartnerList>;
  /**
   * Runs `edit` on the current document and commits the result unless `dryRun` (WhatIf) or the
   * edit made no change; validation errors commit nothing. `edit` may run more than once (a
   * store that retries on a concurrent change), so it must only change the document it is given.
   */
  edit<T>(edit: (doc: PartnerDocument) => T, opts?: { dryRun?: boolean }): Promise<T>;
}

/**
 * The partners file on disk. Reads are lock-free (the file is only ever replaced atomically);
 * edits run read-modify-write under an inter-process lock (proper-lockfile: a lock directory with
 * stale-lock recovery), so concurrent CLI invocations serialise and none loses another's change.
 * A file that fails validation is never written back: the edit throws before anything is written.
 */
import { readFile } from 'node:fs/promises';
import lockfile from 'proper-lockfile';
import { ConfigError } from '../errors.js';
import { writeFileAtomic } from './atomic-write.js';
import { PartnerDocument } from './partner-file.js';
import { PartnerList } from './partner-list.js';
import type { PartnerRecord } from './types.js';

const LOCK_OPTIONS = {
  realpath: false,
  stale: 10_000,
  update: 2_000,
  retries: { retries: 400, factor: 1.2, minTimeout: 5, maxTimeout: 100, randomize: true },
};

/**
 * Called under the lock once an edit is written, with the records before and after: the audit
 * trail (src/admin/audit.ts) is appended here, where every edit, from the CLI or the panel, is
 * committed.
 */
export type CommitHook = (before: readonly PartnerRecord[], after: readonly PartnerRecord[]) => Promise<void>;

export class PartnerStore implements PartnerListStore {
  /** Set by the CLI and the admin panel to record each committed change (the audit trail). */
  onCommit: CommitHook | undefined;

  /** `localDomains`: the gateway's own domains, which no partner record may name. */
  constructor(readonly file: string, readonly localDomains: ReadonlySet<string> = new Set()) {}

  get location(): string {
    return this.file;
  }

  /** Parses and validates partner-file text (as read from this store's file). */
  parse(text: string): PartnerDocument {
    return PartnerDocument.parse(text, this.file, this.localDomains);
  }

  /** Reads and validates the file; a missing or empty file is an empty list. */
  async readDocument(): Promise<PartnerDocument> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') text = '';
      else throw new ConfigError(`cannot read partner file: ${(err as Error).message}`, this.file);
    }
    return this.parse(text);
  }

  async read(): Promise<PartnerList> {
    return new PartnerList((await this.readDocument()).records);
  }

  /**
   * Runs `edit` on the current document under the lock and writes the result atomically unless
   * `dryRun` (WhatIf) or the edit made no change. Validation errors leave the file untouched.
   */
  async edit<T>(edit: (doc: PartnerDocument) => T, opts: { dryRun?: boolean } = {}): Promise<T> {
    if (opts.dryRun) return edit(await this.readDocument());
    let release: () => Promise<void>;
    try {
      release = await lockfile.lock(this.file, LOCK_OPTIONS);
    } catch (err) {
      throw new ConfigError(`cannot lock partner file for writing: ${(err as Error).message}`, this.file);
    }
    try {
      const doc = await this.readDocument();
      const before = doc.toString();
      const beforeRecords = doc.records;
      const result = edit(doc);
      doc.validateList();
      const after = doc.toString();
      if (after !== before) {
        await writeFileAtomic(this.file, after);
        await this.onCommit?.(beforeRecords, doc.records);
      }
      return result;
    } finally {
      await release();
    }
  }
}
