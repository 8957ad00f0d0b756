#!/usr/bin/env node
// Micro-benchmark for StreamParser (src/xml/stream-parser.ts).
//
//   npx tsc -p . && node bench/parser-bench.mjs [messages] [chunkBytes] [--ascii]
//
// Parses one stream of N (default 200k) ~194-byte <message/> stanzas fed in 16 KiB chunks and
// prints stanzas/s. For comparison it also runs ltx's bare SaxLtx tokenizer (no checks, no
// Elements) and SaxLtx + Element building the way ltx's own Parser does, over the same chunks.
import { performance } from 'node:perf_hooks';

const args = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const N = Number(args[0] ?? 200_000);
const CHUNK = Number(args[1] ?? 16 * 1024);
const ROUNDS = 9;
// Default: one non-ASCII character per message (realistic chat text; makes V8 strings two-byte).
const NON_ASCII = !process.argv.includes('--ascii');

let mod, ltx;
try {
  mod = await import('../dist/xml/stream-parser.js');
  ltx = await import('../dist/xml/ltx.js');
} catch (e) {
  console.error('dist/xml/stream-parser.js not found or broken: run `npx tsc -p .` first.\n', e.message);
  process.exit(1);
}
const { StreamParser } = mod;
const { SaxLtx, Element } = ltx;

const HEADER =
  "<?xml version='1.0'?><stream:stream xml:lang='en' xmlns:stream='http://etherx.jabber.org/streams' " +
  "xmlns='jabber:server' xmlns:db='jabber:server:dialback' from='a.test' id='' to='b.test' version='1.0'>";
function message(i) {
  const id = String(i).padStart(8, '0');
  return (
    `<message from='juliet@capulet.example/balcony' to='romeo@montague.example/orchard' type='chat' id='m-${id}'>` +
    `<body>Wherefore art thou, Romeo? Deny thy father &amp; ${NON_ASCII ? '©' : 'c'} ${id}</body></message>`
  );
}
const msgBytes = Buffer.byteLength(message(0));
const all = Buffer.from(HEADER + Array.from({ length: N }, (_, i) => message(i)).join(''));
const chunks = [];
for (let o = 0; o < all.length; o += CHUNK) chunks.push(all.subarray(o, Math.min(o + CHUNK, all.length)));

function runStreamParser() {
  const p = new StreamParser({ maxStanzaBytes: 262_144 });
  let count = 0;
  let err = null;
  p.handler = {
    streamStart() {},
    element(el) { if (el.name === 'message') count++; },
    streamEnd() {},
    whitespace() {},
    error(e) { err = e; },
  };
  const t0 = performance.now();
  for (const c of chunks) p.write(c);
  const ms = performance.now() - t0;
  if (err) throw err;
  if (count !== N) throw new Error(`parsed ${count} of ${N}`);
  return ms;
}

function runSaxOnly() {
  const sax = new SaxLtx();
  let count = 0;
  sax.on('startElement', () => {});
  sax.on('endElement', (name) => { if (name === 'message') count++; });
  sax.on('text', () => {});
  const t0 = performance.now();
  for (const c of chunks) sax.write(c); // note: ltx's toString() per chunk may split UTF-8 (ASCII here)
  const ms = performance.now() - t0;
  if (count !== N) throw new Error(`sax parsed ${count} of ${N}`);
  return ms;
}

function runSaxElements() {
  const sax = new SaxLtx();
  let count = 0;
  let cur = null;
  sax.on('startElement', (name, attrs) => {
    const el = new Element(name, attrs);
    if (cur) cur.cnode(el);
    cur = el;
  });
  sax.on('endElement', (name) => {
    if (cur.parent && cur.parent.parent === null) {
      // depth-1 element done: detach like a stream parser would
      const root = cur.parent;
      if (name === 'message') count++;
      root.children.length = 0;
      cur = root;
      return;
    }
    cur = cur.parent;
  });
  sax.on('text', (t) => { if (cur && cur.parent) cur.children.push(t); });
  const t0 = performance.now();
  for (const c of chunks) sax.write(c);
  const ms = performance.now() - t0;
  if (count !== N) throw new Error(`sax+elements parsed ${count} of ${N}`);
  return ms;
}

function bench(name, fn) {
  fn(); // warm-up
  const times = [];
  for (let r = 0; r < ROUNDS; r++) times.push(fn());
  times.sort((a, b) => a - b);
  const med = times[Math.floor(times.length / 2)];
  const best = times[0];
  const fmt = (ms) => `${Math.round(N / (ms / 1000)).toLocaleString('en-US')} stanzas/s`;
  console.log(
    `${name.padEnd(30)} median ${fmt(med)} (${med.toFixed(0)} ms, ${((all.length / 1e6) / (med / 1000)).toFixed(0)} MB/s), best ${fmt(best)}`,
  );
}

console.log(`node ${process.version}; ${N} messages of ${msgBytes} bytes (${NON_ASCII ? 'one non-ASCII char each' : 'ASCII only'}), ${(all.length / 1e6).toFixed(1)} MB in ${chunks.length} chunks of ${CHUNK} bytes`);
bench('StreamParser (hardened)', runStreamParser);
bench('SaxLtx + Elements (no checks)', runSaxElements);
bench('SaxLtx tokenizer only', runSaxOnly);
