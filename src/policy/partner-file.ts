/**
 * partners.yaml as a document: a YAML sequence of mappings, one per partner.
 *
 * Edits are made to the text itself: a changed value is replaced where it stands, a new
 * property is inserted under its record, a new record is appended and a removed record is cut
 * out with the comment lines directly above it. Everything else (comments, their alignment,
 * blank lines, quoting, order) stays byte-for-byte as the admin wrote it. Layouts that cannot be
 * edited in place (flow-style records, a record whose first line holds the property to delete)
 * fall back to the yaml library's Document model, which still keeps comments and order.
 *
 * Every problem is reported as `file:line: Field: message`.
 */
import { isMap, isScalar, isSeq, LineCounter, parseDocument, stringify, type Document, type Node, type Pair, type YAMLMap, YAMLSeq } from 'yaml';
import { yamlErrorLine } from '../config/yaml-error.js';
import { ConfigError } from '../errors.js';
import { PROPERTY_NAMES, type PartnerRecord, type PropertyName } from './types.js';
import { checkCombination, checkNotLocal, FieldError, findDuplicateDomain, recordFromObject, sameValue } from './validate.js';

const TO_STRING_OPTIONS = { lineWidth: 0, flowCollectionPadding: false } as const;

export class PartnerDocument {
  private doc!: Document;
  private lines!: LineCounter;
  private recordsList: PartnerRecord[] = [];

  private constructor(readonly file: string, private text: string, private readonly localDomains: ReadonlySet<string>) {
    this.setText(text);
  }

  /**
   * Parses and validates; throws ConfigError naming file, line and field. Empty text ⇒ no partners.
   * `localDomains` (the gateway's own) may not appear in any record.
   */
  static parse(text: string, file: string, localDomains: ReadonlySet<string> = new Set()): PartnerDocument {
    const partners = new PartnerDocument(file, text, localDomains);
    partners.validateList();
    return partners;
  }

  get records(): readonly PartnerRecord[] {
    return this.recordsList;
  }

  indexOf(identity: string): number {
    return this.recordsList.findIndex((r) => r.Identity === identity);
  }

  toString(): string {
    return this.text;
  }

  /** Appends a partner at the end of the file. */
  add(record: PartnerRecord): void {
    const seq = this.doc.contents;
    if (seq !== null && !(isSeq(seq) && !seq.flow)) {
      return this.fallback((doc) => {
        const items = isSeq(doc.contents) ? doc.contents : new YAMLSeq();
        items.flow = false;
        items.items.push(doc.createNode(plainRecord(record)));
        doc.contents = items;
      });
    }
    const indent = isSeq(seq) && seq.items[0] ? ' '.repeat(this.itemIndent(seq.items[0] as Node)) : '';
    const body = Object.entries(plainRecord(record))
      .map(([key, value], i) => `${indent}${i === 0 ? '- ' : '  '}${key}: ${renderValue(value, `${indent}  `)}`)
      .join('\n');
    const base = this.text === '' || this.text.endsWith('\n') ? this.text : `${this.text}\n`;
    this.setText(`${base}${body}\n`);
  }

  /** Rewrites only the properties whose value changed. */
  replace(index: number, record: PartnerRecord): void {
    const old = this.recordsList[index];
    if (!old) throw new Error(`no partner at index ${index}`);
    for (const name of PROPERTY_NAMES) {
      if (!sameValue(old[name], record[name])) this.setProperty(index, name, record[name]);
    }
  }

