/**
 * A lightweight receiving s2s server for the benchmark: flood.test's own server, to which the
 * server under test (the gateway or Prosody) opens its OUTBOUND stream carrying the replies.
 *
 * Why not test/helpers/fake-partner-server.ts: that helper parses every stanza into an ltx Element
 * with the project's StreamParser, copies every chunk into a transcript and re-checks its waiters
 * per stanza. That is right for tests and too much for a counter that must stay far ahead of the
 * server under test on a 2-core machine where the flooding client shares its process. This sink
 * negotiates just enough (the same features and answers as FakePartnerServer) and then only
 * COUNTS top-level stanzas with a tag scanner (indexOf '<' / '>', depth tracking): no DOM, no
 * per-stanza allocation beyond one short regexp match on the opening tag.
 *
 * Negotiation (receiving side, RFC 6120 sections 4-6, XEP-0178, XEP-0220):
 *   mode 'dialback':  header + `<dialback/>` feature; `db:result` answered `valid` at once (this
 *                     sink does not verify the key back with the sender: the benchmark measures
 *                     stanza throughput, not dialback), `db:verify` answered by recomputing the
 *                     XEP-0185 key with the flooding peer's secret (that is how the server under
 *                     test authenticates the flooding peer).
 *   mode 'external':  STARTTLS required → TLS (client certificate requested) → EXTERNAL offered
 *                     when the certificate chains to `ca` and names the header `from` → success →
 *                     empty features.
 * Replies are counted per sending domain (the `from` of the stream header) and kind
 * (iq result / iq error / message error / other).
 *
 * Scanner limits (fine for what Prosody and the gateway send): no CDATA sections or comments
 * inside stanzas, no raw '>' inside attribute values (both servers escape it).
 */
import net, { type AddressInfo, type Server, type Socket } from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import { StringDecoder } from 'node:string_decoder';
import { performance } from 'node:perf_hooks';
import { dialbackKey, keysEqual, newStreamId } from '../src/negotiation/dialback-key.js';
import { checkPeerCertificate, parseTrustAnchors } from '../src/tls/peer-certificate.js';
import {
  dialbackFeature, saslMechanismsFeature, starttlsFeature, STREAM_CLOSE, streamFeatures, streamHeader,
} from '../src/xml/builders.js';
import { escapeXML } from '../src/xml/ltx.js';
import { NS_SASL, NS_TLS } from '../src/xml/namespaces.js';

export type SinkMode = 'dialback' | 'external';

export interface ReplySinkOptions {
  /** The domain this sink serves (the flooding peer's domain, e.g. flood.test). */
  domain: string;
  mode: SinkMode;
  /** Secret the flooding peer used for its dialback keys (answers db:verify). */
  dialbackSecret: string;
  /** PEM certificate and key for `domain` (mode 'external'). */
  cert?: string;
  key?: string;
  /** PEM CA that client certificates must chain to for EXTERNAL (mode 'external'). */
  ca?: string;
  host?: string;
  /** Called for every iq get/set received (a relay sink answers the gateway's barrier pings). */
  onIqRequest?: (fromDomain: string, id: string) => void;
}

export interface ReplyCounts {
  total: number;
  iqResult: number;
  iqError: number;
  /** iq get/set (the gateway's delivery-barrier pings on a relay stream). */
  iqRequest: number;
  messageError: number;
  /** Any other message (relayed chat messages). */
  message: number;
  other: number;
}

export type ReplyKind = Exclude<keyof ReplyCounts, 'total'>;

const emptyCounts = (): ReplyCounts => ({ total: 0, iqResult: 0, iqError: 0, iqRequest: 0, messageError: 0, message: 0, other: 0 });

interface Waiter {
  domain: string;
  done(c: ReplyCounts): boolean;
  resolve(t: number): void;
}

const ATTR_RE = /([\w:.-]+)\s*=\s*(?:'([^']*)'|"([^"]*)")/g;
const TYPE_RE = /\stype\s*=\s*['"]([a-z]+)['"]/;
const ID_RE = /\sid\s*=\s*(?:'([^']*)'|"([^"]*)")/;

function attrsOf(tag: string): Record<string, string> {
  const out: Record<string, string> = {};
  ATTR_RE.lastIndex = 0;
  for (let m = ATTR_RE.exec(tag); m !== null; m = ATTR_RE.exec(tag)) out[m[1]!] = m[2] ?? m[3] ?? '';
  return out;
}

/** The text content of a simple element `<x ...>text</x>` ('' when self-closing). */
function innerText(el: string): string {
  const gt = el.indexOf('>');
  if (el.charCodeAt(gt - 1) === 0x2f) return '';
  const end = el.lastIndexOf('</');
  return el.slice(gt + 1, end).trim();
}

