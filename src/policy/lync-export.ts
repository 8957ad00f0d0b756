/**
 * Reads what admins export from Lync Server 2013 / Skype for Business Server: the list view that
 * `Get-CsXmppAllowedPartner` prints (PowerShell Format-List: `Name : value` lines, records
 * separated by blank lines, long values wrapped onto indented lines) and
 * `Get-CsXmppAllowedPartner | Export-Csv` (an optional `#TYPE` line, a header row, quoted values).
 *
 * What those exports do to the values, and what is done about it:
 *  - Identity may carry the XDS scope (`XmppAllowedPartner:contoso.com`, `Global/contoso.com`):
 *    stripped.
 *  - AdditionalDomains prints as `{a.com, b.com}` in list view, truncated to `{a, b, c, d...}`
 *    beyond PowerShell's $FormatEnumerationLimit (4): refused, the domains are lost. Export-Csv
 *    writes a collection as its .NET type name: refused likewise, with the way to export it.
 *  - Properties the gateway does not have (Element, PSComputerName, ...) are ignored with a warning.
 * Every record is validated with the same rules as partners.yaml (validate.ts); all problems are
 * reported together.
 */
import { UsageError } from '../errors.js';
import { checkCombination, FieldError, propertyName, recordFromObject } from './validate.js';
import type { PartnerRecord } from './types.js';

export interface LyncExport {
  readonly format: 'list' | 'csv';
  readonly records: PartnerRecord[];
  readonly warnings: string[];
}

/** Invalid input: every problem found, one per line. */
export class ImportError extends UsageError {
  constructor(readonly problems: readonly string[]) {
    super(`${problems.length} problem${problems.length === 1 ? '' : 's'} in the import, nothing imported: ${problems[0]}`);
  }
}

const SCOPE_PREFIX = /^(?:xmppallowedpartner:|global\/|identity=)/i;

export function parseLyncExport(text: string, source: string): LyncExport {
  const body = text.replace(/^\uFEFF/, '').replace(/\r\n?/g, '\n');
  const firstLine = body.split('\n').find((l) => l.trim() !== '') ?? '';
  const csv = /^#TYPE\b/i.test(firstLine) || /^"?[A-Za-z]+"?\s*,/.test(firstLine);
  const rows = csv ? csvRows(body, source) : listRows(body);
  if (rows.length === 0) throw new UsageError(`${source}: no partner records found`);
  const warnings = new Set<string>();
  const problems: string[] = [];
  const records: PartnerRecord[] = [];
  rows.forEach(({ fields, line }, i) => {
    const where = `${source}:${line}: record ${i + 1}`;
    const obj: Record<string, unknown> = {};
    for (const [rawName, rawValue] of Object.entries(fields)) {
      const name = propertyName(rawName) ?? (rawName.toLowerCase() === 'domain' ? 'Identity' : undefined);
      if (!name) {
        warnings.add(`${source}: property ${rawName} is not a property of this gateway's partner records; ignored`);
        continue;
      }
      const value = rawValue.trim();
      if (name === 'Identity') obj[name] = stripScope(value);
      else if (name === 'AdditionalDomains') {
        if (/\.\.\.\}?$|…\}?$/.test(value)) {
          problems.push(`${where}: AdditionalDomains '${value}' was truncated by PowerShell ($FormatEnumerationLimit); export with $FormatEnumerationLimit = -1 or use Export-Csv`);
          return;
        }
        if (/^(System|Microsoft)\.[\w.`[\]]+$/.test(value)) {
          problems.push(`${where}: AdditionalDomains holds a .NET type name (${value}), not the domains: export them with Select-Object @{n='AdditionalDomains';e={$_.AdditionalDomains -join ','}}, or use the list view`);
          return;
        }
        obj[name] = value.replace(/^\{|\}$/g, '').split(/[,;\s]+/).filter((d) => d !== '');
      } else obj[name] = value === '' ? null : value;
    }
    try {
      const record = recordFromObject(obj);
      const invalid = checkCombination(record).errors[0];
      if (invalid) problems.push(`${where} (${record.Identity}): invalid combination: ${invalid}`);
      else records.push(record);
    } catch (err) {
      if (!(err instanceof FieldError)) throw err;
      problems.push(`${where}${typeof obj.Identity === 'string' ? ` (${obj.Identity})` : ''}: ${err.field}: ${err.message}`);
    }
  });
  if (problems.length > 0) throw new ImportError(problems);
  return { format: csv ? 'csv' : 'list', records, warnings: [...warnings] };
}

function stripScope(identity: string): string {
  let out = identity;
  while (SCOPE_PREFIX.test(out)) out = out.replace(SCOPE_PREFIX, '');
  return out;
}

interface Row {
  readonly fields: Record<string, string>;
  /** Line of the file the record starts on. */
  readonly line: number;
}

/** Format-List: `Name : value`; an indented line continues the previous value; blank lines separate records. */
function listRows(text: string): Row[] {
  const rows: Row[] = [];
  let current: { fields: Record<string, string>; line: number } | null = null;
  let last: string | null = null;
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') {
      if (current) rows.push(current);
      current = null;
      last = null;
      return;
    }
    if (/^\s/.test(line) && current && last !== null) {
      current.fields[last] = `${current.fields[last]}${line.trim()}`;
      return;
    }
    const m = /^([A-Za-z][\w]*)\s*:\s?(.*)$/.exec(line);
    if (!m) throw new UsageError(`line ${i + 1}: cannot read '${line.trim()}' (expected 'Name : value')`);
    current ??= { fields: {}, line: i + 1 };
    current.fields[m[1]!] = m[2] ?? '';
    last = m[1]!;
  });
  if (current) rows.push(current);
  return rows;
}

/** Export-Csv: RFC 4180 (quoted fields, doubled quotes, line breaks inside quotes), after an optional #TYPE line. */
function csvRows(text: string, source: string): Row[] {
  const records: { cells: string[]; line: number }[] = [];
  let cells: string[] = [];
  let cell = '';
  let quoted = false;
  let line = 1;
  let start = 1;
  let fresh = true;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') (cell += '"'), i++;
      else if (c === '"') quoted = false;
      else {
        if (c === '\n') line++;
        cell += c;
      }
      continue;
    }
    if (c === '"' && cell === '') quoted = true;
    else if (c === ',') cells.push(cell), (cell = '');
    else if (c === '\n') {
      cells.push(cell);
      if (!(cells.length === 1 && cells[0]!.trim() === '')) records.push({ cells, line: start });
      cells = [];
      cell = '';
      line++;
      start = line;
    } else cell += c;
    fresh = false;
  }
  if (!fresh && (cell !== '' || cells.length > 0)) records.push({ cells: [...cells, cell], line: start });
  const data = records.filter((r) => !/^#TYPE\b/i.test(r.cells[0] ?? ''));
  const [header, ...rest] = data;
  if (!header) return [];
  return rest.map((r) => {
    if (r.cells.length !== header.cells.length) {
      throw new UsageError(`${source}:${r.line}: ${r.cells.length} values for ${header.cells.length} columns`);
    }
    return { fields: Object.fromEntries(header.cells.map((name, j) => [name.trim(), r.cells[j]!])), line: r.line };
  });
}
