/**
 * Hardened XML stream parser: one per socket, one stream document at a time.
 *
 * References: RFC 6120 §4.2–4.3 (stream documents, restarts), §4.8 (namespaces), §4.9.3 (stream
 * error conditions), §11 (XML restrictions: no comments, PIs, DTDs, non-predefined entities;
 * UTF-8 only); XML 1.0 5th ed. (well-formedness, Char production); Namespaces in XML 1.0.
 * docs: docs/protocol.md §1.5 (restarts, STARTTLS injection), §8 (hazards), §10 (ltx facts).
 *
 * Pipeline per chunk:
 *  1. UTF-8: `isUtf8()` on whole chunks plus a carry of at most 3 bytes for a character split
 *     across reads, so no character is ever split and bad bytes are `unsupported-encoding`.
 *  2. Scanner: a single pass over the decoded text that enforces everything ltx does not
 *     (XML restrictions, well-formedness, limits) and counts raw UTF-8 bytes per top-level
 *     element. ltx only ever receives text the scanner has accepted, cut at top-level element
 *     boundaries, so a refused stanza is never buffered by ltx and the owner can stop the
 *     parser exactly after any top-level element.
 *  3. ltx (`SaxLtx`) tokenizes the accepted text; its events build `Element`s, check end-tag
 *     names, duplicate attributes and namespace prefixes, and reach the owner's handler.
 */
import { isUtf8 } from 'node:buffer';
import { GatewayError, StreamError, UsageError, type StreamCondition } from '../errors.js';
import { Element, SaxLtx } from './ltx.js';
import { NS_SERVER, NS_STREAMS, NS_XML, NS_XMLNS } from './namespaces.js';

export interface StreamParserOptions {
  /** Max bytes of one top-level element, from its `<` to the `>` that closes it. */
  maxStanzaBytes: number;
  /** Max bytes from the start of a stream document (BOM, XML declaration, whitespace) to the end of the header. Default 4096. */
  maxHeaderBytes?: number;
  /** Max element nesting below the stream root; a stanza is depth 1, its children depth 2. Default 32. */
  maxDepth?: number;
  /** Max attributes on one element, the header included. Default 64. */
  maxAttributes?: number;
}

/**
 * What the owner receives. Plain method calls (no EventEmitter) on the per-stanza hot path.
 * A handler may throw a `StreamError` to end the stream with that condition (reported through
 * `error()`); any other exception becomes `internal-server-error` with the exception as `cause`.
 */
export interface StreamParserHandler {
  /** The stream header; `attrs` are raw (qualified names as written, e.g. `xmlns:db`, `xml:lang`). */
  streamStart(attrs: Readonly<Record<string, string>>, root: Element): void;
  /**
   * A complete top-level element. `el.parent` is the stream root (not in `root.children`), so
   * `nsOf(el)`, `el.getNS()` and `el.is()` resolve `jabber:server` and `db:`.
   * `raw` is the exact source text of the element, or undefined when it uses a namespace prefix
   * declared only on the stream header (`db:result`, `stream:features`), i.e. when it could not
   * be forwarded as-is onto another stream.
   */
  element(el: Element, raw: string | undefined): void;
  /** `</stream:stream>` (or a self-closed header). */
  streamEnd(): void;
  /** Whitespace between top-level elements (keep-alive): called once per run; counts as activity. */
  whitespace(): void;
  /** The stream must be closed with this error. Called once; later input is ignored. */
  error(err: StreamError): void;
}

const NOOP_HANDLER: StreamParserHandler = {
  streamStart() {},
  element() {},
  streamEnd() {},
  whitespace() {},
  error() {},
};

/** Defaults for the optional limits (bytes/counts). */
export const STREAM_PARSER_DEFAULTS = {
  maxHeaderBytes: 4096,
  maxDepth: 32,
  maxAttributes: 64,
} as const;

// ---------------------------------------------------------------------------------------------
// Scanner states.
const S_PROLOG = 0; //       before the header: optional BOM, XML declaration, whitespace
const S_DECL = 1; //         inside `<?...` at the very start of the document
const S_TEXT = 2; //         character data at depth >= 1
const S_LT = 3; //           after `<`
const S_START_NAME = 4; //   element name of a start tag
const S_IN_TAG = 5; //       between attributes
const S_ATTR_NAME = 6;
const S_ATTR_EQ = 7; //      after an attribute name, before `=`
const S_ATTR_QUOT = 8; //    after `=`, before the opening quote
const S_ATTR_VALUE = 9;
const S_AFTER_VALUE = 10; // after a closing quote: whitespace, `/` or `>` must follow
const S_SLASH = 11; //       after `/` in a start tag
const S_END_START = 12; //   after `</`
const S_END_NAME = 13;
const S_END_TRAIL = 14; //   whitespace after an end tag name
const S_BANG = 15; //        after `<!`, matching `[CDATA[`
const S_CDATA = 16;
const S_ENTITY = 17; //      after `&`
const S_AFTER_ROOT = 18; //  after `</stream:stream>`
const S_DEAD = 19; //        failed

const CDATA_OPEN = '[CDATA[';
const MAX_DECL_CHARS = 256;
const MAX_ENTITY_CHARS = 32;

// ASCII character classes.
const C_NAME_START = 1;
const C_NAME = 2;
const C_WS = 4;
const CT = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  const ch = String.fromCharCode(c);
  if (/[A-Za-z_:]/.test(ch)) CT[c] = C_NAME_START | C_NAME;
  else if (/[0-9.-]/.test(ch)) CT[c] = C_NAME;
}
CT[0x20] = CT[0x09] = CT[0x0a] = CT[0x0d] = C_WS;

