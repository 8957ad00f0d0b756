/**
 * `xmpp-gateway [--config FILE] [--json] explain --from DOMAIN [--to LOCALDOMAIN] [--certificate FILE] [--tls]`:
 * what the gateway would do with a stream from DOMAIN (diagnostics/explain.ts), and the running
 * gateway's last refusals of that partner when its admin listener answers.
 */
import { adminJson, adminTarget } from '../admin/admin-client.js';
import type { GatewayConfig } from '../config/schema.js';
import { explain, type ExplainResult } from '../diagnostics/explain.js';
import { UsageError } from '../errors.js';
import { commandArgs, loadConfigAndPartners } from './command-args.js';

export async function explainCommand(configPath: string, json: boolean, args: readonly string[]): Promise<number> {
  const { values } = commandArgs('explain', args, {
    from: { type: 'string' },
    to: { type: 'string' },
    certificate: { type: 'string' },
    tls: { type: 'boolean' },
  }, { min: 0, max: 0, name: '' });
  if (values.from === undefined) throw new UsageError('explain needs --from DOMAIN (the remote server\'s domain)', 'from');
  const { config, partners } = await loadConfigAndPartners(configPath);
  const result = await explain(config, partners, {
    from: values.from,
    ...(values.to === undefined ? {} : { to: values.to }),
    ...(values.certificate === undefined ? {} : { certificateFile: values.certificate }),
    tls: values.tls === true,
    status: await runningStatus(config),
  });
  process.stdout.write(json ? `${JSON.stringify(result, null, 2)}\n` : formatExplain(result));
  return 0;
}

/** The running gateway's /status body, or a sentence saying why there is none. */
async function runningStatus(config: GatewayConfig): Promise<unknown> {
  try {
    return await adminJson(adminTarget(config), 'GET', '/status');
  } catch (err) {
    return `recent refusals unknown: ${(err as Error).message}`;
  }
}

export function formatExplain(r: ExplainResult): string {
  const width = Math.max(...r.steps.map((s) => s.name.length));
  const lines = [
    `explain a stream from ${r.from} to ${r.to}${r.tls ? ' with TLS' : ' without TLS'}`,
    ...r.steps.map((s) => `  ${s.ok ? 'ok  ' : 'FAIL'}  ${s.name.padEnd(width)}  ${s.detail}`),
    r.auth
      ? `verdict: accepted, authenticated by ${r.auth}${r.auth === 'dialback' ? ' (once the key is confirmed)' : ''}`
      : `verdict: refused, stream error ${r.refusal!.condition}, rule ${r.refusal!.rule}: ${r.refusal!.text}`,
  ];
  if (r.recentRefusals === null || r.recentRefusals.length === 0) lines.push(r.recentRefusalsNote);
  else {
    lines.push(`${r.recentRefusalsNote}:`);
    for (const e of r.recentRefusals) lines.push(`  ${e.time}  ${e.direction}  ${e.condition}  rule ${e.rule}: ${e.text}`);
  }
  return `${lines.join('\n')}\n`;
}
