/**
 * Reads partner records given as input to `set`/`remove` (piped stdin, `--instance FILE|-`):
 * a JSON array (what `--json` prints), one JSON record per line, or PowerShell list view (what
 * `get` prints without `--json`), so `xmpp-gateway partner get | xmpp-gateway partner set ...`
 * works either way.
 */
import { UsageError } from '../errors.js';
import { IN_MEMORY_KEY, markInMemory } from '../policy/in-memory.js';
import { booleanValue, propertyName, recordFromObject, FieldError } from '../policy/validate.js';
import type { PartnerRecord } from '../policy/types.js';
import { LABEL_WIDTH } from './output.js';

const CONTINUATION = ' '.repeat(LABEL_WIDTH + 3);

export function parseRecords(text: string, source: string): PartnerRecord[] {
  const trimmed = text.trim();
  if (trimmed === '') return [];
  const objects = trimmed.startsWith('[') || trimmed.startsWith('{') ? parseJson(trimmed, source) : parseListView(trimmed, source);
  return objects.map((obj, i) => {
    try {
      // `InMemory: true` marks a `new --in-memory` record, which `set` may create (in-memory.ts).
      const { [IN_MEMORY_KEY]: inMemory, ...properties } = obj;
      const record = recordFromObject(properties);
      if (inMemory === undefined) return record;
      return booleanValue(IN_MEMORY_KEY, inMemory) ? markInMemory(record) : record;
    } catch (err) {
      if (err instanceof FieldError) throw new UsageError(`${source}: record ${i + 1}: ${err.field}: ${err.message}`, err.field);
      throw err;
    }
  });
}

function parseJson(text: string, source: string): Record<string, unknown>[] {
  const parseOne = (t: string): unknown => {
    try {
      return JSON.parse(t);
    } catch (err) {
      throw new UsageError(`${source}: not valid JSON: ${(err as Error).message}`);
    }
  };
  let values: unknown[];
  if (text.startsWith('[')) {
    const parsed = parseOne(text);
    values = Array.isArray(parsed) ? parsed : [parsed];
  } else {
    values = text.split('\n').filter((l) => l.trim() !== '').map(parseOne);
    values = values.flatMap((v) => (Array.isArray(v) ? v : [v]));
  }
  return values.map((v, i) => {
    if (!v || typeof v !== 'object' || Array.isArray(v)) throw new UsageError(`${source}: record ${i + 1} is not a JSON object`);
    return v as Record<string, unknown>;
  });
}

/** PowerShell Format-List: `Name : value` lines, records separated by blank lines. */
function parseListView(text: string, source: string): Record<string, unknown>[] {
  return text.split(/\n\s*\n/).map((block, i) => {
    const obj: Record<string, unknown> = {};
    let last: string | undefined;
    for (const line of block.split('\n')) {
      if (last !== undefined && line.startsWith(CONTINUATION)) {
        // A continuation line of a multi-line value (formatList indents them under the value).
        obj[last] = `${String(obj[last] ?? '')}\n${line.slice(CONTINUATION.length)}`;
        continue;
      }
      const m = /^(\w+)\s*:\s?(.*)$/.exec(line.trimEnd());
      if (!m) throw new UsageError(`${source}: record ${i + 1}: cannot read line '${line}'`);
      if (m[1] === IN_MEMORY_KEY) {
        obj[IN_MEMORY_KEY] = (m[2] ?? '').trim();
        last = undefined;
        continue;
      }
      const name = propertyName(m[1] ?? '');
      if (!name) throw new UsageError(`${source}: record ${i + 1}: unknown property '${m[1]}'`);
      const raw = (m[2] ?? '').trim();
      obj[name] = listViewValue(name, raw);
      last = name;
    }
    return obj;
  });
}

function listViewValue(name: string, raw: string): unknown {
  if (name === 'AdditionalDomains') {
    const inner = raw.replace(/^\{|\}$/g, '').trim();
    return inner === '' ? [] : inner.split(',').map((s) => s.trim());
  }
  if (raw === '') return null;
  return raw;
}
