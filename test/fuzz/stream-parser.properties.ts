/**
 * Property-based tests of the stream parser (src/xml/stream-parser.ts), shared by the bounded
 * run in `npm test` (test/unit/stream-parser.fuzz.test.ts) and the open-ended `npm run fuzz`.
 *
 *  - chunking: a valid stream cut into random chunks gives exactly the events of one chunk;
 *  - hold/pause: stopping inside handlers at random elements and going on later changes nothing;
 *  - mutation: random byte mutations of a valid stream never make write() throw, and end in
 *    valid elements or exactly one StreamError with a condition the parser may raise, after
 *    which nothing more is reported; the events, and whether it ends in an error, do not depend
 *    on chunking (which of two defects of one element is named may);
 *  - caps: no element larger than maxStanzaBytes, deeper than maxDepth or with more attributes
 *    than maxAttributes is ever delivered, nor a header larger than maxHeaderBytes.
 */
import fc from 'fast-check';
import type { StreamCondition, StreamError } from '../../src/errors.js';
import { escapeXML, escapeXMLText, type Element } from '../../src/xml/ltx.js';
import { StreamParser, type StreamParserOptions } from '../../src/xml/stream-parser.js';

/** Conditions the parser itself raises (a handler that throws could add others; ours do not). */
export const PARSER_CONDITIONS: ReadonlySet<StreamCondition> = new Set([
  'not-well-formed', 'restricted-xml', 'unsupported-encoding', 'policy-violation', 'invalid-namespace', 'bad-namespace-prefix',
]);

// --- generators --------------------------------------------------------------------------------

/** XML 1.0 Char, biased towards what matters: markup characters, multi-byte UTF-8, whitespace. */
const xmlChar = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('a', 'b', 'z', '0', ' ', '&', '<', '>', '"', "'", ']', '=', '/', '?', '!', '-', ';', '#', '\t', '\n', '\r') },
  { weight: 2, arbitrary: fc.constantFrom('é', 'ß', '€', '中', '😀', '\u{10FFFD}', '\u00A0', '\u2028') },
  { weight: 1, arbitrary: fc.integer({ min: 0x20, max: 0xd7ff }).map((c) => String.fromCodePoint(c)) },
);
const text = fc.array(xmlChar, { maxLength: 24 }).map((cs) => cs.join(''));
const ncName = fc.constantFrom('a', 'body', 'x', 'item', 'q-1', 'n.2', '_u', 'é');
const nsUri = fc.constantFrom('urn:a', 'urn:b', 'http://jabber.org/protocol/disco#info', 'urn:xmpp:ping');

interface Gen {
  name: string;
  attrs: [string, string][];
  children: (Gen | { text: string; cdata: boolean })[];
  /** ' or " around every attribute value of this element. */
  quote: "'" | '"';
}

const attrList = fc.uniqueArray(fc.tuple(fc.constantFrom('id', 'type', 'to', 'from', 'x', 'y', 'xml:lang', 'xmlns'), text), { maxLength: 4, selector: ([k]) => k })
  .map((as) => as.map(([k, v]): [string, string] => [k, k === 'xmlns' ? 'urn:a' : v]));

/** An element with up to `depth` levels of children below it. */
function elementOf(depth: number): fc.Arbitrary<Gen> {
  const child = fc.oneof(
    { weight: 3, arbitrary: fc.record({ text, cdata: fc.boolean() }) as fc.Arbitrary<Gen['children'][number]> },
    ...(depth > 0 ? [{ weight: 2, arbitrary: elementOf(depth - 1) as fc.Arbitrary<Gen['children'][number]> }] : []),
  );
  return fc.record({
    name: fc.oneof({ weight: 4, arbitrary: ncName }, { weight: 1, arbitrary: fc.constant('p:el') }),
    attrs: attrList,
    children: fc.array(child, { maxLength: 3 }),
    quote: fc.constantFrom("'" as const, '"' as const),
  }).map((g) => (g.name === 'p:el' ? { ...g, attrs: [...g.attrs, ['xmlns:p', 'urn:p'] as [string, string]] } : g));
}
const element = elementOf(4);

