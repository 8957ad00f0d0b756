/**
 * Test-side scripted s2s peer: the *initiating* side of a server-to-server stream, i.e. a remote
 * partner server connecting in to the gateway. Tests drive it step by step over a real socket
 * (real TLS after STARTTLS) and inspect exactly what the gateway answers.
 *
 * Parsing uses the project's own StreamParser, so the gateway's output is also checked for
 * well-formedness, namespaces and size limits on the way in: a malformed gateway stream makes
 * every pending/next read fail with the parser's StreamError condition.
 *
 * Restarts (RFC 6120 section 4.3.3): `starttls()` and `saslExternal()` arm a restart trigger; the
 * parser is reset from inside the handler that sees `<proceed/>` / `<success/>`, so bytes that
 * follow in the same TCP segment never reach the old document (after `<proceed/>` they are an
 * error: the gateway must not send plaintext there).
 *
 * References: RFC 6120 sections 4 (streams), 5 (STARTTLS), 6 (SASL), 4.9 (stream errors);
 * XEP-0178 (EXTERNAL for s2s), XEP-0220 (dialback); docs/protocol.md sections 1-6, 9.
 */
import net, { type Socket } from 'node:net';
import tls, { type PeerCertificate, type TLSSocket } from 'node:tls';
import type { X509Certificate } from 'node:crypto';
import { dialbackKey } from '../../src/negotiation/dialback-key.js';
import { Element, escapeXML, escapeXMLText } from '../../src/xml/ltx.js';
import {
  NS_DIALBACK,
  NS_DIALBACK_FEATURE,
  NS_SASL,
  NS_SERVER,
  NS_STREAM_ERRORS,
  NS_STREAMS,
  NS_TLS,
} from '../../src/xml/namespaces.js';
import { isElement, localName, nsOf, StreamParser } from '../../src/xml/stream-parser.js';
import type { StreamError } from '../../src/errors.js';

/** Default wait for anything from the other side, in ms. Loopback answers take ~1 ms. */
export const DEFAULT_TIMEOUT_MS = 3_000;

/** Thrown by the peer for timeouts, unexpected elements and a broken stream. */
export class ScriptedPeerError extends Error {
  override name = 'ScriptedPeerError';
  constructor(
    message: string,
    /** The unexpected element, when one arrived instead of what was asked for. */
    readonly element?: Element,
  ) {
    super(message);
  }
}

// ---------------------------------------------------------------------------------------------
// Small shared utilities (also used by fake-partner-server.ts).

/** One line of a connection transcript. `t` is ms since the connection was made. */
export interface TranscriptEntry {
  t: number;
  dir: 'in' | 'out' | 'note';
  text: string;
}

/** Formats the last `max` transcript entries for error messages. */
export function formatTranscript(entries: readonly TranscriptEntry[], max = 20): string {
  const tail = entries.slice(-max);
  const lines = tail.map((e) => `  [+${e.t.toFixed(0)}ms ${e.dir === 'in' ? '<-' : e.dir === 'out' ? '->' : '--'}] ${clip(e.text)}`);
  if (entries.length > max) lines.unshift(`  ... ${entries.length - max} earlier entries`);
  return lines.join('\n');
}

function clip(s: string, n = 600): string {
  return s.length > n ? `${s.slice(0, n)}…(${s.length} chars)` : s;
}

interface Waiter<T> {
  resolve(v: T): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
}

/** FIFO with awaiting consumers; once failed, queued items are still handed out, then the failure. */
export class AsyncQueue<T> {
  private items: T[] = [];
  private waiters: Waiter<T>[] = [];
  private failure: string | null = null;

  get length(): number {
    return this.items.length;
  }

  get failed(): string | null {
    return this.failure;
  }

  push(v: T): void {
    const w = this.waiters.shift();
    if (w !== undefined) {
      clearTimeout(w.timer);
      w.resolve(v);
    } else {
      this.items.push(v);
    }
  }