  /** Cuts the record out, with the comment lines directly above it. */
  remove(index: number): void {
    const seq = this.doc.contents as YAMLSeq;
    const item = seq.items[index] as Node | undefined;
    if (!item?.range || seq.flow) {
      return this.fallback((doc) => (doc.contents as YAMLSeq).items.splice(index, 1));
    }
    let start = lineStart(this.text, item.range[0]);
    const end = lineEnd(this.text, item.range[2] - 1);
    // Comment lines directly above the item (no blank line between) describe it: remove them too.
    while (start > 0) {
      const prevStart = lineStart(this.text, start - 1);
      const prev = this.text.slice(prevStart, start - 1);
      if (!/^\s*#/.test(prev) || index === 0) break;
      start = prevStart;
    }
    this.setText(this.text.slice(0, start) + this.text.slice(end));
  }

  /** Checks the list as a whole (combinations, duplicates) after edits; throws ConfigError. */
  validateList(): void {
    this.recordsList.forEach((record, index) => {
      const { errors } = checkCombination(record);
      if (errors[0]) throw this.errorAt(index, 'TlsNegotiation', `${record.Identity}: invalid combination: ${errors[0]}`);
      const local = checkNotLocal(record, this.localDomains);
      if (local) throw this.errorAt(index, local.field, local.message);
    });
    const dup = findDuplicateDomain(this.recordsList);
    if (dup) {
      const index = this.recordsList.findLastIndex((r) => r.Identity === dup.second);
      const field = this.recordsList[index]?.Identity === dup.domain ? 'Identity' : 'AdditionalDomains';
      throw this.errorAt(index, field, `domain ${dup.domain} already belongs to partner ${dup.first}`);
    }
  }

  private setProperty(index: number, name: PropertyName, value: unknown): void {
    const map = (this.doc.contents as YAMLSeq).items[index];
    if (!isMap(map) || map.flow) return this.fallback((doc) => updateInDocument(doc, index, name, value));
    const pair = map.items.find((p) => isScalar(p.key) && p.key.value === name) as Pair<Node, Node | null> | undefined;
    const absent = value === null || (Array.isArray(value) && value.length === 0);
    if (!pair) {
      if (absent) return;
      // Insert a new line after the record's last line, at the record's key indentation.
      const first = map.items[0]?.key as Node | undefined;
      const indent = ' '.repeat(this.column(first?.range?.[0] ?? 0));
      const at = lineEnd(this.text, (map.range?.[1] ?? 1) - 1);
      const pre = this.text.slice(0, at);
      const sep = pre.endsWith('\n') ? '' : '\n';
      return this.setText(`${pre}${sep}${indent}${name}: ${renderValue(value, `${indent}  `)}\n${this.text.slice(at)}`);
    }
    const key = pair.key as Node;
    const node = pair.value;
    if (absent) {
      const start = lineStart(this.text, key.range![0]);
      if (start !== key.range![0] - this.column(key.range![0]) || /\S/.test(this.text.slice(start, key.range![0]))) {
        return this.fallback((doc) => updateInDocument(doc, index, name, value));
      }
      const end = lineEnd(this.text, (node?.range?.[1] ?? key.range![1]) - 1);
      return this.setText(this.text.slice(0, start) + this.text.slice(end));
    }
    if (isScalar(node) && !Array.isArray(value) && node.range) {
      return this.splice(node.range[0], node.range[1], renderScalar(value, node));
    }
    if (isSeq(node) && Array.isArray(value) && node.range) {
      if (node.flow) return this.splice(node.range[0], node.range[1], `[${value.map((v) => renderScalar(v)).join(', ')}]`);
      // Block list: keep the original line of every item that stays (with its comment), add new ones.
      const keep = new Map<string, string>();
      for (const item of node.items as Node[]) {
        if (isScalar(item) && item.range) {
          const s = lineStart(this.text, item.range[0]);
          keep.set(String(item.value), this.text.slice(s, lineEnd(this.text, item.range[2] - 1)).replace(/\n$/, ''));
        }
      }
      const indent = ' '.repeat(this.column(node.range[0]));
      const start = lineStart(this.text, node.range[0]);
      const end = lineEnd(this.text, node.range[1] - 1);
      const lines = (value as string[]).map((d) => keep.get(d) ?? `${indent}- ${renderScalar(d)}`);
      return this.setText(`${this.text.slice(0, start)}${lines.join('\n')}\n${this.text.slice(end)}`);
    }
    this.fallback((doc) => updateInDocument(doc, index, name, value));
  }

  private splice(from: number, to: number, replacement: string): void {
    this.setText(this.text.slice(0, from) + replacement + this.text.slice(to));
  }

  /** Edits through the yaml Document model (keeps comments and order, normalises spacing). */
  private fallback(edit: (doc: Document) => void): void {
    const doc = parseDocument(this.text);
    edit(doc);
    this.setText(doc.toString(TO_STRING_OPTIONS));
  }

  private setText(text: string): void {
    const lines = new LineCounter();
    const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
    this.text = text;
    this.doc = doc;
    this.lines = lines;
    const syntax = doc.errors[0];
    if (syntax) {
      throw new ConfigError(`invalid YAML: ${syntax.message.split('\n')[0]}`, this.file, yamlErrorLine(text, lines, syntax));
    }
    this.recordsList = this.readRecords();
  }

  private readRecords(): PartnerRecord[] {
    const contents = this.doc.contents;
    if (contents === null || (isScalar(contents) && (contents.value === null || contents.value === ''))) return [];
    if (!isSeq(contents)) {
      throw new ConfigError('the file must be a YAML list of partner records (one "- Identity: ..." mapping each)', this.file, this.lineOf(contents));
    }
    return contents.items.map((item, index) => {
      if (!isMap(item)) {
        throw new ConfigError(`partner #${index + 1} must be a mapping of properties`, this.file, this.lineOf(item as Node));
      }
      try {
        return recordFromObject(item.toJSON() as Record<string, unknown>);
      } catch (err) {
        if (err instanceof FieldError) throw this.errorAt(index, err.field, err.message);
        throw err;
      }
    });
  }

  private errorAt(index: number, field: string, message: string): ConfigError {
    const contents = this.doc.contents;
    const map = isSeq(contents) ? contents.items[index] : undefined;
    let line = this.lineOf(map as Node | undefined);
    if (isMap(map)) {
      const pair = map.items.find((p) => isScalar(p.key) && String(p.key.value) === field);
      if (pair) line = this.lineOf(pair.key as Node);
    }
    return new ConfigError(message, this.file, line, field);
  }

  private lineOf(node: Node | null | undefined): number | undefined {
    const offset = node?.range?.[0];
    return offset === undefined ? undefined : this.lines.linePos(offset).line;
  }

  private column(offset: number): number {
    return offset - lineStart(this.text, offset);
  }

  /** Column of a sequence item's `-` indicator (its first key minus "- "). */
  private itemIndent(item: Node): number {
    const first = isMap(item) ? (item.items[0]?.key as Node | undefined) : item;
    return Math.max(0, this.column(first?.range?.[0] ?? 0) - 2);
  }
}

/** The mapping written for a new partner: every set property, nulls and empty lists omitted. */
function plainRecord(record: PartnerRecord): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const name of PROPERTY_NAMES) {
    const value = record[name];
    if (value === null || (Array.isArray(value) && value.length === 0)) continue;
    out[name] = Array.isArray(value) ? [...value] : value;
  }
  return out;
}