function tagName(el: string): string {
  const m = /^<([^\s/>]+)/.exec(el);
  return m?.[1] ?? '';
}

const enum Kind { Negotiation, Iq, Message, Presence }

class SinkConnection {
  socket: Socket;
  from = '';
  counts: ReplyCounts = emptyCounts();
  tls: TLSSocket | null = null;
  saslDone = false;
  closed = false;
  private decoder = new StringDecoder('utf8');
  private buf = '';
  private pos = 0;
  /** 0: before a header; 1: inside the stream, between top-level elements; >1: inside one. */
  private depth = 0;
  private elStart = 0;
  private elKind: Kind = Kind.Negotiation;
  private elType = '';
  private readonly onData = (chunk: Buffer): void => this.receive(chunk);

  constructor(private readonly sink: ReplySink, socket: Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('data', this.onData);
    socket.on('error', (e) => sink.note(`socket error (${this.from || '?'}): ${e.message}`));
    socket.on('close', () => {
      this.closed = true;
    });
  }

  private write(text: string): void {
    if (!this.socket.destroyed && this.socket.writable) this.socket.write(text);
  }

  private receive(chunk: Buffer): void {
    const before = this.counts.message;
    this.buf += this.decoder.write(chunk);
    this.scan();
    const arrivals = this.sink.arrivals;
    if (arrivals !== null && this.counts.message !== before) arrivals.push(performance.now(), this.counts.message - before);
    this.sink.progress(this);
  }

  private scan(): void {
    const buf = this.buf;
    let pos = this.pos;
    for (;;) {
      const i = buf.indexOf('<', pos);
      if (i < 0) {
        pos = buf.length;
        break;
      }
      const j = buf.indexOf('>', i + 1);
      if (j < 0) {
        pos = i;
        break;
      }
      const c = buf.charCodeAt(i + 1);
      pos = j + 1;
      if (c === 0x3f /* ? */ || c === 0x21 /* ! */) continue;
      if (c === 0x2f /* / */) {
        if (this.depth <= 1) {
          this.streamEnd();
          return;
        }
        this.depth--;
        if (this.depth === 1 && this.complete(buf, this.elStart, j + 1) === 'stop') return;
        continue;
      }
      const selfClosing = buf.charCodeAt(j - 1) === 0x2f;
      if (this.depth >= 2) {
        if (!selfClosing) this.depth++;
        continue;
      }
      // A top-level element, or a (new) stream header.
      if (buf.startsWith('stream:stream', i + 1)) {
        this.depth = 1;
        this.header(buf.slice(i, j + 1));
        continue;
      }
      this.elStart = i;
      this.elKind = this.kindAt(buf, i);
      if (this.elKind !== Kind.Negotiation) {
        const m = TYPE_RE.exec(buf.slice(i, j));
        this.elType = m?.[1] ?? '';
      }
      if (selfClosing) {
        if (this.complete(buf, i, j + 1) === 'stop') return;
      } else {
        this.depth = 2;
      }
    }
    const keepFrom = this.depth >= 2 ? this.elStart : pos;
    if (keepFrom > 0) {
      this.buf = buf.slice(keepFrom);
      this.pos = pos - keepFrom;
      this.elStart -= keepFrom;
    } else {
      this.pos = pos;
    }
  }

  private kindAt(buf: string, i: number): Kind {
    const next = (n: number): boolean => {
      const ch = buf.charCodeAt(i + 1 + n);
      return ch === 0x20 || ch === 0x3e || ch === 0x2f || ch === 0x09 || ch === 0x0a || ch === 0x0d;
    };
    if (buf.startsWith('iq', i + 1) && next(2)) return Kind.Iq;
    if (buf.startsWith('message', i + 1) && next(7)) return Kind.Message;
    if (buf.startsWith('presence', i + 1) && next(8)) return Kind.Presence;
    return Kind.Negotiation;
  }

  /** A complete top-level element in buf[start, end). */
  private complete(buf: string, start: number, end: number): 'stop' | void {
    switch (this.elKind) {
      case Kind.Iq:
        if (this.elType === 'get' || this.elType === 'set') {
          this.count('iqRequest', buf, start, end);
          const onIq = this.sink.options.onIqRequest;
          if (onIq !== undefined) {
            const m = ID_RE.exec(buf.slice(start, buf.indexOf('>', start)));
            onIq(this.from, m?.[1] ?? m?.[2] ?? '');
          }
          return;
        }
        this.count(this.elType === 'result' ? 'iqResult' : this.elType === 'error' ? 'iqError' : 'other', buf, start, end);
        return;
      case Kind.Message:
        this.count(this.elType === 'error' ? 'messageError' : 'message', buf, start, end);
        return;
      case Kind.Presence:
        this.count('other', buf, start, end);
        return;
      default:
        return this.negotiation(buf.slice(start, end));
    }
  }

