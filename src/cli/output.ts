/**
 * How records are printed: PowerShell's list view (Format-List) for people, a JSON array for
 * scripts (`--json`). Both show every property, defaults included, in canonical order. Also the
 * plain table of the other listing commands (status, approvals).
 */
import { IN_MEMORY_KEY, isInMemory } from '../policy/in-memory.js';
import { toJsonRecord } from '../policy/record-json.js';
import { PROPERTY_NAMES, type PartnerRecord } from '../policy/types.js';

/** Width of the property-name column of the list view (the longest name). */
export const LABEL_WIDTH = Math.max(...PROPERTY_NAMES.map((n) => n.length));

export function formatValue(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'boolean') return value ? 'True' : 'False';
  if (Array.isArray(value)) return `{${value.join(', ')}}`;
  return String(value);
}

/** Format-List: a blank line, then `Name : value` lines per record, records separated by blank lines. */
export function formatList(records: readonly PartnerRecord[]): string {
  if (records.length === 0) return '';
  // A value with line breaks continues on lines indented under the value (as PowerShell wraps).
  const indent = `\n${' '.repeat(LABEL_WIDTH + 3)}`;
  const blocks = records.map((r) => {
    const lines = PROPERTY_NAMES.map((name) => `${name.padEnd(LABEL_WIDTH)} : ${formatValue(r[name]).replaceAll('\n', indent)}`.trimEnd());
    // Not saved yet: `set --instance` commits it (the mark is what lets Set create it).
    if (isInMemory(r)) lines.push(`${IN_MEMORY_KEY.padEnd(LABEL_WIDTH)} : True`);
    return lines.join('\n');
  });
  return `\n${blocks.join('\n\n')}\n\n`;
}

export function formatJson(records: readonly PartnerRecord[]): string {
  const objects = records.map((r) => (isInMemory(r) ? { ...toJsonRecord(r), [IN_MEMORY_KEY]: true } : toJsonRecord(r)));
  return `${JSON.stringify(objects, null, 2)}\n`;
}

/** A plain-text table: a header row, then `rows`, columns two spaces apart, `rightAligned` padded on the left. */
export function formatTable(columns: readonly string[], rows: readonly (readonly string[])[], rightAligned: ReadonlySet<string> = new Set()): string {
  const widths = columns.map((name, i) => Math.max(name.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    columns.map((name, i) => (rightAligned.has(name) ? (cells[i] ?? '').padStart(widths[i]!) : (cells[i] ?? '').padEnd(widths[i]!))).join('  ').trimEnd();
  return `${[line(columns), ...rows.map(line)].join('\n')}\n`;
}

/** Format-List of other objects (Get-CsAdminRole's roles): `Name : value`, lists as {a, b}. */
export function formatObjects(objects: readonly Record<string, unknown>[]): string {
  if (objects.length === 0) return '';
  const width = Math.max(...objects.flatMap((o) => Object.keys(o).map((k) => k.length)));
  const blocks = objects.map((o) => Object.entries(o).map(([k, v]) => `${k.padEnd(width)} : ${formatValue(v)}`.trimEnd()).join('\n'));
  return `\n${blocks.join('\n\n')}\n\n`;
}
