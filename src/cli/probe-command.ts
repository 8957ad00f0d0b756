/**
 * `xmpp-gateway [--config FILE] [--json] probe DOMAIN [--from LOCALDOMAIN] [--unlisted] [--timeout SECONDS]`:
 * tries a partner as the gateway's outbound side would (diagnostics/probe.ts) and prints each
 * step and the verdict. Exit status 0 when the gateway would authenticate, 1 otherwise.
 */
import { UsageError } from '../errors.js';
import { probe, type ProbeResult } from '../diagnostics/probe.js';
import { commandArgs, loadConfigAndPartners } from './command-args.js';

export async function probeCommand(configPath: string, json: boolean, args: readonly string[]): Promise<number> {
  const { values, positionals } = commandArgs('probe', args, {
    from: { type: 'string' },
    unlisted: { type: 'boolean' },
    timeout: { type: 'string' },
  }, { min: 1, max: 1, name: 'the partner DOMAIN to probe' });
  const timeout = values.timeout === undefined ? undefined : Number(values.timeout);
  if (timeout !== undefined && !(timeout > 0)) throw new UsageError(`probe: --timeout '${values.timeout}' is not a number of seconds`, 'timeout');
  const { config, partners } = await loadConfigAndPartners(configPath);
  const result = await probe(config, partners, positionals[0]!, {
    ...(values.from === undefined ? {} : { from: values.from }),
    unlisted: values.unlisted === true,
    ...(timeout === undefined ? {} : { timeoutMs: timeout * 1000 }),
  });
  process.stdout.write(json ? `${JSON.stringify(result, null, 2)}\n` : formatProbe(result));
  return result.verdict === 'ok' ? 0 : 1;
}

export function formatProbe(r: ProbeResult): string {
  const width = Math.max(...r.steps.map((s) => s.name.length));
  const lines = [
    `probe ${r.domain} as ${r.from}${r.unlisted ? ' (--unlisted: not an allowed partner, default record)' : ''}`,
    ...r.steps.map((s) => `  ${s.ok ? 'ok  ' : 'FAIL'}  ${s.name.padEnd(width)}  ${`${s.ms} ms`.padStart(8)}  ${s.detail}`),
    r.verdict === 'ok'
      ? `verdict: ok, authenticates with ${r.auth}: ${r.reason}`
      : `verdict: FAIL at ${r.failedStep ?? 'negotiation'}${r.rule ? `, decided by ${r.rule}` : ''}: ${r.reason}`,
  ];
  return `${lines.join('\n')}\n`;
}