/** XML 1.0 NameStartChar above ASCII (surrogates accepted for the #x10000-#xEFFFF range). */
function isNameStartHi(c: number): boolean {
  return (
    (c >= 0xc0 && c <= 0x2ff && c !== 0xd7 && c !== 0xf7) ||
    (c >= 0x370 && c <= 0x1fff && c !== 0x37e) ||
    c === 0x200c ||
    c === 0x200d ||
    (c >= 0x2070 && c <= 0x218f) ||
    (c >= 0x2c00 && c <= 0x2fef) ||
    (c >= 0x3001 && c <= 0xdfff) ||
    (c >= 0xf900 && c <= 0xfdcf) ||
    (c >= 0xfdf0 && c <= 0xfffd)
  );
}

function isNameCharHi(c: number): boolean {
  return isNameStartHi(c) || c === 0xb7 || (c >= 0x300 && c <= 0x36f) || c === 0x203f || c === 0x2040;
}

function isNameStart(c: number): boolean {
  return c < 0x80 ? (CT[c]! & C_NAME_START) !== 0 : isNameStartHi(c);
}

function isNameChar(c: number): boolean {
  return c < 0x80 ? (CT[c]! & C_NAME) !== 0 : isNameCharHi(c);
}

const XML_DECL =
  /^<\?xml[ \t\r\n]+version[ \t\r\n]*=[ \t\r\n]*(?:'([0-9.]+)'|"([0-9.]+)")(?:[ \t\r\n]+encoding[ \t\r\n]*=[ \t\r\n]*(?:'([A-Za-z][A-Za-z0-9._-]*)'|"([A-Za-z][A-Za-z0-9._-]*)"))?(?:[ \t\r\n]+standalone[ \t\r\n]*=[ \t\r\n]*(?:'(?:yes|no)'|"(?:yes|no)"))?[ \t\r\n]*\?>$/;
const CHAR_REF = /^#(?:[0-9]+|x[0-9A-Fa-f]+)$/;
const XML_NAME = /^[A-Za-z_:\u00C0-\uFFFD][A-Za-z0-9_:.\u00B7\u00C0-\uFFFD-]*$/;

/**
 * First index >= i holding `stop1`, `stop2`, `&`, a control character or a non-ASCII character
 * (those go through the full per-character checks); `len` if none.
 */
function skipPlain(s: string, i: number, len: number, stop1: number, stop2: number): number {
  for (; i < len; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c >= 0x80 || c === stop1 || c === stop2 || c === 38) return i;
  }
  return len;
}

/** First index >= i that is not an ASCII name character; `len` if none. */
function skipName(s: string, i: number, len: number): number {
  for (; i < len; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80 || (CT[c]! & C_NAME) === 0) return i;
  }
  return len;
}

/** A namespace prefix binding, in a linked list from the innermost declaration outwards. */
interface Binding {
  readonly prefix: string;
  readonly uri: string;
  /** Element level that declared it: 0 = stream header. */
  readonly level: number;
  readonly next: Binding | null;
}

/** Thrown inside ltx callbacks; caught around every ltx write. */
function nwf(text: string): StreamError {
  return new StreamError('not-well-formed', text);
}

/**
 * Streaming, limit-enforcing XMPP stream parser over ltx.
 *
 * Restarts (RFC 6120 §4.3.3, after STARTTLS `<proceed/>` and SASL `<success/>`): call `reset()`
 * to begin a new stream document (new SaxLtx, new namespace scope; a new `<?xml?>` is allowed).
 * Bytes that arrived before the restart point are never fed into the new document implicitly:
 * `pause()` (or `reset()`) called from inside a handler stops the parser right after the current
 * top-level element and holds the rest of the chunk, visible at once through `pendingBytes` —
 * so plaintext injected after `<starttls/>` in the same TCP read is detectable before `<proceed/>`
 * is written (docs/protocol.md §1.5). `resume()` parses held bytes; `takePending()` hands them over.
 */
export class StreamParser {
  /** Set by the owner before the first write. */
  handler: StreamParserHandler = NOOP_HANDLER;

  private maxStanzaBytes: number;
  private readonly maxHeaderBytes: number;
  private readonly maxDepth: number;
  private readonly maxAttributes: number;

  // --- UTF-8 carry (a character split across chunks: up to 3 bytes held) ---
  private readonly carry = Buffer.alloc(4);
  private carryLen = 0;
  private carryNeed = 0;
  /** From the first invalid UTF-8 byte of the chunk being written to its end. */
  private badRest: Buffer | null = null;

  // --- control ---
  private failure: StreamError | null = null;
  private isPaused = false;
  /** Flow control (hold/release), independent of pause/resume, which restarts use. */
  private isHeld = false;
  private pending: Buffer[] = [];
  private dispatching = false;
  private inHandler = false;
  private stopScan = false;
  private resetRequested = false;
  /** Incremented by every reset; a scan loop that sees it change stops touching state. */
  private gen = 0;
  /** Decoded text of the chunk being scanned and the index just after the last dispatch point. */
  private curStr = '';
  private curEnd = 0;

  // --- scanner ---
  private state = S_PROLOG;
  /** Open elements, the stream root included (1 = between stanzas). */
  private depth = 0;
  /** Extra UTF-8 bytes (beyond one per UTF-16 unit) seen since the current region started. */
  private extra = 0;
  private bomPossible = true;
  private declAllowed = true;
  private ltAtStart = false;
  /** Index of the last `<` in the current chunk, -1 if it was in an earlier chunk. */
  private ltPos = -1;
  private wsRun = false;
  private attrCount = 0;
  private quote = 0;
  private bangIdx = 0;
  private cdataBr = 0;
  private entReturn = S_TEXT;
  private entStart = 0;
  private entPrefix = '';
  private declStart = 0;
  private declBuf = '';
  // A "region" is the header (document start to the header's `>`) or one top-level element.
  private regActive = true;
  private regHeader = true;
  private regStart = 0;
  private regCarry = 0;
  // The ltx "segment": text from a top-level `<` that ltx has not been given yet.
  private segOpen = false;
  private segStart = 0;
  private segPrefix = '';
  /** Source text of the current top-level element from earlier chunks. */
  private rawPrefix = '';
  /** The finished top-level segment ltx is processing (for the raw text). */
  private lastSeg = '';
  /** Attribute counts per start tag, as seen by the scanner, consumed by ltx startElement. */
  private attrQ: number[] = [];
  private attrQHead = 0;
  private attrQLen = 0;