  /** No more items will come; waiters (now and later, once the queue is drained) get `reason`. */
  fail(reason: string, context: () => string = () => ''): void {
    if (this.failure !== null) return;
    this.failure = reason;
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(new ScriptedPeerError(withContext(reason, context)));
    }
  }

  shift(timeoutMs: number, what: string, context: () => string = () => ''): Promise<T> {
    if (this.items.length > 0) return Promise.resolve(this.items.shift()!);
    if (this.failure !== null) {
      return Promise.reject(new ScriptedPeerError(withContext(`${what}: ${this.failure}`, context)));
    }
    return new Promise<T>((resolve, reject) => {
      const w: Waiter<T> = {
        resolve,
        reject,
        timer: setTimeout(() => {
          const i = this.waiters.indexOf(w);
          if (i >= 0) this.waiters.splice(i, 1);
          reject(new ScriptedPeerError(withContext(`timed out after ${timeoutMs} ms waiting for ${what}`, context)));
        }, timeoutMs),
      };
      this.waiters.push(w);
    });
  }

  /** Removes and returns everything queued. */
  drain(): T[] {
    return this.items.splice(0);
  }
}

function withContext(msg: string, context: () => string): string {
  const c = context();
  return c === '' ? msg : `${msg}\ntranscript:\n${c}`;
}

/** Rejects with a ScriptedPeerError after `ms` unless `p` settles first. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string, context: () => string = () => ''): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new ScriptedPeerError(withContext(`timed out after ${ms} ms waiting for ${what}`, context))),
      ms,
    );
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

/** The domain part of a JID: the gateway's own helper, so tests and gateway agree on it. */
export { jidDomain } from '../../src/routing/jid.js';

/** Parsed `<stream:error>`. */
export interface StreamErrorInfo {
  /** The defined condition (local name of the first child in the xmpp-streams namespace other than `text`), '' if none. */
  condition: string;
  /** Content of `<text/>`, undefined if absent. */
  text: string | undefined;
  /** Application-specific condition child (another namespace), e.g. `stanza-too-big`. */
  app: { name: string; ns: string } | undefined;
  element: Element;
}

/** Reads a `<stream:error>` element; null if `el` is something else. */
export function parseStreamError(el: Element): StreamErrorInfo | null {
  if (!isElement(el, 'error', NS_STREAMS)) return null;
  let condition = '';
  let text: string | undefined;
  let app: { name: string; ns: string } | undefined;
  for (const c of el.getChildElements()) {
    const ns = nsOf(c);
    const name = localName(c);
    if (ns === NS_STREAM_ERRORS && name === 'text') text = c.getText();
    else if (ns === NS_STREAM_ERRORS && condition === '') condition = name;
    else if (ns !== NS_STREAM_ERRORS && app === undefined) app = { name, ns };
  }
  return { condition, text, app, element: el };
}

/** What a `<stream:features>` element offers. */
export interface FeatureSummary {
  starttls: boolean;
  starttlsRequired: boolean;
  /** SASL mechanisms offered (empty when no `<mechanisms/>`). */
  mechanisms: string[];
  /** `<dialback xmlns='urn:xmpp:features:dialback'/>` present. */
  dialback: boolean;
  /** ... with `<errors/>` (XEP-0220 section 2.4.2: dialback errors supported). */
  dialbackErrors: boolean;
  /** Every child as `{ns}local`, in order. */
  children: string[];
}

export function summarizeFeatures(el: Element): FeatureSummary {
  const out: FeatureSummary = {
    starttls: false, starttlsRequired: false, mechanisms: [], dialback: false, dialbackErrors: false, children: [],
  };
  for (const c of el.getChildElements()) {
    const ns = nsOf(c);
    const name = localName(c);
    out.children.push(`{${ns}}${name}`);
    if (ns === NS_TLS && name === 'starttls') {
      out.starttls = true;
      out.starttlsRequired = c.getChildElements().some((r) => localName(r) === 'required' && nsOf(r) === NS_TLS);
    } else if (ns === NS_SASL && name === 'mechanisms') {
      for (const m of c.getChildElements()) if (localName(m) === 'mechanism') out.mechanisms.push(m.getText().trim());
    } else if (ns === NS_DIALBACK_FEATURE && name === 'dialback') {
      out.dialback = true;
      out.dialbackErrors = c.getChildElements().some((r) => localName(r) === 'errors');
    }
  }
  return out;
}

