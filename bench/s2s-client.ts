/**
 * A minimal initiating s2s client for the set-up and memory benchmarks: it authenticates one
 * stream (dialback without TLS, or STARTTLS + SASL EXTERNAL) with as little work on its own side
 * as possible (string matching on what the server sends, no DOM, no transcript), so that
 * thousands of them measure the server, not the client. test/helpers/scripted-peer.ts is the
 * checked, transcript-keeping version the tests use.
 *
 * Dialback (XEP-0220): header, features, `db:result` with the XEP-0185 key for the stream id the
 * server issued; the server verifies it with the originating domain's authoritative server (the
 * bench's ReplySink, which knows `secret`) and answers `type='valid'`.
 * EXTERNAL (XEP-0178): header, features, `<starttls/>`, `<proceed/>`, TLS with the client
 * certificate, header, features, `<auth mechanism='EXTERNAL'>=</auth>`, `<success/>`, header,
 * features.
 */
import net, { type Socket } from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import { dialbackKey } from '../src/negotiation/dialback-key.js';
import { NS_SASL, NS_TLS } from '../src/xml/namespaces.js';

export interface LightClientOptions {
  host: string;
  port: number;
  from: string;
  to: string;
  timeoutMs?: number;
  /** Dialback with this XEP-0185 secret (the originating domain's). */
  dialbackSecret?: string;
  /** STARTTLS + EXTERNAL with this certificate. */
  tls?: { cert: string; key: string; ca: string };
}

export interface LightStream {
  socket: Socket | TLSSocket;
  close(): void;
}

const header = (from: string, to: string): string =>
  `<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' ` +
  `xmlns:db='jabber:server:dialback' from='${from}' to='${to}' version='1.0'>`;

class Reader {
  buf = '';
  private waiter: { re: RegExp; resolve(m: RegExpExecArray): void } | null = null;
  failure: Error | null = null;
  private reject: ((e: Error) => void) | null = null;

  feed(chunk: Buffer): void {
    this.buf += chunk.toString('utf8');
    this.check();
  }

  fail(e: Error): void {
    this.failure ??= e;
    this.reject?.(e);
  }

  /** Resolves with the first match of `re` in what has not been consumed yet, and consumes up to its end. */
  next(re: RegExp, what: string, timeoutMs: number): Promise<RegExpExecArray> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`s2s client: no ${what} within ${timeoutMs} ms; got: ${this.buf.slice(0, 400)}`)), timeoutMs);
      this.waiter = {
        re,
        resolve: (m) => {
          clearTimeout(t);
          resolve(m);
        },
      };
      this.reject = (e) => {
        clearTimeout(t);
        reject(e);
      };
      this.check();
    });
  }

  private check(): void {
    const w = this.waiter;
    if (w === null) return;
    const m = w.re.exec(this.buf);
    if (m === null) {
      if (/<stream:error/.test(this.buf)) this.fail(new Error(`s2s client: stream error: ${this.buf.slice(0, 400)}`));
      return;
    }
    this.buf = this.buf.slice(m.index + m[0].length);
    this.waiter = null;
    this.reject = null;
    w.resolve(m);
  }
}

const FEATURES = /<stream:features[^>]*?(?:\/>|>[\s\S]*?<\/stream:features>)/;
const HEADER_ID = /<stream:stream\b[^>]*?\sid=['"]([^'"]*)['"][^>]*>/;

/** Connects and authenticates; resolves once the stream may carry stanzas. */
export async function connectLight(o: LightClientOptions): Promise<LightStream> {
  const timeoutMs = o.timeoutMs ?? 20_000;
  const raw = await new Promise<Socket>((resolve, reject) => {
    const s = net.connect({ host: o.host, port: o.port });
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
  raw.setNoDelay(true);
  let socket: Socket | TLSSocket = raw;
  let reader = new Reader();
  const onData = (c: Buffer): void => reader.feed(c);
  const onEnd = (): void => reader.fail(new Error('s2s client: connection closed'));
  raw.on('data', onData);
  raw.on('close', onEnd);
  raw.on('error', (e) => reader.fail(e));
  try {
    raw.write(header(o.from, o.to));
    if (o.tls === undefined) {
      const id = (await reader.next(HEADER_ID, 'stream header', timeoutMs))[1]!;
      await reader.next(FEATURES, 'features', timeoutMs);
      raw.write(`<db:result from='${o.from}' to='${o.to}'>${dialbackKey(o.dialbackSecret ?? '', o.to, o.from, id)}</db:result>`);
      const m = await reader.next(/<db:result\b[^>]*\stype=['"](\w+)['"]/, 'dialback answer', timeoutMs);
      if (m[1] !== 'valid') throw new Error(`s2s client: dialback ${m[1]}`);
    } else {
      await reader.next(HEADER_ID, 'stream header', timeoutMs);
      await reader.next(FEATURES, 'features', timeoutMs);
      raw.write(`<starttls xmlns='${NS_TLS}'/>`);
      await reader.next(/<proceed\b[^>]*>/, '<proceed/>', timeoutMs);
      raw.off('data', onData);
      raw.off('close', onEnd);
      reader = new Reader();
      const t = tls.connect({
        socket: raw, servername: o.to, cert: o.tls.cert, key: o.tls.key, ca: o.tls.ca, ALPNProtocols: ['xmpp-server'],
        minVersion: 'TLSv1.2',
      });
      socket = t;
      t.on('data', onData);
      t.on('close', onEnd);
      t.on('error', (e) => reader.fail(e));
      await new Promise<void>((resolve, reject) => {
        t.once('secureConnect', resolve);
        t.once('error', reject);
      });
      t.write(header(o.from, o.to));
      await reader.next(HEADER_ID, 'stream header', timeoutMs);
      await reader.next(FEATURES, 'features', timeoutMs);
      t.write(`<auth xmlns='${NS_SASL}' mechanism='EXTERNAL'>=</auth>`);
      const m = await reader.next(/<(success|failure)\b[^>]*(?:\/>|>[\s\S]*?<\/\1>)/, 'SASL outcome', timeoutMs);
      if (m[1] !== 'success') throw new Error(`s2s client: SASL EXTERNAL failed: ${m[0]}`);
      t.write(header(o.from, o.to));
      await reader.next(HEADER_ID, 'stream header', timeoutMs);
      await reader.next(FEATURES, 'features', timeoutMs);
    }
  } catch (e) {
    socket.destroy();
    throw e;
  }
  // Idle from now on: drop what the server sends (keep-alives) without keeping it.
  socket.off('data', onData);
  socket.on('data', () => {});
  return {
    socket,
    close: () => {
      if (!socket.destroyed) socket.end('</stream:stream>');
      setTimeout(() => socket.destroy(), 1_000).unref();
    },
  };
}

/** A raw TCP connection (the pipe and latency baselines). */
export function connectRaw(host: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port });
    s.once('connect', () => {
      s.off('error', reject);
      s.setNoDelay(true);
      resolve(s);
    });
    s.once('error', reject);
  });
}