  // --- tree (driven by ltx events) ---
  private sax: SaxLtx;
  private level = 0;
  private cur: Element | null = null;
  private rootEl: Element | null = null;
  private bindings: Binding | null = null;
  private readonly bindingsAt: Array<Binding | null> = [];
  private usesHeaderNs = false;

  constructor(opts: StreamParserOptions) {
    this.maxStanzaBytes = positive(opts.maxStanzaBytes, 'maxStanzaBytes');
    this.maxHeaderBytes = positive(opts.maxHeaderBytes ?? STREAM_PARSER_DEFAULTS.maxHeaderBytes, 'maxHeaderBytes');
    this.maxDepth = positive(opts.maxDepth ?? STREAM_PARSER_DEFAULTS.maxDepth, 'maxDepth');
    this.maxAttributes = positive(opts.maxAttributes ?? STREAM_PARSER_DEFAULTS.maxAttributes, 'maxAttributes');
    this.sax = this.newSax();
  }

  /** Change the top-level element limit (e.g. 8192 before auth, 262144 after); applies at once. */
  setMaxStanzaBytes(bytes: number): void {
    this.maxStanzaBytes = positive(bytes, 'maxStanzaBytes');
  }

  /** The current stream root (header element), null before the header. */
  get root(): Element | null {
    return this.rootEl;
  }

  /** The error that stopped the parser, if any. */
  get error(): StreamError | null {
    return this.failure;
  }

  get paused(): boolean {
    return this.isPaused;
  }

  /** True between `hold()` and `release()`. */
  get held(): boolean {
    return this.isHeld;
  }

  /** Bytes received but not parsed while paused (plus a held partial UTF-8 character). */
  get pendingBytes(): number {
    let n = 0;
    for (const b of this.pending) n += b.length;
    return n;
  }

  /** True between top-level elements (no element or header partly received). */
  get atBoundary(): boolean {
    return !this.regActive && this.carryLen === 0 && (this.state === S_TEXT || this.state === S_AFTER_ROOT);
  }

  /** Feed raw bytes from the socket. Ignored after an error; held while paused. */
  write(chunk: Uint8Array): void {
    if (this.failure !== null) return;
    if (this.dispatching) throw reentrant('write');
    if (this.isPaused || this.isHeld) {
      if (chunk.length > 0) this.pending.push(Buffer.from(chunk));
      return;
    }
    const s = this.decode(chunk);
    if (s !== null && s.length > 0) this.scan(s);
    const bad = this.badRest;
    if (bad !== null) {
      this.badRest = null;
      if (this.failure !== null) return;
      if (this.isPaused || this.isHeld) this.pending.push(bad); // reported when parsing goes on
      else this.badUtf8();
    }
  }

  /**
   * Stop after the current callback. From inside a handler, the rest of the current chunk is held
   * at once (see `pendingBytes`); later writes are held too until `resume()`.
   */
  pause(): void {
    if (this.isPaused) return;
    this.isPaused = true;
    this.stopHere();
  }

  /** Parse held bytes (in order) and continue with later writes. Not callable from a handler. */
  resume(): void {
    if (this.dispatching) throw reentrant('resume');
    if (!this.isPaused) return;
    this.isPaused = false;
    this.replay();
  }

  /**
   * Flow control: stop like `pause()` (from a handler, right after the current top-level
   * element) until `release()`, e.g. while the peer leaves our answers unread. Independent of
   * pause/resume: bytes are parsed again only once the parser is neither paused nor held, so a
   * restart's `resume()` cannot undo a hold, nor a `release()` a restart's pause.
   */
  hold(): void {
    if (this.isHeld) return;
    this.isHeld = true;
    this.stopHere();
  }

  /** Ends a `hold()`; parses held bytes unless also paused. Not callable from a handler. */
  release(): void {
    if (this.dispatching) throw reentrant('release');
    if (!this.isHeld) return;
    this.isHeld = false;
    this.replay();
  }