/** `xmlns='...'` etc. → `name='escaped'`, single-quoted like Prosody/ejabberd. */
function attrString(attrs: Record<string, string | undefined>): string {
  let s = '';
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined) s += ` ${k}='${escapeXML(v)}'`;
  return s;
}

/** `<db:result from to>key</db:result>` etc., with the `db:` prefix (bound on the sender's header). */
export function dialbackElement(
  name: 'result' | 'verify',
  attrs: { from: string; to: string; id?: string | undefined; type?: string | undefined },
  key?: string,
): string {
  const a = attrString({ from: attrs.from, to: attrs.to, id: attrs.id, type: attrs.type });
  return key === undefined || key === '' ? `<db:${name}${a}/>` : `<db:${name}${a}>${escapeXMLText(key)}</db:${name}>`;
}

// ---------------------------------------------------------------------------------------------

export interface HeaderOptions {
  from?: string | undefined;
  to?: string | undefined;
  /** Default '1.0'; `null` (or an explicit `version: undefined`) omits it (pre-1.0 "legacy" peer). */
  version?: string | null | undefined;
  /** Declare `xmlns:db` (default true). */
  dialback?: boolean;
  /** Send `<?xml version='1.0'?>` first (default true; Prosody does on every header). */
  xmlDecl?: boolean;
  /** An `id` attribute (initiators should not send one; Prosody sends `id=''`). Empty strings are sent as-is. */
  id?: string | undefined;
  /** `xml:lang` (default 'en'; `null` omits it). */
  lang?: string | null | undefined;
  /**
   * Extra or overriding attributes, in order after the standard ones; `undefined` removes one.
   * E.g. `{ xmlns: 'jabber:client' }` to provoke invalid-namespace.
   */
  attrs?: Record<string, string | undefined>;
}

export interface StartTlsOptions {
  /** Client certificate/key (PEM) presented to the gateway (for EXTERNAL). */
  cert?: string;
  key?: string;
  /** CA(s) to check the gateway's certificate against (the result is reported, never enforced). */
  ca?: string | string[];
  /** SNI; default: the `to` of the last header sent (XEP-0368 / Prosody / ejabberd behaviour). */
  servername?: string;
  /** ALPN protocols offered (default ['xmpp-server']); [] sends none. */
  alpn?: string[];
  /** Highest TLS version offered (e.g. 'TLSv1.2' to try renegotiation, which TLS 1.3 lacks). */
  maxVersion?: tls.SecureVersion;
  timeoutMs?: number;
}

export interface TlsInfo {
  /** e.g. 'TLSv1.3'. */
  protocol: string | null;
  /** The gateway's certificate chains to `ca` (hostname is not checked by Node here; see `identityError`). */
  authorized: boolean;
  authorizationError: string | undefined;
  /** `tls.checkServerIdentity(servername, cert)` message, undefined when the certificate names the servername. */
  identityError: string | undefined;
  peerCertificate: PeerCertificate;
  peerX509: X509Certificate | undefined;
  alpnProtocol: string | false | null;
  cipher: string | undefined;
}

export interface CloseInfo {
  /** `</stream:stream>` was received from the gateway before the socket closed. */
  streamEnd: boolean;
  /** The last socket error, if any (ECONNRESET when the gateway destroyed the socket with unread data, ...). */
  error: Error | undefined;
}

export interface NegotiateOptions {
  from: string;
  to: string;
  /** Run STARTTLS first (`true` = without a client certificate). */
  tls?: StartTlsOptions | boolean;
  /** Try SASL EXTERNAL after TLS (an object sets the authzid, see `saslExternal`). */
  sasl?: boolean | { authzid?: string | null };
  /**
   * Send `db:result` unless SASL succeeded. `key` may depend on the stream id the gateway issued;
   * `secret` computes the XEP-0185 key (receiving = `to`, originating = `from`).
   */
  dialback?: { key: string | ((streamId: string) => string) } | { secret: string };
  /** Further header options for every header sent (version, xmlDecl, ...). */
  header?: Omit<HeaderOptions, 'from' | 'to'>;
  timeoutMs?: number;
}

