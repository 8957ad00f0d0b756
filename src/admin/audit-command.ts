/**
 * `xmpp-gateway audit [--since TIME] [--json]`: the audit trail (gateway.yaml `auditLog`), read
 * from the file itself, oldest first: a table for people, the JSON lines' objects for scripts.
 */
import type { GatewayConfig } from '../config/schema.js';
import { UsageError } from '../errors.js';
import { formatTable } from '../cli/output.js';
import { AuditLog, parseSince } from './audit.js';

export async function auditCommand(config: GatewayConfig, json: boolean, args: readonly string[]): Promise<number> {
  let since: Date | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--since' || a.startsWith('--since=')) {
      const value = a === '--since' ? args[++i] : a.slice('--since='.length);
      if (value === undefined) throw new UsageError('--since needs a time (e.g. 2024-05-01T12:00Z, 2h, 7d)', 'since');
      since = parseSince(value);
    } else throw new UsageError(`audit: unknown argument '${a}' (it takes --since TIME and --json)`);
  }
  const entries = await new AuditLog(config.auditLog).read(since ? { since } : {});
  if (json) {
    process.stdout.write(`${JSON.stringify(entries, null, 2)}\n`);
    return 0;
  }
  if (entries.length === 0) {
    process.stdout.write(`no audit entries${since ? ` since ${since.toISOString()}` : ''} in ${config.auditLog}\n`);
    return 0;
  }
  const rows = entries.map((e) => [
    e.time, `${e.who} (${e.via})`, e.result,
    e.cmdlet ?? `${e.action}${e.detail ? ` ${JSON.stringify(e.detail)}` : ''}`,
  ].concat(e.error ? [`${e.error.split('\n')[0]}`] : ['']));
  process.stdout.write(formatTable(['TIME', 'WHO', 'RESULT', 'WHAT', 'ERROR'], rows));
  return 0;
}