  /** Remove and return the held bytes (e.g. to reject data injected before a TLS handshake). */
  takePending(): Buffer {
    const b = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending);
    this.pending = [];
    return b;
  }

  /**
   * Start a new stream document on the same transport (after `<proceed/>`+TLS or SASL success).
   * From inside a handler it also pauses (the rest of the chunk is held, `pendingBytes` tells);
   * the reset takes effect when the handler returns. Clears a previous error.
   */
  reset(): void {
    if (this.dispatching) {
      this.resetRequested = true;
      this.pause();
      return;
    }
    this.holdCarry();
    if (this.pending.length > 0) this.isPaused = true;
    this.doReset();
  }

  // -------------------------------------------------------------------------------------------

  /** From a handler: stop scanning after the current element and hold the rest of the chunk (once). */
  private stopHere(): void {
    if (this.dispatching && !this.stopScan) {
      this.stopScan = true;
      if (this.curEnd < this.curStr.length) this.pending.push(Buffer.from(this.curStr.slice(this.curEnd), 'utf8'));
    }
    this.holdCarry();
  }

  /** Parses held bytes in order while neither paused nor held. */
  private replay(): void {
    if (this.isPaused || this.isHeld) return;
    const held = this.pending;
    this.pending = [];
    for (let k = 0; k < held.length; k++) {
      if (this.isPaused || this.isHeld || this.failure !== null) {
        // Stopped again (or failed): keep the rest, after whatever the last write held back.
        if (this.failure === null) for (let j = k; j < held.length; j++) this.pending.push(held[j]!);
        return;
      }
      this.write(held[k]!);
    }
  }

  private doReset(): void {
    this.gen++;
    this.failure = null;
    this.stopScan = false;
    this.resetRequested = false;
    this.state = S_PROLOG;
    this.depth = 0;
    this.extra = 0;
    this.bomPossible = true;
    this.declAllowed = true;
    this.ltAtStart = false;
    this.ltPos = -1;
    this.wsRun = false;
    this.attrCount = 0;
    this.entPrefix = '';
    this.declBuf = '';
    this.regActive = true;
    this.regHeader = true;
    this.regStart = 0;
    this.regCarry = 0;
    this.segOpen = false;
    this.segStart = 0;
    this.segPrefix = '';
    this.rawPrefix = '';
    this.attrQHead = 0;
    this.attrQLen = 0;
    this.level = 0;
    this.cur = null;
    this.rootEl = null;
    this.bindings = null;
    this.bindingsAt.length = 0;
    this.curStr = '';
    this.curEnd = 0;
    this.sax = this.newSax();
  }

  private newSax(): SaxLtx {
    const sax = new SaxLtx();
    // SaxLtx reports everything through this.emit('startElement' | 'endElement' | 'text', ...) and
    // never emits anything else (ltx 3.1.2, pinned). An own `emit` dispatches straight to us,
    // skipping EventEmitter's listener lookup on the per-token hot path.
    sax.emit = (event: string | symbol, a?: unknown, b?: unknown): boolean => {
      if (event === 'startElement') this.onStart(a as string, b as Record<string, string>);
      else if (event === 'endElement') this.onEnd(a as string);
      else if (event === 'text') this.onText(a as string);
      return true;
    };
    return sax;
  }

  /** Move a held partial UTF-8 character to the pending bytes (it belongs before any later write). */
  private holdCarry(): void {
    if (this.carryLen > 0) {
      this.pending.push(Buffer.from(this.carry.subarray(0, this.carryLen)));
      this.carryLen = 0;
    }
  }

  private fail(condition: StreamCondition, text: string): void {
    this.failWith(new StreamError(condition, text));
  }

  private failWith(err: StreamError): void {
    if (this.failure !== null) return;
    this.failure = err;
    this.state = S_DEAD;
    this.stopScan = true;
    this.handler.error(err);
  }

  // --- UTF-8 ---------------------------------------------------------------------------------

  private decode(chunk: Uint8Array): string | null {
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const n = buf.length;
    let start = 0;
    let head = '';
    if (this.carryLen > 0) {
      const want = this.carryNeed - this.carryLen;
      const take = want < n ? want : n;
      for (let k = 0; k < take; k++) {
        const b = buf[k]!;
        if ((b & 0xc0) !== 0x80) return this.badUtf8();
        this.carry[this.carryLen++] = b;
      }
      if (this.carryLen < this.carryNeed) return '';
      if (!isUtf8(this.carry.subarray(0, this.carryNeed))) return this.badUtf8();
      head = this.carry.toString('utf8', 0, this.carryNeed);
      this.carryLen = 0;
      start = take;
    }
    let end = n;
    let bad = -1;
    if (end > start && buf[end - 1]! >= 0x80) {
      // Hold back an incomplete trailing sequence (lead byte + fewer continuation bytes than it needs).
      const lim = end - 4 > start ? end - 4 : start;
      let j = end - 1;
      while (j > lim && (buf[j]! & 0xc0) === 0x80) j--;
      const b = buf[j]!;
      if (b >= 0xc0) {
        const need = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : 2;
        if (end - j < need) {
          if (b >= 0xf5 || b === 0xc0 || b === 0xc1) {
            bad = end = j;
          } else {
            for (let k = j; k < end; k++) this.carry[this.carryLen++] = buf[k]!;
            this.carryNeed = need;
            end = j;
          }
        }
      }
    }
    if (end > start && !isUtf8(start === 0 && end === n ? buf : buf.subarray(start, end))) bad = end = firstInvalidUtf8(buf, start, end);
    if (bad >= 0) {
      // The text before the first bad byte is parsed first, as if the chunk had ended there, so
      // the verdict and the elements delivered do not depend on how the bytes were chunked.
      this.carryLen = 0;
      this.badRest = Buffer.from(buf.subarray(bad));
    }
    if (end === start) return head;
    const body = buf.toString('utf8', start, end);
    return head === '' ? body : head + body;
  }

  private badUtf8(): null {
    this.carryLen = 0;
    // RFC 6120 §4.9.3.22: violating the rules of UTF-8 is <unsupported-encoding/>.
    this.fail('unsupported-encoding', 'invalid UTF-8');
    return null;
  }

  // --- scanner -------------------------------------------------------------------------------

  private scan(s: string): void {
    const len = s.length;
    const gen = this.gen;
    let st = this.state;
    let ex = this.extra;
    let i = 0;
    this.stopScan = false;
    if (this.bomPossible) {
      this.bomPossible = false;
      if (s.charCodeAt(0) === 0xfeff && st === S_PROLOG) {
        i = 1; // a byte order mark may open the document (XML 1.0 §4.3.3); 3 bytes
        ex += 2;
      }
    }

    for (; i < len; i++) {
      const c = s.charCodeAt(i);
      if (c < 0x20) {
        if (c !== 0x09 && c !== 0x0a && c !== 0x0d) {
          return this.fail('not-well-formed', `illegal character U+${c.toString(16).padStart(4, '0')}`);
        }
      } else if (c >= 0x80) {
        if (c < 0x800) ex += 1;
        else if (c >= 0xd800 && c <= 0xdfff) ex += 1; // each half of a 4-byte character
        else {
          ex += 2;
          if (c >= 0xfffe) return this.fail('not-well-formed', `illegal character U+${c.toString(16)}`);
        }
      }

      switch (st) {
        case S_TEXT:
          if (c === 60 /* < */) {
            if (this.depth === 1) {
              // A top-level element (or </stream:stream>) starts here: count its bytes.
              this.regActive = true;
              this.regHeader = false;
              this.regStart = i;
              this.regCarry = 0;
              ex = 0;
              this.wsRun = false;
            }
            this.ltPos = i;
            st = S_LT;
          } else if (this.depth === 1) {
            if (c < 0x80 && (CT[c]! & C_WS) !== 0) {
              if (!this.wsRun) {
                this.wsRun = true;
                this.state = st;
                this.extra = ex;
                if (!this.dispatchWhitespace(s, i + 1, gen)) return;
              }
            } else {
              return this.fail('not-well-formed', 'character data at stream level');
            }
          } else if (c === 38 /* & */) {
            this.entReturn = S_TEXT;
            this.entStart = i + 1;
            this.entPrefix = '';
            st = S_ENTITY;
          } else {
            i = skipPlain(s, i + 1, len, 60, 38) - 1; // fast-forward over plain ASCII text
          }
          break;

        case S_LT:
          if (isNameStart(c)) {
            if (this.depth > this.maxDepth) {
              return this.fail('policy-violation', `elements nested deeper than maxDepth (${this.maxDepth})`);
            }
            this.openSegment(i);
            this.attrCount = 0;
            st = S_START_NAME;
          } else if (c === 47 /* / */) {
            if (this.depth === 0) return this.fail('not-well-formed', 'end tag before stream header');
            this.openSegment(i);
            st = S_END_START;
          } else if (c === 33 /* ! */) {
            this.bangIdx = 0;
            st = S_BANG;
          } else if (c === 63 /* ? */) {
            if (this.depth === 0 && this.ltAtStart) {
              this.declStart = i + 1;
              this.declBuf = '';
              st = S_DECL;
            } else {
              return this.fail('restricted-xml', 'processing instruction');
            }
          } else {
            return this.fail('not-well-formed', 'invalid character after <');
          }
          break;

        case S_START_NAME:
          if (isNameChar(c)) {
            i = skipName(s, i + 1, len) - 1;
            break;
          }
          if (c < 0x80 && (CT[c]! & C_WS) !== 0) st = S_IN_TAG;
          else if (c === 62 /* > */) {
            this.state = st = S_TEXT;
            this.extra = ex;
            if (!this.startTagDone(s, i, false, gen)) return;
            st = this.state;
            ex = this.extra;
          } else if (c === 47 /* / */) st = S_SLASH;
          else return this.fail('not-well-formed', 'invalid character in element name');
          break;

        case S_IN_TAG:
        case S_AFTER_VALUE:
          if (c < 0x80 && (CT[c]! & C_WS) !== 0) st = S_IN_TAG;
          else if (c === 62 /* > */) {
            this.state = st = S_TEXT;
            this.extra = ex;
            if (!this.startTagDone(s, i, false, gen)) return;
            st = this.state;
            ex = this.extra;
          } else if (c === 47 /* / */) st = S_SLASH;
          else if (st === S_IN_TAG && isNameStart(c)) {
            if (++this.attrCount > this.maxAttributes) {
              return this.fail('policy-violation', `more than maxAttributes (${this.maxAttributes}) attributes`);
            }
            st = S_ATTR_NAME;
          } else {
            return this.fail('not-well-formed', st === S_AFTER_VALUE ? 'missing whitespace between attributes' : 'invalid character in tag');
          }
          break;

        case S_ATTR_NAME:
          if (isNameChar(c)) {
            i = skipName(s, i + 1, len) - 1;
            break;
          }
          if (c === 61 /* = */) st = S_ATTR_QUOT;
          else if (c < 0x80 && (CT[c]! & C_WS) !== 0) st = S_ATTR_EQ;
          else return this.fail('not-well-formed', 'invalid character in attribute name');
          break;

        case S_ATTR_EQ:
          if (c === 61 /* = */) st = S_ATTR_QUOT;
          else if (c >= 0x80 || (CT[c]! & C_WS) === 0) return this.fail('not-well-formed', 'attribute without value');
          break;

        case S_ATTR_QUOT:
          if (c === 39 /* ' */ || c === 34 /* " */) {
            this.quote = c;
            st = S_ATTR_VALUE;
          } else if (c >= 0x80 || (CT[c]! & C_WS) === 0) {
            return this.fail('not-well-formed', 'unquoted attribute value');
          }
          break;

        case S_ATTR_VALUE:
          if (c === this.quote) st = S_AFTER_VALUE;
          else if (c === 60 /* < */) return this.fail('not-well-formed', "'<' in attribute value");
          else if (c === 38 /* & */) {
            this.entReturn = S_ATTR_VALUE;
            this.entStart = i + 1;
            this.entPrefix = '';
            st = S_ENTITY;
          } else {
            i = skipPlain(s, i + 1, len, this.quote, 60) - 1; // stops at '&' too (see skipPlain)
          }
          break;

        case S_SLASH:
          if (c !== 62 /* > */) return this.fail('not-well-formed', "expected '>' after '/'");
          this.state = st = S_TEXT;
          this.extra = ex;
          if (!this.startTagDone(s, i, true, gen)) return;
          st = this.state;
          ex = this.extra;
          break;

        case S_END_START:
          if (!isNameStart(c)) return this.fail('not-well-formed', 'invalid end tag');
          st = S_END_NAME;
          break;

        case S_END_NAME:
        case S_END_TRAIL:
          if (c === 62 /* > */) {
            this.state = st = S_TEXT;
            this.extra = ex;
            if (!this.endTagDone(s, i, gen)) return;
            st = this.state;
            ex = this.extra;
          } else if (c < 0x80 && (CT[c]! & C_WS) !== 0) st = S_END_TRAIL;
          else if (st === S_END_TRAIL || !isNameChar(c)) return this.fail('not-well-formed', 'invalid end tag');
          break;

        case S_BANG:
          if (c === CDATA_OPEN.charCodeAt(this.bangIdx)) {
            if (++this.bangIdx === CDATA_OPEN.length) {
              if (this.depth < 2) return this.fail('not-well-formed', 'CDATA section at stream level');
              this.cdataBr = 0;
              st = S_CDATA;
            }
          } else {
            // RFC 6120 §11.1: no comments, DTDs or other markup declarations.
            const what = this.bangIdx === 0 && c === 45 /* - */ ? 'comment' : this.bangIdx === 0 && c === 68 /* D */ ? 'DOCTYPE' : 'markup declaration';
            return this.fail('restricted-xml', what);
          }
          break;

        case S_CDATA:
          if (c === 93 /* ] */) this.cdataBr++;
          else if (c === 62 /* > */ && this.cdataBr >= 2) st = S_TEXT;
          else this.cdataBr = 0;
          break;

        case S_ENTITY:
          if (c === 59 /* ; */) {
            const name = this.entPrefix + s.slice(this.entStart, i);
            const bad = checkEntity(name);
            if (bad !== null) return this.fail(bad, `entity reference &${name.slice(0, MAX_ENTITY_CHARS)};`);
            st = this.entReturn;
          } else if (isNameChar(c) || c === 35 /* # */) {
            if (this.entPrefix.length + i - this.entStart >= MAX_ENTITY_CHARS) return this.fail('not-well-formed', "unterminated '&'");
          } else {
            return this.fail('not-well-formed', "bare '&'");
          }
          break;

        case S_PROLOG:
          if (c === 60 /* < */) {
            this.ltAtStart = this.declAllowed;
            this.declAllowed = false;
            this.ltPos = i;
            st = S_LT;
          } else if (c < 0x80 && (CT[c]! & C_WS) !== 0) {
            this.declAllowed = false;
          } else {
            return this.fail('not-well-formed', 'character data before stream header');
          }
          break;

        case S_DECL:
          if (c === 62 /* > */) {
            const decl = '<?' + this.declBuf + s.slice(this.declStart, i + 1);
            this.declBuf = '';
            const bad = checkDeclaration(decl);
            if (bad !== null) return this.fail(bad[0], bad[1]);
            st = S_PROLOG;
          } else if (this.declBuf.length + i - this.declStart >= MAX_DECL_CHARS) {
            return this.fail('not-well-formed', 'XML declaration too long');
          }
          break;

        case S_AFTER_ROOT:
          if (c >= 0x80 || (CT[c]! & C_WS) === 0) return this.fail('not-well-formed', 'data after end of stream');
          break;

        default:
          return;
      }
    }

    // End of chunk: enforce the byte limit on the unfinished header/element BEFORE ltx buffers it.
    if (this.regActive) {
      const bytes = this.regCarry + (len - this.regStart) + ex;
      if (bytes > this.regLimit()) return this.fail('policy-violation', this.limitText());
      this.regCarry = bytes;
      this.regStart = 0;
      ex = 0;
    }
    this.state = st;
    this.extra = ex;
    if (st === S_DECL) {
      this.declBuf += s.slice(this.declStart);
      this.declStart = 0;
    } else if (st === S_ENTITY) {
      this.entPrefix += s.slice(this.entStart);
      this.entStart = 0;
    }
    this.ltPos = -1;
    this.curStr = '';
    if (this.segOpen) {
      const seg = this.segment(s, this.segStart, len);
      this.segStart = 0;
      if (!this.regHeader) this.rawPrefix += seg;
      this.feed(seg); // unfinished element: ltx keeps it as its remainder
    }
  }

  private regLimit(): number {
    return this.regHeader ? this.maxHeaderBytes : this.maxStanzaBytes;
  }

  private limitText(): string {
    return this.regHeader
      ? `stream header exceeds maxHeaderBytes (${this.maxHeaderBytes} bytes)`
      : `stanza exceeds maxStanzaBytes (${this.maxStanzaBytes} bytes)`;
  }

  /** A top-level tag's name starts at i: make sure ltx will get the text from its `<`. */
  private openSegment(i: number): void {
    if (this.segOpen) return;
    this.segOpen = true;
    if (this.ltPos >= 0) {
      this.segStart = this.ltPos;
    } else {
      this.segStart = i; // the `<` ended the previous chunk
      this.segPrefix = '<';
    }
  }

  private segment(s: string, a: number, b: number): string {
    const body = a === 0 && b === s.length ? s : s.slice(a, b);
    if (this.segPrefix === '') return body;
    const seg = this.segPrefix + body;
    this.segPrefix = '';
    return seg;
  }

  /** Start tag complete at `i` (its `>`). Returns false if scanning must stop. */
  private startTagDone(s: string, i: number, selfClosing: boolean, gen: number): boolean {
    this.attrQ[this.attrQLen++] = this.attrCount;
    if (this.depth === 0) {
      if (!this.regionOk(i)) return false;
      this.depth = selfClosing ? 0 : 1;
      if (selfClosing) this.state = S_AFTER_ROOT;
      return this.boundary(s, i, gen);
    }
    if (!selfClosing) {
      this.depth++;
      return true;
    }
    if (this.depth !== 1) return true;
    if (!this.regionOk(i)) return false;
    return this.boundary(s, i, gen);
  }

  private endTagDone(s: string, i: number, gen: number): boolean {
    const d = --this.depth;
    if (d > 1) return true;
    if (!this.regionOk(i)) return false;
    if (d === 0) this.state = S_AFTER_ROOT;
    return this.boundary(s, i, gen);
  }

  /** Header or top-level element ends at `i`: check its size. */
  private regionOk(i: number): boolean {
    const bytes = this.regCarry + (i + 1 - this.regStart) + this.extra;
    if (bytes > this.regLimit()) {
      this.fail('policy-violation', this.limitText());
      return false;
    }
    this.regActive = false;
    this.extra = 0;
    return true;
  }

  /** Give ltx the finished top-level segment (it dispatches to the owner); false = stop scanning. */
  private boundary(s: string, i: number, gen: number): boolean {
    const seg = this.segment(s, this.segStart, i + 1);
    this.segOpen = false;
    this.curStr = s;
    this.curEnd = i + 1;
    this.lastSeg = seg;
    this.feed(seg);
    this.rawPrefix = '';
    this.lastSeg = '';
    // Stop on pause/error/reset; a reset from inside error() clears stopScan, so also check gen.
    if (this.stopScan || this.gen !== gen) {
      this.afterStop(gen);
      return false;
    }
    return true;
  }

  private dispatchWhitespace(s: string, end: number, gen: number): boolean {
    this.curStr = s;
    this.curEnd = end;
    this.dispatching = this.inHandler = true;
    try {
      this.handler.whitespace();
    } catch (e) {
      this.dispatching = this.inHandler = false;
      this.failWith(handlerError(e));
      return false;
    }
    this.dispatching = this.inHandler = false;
    if (this.stopScan || this.gen !== gen) {
      this.afterStop(gen);
      return false;
    }
    return true;
  }

  private afterStop(gen: number): void {
    if (this.gen !== gen) return; // already reset (from error()): leave the new document alone
    this.curStr = '';
    if (this.resetRequested) this.doReset();
  }

  /** Write accepted text to ltx; map anything thrown (ltx or handler) to a stream error. */
  private feed(seg: string): void {
    this.dispatching = true;
    try {
      this.sax.write(seg);
    } catch (e) {
      const owner = this.inHandler;
      this.dispatching = this.inHandler = false;
      this.failWith(owner ? handlerError(e) : e instanceof StreamError ? e : nwf(errorText(e)));
      return;
    }
    this.dispatching = false;
  }

  // --- ltx events ------------------------------------------------------------------------------

  private onStart(name: string, attrs: Record<string, string>): void {
    const expected = this.attrQHead < this.attrQLen ? this.attrQ[this.attrQHead++] : -1;
    if (this.attrQHead === this.attrQLen) this.attrQHead = this.attrQLen = 0;
    let n = 0;
    let declares = false;
    let prefixed = false;
    for (const k in attrs) {
      n++;
      if (k.charCodeAt(0) === 120 /* x */ && k.startsWith('xmlns') && (k.length === 5 || k.charCodeAt(5) === 58)) declares = true;
      else if (k.includes(':')) prefixed = true;
    }
    // ltx keeps the last of duplicate attributes; the scanner counted them all.
    if (n !== expected) throw nwf('duplicate attribute');

    const level = this.level;
    if (level === 1) this.usesHeaderNs = false;
    this.bindingsAt[level] = this.bindings;
    if (declares) this.declare(attrs, level);
    const colon = name.indexOf(':');
    const prefixNs = colon === -1 ? null : this.resolve(name, colon);
    if (prefixed) this.checkAttrPrefixes(attrs);

    if (level === 0) {
      this.onHeader(name, attrs, colon, prefixNs);
      return;
    }
    const el = new Element(name);
    el.attrs = attrs;
    const parent = this.cur!;
    el.parent = parent;
    if (level > 1) parent.children.push(el);
    this.cur = el;
    this.level = level + 1;
  }

  private onHeader(name: string, attrs: Record<string, string>, colon: number, prefixNs: string | null): void {
    // RFC 6120 §4.8.1: the root is <stream> in the stream namespace, else invalid-namespace.
    const local = colon === -1 ? name : name.slice(colon + 1);
    if (local !== 'stream') throw new StreamError('invalid-namespace', `root element must be <stream:stream>, got <${name}>`);
    if (prefixNs !== null && prefixNs !== NS_STREAMS) {
      // The prefix is declared, so this is a stream element in another namespace (the example in
      // section 4.9.3.10 is exactly this); an undeclared prefix is bad-namespace-prefix (resolve()).
      throw new StreamError('invalid-namespace', `prefix '${name.slice(0, colon)}' is bound to ${prefixNs}, not to ${NS_STREAMS}`);
    }
    if (prefixNs === null && attrs['xmlns'] !== NS_STREAMS) {
      throw new StreamError('invalid-namespace', `stream namespace must be ${NS_STREAMS}`);
    }
    // §4.8.2/§4.8.3: the content namespace (default) must be jabber:server on s2s streams.
    if (attrs['xmlns'] !== NS_SERVER) throw new StreamError('invalid-namespace', `content namespace must be ${NS_SERVER}`);
    const root = new Element(name);
    root.attrs = attrs;
    this.rootEl = root;
    this.cur = root;
    this.level = 1;
    this.inHandler = true;
    this.handler.streamStart(attrs, root);
    this.inHandler = false;
  }

  private onEnd(name: string): void {
    const el = this.cur;
    if (el === null || el.name !== name) throw nwf(`mismatched end tag </${name}>`);
    const level = --this.level;
    this.bindings = this.bindingsAt[level] ?? null;
    if (level === 0) {
      this.cur = null;
      this.inHandler = true;
      this.handler.streamEnd();
      this.inHandler = false;
      return;
    }
    this.cur = el.parent;
    if (level === 1) {
      const raw = this.usesHeaderNs ? undefined : this.rawPrefix === '' ? this.lastSeg : this.rawPrefix + this.lastSeg;
      this.inHandler = true;
      this.handler.element(el, raw);
      this.inHandler = false;
    }
  }

  private onText(text: string): void {
    // Text directly in the root is only whitespace (the scanner checks) and is never stored.
    if (this.level >= 2) this.cur!.children.push(text);
  }

  private declare(attrs: Record<string, string>, level: number): void {
    for (const k in attrs) {
      if (k.charCodeAt(0) !== 120 || !k.startsWith('xmlns')) continue;
      const uri = attrs[k]!;
      if (k.length === 5) {
        if (uri === NS_XML || uri === NS_XMLNS) throw nwf(`cannot bind the default namespace to ${uri}`);
        continue;
      }
      if (k.charCodeAt(5) !== 58) continue;
      const prefix = k.slice(6);
      // Namespaces in XML 1.0 §3: prefixes are NCNames, cannot be undeclared, `xml`/`xmlns` are fixed.
      if (prefix === '' || prefix.includes(':')) throw nwf(`malformed namespace declaration ${k}`);
      if (prefix === 'xmlns' || uri === NS_XMLNS) throw nwf('cannot declare the xmlns prefix');
      if ((prefix === 'xml') !== (uri === NS_XML)) throw nwf('the xml prefix is bound to its own namespace only');
      if (uri === '') throw nwf(`cannot undeclare prefix '${prefix}'`);
      this.bindings = { prefix, uri, level, next: this.bindings };
    }
  }

  /** Namespace bound to the prefix of a qualified name; bad-namespace-prefix if unbound. */
  private resolve(qname: string, colon: number): string {
    if (colon === 0 || colon === qname.length - 1 || qname.indexOf(':', colon + 1) !== -1) {
      throw nwf(`malformed qualified name '${qname}'`);
    }
    const prefix = qname.slice(0, colon);
    if (prefix === 'xml') return NS_XML;
    for (let b = this.bindings; b !== null; b = b.next) {
      if (b.prefix === prefix) {
        if (b.level === 0) this.usesHeaderNs = true;
        return b.uri;
      }
    }
    if (prefix === 'xmlns') throw nwf(`reserved prefix in '${qname}'`);
    throw new StreamError('bad-namespace-prefix', `undeclared namespace prefix '${prefix}'`);
  }

  private checkAttrPrefixes(attrs: Record<string, string>): void {
    for (const k in attrs) {
      if (k === 'xml:lang') continue;
      const colon = k.indexOf(':');
      if (colon === -1 || (colon === 5 && k.startsWith('xmlns'))) continue;
      this.resolve(k, colon);
    }
  }
}