export interface NegotiateResult {
  /** Every header the gateway sent, in order. */
  headers: Record<string, string>[];
  /** Every `<stream:features>` received, in order (none for a legacy, version-less reply). */
  features: Element[];
  tls?: TlsInfo;
  sasl?: 'success' | 'failure';
  saslReply?: Element;
  /** The gateway's `db:result` answer. */
  dialback?: { type: string | undefined; reply: Element };
  /** The stream id in force at the end (the one dialback keys were computed for). */
  streamId: string;
  /** SASL succeeded or dialback came back valid. */
  established: boolean;
}

type RestartTrigger = 'proceed' | 'success' | null;

/**
 * A scripted initiating s2s peer. Not thread-safe in the sense that concurrent `next()` calls
 * get elements in call order.
 */
export class ScriptedPeer {
  /** Current socket: the TCP socket, then the TLSSocket after `starttls()`. */
  socket: Socket;
  /** The raw TCP socket (never replaced). */
  readonly tcp: Socket;
  /** Stream id from the gateway's latest header ('' before one arrived or when it sent none). */
  streamId = '';
  /** Every header the gateway sent (attrs as written), in order. */
  readonly headers: Record<string, string>[] = [];
  /** Every top-level element received, with its raw text (undefined when it uses a header prefix). */
  readonly received: { el: Element; raw: string | undefined }[] = [];
  readonly transcript: TranscriptEntry[] = [];
  /** Whitespace runs received between top-level elements (keep-alives). */
  whitespaceCount = 0;
  /** `</stream:stream>` received. */
  streamEnded = false;
  /** The parser refused the gateway's output. */
  parseError: StreamError | null = null;
  tlsInfo: TlsInfo | undefined;
  /** The last header sent (for `restart()` and as the default EXTERNAL authzid). */
  lastHeaderSent: HeaderOptions | undefined;

  private readonly parser = new StreamParser({ maxStanzaBytes: 16 * 1024 * 1024, maxHeaderBytes: 64 * 1024 });
  private readonly headerQ = new AsyncQueue<Record<string, string>>();
  private readonly elementQ = new AsyncQueue<Element>();
  private readonly t0 = Date.now();
  private restartOn: RestartTrigger = null;
  private autoResume = false;
  /** Plaintext that arrived after `<proceed/>` (must stay empty). */
  private injected: Buffer[] = [];
  private isClosed = false;
  private lastError: Error | undefined;
  private readonly closedP: Promise<CloseInfo>;
  private resolveClosed!: (c: CloseInfo) => void;
  private endSent = false;
  private readonly wsWaiters: { n: number; resolve(): void }[] = [];

  private readonly onData = (chunk: Buffer): void => this.receive(chunk);
  private readonly onInjected = (chunk: Buffer): void => {
    this.injected.push(chunk);
    this.note(`plaintext after <proceed/>: ${chunk.toString('utf8')}`);
  };
  private readonly onClose = (): void => this.socketClosed();
  private readonly onError = (err: Error): void => {
    this.lastError = err;
    this.note(`socket error: ${err.message}`);
  };

  private constructor(socket: Socket) {
    this.socket = socket;
    this.tcp = socket;
    this.closedP = new Promise<CloseInfo>((r) => (this.resolveClosed = r));
    this.parser.handler = {
      streamStart: (attrs) => {
        const copy = { ...attrs };
        this.headers.push(copy);
        this.streamId = copy['id'] ?? '';
        this.headerQ.push(copy);
      },
      element: (el, raw) => {
        this.received.push({ el, raw });
        if (this.restartOn === 'proceed' && isElement(el, 'proceed', NS_TLS)) {
          this.restartOn = null;
          // Stop right here: the rest of this segment is held by the parser (and must be empty).
          this.parser.reset();
          this.socket.off('data', this.onData);
          this.socket.on('data', this.onInjected);
        } else if (this.restartOn === 'success' && isElement(el, 'success', NS_SASL)) {
          this.restartOn = null;
          this.parser.reset();
          this.autoResume = true;
        }
        this.elementQ.push(el);
      },
      streamEnd: () => {
        this.streamEnded = true;
        this.note('</stream:stream> received');
        this.elementQ.fail('stream ended (</stream:stream> received)', this.ctx);
        this.headerQ.fail('stream ended (</stream:stream> received)', this.ctx);
      },
      whitespace: () => {
        this.whitespaceCount++;
        for (let i = this.wsWaiters.length - 1; i >= 0; i--) {
          const w = this.wsWaiters[i]!;
          if (this.whitespaceCount >= w.n) {
            this.wsWaiters.splice(i, 1);
            w.resolve();
          }
        }
      },
      error: (err) => {
        this.parseError = err;
        this.note(`parse error: ${err.condition}: ${err.message}`);
        const reason = `gateway output refused by the parser: ${err.condition} (${err.message})`;
        this.elementQ.fail(reason, this.ctx);
        this.headerQ.fail(reason, this.ctx);
      },
    };
    socket.on('data', this.onData);
    socket.on('close', this.onClose);
    socket.on('error', this.onError);
  }

