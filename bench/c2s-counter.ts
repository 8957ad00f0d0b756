/**
 * A local user online on a real server's c2s port who counts the messages delivered to him
 * (docs/peers.md's throughput workload: "delivered to bob@b.test/r online on c2s, who counts
 * them"). Logs in like test/interop/harness/c2s-client.ts (plaintext, SASL PLAIN, bind, initial
 * presence), then only counts `</message>` end tags in the byte stream (no DOM: at tens of
 * thousands of messages per second, the counter shares a core with the flooder).
 * Server iq pings are answered so the server never waits on us.
 */
import { performance } from 'node:perf_hooks';
import { connectRaw } from './s2s-client.js';
import type { Socket } from 'node:net';

const NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl';
const NS_BIND = 'urn:ietf:params:xml:ns:xmpp-bind';
const END = '</message>';

export interface C2sCounter {
  readonly jid: string;
  /** Messages delivered so far. */
  readonly count: number;
  /** Resolves with performance.now() of the chunk that brought the count to `n`; rejects when none arrives for `idleMs`. */
  waitFor(n: number, idleMs: number): Promise<number>;
  close(): void;
}

export async function connectCounter(host: string, port: number, domain: string, user: string, password: string, timeoutMs = 15_000): Promise<C2sCounter> {
  const socket: Socket = await connectRaw(host, port);
  let buf = '';
  let waiter: { re: RegExp; resolve(m: RegExpExecArray): void; reject(e: Error): void } | null = null;
  let counting = false;
  let count = 0;
  let tail = '';
  let lastAt = performance.now();
  let goal: { n: number; resolve(t: number): void } | null = null;
  const header = `<?xml version='1.0'?><stream:stream to='${domain}' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>`;

  const onData = (chunk: Buffer): void => {
    const text = chunk.toString('latin1'); // only ASCII tags are searched; no UTF-8 decoding needed
    if (counting) {
      const s = tail + text;
      let i = s.indexOf(END);
      while (i >= 0) {
        count++;
        i = s.indexOf(END, i + END.length);
      }
      tail = s.slice(-(END.length - 1));
      if (s.includes("<iq type='get'") || s.includes('<iq type="get"')) answerPings(s);
      lastAt = performance.now();
      if (goal !== null && count >= goal.n) {
        const g = goal;
        goal = null;
        g.resolve(lastAt);
      }
      return;
    }
    buf += text;
    if (waiter) {
      const m = waiter.re.exec(buf);
      if (m) {
        buf = buf.slice(m.index + m[0].length);
        const w = waiter;
        waiter = null;
        w.resolve(m);
      } else if (buf.includes('<failure') || buf.includes('<stream:error')) {
        waiter.reject(new Error(`c2s counter (${user}@${domain}): ${buf.slice(0, 300)}`));
      }
    }
  };
  const answerPings = (s: string): void => {
    for (const m of s.matchAll(/<iq\b[^>]*type=['"]get['"][^>]*>/g)) {
      const id = /\sid=['"]([^'"]*)['"]/.exec(m[0])?.[1] ?? '';
      const from = /\sfrom=['"]([^'"]*)['"]/.exec(m[0])?.[1];
      socket.write(`<iq type='result' id='${id}'${from ? ` to='${from}'` : ''}/>`);
    }
  };
  socket.on('data', onData);
  socket.on('error', () => {});
  const next = (re: RegExp, what: string): Promise<RegExpExecArray> =>
    new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`c2s counter (${user}@${domain}): no ${what} within ${timeoutMs} ms: ${buf.slice(0, 300)}`)), timeoutMs);
      waiter = { re, resolve: (m) => { clearTimeout(t); resolve(m); }, reject: (e) => { clearTimeout(t); reject(e); } };
      onData(Buffer.alloc(0));
    });
  const FEATURES = /<stream:features[\s\S]*?<\/stream:features>/;
  try {
    socket.write(header);
    await next(FEATURES, 'features');
    socket.write(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${Buffer.from(`\0${user}\0${password}`).toString('base64')}</auth>`);
    await next(/<success\b[^>]*(?:\/>|>[\s\S]*?<\/success>)/, 'SASL success');
    socket.write(header);
    const f = await next(FEATURES, 'features after SASL');
    socket.write(`<iq type='set' id='bind_1'><bind xmlns='${NS_BIND}'><resource>r</resource></bind></iq>`);
    const bound = await next(/<iq\b[^>]*id=['"]bind_1['"][\s\S]*?<\/iq>/, 'bind result');
    const jid = /<jid>([^<]+)<\/jid>/.exec(bound[0])?.[1] ?? '';
    // RFC 3921 session establishment only where the server still requires it (a self-closing <session/>).
    if (/xmpp-session['"]\s*\/>/.test(f[0])) {
      socket.write(`<iq type='set' id='sess_1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>`);
      await next(/<iq\b[^>]*id=['"]sess_1['"][^>]*>/, 'session result');
    }
    socket.write(`<iq type='get' id='ready_1'><ping xmlns='urn:xmpp:ping'/></iq><presence/>`);
    await next(/<iq\b[^>]*id=['"]ready_1['"][^>]*>/, 'ping result');
    counting = true;
    buf = '';
    return {
      jid,
      get count() {
        return count;
      },
      waitFor(n, idleMs) {
        if (count >= n) return Promise.resolve(lastAt);
        return new Promise((resolve, reject) => {
          let seen = count;
          let since = performance.now();
          const timer = setInterval(() => {
            if (count !== seen) {
              seen = count;
              since = performance.now();
            } else if (performance.now() - since > idleMs) {
              clearInterval(timer);
              goal = null;
              reject(new Error(`c2s counter (${user}@${domain}): ${count} of ${n} messages, none for ${idleMs} ms`));
            }
          }, 100);
          goal = { n, resolve: (t) => { clearInterval(timer); resolve(t); } };
        });
      },
      close() {
        if (!socket.destroyed) socket.end('</stream:stream>');
        setTimeout(() => socket.destroy(), 1_000).unref();
      },
    };
  } catch (e) {
    socket.destroy();
    throw e;
  }
}