// ---------------------------------------------------------------------------------------------

/**
 * Namespace of an element from a stream parser (or any ltx element with `parent` links):
 * prefix bindings and default `xmlns` as declared, `xmlns=''` honoured, `xml:` built in.
 * Returns '' when unbound.
 */
export function nsOf(el: Element): string {
  const name = el.name;
  const colon = name.indexOf(':');
  if (colon === -1) {
    for (let e: Element | null = el; e !== null; e = e.parent) {
      const v = e.attrs['xmlns'];
      if (v !== undefined) return v;
    }
    return '';
  }
  const prefix = name.slice(0, colon);
  if (prefix === 'xml') return NS_XML;
  const key = 'xmlns:' + prefix;
  for (let e: Element | null = el; e !== null; e = e.parent) {
    const v = e.attrs[key];
    if (v !== undefined) return v;
  }
  return '';
}

/** Local name (prefix stripped). */
export function localName(el: Element): string {
  const name = el.name;
  const colon = name.indexOf(':');
  return colon === -1 ? name : name.slice(colon + 1);
}

/** Match by (local name, resolved namespace), never by the raw qualified name. */
export function isElement(el: Element, local: string, ns: string): boolean {
  return localName(el) === local && nsOf(el) === ns;
}

/** null = acceptable entity name; else the stream condition it violates. */
function checkEntity(name: string): StreamCondition | null {
  switch (name) {
    case 'amp':
    case 'lt':
    case 'gt':
    case 'quot':
    case 'apos':
      return null;
  }
  if (name.charCodeAt(0) === 35 /* # */) return CHAR_REF.test(name) ? null : 'not-well-formed';
  // A well-formed reference to an entity we do not define: RFC 6120 §11.1 restricted XML.
  return XML_NAME.test(name) ? 'restricted-xml' : 'not-well-formed';
}

