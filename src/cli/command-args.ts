/**
 * Options of the diagnostic commands (check, probe, explain, import), read with node:util
 * parseArgs: unknown options and missing values are usage errors naming the option.
 */
import { parseArgs } from 'node:util';
import { loadGatewayConfig } from '../config/load.js';
import type { GatewayConfig } from '../config/schema.js';
import { UsageError } from '../errors.js';
import type { PartnerList } from '../policy/partner-list.js';
import { partnerStoreFor } from '../cluster/central-store.js';
import type { PartnerListStore } from '../policy/partner-store.js';

type Spec = Record<string, { type: 'string' | 'boolean' }>;

export function commandArgs<S extends Spec>(command: string, args: readonly string[], options: S, positionals: { min: number; max: number; name: string }) {
  let parsed;
  try {
    parsed = parseArgs({ args: [...args], options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError(`${command}: ${(err as Error).message.split('\n')[0]} (try: xmpp-gateway ${command} --help)`);
  }
  const n = parsed.positionals.length;
  if (n < positionals.min) throw new UsageError(`${command} needs ${positionals.name} (try: xmpp-gateway ${command} --help)`);
  if (n > positionals.max) throw new UsageError(`${command}: unexpected argument '${parsed.positionals[positionals.max]}'`);
  return parsed;
}

/** gateway.yaml and the partner list it names (partners.yaml, or in a pool the list in etcd). */
export async function loadConfigAndPartners(configPath: string): Promise<{ config: GatewayConfig; partners: PartnerList; store: PartnerListStore }> {
  const config = await loadGatewayConfig(configPath, (msg) => process.stderr.write(`WARNING: ${msg}\n`));
  const store = partnerStoreFor(config);
  return { config, partners: await store.read(), store };
}