function serialize(g: Gen): string {
  const q = g.quote;
  const esc = (v: string) => escapeXML(v).replace(/\t/g, '&#9;').replace(/\n/g, '&#10;').replace(/\r/g, '&#13;');
  const attrs = g.attrs.map(([k, v]) => ` ${k}=${q}${esc(v)}${q}`).join('');
  if (g.children.length === 0) return `<${g.name}${attrs}/>`;
  const inner = g.children.map((c) => ('name' in c ? serialize(c) : c.cdata ? `<![CDATA[${c.text.replaceAll(']]>', ']]&gt;')}]]>` : escapeXMLText(c.text))).join('');
  return `<${g.name}${attrs}>${inner}</${g.name}>`;
}

const HEADERS = [
  "<?xml version='1.0'?><stream:stream xml:lang='en' xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:server' xmlns:db='jabber:server:dialback' from='a.test' id='' to='b.test' version='1.0'>",
  '<stream:stream xmlns="jabber:server" xmlns:stream="http://etherx.jabber.org/streams" to="b.test">',
  '\uFEFF<?xml version="1.0" encoding="UTF-8"?>\n<s:stream xmlns:s="http://etherx.jabber.org/streams" xmlns="jabber:server">',
];

/** A valid stream: header, top-level elements (stanzas and db:* children) and whitespace, maybe the end. */
export const validStream = fc.record({
  header: fc.constantFrom(...HEADERS),
  items: fc.array(
    fc.oneof(
      { weight: 5, arbitrary: element.map(serialize) },
      { weight: 1, arbitrary: fc.constantFrom(' ', '\n', '\r\n\t ') },
      { weight: 1, arbitrary: fc.constantFrom("<db:result from='a.test' to='b.test'>k3y</db:result>", "<db:verify from='a' to='b' id='i' type='valid'/>") },
    ),
    { maxLength: 12 },
  ),
  end: fc.boolean(),
}).map(({ header, items, end }) => {
  const db = header.includes('xmlns:db');
  const body = items.filter((i) => db || !i.startsWith('<db:')).join('');
  const close = header.includes('<s:stream') ? '</s:stream>' : '</stream:stream>';
  return Buffer.from(`${header}${body}${end ? close : ''}`, 'utf8');
});

/** Cut points (sorted, unique, inside the buffer). */
function cuts(len: number): fc.Arbitrary<number[]> {
  return fc.uniqueArray(fc.integer({ min: 1, max: Math.max(1, len - 1) }), { maxLength: Math.min(40, len) }).map((a) => a.filter((x) => x < len).sort((x, y) => x - y));
}

function chunked(buf: Buffer, at: number[]): Buffer[] {
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of at) {
    out.push(buf.subarray(prev, c));
    prev = c;
  }
  out.push(buf.subarray(prev));
  return out;
}

// --- running the parser ------------------------------------------------------------------------

export interface Run {
  events: string[];
  errors: StreamError[];
  elements: { el: Element; raw: string | undefined }[];
  /** write() threw. */
  thrown: unknown;
  /** Events reported after the error. */
  afterError: number;
}

type StopAt = (index: number) => 'hold' | 'pause' | null;

/** Feeds `chunks`; `stop` may hold or pause the parser inside the handler of element `index`, undone after each write. */
export function run(chunks: Buffer[], opts: Partial<StreamParserOptions> = {}, stop: StopAt = () => null): Run {
  const parser = new StreamParser({ maxStanzaBytes: 1 << 20, ...opts });
  const r: Run = { events: [], errors: [], elements: [], thrown: undefined, afterError: 0 };
  let n = 0;
  const ev = (e: string) => {
    if (r.errors.length > 0) r.afterError++;
    r.events.push(e);
  };
  parser.handler = {
    streamStart: (attrs) => ev(`start ${JSON.stringify(attrs)}`),
    element: (el, raw) => {
      ev(`el ${el.toString()} raw=${raw ?? '-'}`);
      r.elements.push({ el, raw });
      const how = stop(n++);
      if (how === 'hold') parser.hold();
      else if (how === 'pause') parser.pause();
    },
    streamEnd: () => ev('end'),
    whitespace: () => ev('ws'),
    error: (err) => {
      if (r.errors.length > 0) r.afterError++;
      r.errors.push(err);
    },
  };
  try {
    for (const c of chunks) {
      parser.write(c);
      for (let guard = 0; (parser.held || parser.paused) && guard < 10_000; guard++) {
        parser.release();
        parser.resume();
      }
    }
  } catch (e) {
    r.thrown = e;
  }
  return r;
}

// --- mutations ---------------------------------------------------------------------------------