  private count(kind: ReplyKind, buf: string, start: number, end: number): void {
    this.counts.total++;
    this.counts[kind]++;
    if (this.sink.capture !== null) this.sink.capture.push({ from: this.from, text: buf.slice(start, end) });
  }

  private header(tag: string): void {
    const attrs = attrsOf(tag);
    if (this.from === '') this.from = attrs['from'] ?? '';
    const o = this.sink.options;
    this.write(streamHeader({
      from: o.domain,
      to: attrs['from'],
      id: newStreamId(),
      version: '1.0',
      lang: 'en',
      dialback: o.mode === 'dialback',
    }));
    const features: string[] = [];
    if (o.mode === 'dialback') {
      features.push(dialbackFeature(false).toString());
    } else if (this.tls === null) {
      features.push(starttlsFeature(true).toString());
    } else if (!this.saslDone && this.certOk()) {
      features.push(saslMechanismsFeature(['EXTERNAL']).toString());
    }
    this.write(streamFeatures(features));
  }

  private certOk(): boolean {
    if (this.tls === null || this.from === '') return false;
    const r = checkPeerCertificate(this.tls, this.from, { trustAnchors: this.sink.trustAnchors });
    return r.chainValid && r.identity.ok;
  }

  private negotiation(el: string): 'stop' | void {
    const name = tagName(el);
    const o = this.sink.options;
    const attrs = attrsOf(el.slice(0, el.indexOf('>') + 1));
    if (name === 'db:result' && attrs['type'] === undefined) {
      // Receiving Server: accept (see the header comment).
      this.write(`<db:result from='${escapeXML(attrs['to'] ?? '')}' to='${escapeXML(attrs['from'] ?? '')}' type='valid'/>`);
      return;
    }
    if (name === 'db:verify' && attrs['type'] === undefined) {
      // Authoritative Server for o.domain: XEP-0185 key, receiving = from, originating = to.
      const expected = dialbackKey(o.dialbackSecret, attrs['from'] ?? '', attrs['to'] ?? '', attrs['id'] ?? '');
      const type = keysEqual(innerText(el), expected) ? 'valid' : 'invalid';
      if (type === 'invalid') this.sink.note(`db:verify from ${attrs['from']}: key does not match`);
      this.write(`<db:verify from='${escapeXML(attrs['to'] ?? '')}' to='${escapeXML(attrs['from'] ?? '')}' id='${escapeXML(attrs['id'] ?? '')}' type='${type}'/>`);
      return;
    }
    if (name === 'starttls' && o.mode === 'external' && this.tls === null) {
      this.startTls();
      return 'stop';
    }
    if (name === 'auth' && o.mode === 'external') {
      if (this.tls === null || this.saslDone || attrs['mechanism'] !== 'EXTERNAL' || !this.certOk()) {
        this.sink.note(`SASL EXTERNAL refused for '${this.from}'`);
        this.write(`<failure xmlns='${NS_SASL}'><not-authorized/></failure>`);
        return;
      }
      const text = innerText(el);
      const authzid = text === '' || text === '=' ? '' : Buffer.from(text, 'base64').toString('utf8');
      if (authzid !== '' && authzid !== this.from) {
        this.write(`<failure xmlns='${NS_SASL}'><invalid-authzid/></failure>`);
        return;
      }
      this.saslDone = true;
      this.write(`<success xmlns='${NS_SASL}'/>`);
      // RFC 6120 section 6.4.6: a new stream follows right after this element.
      this.depth = 0;
      return;
    }
    if (name === 'stream:error') {
      this.sink.note(`stream error from '${this.from}': ${el}`);
      return;
    }
    this.sink.note(`unexpected element from '${this.from}': ${el.slice(0, 300)}`);
  }