function renderValue(value: unknown, _indent: string): string {
  return Array.isArray(value) ? `[${value.map((v) => renderScalar(v)).join(', ')}]` : renderScalar(value);
}

/** A scalar as YAML text; keeps the quoting style of the value it replaces where it can. */
function renderScalar(value: unknown, previous?: Node): string {
  // Text spliced into a line must stay on it: line breaks go into a double-quoted scalar
  // (JSON string syntax is valid YAML) instead of a block scalar that needs indentation.
  if (typeof value === 'string' && /[\n\r]/.test(value)) return JSON.stringify(value);
  if (typeof value === 'string' && isScalar(previous)) {
    if (previous.type === 'QUOTE_DOUBLE') return JSON.stringify(value);
    if (previous.type === 'QUOTE_SINGLE') return `'${value.replaceAll("'", "''")}'`;
  }
  return stringify(value, { lineWidth: 0 }).trimEnd();
}

function updateInDocument(doc: Document, index: number, name: PropertyName, value: unknown): void {
  const map = (doc.contents as YAMLSeq).items[index] as YAMLMap;
  if (value === null || (Array.isArray(value) && value.length === 0)) map.delete(name);
  else map.set(name, doc.createNode(value));
}

function lineStart(text: string, offset: number): number {
  return text.lastIndexOf('\n', offset - 1) + 1;
}

/** Offset just past the newline ending the line that contains `offset` (or the text's end). */
function lineEnd(text: string, offset: number): number {
  const nl = text.indexOf('\n', Math.max(offset, 0));
  return nl < 0 ? text.length : nl + 1;
}
