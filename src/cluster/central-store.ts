/**
 * The pool's Central Management Store for the allowed-partner list (issue 11; docs/design.md
 * section 11): one etcd key, `<prefix>partners` (poolKeys.partners), holding partners.yaml text.
 * One revision of the key is one whole list, validated by the same parser as the file
 * (PartnerDocument), so every node applies it atomically.
 *
 * Writers (the CLI, the panel, `cluster import`) never overwrite blindly: they read the text and
 * its mod_revision, apply their edit to the parsed document, validate, and write in one
 * transaction only if the key's mod_revision is still the one they read (compare-and-swap). A
 * writer that lost the race reads again and re-applies its edit, so concurrent admins on
 * different nodes lose nothing. An absent key has mod_revision 0 (etcd compares a missing key's
 * revisions as 0), so the first write is the same transaction.
 *
 * Every failure to reach etcd is one line (CentralStoreUnavailable) and writes nothing anywhere.
 */
import { GatewayError, ConfigError } from '../errors.js';
import type { ClusterConfig, GatewayConfig } from '../config/schema.js';
import { PartnerDocument } from '../policy/partner-file.js';
import { PartnerList } from '../policy/partner-list.js';
import { PartnerStore, type CommitHook, type PartnerListStore } from '../policy/partner-store.js';
import { connectEtcd, poolKeys, type EtcdConnection } from './etcd.js';

/** How often an edit is re-read and re-applied after losing a race before it gives up. */
export const MAX_EDIT_ATTEMPTS = 40;

/** etcd could not be reached (or did not answer within the call deadline); nothing was written. */
export class CentralStoreUnavailable extends GatewayError {
  override name = 'CentralStoreUnavailable';
  constructor(message: string, opts?: ErrorOptions) {
    super('GW_ERR_ETCD', message, opts);
  }
}

/**
 * How a store reaches etcd: a running gateway shares its node's connection; the CLI opens one per
 * operation and closes it at once (a command must not be kept alive by an idle gRPC channel).
 */
export interface EtcdAccess {
  readonly config: ClusterConfig;
  use<T>(fn: (etcd: EtcdConnection) => Promise<T>): Promise<T>;
}

export function sharedEtcd(etcd: EtcdConnection): EtcdAccess {
  return { config: etcd.config, use: (fn) => fn(etcd) };
}

export function etcdPerCall(config: ClusterConfig): EtcdAccess {
  return {
    config,
    async use(fn) {
      const etcd = connectEtcd(config);
      try {
        return await fn(etcd);
      } finally {
        etcd.close();
      }
    },
  };
}

/** One version of the list in etcd. */
export interface CentralText {
  readonly text: string;
  /** The key's mod_revision; 0 when etcd holds no list (the key is absent). */
  readonly revision: number;
  /** etcd's revision when it answered (at least `revision`). */
  readonly clusterRevision: number;
}

/** `etcd:<prefix>partners`: how messages, logs and the local store name the list in a pool. */
export function centralLocation(config: ClusterConfig): string {
  return `etcd:${config.etcd.prefix}${poolKeys.partners}`;
}

/** The list's key: reads and conditional writes, each one etcd call with the call deadline. */
export class CentralList {
  constructor(readonly access: EtcdAccess) {}

  get location(): string {
    return centralLocation(this.access.config);
  }

  async read(): Promise<CentralText> {
    const res = await this.call('read the partner list', (etcd) => etcd.kv.get(poolKeys.partners).exec());
    const kv = res.kvs[0];
    return {
      text: kv ? kv.value.toString('utf8') : '',
      revision: kv ? Number(kv.mod_revision) : 0,
      clusterRevision: Number(res.header.revision),
    };
  }

  /** Writes `text` if the key's mod_revision is still `revision`; the new revision, or null when it was not. */
  async compareAndPut(revision: number, text: string): Promise<number | null> {
    const res = await this.call('write the partner list', (etcd) =>
      etcd.kv.if(poolKeys.partners, 'Mod', '==', revision).then(etcd.kv.put(poolKeys.partners).value(text)).commit());
    return res.succeeded ? Number(res.header.revision) : null;
  }

