import { readFile } from 'node:fs/promises';
import { ConfigError } from '../errors.js';
import { parseGatewayConfig, type GatewayConfig } from './schema.js';

export const DEFAULT_CONFIG_PATH = 'config/gateway.yaml';

/** Reads and validates gateway.yaml; every failure is a ConfigError naming the file. */
export async function loadGatewayConfig(file: string, warn?: (msg: string) => void): Promise<GatewayConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'file not found' : (err as Error).message;
    throw new ConfigError(`cannot read gateway config: ${why}`, file);
  }
  return parseGatewayConfig(text, file, warn);
}