const NASTY = ['<', '>', '&', ';', '&amp', '&#0;', '&#x110000;', '&lt;', '<!--', '-->', '<?', '?>', '<!DOCTYPE x>', '<!ENTITY e "x">', ']]>', '<![CDATA[', '</', '/>', "'", '"', '=', ' ', 'xmlns=', 'xmlns:stream=', 'xmlns:p=""', 'p:', ':', '</stream:stream>', '<stream:stream>', '\u0000', '\u0001', '\uFFFE', '\uFEFF', 'é', '😀']
  .map((s) => Buffer.from(s, 'utf8'))
  .concat([Buffer.from([0xc0, 0xaf]), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from([0xff]), Buffer.from([0xe2, 0x82]), Buffer.from([0xf4, 0x90, 0x80, 0x80]), Buffer.from([0x80])]);

type Mutation = { kind: 'set'; at: number; byte: number } | { kind: 'insert'; at: number; what: number } | { kind: 'delete'; at: number; len: number } | { kind: 'dup'; at: number; len: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('set' as const), at: fc.nat(), byte: fc.nat(255) }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), what: fc.nat(NASTY.length - 1) }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ kind: fc.constant('dup' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 64 }) }),
);

function mutate(buf: Buffer, ms: Mutation[]): Buffer {
  let b = Buffer.from(buf);
  for (const m of ms) {
    const at = b.length === 0 ? 0 : m.at % (b.length + 1);
    if (m.kind === 'set' && at < b.length) b[at] = m.byte;
    else if (m.kind === 'insert') b = Buffer.concat([b.subarray(0, at), NASTY[m.what]!, b.subarray(at)]);
    else if (m.kind === 'delete') b = Buffer.concat([b.subarray(0, at), b.subarray(at + m.len)]);
    else if (m.kind === 'dup') b = Buffer.concat([b.subarray(0, at + m.len), b.subarray(at, at + m.len), b.subarray(at + m.len)]);
  }
  return b;
}

const smallLimits = fc.record({
  maxStanzaBytes: fc.integer({ min: 16, max: 600 }),
  maxHeaderBytes: fc.integer({ min: 32, max: 400 }),
  maxDepth: fc.integer({ min: 1, max: 6 }),
  maxAttributes: fc.integer({ min: 1, max: 6 }),
});

/** Nesting depth below the stream root (a stanza is 1) and the largest attribute count in `el`. */
function shape(el: Element): { depth: number; attrs: number } {
  let depth = 1;
  let attrs = Object.keys(el.attrs).length;
  for (const c of el.getChildElements()) {
    const s = shape(c);
    depth = Math.max(depth, s.depth + 1);
    attrs = Math.max(attrs, s.attrs);
  }
  return { depth, attrs };
}

/** What must hold for every run, valid input or not. */
function checkInvariants(r: Run, opts: Partial<StreamParserOptions>): void {
  if (r.thrown !== undefined) throw new Error(`write() threw: ${String(r.thrown)}`);
  if (r.errors.length > 1) throw new Error(`${r.errors.length} errors: ${r.errors.map((e) => e.condition).join(', ')}`);
  if (r.afterError > 0) throw new Error(`${r.afterError} events after the error`);
  const err = r.errors[0];
  if (err && !PARSER_CONDITIONS.has(err.condition)) throw new Error(`unexpected condition ${err.condition}: ${err.message}`);
  for (const { el, raw } of r.elements) {
    if (raw !== undefined && opts.maxStanzaBytes !== undefined && Buffer.byteLength(raw) > opts.maxStanzaBytes) {
      throw new Error(`element of ${Buffer.byteLength(raw)} bytes delivered (maxStanzaBytes ${opts.maxStanzaBytes})`);
    }
    const s = shape(el);
    if (opts.maxDepth !== undefined && s.depth > opts.maxDepth) throw new Error(`element of depth ${s.depth} delivered (maxDepth ${opts.maxDepth})`);
    if (opts.maxAttributes !== undefined && s.attrs > opts.maxAttributes) throw new Error(`element with ${s.attrs} attributes delivered (maxAttributes ${opts.maxAttributes})`);
  }
}

// --- the properties ----------------------------------------------------------------------------

export interface NamedProperty {
  name: string;
  property: fc.IRawProperty<never[]> | fc.IProperty<never[]>;
}