  private startTls(): void {
    const raw = this.socket;
    raw.off('data', this.onData);
    this.write(`<proceed xmlns='${NS_TLS}'/>`);
    this.buf = '';
    this.pos = 0;
    this.depth = 0;
    this.decoder = new StringDecoder('utf8');
    const o = this.sink.options;
    // A tls.Server computes `authorized` for the client certificate (a bare TLSSocket does not).
    const server = tls.createServer({
      cert: o.cert,
      key: o.key,
      ca: o.ca,
      requestCert: true,
      rejectUnauthorized: false,
      ALPNProtocols: ['xmpp-server'],
      minVersion: 'TLSv1.2',
      handshakeTimeout: 10_000,
    });
    server.once('secureConnection', (ts: TLSSocket) => {
      this.tls = ts;
      this.socket = ts;
      ts.on('data', this.onData);
      ts.on('error', (e) => this.sink.note(`TLS socket error (${this.from || '?'}): ${e.message}`));
      ts.on('close', () => {
        this.closed = true;
      });
    });
    server.once('tlsClientError', (err: Error) => {
      this.sink.note(`TLS handshake with '${this.from}' failed: ${err.message}`);
      raw.destroy();
    });
    server.emit('connection', raw);
  }

  private streamEnd(): void {
    this.write(STREAM_CLOSE);
    this.socket.end();
    this.buf = '';
    this.pos = 0;
    this.depth = 0;
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export class ReplySink {
  readonly connections: SinkConnection[] = [];
  /** Protocol notes (refusals, unexpected elements, errors) for failure messages. */
  readonly notes: string[] = [];
  /** When an array, every counted stanza's text is appended (warm-up checks only: it costs). */
  capture: { from: string; text: string }[] | null = null;
  /**
   * When an array, every received chunk that completed messages appends (performance.now(), how
   * many): with one stream carrying traffic, message k arrived with the chunk that brought the
   * running sum to k (latency and stall runs).
   */
  arrivals: number[] | null = null;
  readonly trustAnchors;
  private readonly waiters = new Set<Waiter>();

  private constructor(private readonly server: Server, readonly options: ReplySinkOptions) {
    this.trustAnchors = options.ca !== undefined ? parseTrustAnchors(options.ca) : [];
  }

  static async start(options: ReplySinkOptions): Promise<ReplySink> {
    if (options.mode === 'external' && (options.cert === undefined || options.key === undefined || options.ca === undefined)) {
      throw new Error('ReplySink: mode external needs cert, key and ca');
    }
    const server = net.createServer();
    const sink = new ReplySink(server, options);
    server.on('connection', (s) => sink.connections.push(new SinkConnection(sink, s)));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, options.host ?? '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    return sink;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** Replies counted so far from `domain`, summed over its connections. */
  counts(domain: string): ReplyCounts {
    const out = emptyCounts();
    for (const c of this.connections) {
      if (c.from !== domain) continue;
      out.total += c.counts.total;
      out.iqResult += c.counts.iqResult;
      out.iqError += c.counts.iqError;
      out.iqRequest += c.counts.iqRequest;
      out.messageError += c.counts.messageError;
      out.message += c.counts.message;
      out.other += c.counts.other;
    }
    return out;
  }

  /**
   * Resolves with `performance.now()` of the chunk after which `done(counts(domain))` holds.
   * Rejects when no reply from `domain` arrives for `idleMs` (or `timeoutMs` passes).
   */
  waitFor(domain: string, done: (c: ReplyCounts) => boolean, idleMs: number, timeoutMs = 120_000): Promise<number> {
    if (done(this.counts(domain))) return Promise.resolve(performance.now());
    return new Promise<number>((resolve, reject) => {
      let last = this.counts(domain).total;
      let lastChange = performance.now();
      const started = lastChange;
      const timer = setInterval(() => {
        const c = this.counts(domain);
        const t = performance.now();
        if (c.total !== last) {
          last = c.total;
          lastChange = t;
        }
        if (t - lastChange > idleMs || t - started > timeoutMs) {
          clearInterval(timer);
          this.waiters.delete(w);
          reject(new Error(`replies from ${domain} stopped: ${JSON.stringify(c)} after ${((t - started) / 1000).toFixed(1)} s` +
            `${this.notes.length > 0 ? `; sink notes:\n  ${this.notes.slice(-10).join('\n  ')}` : ''}`));
        }
      }, 100);
      const w: Waiter = {
        domain,
        done,
        resolve: (t) => {
          clearInterval(timer);
          resolve(t);
        },
      };
      this.waiters.add(w);
    });
  }

  /** @internal Called after every received chunk. */
  progress(c: SinkConnection): void {
    if (this.waiters.size === 0) return;
    for (const w of this.waiters) {
      if (w.domain !== c.from) continue;
      if (w.done(this.counts(w.domain))) {
        this.waiters.delete(w);
        w.resolve(performance.now());
      }
    }
  }

  /** @internal */
  note(text: string): void {
    if (this.notes.length < 1000) this.notes.push(text);
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const c of this.connections) c.destroy();
    await closed;
  }
}