  private async call<T>(what: string, fn: (etcd: EtcdConnection) => Promise<T>): Promise<T> {
    try {
      return await this.access.use(fn);
    } catch (err) {
      throw unavailable(this.access.config, what, err);
    }
  }
}

/** One line: which endpoints, what failed; the caller adds what was (not) done. */
export function unavailable(config: ClusterConfig, what: string, err: unknown): CentralStoreUnavailable {
  const reason = (err instanceof Error ? err.message : String(err)).split('\n')[0]!.replace(/\s*Resolution note:\s*$/, '');
  return new CentralStoreUnavailable(`cannot ${what}: etcd (${config.etcd.endpoints.join(', ')}) did not answer: ${reason}`, { cause: err });
}

/**
 * The partner list in etcd with PartnerStore's interface, so the partner operations, the CLI and
 * the panel edit it unchanged. `edit` is read ⇒ apply ⇒ validate ⇒ compare-and-swap, retried
 * (re-read, re-applied) on a lost race up to MAX_EDIT_ATTEMPTS times.
 */
export class CentralPartnerStore implements PartnerListStore {
  onCommit: CommitHook | undefined;
  readonly list: CentralList;

  constructor(access: EtcdAccess, readonly localDomains: ReadonlySet<string> = new Set()) {
    this.list = new CentralList(access);
  }

  get location(): string {
    return this.list.location;
  }

  parse(text: string): PartnerDocument {
    return PartnerDocument.parse(text, this.location, this.localDomains);
  }

  async readDocument(): Promise<PartnerDocument> {
    let current: CentralText;
    try {
      current = await this.list.read();
    } catch (err) {
      throw new CentralStoreUnavailable(`${(err as Error).message} ('partner get --local-store' shows the list this node last applied)`, { cause: err });
    }
    return this.parse(current.text);
  }

  async read(): Promise<PartnerList> {
    return new PartnerList((await this.readDocument()).records);
  }

  async edit<T>(edit: (doc: PartnerDocument) => T, opts: { dryRun?: boolean } = {}): Promise<T> {
    if (opts.dryRun) return edit(await this.readDocument());
    // One connection for all the attempts of this edit (the CLI's access opens one per use).
    return this.list.access.use((etcd) => this.editWith(new CentralList(sharedEtcd(etcd)), edit));
  }

  private async editWith<T>(list: CentralList, edit: (doc: PartnerDocument) => T): Promise<T> {
    const nothingChanged = (err: Error) => {
      throw new CentralStoreUnavailable(`${err.message}; nothing was changed`, { cause: err });
    };
    for (let attempt = 1; ; attempt++) {
      const current = await list.read().catch(nothingChanged);
      const doc = this.parse(current.text);
      const before = doc.toString();
      const beforeRecords = doc.records;
      const result = edit(doc);
      doc.validateList();
      const after = doc.toString();
      if (after === before) return result;
      if ((await list.compareAndPut(current.revision, after).catch(nothingChanged)) !== null) {
        await this.onCommit?.(beforeRecords, doc.records);
        return result;
      }
      // Another admin's edit landed between our read and our write: read it, apply ours on top.
      if (attempt >= MAX_EDIT_ATTEMPTS) {
        throw new ConfigError(`the list kept changing under this edit (${MAX_EDIT_ATTEMPTS} attempts); nothing was changed, try again`, this.location);
      }
      await new Promise((r) => setTimeout(r, Math.random() * Math.min(100, 5 * attempt)));
    }
  }
}

/**
 * The store the CLI and the panel read and edit: the list in etcd when gateway.yaml has a
 * `cluster` section (through `etcd`, the running node's connection, when given), else partners.yaml.
 */
export function partnerStoreFor(config: GatewayConfig, etcd?: EtcdConnection | null): PartnerListStore {
  const localDomains = new Set(config.localDomains.map((d) => d.domain));
  if (!config.cluster) return new PartnerStore(config.partners, localDomains);
  return new CentralPartnerStore(etcd ? sharedEtcd(etcd) : etcdPerCall(config.cluster), localDomains);
}
