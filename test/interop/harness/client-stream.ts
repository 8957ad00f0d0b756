/**
 * A tiny, lenient XML stream reader for the test c2s client (content namespace `jabber:client`).
 *
 * The gateway's `StreamParser` (src/xml/stream-parser.ts) is s2s-only: its header check refuses
 * any content namespace but `jabber:server` with `invalid-namespace`. A test client talking to
 * real servers needs none of its hardening, so this reads the stream with ltx's tokenizer (through
 * src/xml/ltx.ts, the project's single ltx entry point) and hands out top-level elements with
 * `parent` set to the stream root, so `el.getNS()` / `el.is(name, ns)` resolve `jabber:client`.
 */
import { Element, SaxLtx } from '../../../src/xml/ltx.js';

export interface ClientStreamHandler {
  streamStart(root: Element): void;
  element(el: Element): void;
  streamEnd(): void;
}

export class ClientStreamReader {
  private sax!: SaxLtx;
  private cur: Element | null = null;
  private depth = 0;
  private readonly decoder = new TextDecoder('utf-8');

  constructor(private readonly handler: ClientStreamHandler) {
    this.reset();
  }

  /** A new stream document on the same connection (after SASL success). */
  reset(): void {
    this.cur = null;
    this.depth = 0;
    const sax = new SaxLtx();
    sax.on('startElement', (name: string, attrs: Record<string, string>) => this.onStart(name, attrs));
    sax.on('endElement', (name: string) => this.onEnd(name));
    sax.on('text', (text: string) => {
      if (this.depth >= 2) this.cur!.children.push(text);
    });
    this.sax = sax;
  }

  /** Bytes from the socket; multi-byte characters split across reads are kept whole. */
  write(chunk: Buffer): void {
    this.sax.write(this.decoder.decode(chunk, { stream: true }));
  }

  private onStart(name: string, attrs: Record<string, string>): void {
    const el = new Element(name);
    el.attrs = attrs;
    if (this.depth === 0) {
      this.cur = el;
      this.depth = 1;
      this.handler.streamStart(el);
      return;
    }
    el.parent = this.cur;
    // Top-level elements are not kept as children of the root (the stream would grow forever).
    if (this.depth >= 2) this.cur!.children.push(el);
    this.cur = el;
    this.depth++;
  }

  private onEnd(name: string): void {
    const el = this.cur;
    if (el === null || el.name !== name) throw new Error(`c2s client: mismatched end tag </${name}>`);
    this.depth--;
    if (this.depth === 0) {
      this.cur = null;
      this.handler.streamEnd();
      return;
    }
    this.cur = el.parent;
    if (this.depth === 1) this.handler.element(el);
  }
}

/** Parses one standalone XML element from a string (e.g. a stanza written by a test). */
export function parseElement(xml: string): Element {
  // State in an object: TS does not see assignments made inside the SAX callbacks.
  const st: { result: Element | null; cur: Element | null } = { result: null, cur: null };
  const sax = new SaxLtx();
  sax.on('startElement', (name: string, attrs: Record<string, string>) => {
    const el = new Element(name);
    el.attrs = attrs;
    if (st.cur !== null) {
      el.parent = st.cur;
      st.cur.children.push(el);
    } else if (st.result !== null) {
      throw new Error('parseElement: more than one root element');
    }
    st.cur = el;
  });
  sax.on('endElement', (name: string) => {
    const el = st.cur;
    if (el === null || el.name !== name) throw new Error(`parseElement: mismatched end tag </${name}>`);
    if (el.parent === null) st.result = el;
    st.cur = el.parent;
  });
  sax.on('text', (text: string) => {
    st.cur?.children.push(text);
  });
  sax.write(xml);
  if (st.result === null || st.cur !== null) throw new Error(`parseElement: incomplete XML: ${xml.slice(0, 200)}`);
  return st.result;
}