/** null = acceptable `<?xml ...?>`; else [condition, text]. */
function checkDeclaration(decl: string): [StreamCondition, string] | null {
  if (!/^<\?xml[ \t\r\n?]/.test(decl)) return ['restricted-xml', 'processing instruction'];
  const m = XML_DECL.exec(decl);
  if (m === null) return ['not-well-formed', 'malformed XML declaration'];
  const version = m[1] ?? m[2];
  if (version !== '1.0') return ['not-well-formed', `XML version ${version ?? '?'} (only 1.0 is allowed)`];
  const encoding = m[3] ?? m[4];
  if (encoding !== undefined && !/^utf-?8$/i.test(encoding)) return ['unsupported-encoding', `encoding ${encoding}`];
  return null;
}

/** Index of the first byte in [i, end) that does not start a valid UTF-8 sequence (RFC 3629); `i` if none is found. */
function firstInvalidUtf8(b: Buffer, i: number, end: number): number {
  const from = i;
  while (i < end) {
    const c = b[i]!;
    if (c < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) need = 1;
    else if (c >= 0xe0 && c <= 0xef) {
      need = 2;
      if (c === 0xe0) lo = 0xa0;
      else if (c === 0xed) hi = 0x9f; // no surrogates
    } else if (c >= 0xf0 && c <= 0xf4) {
      need = 3;
      if (c === 0xf0) lo = 0x90;
      else if (c === 0xf4) hi = 0x8f;
    } else return i;
    if (i + need >= end) return i; // incomplete
    const c1 = b[i + 1]!;
    if (c1 < lo || c1 > hi) return i;
    for (let k = 2; k <= need; k++) if ((b[i + k]! & 0xc0) !== 0x80) return i;
    i += need + 1;
  }
  return from; // isUtf8() disagreed: be conservative, nothing of the range is parsed
}

function handlerError(e: unknown): StreamError {
  if (e instanceof StreamError) return e;
  return new StreamError('internal-server-error', 'stream handler failed', { cause: e });
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function reentrant(what: string): GatewayError {
  return new GatewayError('GW_ERR_PARSER_REENTRANT', `StreamParser.${what}() called from inside a handler`);
}

function positive(n: number, field: string): number {
  if (!(n >= 1) || !Number.isFinite(n)) throw new UsageError(`${field} must be a positive number`, field);
  return Math.floor(n);
}
