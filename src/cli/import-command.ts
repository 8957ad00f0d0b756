/**
 * `xmpp-gateway [--config FILE] [--json] import FILE [--what-if] [--force]`: partners from a Lync /
 * Skype for Business export (policy/lync-export.ts), all or nothing (partner-ops.ts importPartners).
 * Prints what was created, what exists already (left alone unless --force) and every warning;
 * every problem goes to stderr and nothing is written.
 */
import { readFile } from 'node:fs/promises';
import { UsageError } from '../errors.js';
import { ImportError, parseLyncExport } from '../policy/lync-export.js';
import { importPartners } from '../policy/partner-ops.js';
import { commandArgs, loadConfigAndPartners } from './command-args.js';

export async function importCommand(configPath: string, json: boolean, args: readonly string[]): Promise<number> {
  const { values, positionals } = commandArgs('import', args, {
    'what-if': { type: 'boolean' },
    force: { type: 'boolean' },
  }, { min: 1, max: 1, name: 'the exported FILE (- for stdin)' });
  const file = positionals[0]!;
  let text: string;
  try {
    text = file === '-' ? await readStdin() : await readFile(file, 'utf8');
  } catch (err) {
    throw new UsageError(`import: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const { store } = await loadConfigAndPartners(configPath);
  const whatIf = values['what-if'] === true;
  let parsed;
  let result;
  try {
    parsed = parseLyncExport(text, file === '-' ? 'stdin' : file);
    result = await importPartners(store, parsed.records, { force: values.force === true, whatIf });
  } catch (err) {
    const problems = err instanceof ImportError ? err.problems : (err as { problems?: string[] }).problems;
    if (!problems) throw err;
    for (const p of problems) process.stderr.write(`error: ${p}\n`);
    process.stderr.write(`error: ${problems.length} problem${problems.length === 1 ? '' : 's'}: nothing was imported (${store.location} unchanged)\n`);
    return 1;
  }
  const warnings = [...parsed.warnings, ...result.warnings];
  if (json) {
    const ids = (rs: readonly { Identity: string }[]) => rs.map((r) => r.Identity);
    process.stdout.write(`${JSON.stringify({ format: parsed.format, whatIf, created: ids(result.created), existing: ids(result.existing), replaced: ids(result.replaced), warnings }, null, 2)}\n`);
  } else {
    const verb = (done: string, would: string) => (whatIf ? would : done).padEnd(13);
    const lines = [
      ...result.created.map((r) => `${verb('created', 'would create')} ${r.Identity}`),
      ...result.replaced.map((r) => `${verb('replaced', 'would replace')} ${r.Identity}`),
      ...result.existing.map((r) => `${'exists'.padEnd(13)} ${r.Identity} (left alone; --force replaces it)`),
      `${parsed.records.length} record${parsed.records.length === 1 ? '' : 's'} read (${parsed.format === 'csv' ? 'Export-Csv' : 'list view'}): ${result.created.length} ${whatIf ? 'to create' : 'created'}, ${result.replaced.length} ${whatIf ? 'to replace' : 'replaced'}, ${result.existing.length} left alone${whatIf ? '; --what-if: nothing written' : ''}`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  }
  for (const w of warnings) process.stderr.write(`WARNING: ${w}\n`);
  return 0;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