  /** Connects to the gateway (TCP, plaintext: STARTTLS comes later). */
  static connect(port: number, host = '127.0.0.1', timeoutMs = DEFAULT_TIMEOUT_MS): Promise<ScriptedPeer> {
    return new Promise<ScriptedPeer>((resolve, reject) => {
      const s = net.connect({ port, host });
      s.setNoDelay(true);
      const timer = setTimeout(() => {
        s.destroy();
        reject(new ScriptedPeerError(`connect to ${host}:${port} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      const onError = (e: Error): void => {
        clearTimeout(timer);
        reject(e);
      };
      s.once('error', onError);
      s.once('connect', () => {
        clearTimeout(timer);
        s.off('error', onError);
        resolve(new ScriptedPeer(s));
      });
    });
  }

  /** Wraps an already connected socket (e.g. one a test server accepted). */
  static wrap(socket: Socket): ScriptedPeer {
    return new ScriptedPeer(socket);
  }

  get closedAlready(): boolean {
    return this.isClosed;
  }

  get isTls(): boolean {
    return this.socket !== this.tcp;
  }

  /** Elements received but not yet taken by `next()`. */
  get queued(): number {
    return this.elementQ.length;
  }

  // --- writing ---------------------------------------------------------------------------------

  /** Writes text as-is. Throws if the socket is no longer writable. */
  sendRaw(text: string | Buffer): void {
    if (this.isClosed || this.socket.destroyed || !this.socket.writable) {
      throw new ScriptedPeerError(`cannot send, socket is closed: ${clip(text.toString())}\ntranscript:\n${this.ctx()}`);
    }
    this.transcript.push({ t: Date.now() - this.t0, dir: 'out', text: text.toString() });
    this.socket.write(text);
  }

  /** Sends an element (serialised by ltx) or a string. */
  send(el: Element | string): void {
    this.sendRaw(typeof el === 'string' ? el : el.toString());
  }

  /** Sends a stream header; see HeaderOptions for defaults. Returns the text sent. */
  sendHeader(opts: HeaderOptions = {}): string {
    this.lastHeaderSent = { ...opts };
    const version = 'version' in opts ? (opts.version ?? undefined) : '1.0';
    const lang = 'lang' in opts ? (opts.lang ?? undefined) : 'en';
    const attrs: Record<string, string | undefined> = {
      xmlns: NS_SERVER,
      'xmlns:stream': NS_STREAMS,
      'xmlns:db': opts.dialback === false ? undefined : NS_DIALBACK,
      from: opts.from,
      to: opts.to,
      id: opts.id,
      version,
      'xml:lang': lang,
    };
    for (const [k, v] of Object.entries(opts.attrs ?? {})) attrs[k] = v;
    const text = `${opts.xmlDecl === false ? '' : "<?xml version='1.0'?>"}<stream:stream${attrString(attrs)}>`;
    this.sendRaw(text);
    return text;
  }

  /** Sends the last header again (after a restart). */
  restart(overrides: HeaderOptions = {}): string {
    return this.sendHeader({ ...(this.lastHeaderSent ?? {}), ...overrides });
  }

  /** `<db:result from to>key</db:result>` (key omitted if empty). */
  dialbackResult(from: string, to: string, key: string): void {
    this.sendRaw(dialbackElement('result', { from, to }, key));
  }

  /** `<db:verify from to id>key</db:verify>` (us acting as Receiving Server asking the gateway). */
  dialbackVerify(from: string, to: string, id: string, key: string): void {
    this.sendRaw(dialbackElement('verify', { from, to, id }, key));
  }

  /** A single space keep-alive. */
  sendWhitespace(): void {
    this.sendRaw(' ');
  }

  // --- reading ---------------------------------------------------------------------------------

  /** The next header from the gateway (initial, or after a restart). */
  header(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Record<string, string>> {
    return this.headerQ.shift(timeoutMs, 'the gateway stream header', this.ctx);
  }

  /** The next top-level element from the gateway. */
  next(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Element> {
    return this.elementQ.shift(timeoutMs, 'a top-level element', this.ctx);
  }

  /** The next element, asserted to be `<stream:features>`. */
  async features(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Element> {
    const el = await this.next(timeoutMs);
    if (!isElement(el, 'features', NS_STREAMS)) throw this.unexpected('<stream:features>', el);
    return el;
  }

  /** The next element, asserted to be `<stream:error>`, parsed. */
  async expectStreamError(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<StreamErrorInfo> {
    const el = await this.next(timeoutMs);
    const info = parseStreamError(el);
    if (info === null) throw this.unexpected('<stream:error>', el);
    return info;
  }

  /** The next element, asserted to be `<local xmlns=ns>`. */
  async expect(local: string, ns: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Element> {
    const el = await this.next(timeoutMs);
    if (!isElement(el, local, ns)) throw this.unexpected(`<${local} xmlns='${ns}'>`, el);
    return el;
  }

  /**
   * Resolves if no top-level element (and no header) arrives for `ms`; throws with the element
   * otherwise. A stream end or socket close in that time is not an element and is not an error.
   */
  async expectNothing(ms: number): Promise<void> {
    const before = this.received.length;
    const headersBefore = this.headers.length;
    await new Promise((r) => setTimeout(r, ms));
    if (this.received.length > before) throw this.unexpected('nothing', this.received[before]!.el);
    if (this.headers.length > headersBefore) {
      throw new ScriptedPeerError(`expected nothing, got a header ${JSON.stringify(this.headers[headersBefore])}\ntranscript:\n${this.ctx()}`);
    }
  }

  /** Resolves once at least `n` whitespace runs were received in total. */
  waitForWhitespace(n = this.whitespaceCount + 1, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<void> {
    if (this.whitespaceCount >= n) return Promise.resolve();
    return withTimeout(new Promise<void>((resolve) => this.wsWaiters.push({ n, resolve })), timeoutMs, `${n} whitespace keep-alive(s)`, this.ctx);
  }

  /** Resolves when the socket has closed. */
  closed(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<CloseInfo> {
    return withTimeout(this.closedP, timeoutMs, 'the connection to close', this.ctx);
  }

  // --- negotiation steps -----------------------------------------------------------------------

  /**
   * Sends `<starttls/>`, expects `<proceed/>` (throws with the element otherwise), then runs the
   * TLS handshake on the same socket and resets the parser; send a new header next.
   */
  async starttls(opts: StartTlsOptions = {}): Promise<TlsInfo> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.restartOn = 'proceed';
    this.sendRaw(`<starttls xmlns='${NS_TLS}'/>`);
    let el: Element;
    try {
      el = await this.next(timeoutMs);
    } finally {
      if (this.restartOn === 'proceed') this.restartOn = null;
    }
    if (!isElement(el, 'proceed', NS_TLS)) throw this.unexpected(`<proceed xmlns='${NS_TLS}'/>`, el);
    return this.upgradeTls(opts);
  }

  /**
   * The TLS handshake alone, for scripts that sent `<starttls/>` and read `<proceed/>` themselves.
   * Throws if the gateway sent any plaintext after `<proceed/>`.
   */
  async upgradeTls(opts: StartTlsOptions = {}): Promise<TlsInfo> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const raw = this.socket;
    if (raw !== this.tcp) throw new ScriptedPeerError('already on TLS');
    raw.off('data', this.onData);
    raw.off('data', this.onInjected);
    raw.off('close', this.onClose);
    this.parser.reset();
    const held = this.parser.takePending();
    if (held.length > 0 || this.injected.length > 0) {
      const text = Buffer.concat([held, ...this.injected]).toString('utf8');
      raw.destroy();
      throw new ScriptedPeerError(`the gateway sent plaintext after <proceed/>: ${clip(text)}\ntranscript:\n${this.ctx()}`);
    }
    const servername = opts.servername ?? this.lastHeaderSent?.to ?? undefined;
    const ts = tls.connect({
      socket: raw,
      servername: servername !== undefined && net.isIP(servername) === 0 ? servername : undefined,
      cert: opts.cert,
      key: opts.key,
      ca: opts.ca,
      ALPNProtocols: opts.alpn ?? ['xmpp-server'],
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
      ...(opts.maxVersion ? { maxVersion: opts.maxVersion } : {}),
    });
    this.socket = ts;
    ts.on('error', this.onError);
    ts.on('close', this.onClose);
    this.note(`TLS handshake (servername ${servername ?? '-'})`);
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        const onErr = (e: Error): void => reject(new ScriptedPeerError(`TLS handshake failed: ${e.message}`));
        ts.once('error', onErr);
        ts.once('close', () => reject(new ScriptedPeerError(`connection closed during the TLS handshake\ntranscript:\n${this.ctx()}`)));
        ts.once('secureConnect', () => {
          ts.off('error', onErr);
          resolve();
        });
      }),
      timeoutMs,
      'the TLS handshake',
      this.ctx,
    );
    const cert = ts.getPeerCertificate(true);
    const idErr = servername !== undefined ? tls.checkServerIdentity(servername, cert) : undefined;
    const authErr: unknown = ts.authorizationError;
    const info: TlsInfo = {
      protocol: ts.getProtocol(),
      authorized: ts.authorized,
      authorizationError: authErr === null || authErr === undefined ? undefined : authErr instanceof Error ? ((authErr as NodeJS.ErrnoException).code ?? authErr.message) : String(authErr),
      identityError: idErr?.message,
      peerCertificate: cert,
      peerX509: ts.getPeerX509Certificate(),
      alpnProtocol: ts.alpnProtocol,
      cipher: ts.getCipher()?.name,
    };
    this.tlsInfo = info;
    this.note(`TLS up: ${info.protocol ?? '?'} ${info.cipher ?? ''} authorized=${String(info.authorized)} alpn=${String(info.alpnProtocol)}`);
    ts.on('data', this.onData);
    this.parser.resume();
    return info;
  }

  /**
   * `<auth mechanism='EXTERNAL'>` with authzid: default the `from` of the last header sent,
   * `'='` or `''` sends `=` (empty authzid), `null` sends an empty element (no initial response).
   * Returns the reply (`<success/>`, `<failure/>`, or whatever came); after `<success/>` the parser
   * is reset: send a new header next.
   */
  async saslExternal(authzid?: string | null, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Element> {
    const id = authzid === undefined ? (this.lastHeaderSent?.from ?? '=') : authzid;
    const body = id === null ? '' : id === '=' || id === '' ? '=' : Buffer.from(id, 'utf8').toString('base64');
    this.restartOn = 'success';
    this.sendRaw(
      body === ''
        ? `<auth xmlns='${NS_SASL}' mechanism='EXTERNAL'/>`
        : `<auth xmlns='${NS_SASL}' mechanism='EXTERNAL'>${body}</auth>`,
    );
    try {
      return await this.next(timeoutMs);
    } finally {
      if (this.restartOn === 'success') this.restartOn = null;
    }
  }

  /**
   * Runs a common sequence: header → features → [STARTTLS → header → features] → [EXTERNAL →
   * (success: header → features)] → [db:result → its answer, unless SASL succeeded].
   * Throws (ScriptedPeerError with `.element`) when a step gets something unexpected, e.g. a
   * stream error instead of features; `<failure/>` answers are results, not errors.
   */
  async negotiate(opts: NegotiateOptions): Promise<NegotiateResult> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const result: NegotiateResult = { headers: [], features: [], streamId: '', established: false };
    const open = async (): Promise<void> => {
      this.sendHeader({ ...(opts.header ?? {}), from: opts.from, to: opts.to });
      const h = await this.header(timeoutMs);
      result.headers.push(h);
      result.streamId = h['id'] ?? '';
      // RFC 6120 section 4.7.5: no version on the reply ⇒ no features will come.
      if (h['version'] !== undefined) result.features.push(await this.features(timeoutMs));
    };
    await open();
    if (opts.tls !== undefined && opts.tls !== false) {
      result.tls = await this.starttls(opts.tls === true ? { timeoutMs } : { timeoutMs, ...opts.tls });
      await open();
    }
    if (opts.sasl !== undefined && opts.sasl !== false) {
      const authzid = typeof opts.sasl === 'object' ? opts.sasl.authzid : undefined;
      const reply = await this.saslExternal(authzid, timeoutMs);
      result.saslReply = reply;
      if (isElement(reply, 'success', NS_SASL)) {
        result.sasl = 'success';
        result.established = true;
        await open();
      } else if (isElement(reply, 'failure', NS_SASL)) {
        result.sasl = 'failure';
      } else {
        throw this.unexpected('<success/> or <failure/>', reply);
      }
    }
    if (opts.dialback !== undefined && !result.established) {
      const db = opts.dialback;
      const key = 'secret' in db
        ? dialbackKey(db.secret, opts.to, opts.from, result.streamId)
        : typeof db.key === 'function' ? db.key(result.streamId) : db.key;
      this.dialbackResult(opts.from, opts.to, key);
      const reply = await this.next(timeoutMs);
      if (!isElement(reply, 'result', NS_DIALBACK)) throw this.unexpected('<db:result type=...>', reply);
      const type = reply.attrs['type'];
      result.dialback = { type, reply };
      if (type === 'valid') result.established = true;
    }
    return result;
  }

  // --- closing ---------------------------------------------------------------------------------

  /**
   * Graceful close: `</stream:stream>`, wait (up to `timeoutMs`) for the gateway's `</stream:stream>`
   * or the socket to close, then end our side and wait for the close (destroying after the timeout).
   */
  async close(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<CloseInfo> {
    if (!this.isClosed && !this.endSent && this.socket.writable) {
      this.endSent = true;
      this.sendRaw('</stream:stream>');
      const deadline = Date.now() + timeoutMs;
      while (!this.isClosed && !this.streamEnded && Date.now() < deadline) {
        await Promise.race([this.closedP, new Promise((r) => setTimeout(r, 5))]);
      }
    }
    if (!this.isClosed) this.socket.end();
    const t = setTimeout(() => this.destroy(), timeoutMs);
    const info = await this.closedP;
    clearTimeout(t);
    return info;
  }

  /** Drops the connection at once (no XML). */
  destroy(): void {
    this.socket.destroy();
    if (this.socket !== this.tcp) this.tcp.destroy();
  }

  // --- internals -------------------------------------------------------------------------------

  private receive(chunk: Buffer): void {
    this.transcript.push({ t: Date.now() - this.t0, dir: 'in', text: chunk.toString('utf8') });
    this.parser.write(chunk);
    // A reset inside a handler (SASL success) leaves the parser paused with the rest of the chunk held.
    while (this.autoResume && this.parser.error === null) {
      this.autoResume = false;
      this.parser.resume();
    }
  }

  private socketClosed(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.note('socket closed');
    const reason = this.parseError !== null
      ? `gateway output refused by the parser: ${this.parseError.condition}`
      : this.streamEnded ? 'stream ended (</stream:stream> received)' : 'socket closed';
    this.elementQ.fail(reason, this.ctx);
    this.headerQ.fail(reason, this.ctx);
    this.resolveClosed({ streamEnd: this.streamEnded, error: this.lastError });
  }

  private note(text: string): void {
    this.transcript.push({ t: Date.now() - this.t0, dir: 'note', text });
  }

  private unexpected(wanted: string, el: Element): ScriptedPeerError {
    const se = parseStreamError(el);
    const what = se !== null ? `stream error <${se.condition}/>${se.text !== undefined ? ` "${se.text}"` : ''}` : el.toString();
    return new ScriptedPeerError(`expected ${wanted}, got ${what}\ntranscript:\n${this.ctx()}`, el);
  }

  /** Transcript tail for error messages. */
  readonly ctx = (): string => formatTranscript(this.transcript);
}
