/**
 * `xmpp-gateway [--config FILE] [--json] check`: one line per finding (diagnostics/check.ts),
 * errors first; exit status 1 when any error was found.
 */
import { check, type Finding } from '../diagnostics/check.js';
import { commandArgs } from './command-args.js';

const ORDER = { error: 0, warning: 1, ok: 2 } as const;

export async function checkCommand(configPath: string, json: boolean, args: readonly string[]): Promise<number> {
  commandArgs('check', args, {}, { min: 0, max: 0, name: '' });
  const findings = await check(configPath);
  process.stdout.write(json ? `${JSON.stringify({ findings }, null, 2)}\n` : formatFindings(findings));
  return findings.some((f) => f.severity === 'error') ? 1 : 0;
}

export function formatFindings(findings: readonly Finding[]): string {
  const sorted = [...findings].sort((a, b) => ORDER[a.severity] - ORDER[b.severity]);
  const width = Math.max(...sorted.map((f) => f.check.length));
  const count = (s: Finding['severity']) => findings.filter((f) => f.severity === s).length;
  const lines = sorted.map((f) => `${f.severity.toUpperCase().padEnd(7)} ${f.check.padEnd(width)}  ${f.subject}: ${f.message}`);
  lines.push(`${count('error')} error(s), ${count('warning')} warning(s), ${count('ok')} ok`);
  return `${lines.join('\n')}\n`;
}
