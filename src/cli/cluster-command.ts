/**
 * `xmpp-gateway [--config FILE] [--json] cluster import [--force]` (issue 11; docs/design.md
 * section 11): loads this node's partners.yaml into the pool's Central Management Store, the
 * etcd key `<prefix>partners`, once. The file is validated first (the same parser as every
 * reload); the write is one transaction that creates the key only if it is absent, so an import
 * never overwrites a list the pool already holds, unless --force (then: compare-and-swap on the
 * revision read, so the list replaced is the one reported). Talks to etcd directly: no running
 * gateway is needed. Every change is recorded in the audit trail.
 */
import { readFile } from 'node:fs/promises';
import { AuditLog, osActor } from '../admin/audit.js';
import { CentralList, centralLocation, CentralStoreUnavailable, etcdPerCall, MAX_EDIT_ATTEMPTS, sharedEtcd } from '../cluster/central-store.js';
import { loadGatewayConfig } from '../config/load.js';
import { ConfigError, UsageError } from '../errors.js';
import { PartnerDocument } from '../policy/partner-file.js';
import type { PartnerRecord } from '../policy/types.js';
import { commandArgs } from './command-args.js';

interface Imported {
  readonly revision: number;
  /** The list that was replaced (--force), else empty. */
  readonly replaced: readonly PartnerRecord[] | null;
}

export async function clusterCommand(configPath: string, json: boolean, args: readonly string[]): Promise<number> {
  if (args[0] !== 'import') {
    throw new UsageError(`cluster: ${args[0] === undefined ? 'needs a subcommand' : `unknown subcommand '${args[0]}'`}: cluster import [--force] (try: xmpp-gateway cluster --help)`);
  }
  const { values } = commandArgs('cluster import', args.slice(1), { force: { type: 'boolean' } }, { min: 0, max: 0, name: 'no FILE' });
  const force = values.force === true;
  const config = await loadGatewayConfig(configPath, (msg) => process.stderr.write(`WARNING: ${msg}\n`));
  if (!config.cluster) {
    throw new UsageError(`cluster import: ${config.file} has no cluster section, so this gateway is not in a pool (docs/design.md section 11)`, 'cluster');
  }
  const cluster = config.cluster;
  const location = centralLocation(cluster);
  let text: string;
  try {
    text = await readFile(config.partners, 'utf8');
  } catch (err) {
    throw new UsageError(`cluster import: cannot read ${config.partners}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const localDomains = new Set(config.localDomains.map((d) => d.domain));
  // Errors name the file, line and field; nothing is written.
  const records = PartnerDocument.parse(text, config.partners, localDomains).records;

  const imported = await etcdPerCall(cluster).use(async (etcd): Promise<Imported> => {
    const list = new CentralList(sharedEtcd(etcd));
    for (let attempt = 1; attempt <= MAX_EDIT_ATTEMPTS; attempt++) {
      const current = await list.read().catch(nothingImported);
      if (current.revision !== 0 && !force) {
        const held = countOf(current.text, location, localDomains);
        throw new UsageError(
          `cluster import: etcd already holds a partner list (${location}, revision ${current.revision}${held}); ` +
          "edit it with 'xmpp-gateway partner ...', or replace it with this file: 'xmpp-gateway cluster import --force'",
        );
      }
      const written = await list.compareAndPut(current.revision, text).catch(nothingImported);
      if (written !== null) return { revision: written, replaced: current.revision === 0 ? null : recordsOf(current.text, location, localDomains) };
      // Another import or edit landed in between: look again (without --force that ends in the refusal above).
    }
    throw new ConfigError(`the list kept changing under this import (${MAX_EDIT_ATTEMPTS} attempts); nothing was imported, try again`, location);
  });

  await new AuditLog(config.auditLog).recordChanges(osActor(), imported.replaced ?? [], records)
    .catch((err: Error) => process.stderr.write(`WARNING: imported, but the audit trail was not written: ${err.message}\n`));
  const n = records.length;
  const partners = `${n} partner${n === 1 ? '' : 's'}`;
  if (json) {
    process.stdout.write(`${JSON.stringify({ imported: n, from: config.partners, to: location, revision: imported.revision, replaced: imported.replaced?.length ?? null }, null, 2)}\n`);
  } else if (imported.replaced) {
    process.stdout.write(`replaced the list in ${location} (${imported.replaced.length} partners) with ${partners} from ${config.partners} (revision ${imported.revision})\n`);
  } else {
    process.stdout.write(`imported ${partners} from ${config.partners} into ${location} (revision ${imported.revision})\n`);
  }
  if (n === 0) process.stderr.write('WARNING: the imported list is empty: every node of the pool refuses all federation\n');
  return 0;
}

function nothingImported(err: Error): never {
  throw new CentralStoreUnavailable(`${err.message}; nothing was imported`, { cause: err });
}

/** The records of the list in etcd; an invalid list (written past the CLI) counts as none. */
function recordsOf(text: string, location: string, localDomains: ReadonlySet<string>): readonly PartnerRecord[] {
  try {
    return PartnerDocument.parse(text, location, localDomains).records;
  } catch {
    return [];
  }
}

function countOf(text: string, location: string, localDomains: ReadonlySet<string>): string {
  const n = recordsOf(text, location, localDomains).length;
  return `, ${n} partner${n === 1 ? '' : 's'}`;
}