export function parserProperties(): NamedProperty[] {
  const props: { name: string; property: fc.IPropertyWithHooks<never> | fc.IProperty<never> }[] = [];
  const add = <T>(name: string, property: fc.IProperty<[T]> | fc.IProperty<T[]>) => props.push({ name, property: property as never });

  add('random chunkings of a valid stream give the events of one chunk, without error', fc.property(
    validStream.chain((buf) => fc.tuple(fc.constant(buf), cuts(buf.length))),
    ([buf, at]) => {
      const whole = run([buf]);
      if (whole.errors.length > 0) throw new Error(`valid stream refused: ${whole.errors[0]!.condition} ${whole.errors[0]!.message}\n${buf.toString()}`);
      const parts = run(chunked(buf, at));
      checkInvariants(parts, {});
      if (JSON.stringify(parts.events) !== JSON.stringify(whole.events) || parts.errors.length !== 0) {
        throw new Error(`chunked parse differs\nwhole: ${JSON.stringify(whole.events)}\nparts: ${JSON.stringify(parts.events)} ${parts.errors.map((e) => e.message)}`);
      }
    },
  ));

  add('hold() or pause() inside handlers at random elements, released later, changes no event', fc.property(
    validStream.chain((buf) => fc.tuple(fc.constant(buf), cuts(buf.length), fc.array(fc.constantFrom('hold', 'pause', null), { maxLength: 16 }))),
    ([buf, at, plan]) => {
      const plain = run(chunked(buf, at));
      const stopped = run(chunked(buf, at), {}, (i) => (plan[i] ?? null) as 'hold' | 'pause' | null);
      checkInvariants(stopped, {});
      if (JSON.stringify(stopped.events) !== JSON.stringify(plain.events)) {
        throw new Error(`events differ\nplain:   ${JSON.stringify(plain.events)}\nstopped: ${JSON.stringify(stopped.events)}`);
      }
    },
  ));

  add('mutated streams: write() never throws; valid elements or exactly one known StreamError; the same outcome however chunked', fc.property(
    validStream.chain((buf) => fc.tuple(fc.array(mutation, { minLength: 1, maxLength: 5 }).map((ms) => mutate(buf, ms)), fc.option(smallLimits, { nil: undefined }))).chain(([buf, limits]) => fc.tuple(fc.constant(buf), fc.constant(limits), cuts(buf.length))),
    ([buf, limits, at]) => {
      const opts = limits ?? {};
      const whole = run([buf], opts);
      const parts = run(chunked(buf, at), opts);
      checkInvariants(whole, opts);
      checkInvariants(parts, opts);
      const limitError = (r: Run) => r.errors[0]?.condition === 'policy-violation';
      if (limitError(whole) || limitError(parts)) {
        // A size limit is checked per chunk, before ltx buffers anything: it may stop earlier
        // than a later well-formedness error in one chunk. Whatever was delivered agrees.
        const n = Math.min(whole.events.length, parts.events.length);
        if (JSON.stringify(whole.events.slice(0, n)) !== JSON.stringify(parts.events.slice(0, n))) throw new Error('events before a limit error differ with chunking');
        return;
      }
      // The same events and the same verdict. One broken element with two defects (say an
      // undeclared prefix in its start tag and a NUL further on) may be reported by either
      // condition: ltx sees an unfinished element at the end of each chunk, the scanner first.
      if (JSON.stringify(whole.events) !== JSON.stringify(parts.events) || (whole.errors.length === 0) !== (parts.errors.length === 0)) {
        throw new Error(`chunking changes the outcome\nwhole: ${JSON.stringify(whole.events)} ${whole.errors[0]?.condition}\nparts: ${JSON.stringify(parts.events)} ${parts.errors[0]?.condition}\ninput: ${JSON.stringify(buf.toString('latin1'))}`);
      }
    },
  ));

  add('size caps hold: nothing larger, deeper or with more attributes than allowed is delivered', fc.property(
    fc.tuple(validStream, smallLimits).chain(([buf, limits]) => fc.tuple(fc.constant(buf), fc.constant(limits), cuts(buf.length))),
    ([buf, limits, at]) => {
      const r = run(chunked(buf, at), limits);
      checkInvariants(r, limits);
      const header = buf.indexOf('>', buf.indexOf(':stream')) + 1; // bytes from the document start
      if (header > limits.maxHeaderBytes && r.events.some((e) => e.startsWith('start'))) throw new Error(`a ${header}-byte header was accepted (maxHeaderBytes ${limits.maxHeaderBytes})`);
    },
  ));
  return props as NamedProperty[];
}
