/**
 * A minimal XMPP client for test users on the real peers (RFC 6120 client streams): plaintext TCP
 * to the server's c2s port, SASL PLAIN (RFC 4616), stream restart, resource binding, session
 * establishment when the server still requires it (RFC 3921 §3; servers today mark it optional),
 * initial presence. Then: `iq()` with a fresh id resolving with the result or error iq, `send()`,
 * `nextMessage()`, `waitFor()`, `close()`.
 *
 * The peers' configs allow PLAIN without TLS on c2s (Prosody `allow_unencrypted_plain_auth`,
 * ejabberd `starttls: false`); everything is on loopback.
 *
 * Incoming iq requests (get/set) that no `waitFor()` claims are answered so the server never waits
 * on us: an XEP-0199 ping with a result, anything else with `service-unavailable` (RFC 6120 §8.4).
 */
import { connect, type Socket } from 'node:net';
import { Element, escapeXML } from '../../../src/xml/ltx.js';
import { NS_PING, NS_SASL, NS_STANZAS, NS_STREAMS } from '../../../src/xml/namespaces.js';
import { ClientStreamReader, parseElement } from './client-stream.js';
import type { PeerServer } from './common.js';

export const NS_CLIENT = 'jabber:client';
export const NS_BIND = 'urn:ietf:params:xml:ns:xmpp-bind';
export const NS_SESSION = 'urn:ietf:params:xml:ns:xmpp-session';

export interface C2sClientOptions {
  /** The server's address (its loopback IP). */
  host: string;
  /** The server's c2s port. */
  port: number;
  /** The server's domain (stream `to`, JID domain). */
  domain: string;
  username: string;
  password: string;
  /** Resource to bind (default 'harness'). */
  resource?: string;
  /** Send initial presence after binding (default true), so messages to the bare JID are delivered. */
  presence?: boolean;
  /** Deadline of each negotiation step in ms (default 10 000). */
  timeoutMs?: number;
}

export interface C2sClient {
  /** The bound full JID. */
  readonly jid: string;
  readonly domain: string;
  /**
   * Sends an iq with a fresh `id` (any id in `stanza` is replaced) and resolves with the response
   * iq, `type='result'` or `type='error'`; rejects on timeout or when the stream ends.
   * @param timeoutMs default 10 000
   */
  iq(stanza: Element | string, timeoutMs?: number): Promise<Element>;
  /** Writes raw XML (or an element) to the stream as is. */
  send(raw: string | Element): void;
  /** The next `<message/>` received (queued ones first). @param timeoutMs default 10 000 */
  nextMessage(timeoutMs?: number): Promise<Element>;
  /** The next received stanza matching `predicate` (queued ones first). @param timeoutMs default 10 000 */
  waitFor(predicate: (el: Element) => boolean, timeoutMs?: number, what?: string): Promise<Element>;
  /** Closes the stream (`</stream:stream>`, then the socket). Idempotent. */
  close(): Promise<void>;
}

/** Connects `user@server.domain` to a harness peer (its IP and c2s port). */
export function connectClient(server: Pick<PeerServer, 'ip' | 'c2sPort' | 'domain'>, username: string, password: string, opts: Partial<C2sClientOptions> = {}): Promise<C2sClient> {
  return connectC2s({ host: server.ip, port: server.c2sPort, domain: server.domain, username, password, ...opts });
}

interface Waiter {
  predicate: (el: Element) => boolean;
  resolve: (el: Element) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

let idCounter = 0;

/** Connects, authenticates and binds; resolves once the session is ready for stanzas. */
export async function connectC2s(o: C2sClientOptions): Promise<C2sClient> {
  const stepMs = o.timeoutMs ?? 10_000;
  const who = `${o.username}@${o.domain}`;
  const socket: Socket = await new Promise((resolve, reject) => {
    const s = connect({ host: o.host, port: o.port });
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error(`c2s client (${who}): connect to ${o.host}:${o.port} timed out`));
    }, stepMs);
    s.once('connect', () => {
      clearTimeout(t);
      s.setNoDelay(true);
      resolve(s);
    });
    s.once('error', (err) => {
      clearTimeout(t);
      reject(new Error(`c2s client (${who}): connect to ${o.host}:${o.port} failed: ${err.message}`, { cause: err }));
    });
  });

  const queue: Element[] = [];
  const waiters: Waiter[] = [];
  let failure: Error | null = null;
  let streamOpen: ((root: Element) => void) | null = null;
  let ended: () => void = () => undefined;
  const endedP = new Promise<void>((r) => (ended = r));

  const fail = (err: Error): void => {
    if (failure !== null) return;
    failure = err;
    for (const w of waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(err);
    }
  };

  const write = (data: string): void => {
    if (!socket.destroyed) socket.write(data);
  };

  const autoRespond = (el: Element): boolean => {
    const type = el.attrs['type'];
    if (el.name !== 'iq' || (type !== 'get' && type !== 'set')) return false;
    const isPing = type === 'get' && el.getChild('ping', NS_PING) !== undefined;
    const to = el.attrs['from'];
    const head = `<iq type='${isPing ? 'result' : 'error'}' id='${escapeXML(el.attrs['id'] ?? '')}'${to ? ` to='${escapeXML(to)}'` : ''}`;
    write(isPing ? `${head}/>` : `${head}><error type='cancel'><service-unavailable xmlns='${NS_STANZAS}'/></error></iq>`);
    return true;
  };

  const reader = new ClientStreamReader({
    streamStart(root) {
      streamOpen?.(root);
      streamOpen = null;
    },
    element(el) {
      if (el.is('error', NS_STREAMS)) {
        const cond = el.children.find((c): c is Element => typeof c !== 'string' && c.name !== 'text');
        fail(new Error(`c2s client (${who}): stream error <${cond?.name ?? '?'}/> ${el.getChildText('text') ?? ''}: ${el.toString()}`));
        return;
      }
      const i = waiters.findIndex((w) => w.predicate(el));
      if (i !== -1) {
        const [w] = waiters.splice(i, 1);
        clearTimeout(w!.timer);
        w!.resolve(el);
        return;
      }
      if (autoRespond(el)) return;
      queue.push(el);
    },
    streamEnd() {
      fail(new Error(`c2s client (${who}): the server closed the stream`));
      ended();
    },
  });

  socket.on('data', (chunk: Buffer) => {
    try {
      reader.write(chunk);
    } catch (err) {
      fail(new Error(`c2s client (${who}): unreadable XML from the server: ${(err as Error).message}`));
      socket.destroy();
    }
  });
  socket.on('error', (err) => fail(new Error(`c2s client (${who}): socket error: ${err.message}`, { cause: err })));
  socket.on('close', () => {
    fail(new Error(`c2s client (${who}): connection closed`));
    ended();
  });

  const waitFor = (predicate: (el: Element) => boolean, timeoutMs = stepMs, what = 'a stanza'): Promise<Element> => {
    const i = queue.findIndex(predicate);
    if (i !== -1) return Promise.resolve(queue.splice(i, 1)[0]!);
    if (failure !== null) return Promise.reject(failure);
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        predicate,
        resolve,
        reject,
        timer: setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          reject(new Error(`c2s client (${who}): no ${what} within ${timeoutMs} ms` +
            (queue.length > 0 ? `; unclaimed: ${queue.map((e) => e.toString().slice(0, 300)).join(' ')}` : '')));
        }, timeoutMs),
      };
      waiters.push(w);
    });
  };

  const openStream = async (): Promise<Element> => {
    const header = new Promise<Element>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`c2s client (${who}): no stream header within ${stepMs} ms`)), stepMs);
      streamOpen = (root) => {
        clearTimeout(t);
        resolve(root);
      };
    });
    write(
      `<?xml version='1.0'?><stream:stream to='${escapeXML(o.domain)}' xmlns='${NS_CLIENT}' ` +
        `xmlns:stream='${NS_STREAMS}' version='1.0' xml:lang='en'>`,
    );
    await Promise.race([header, endedP.then(() => Promise.reject(failure ?? new Error('closed')))]);
    return waitFor((el) => el.is('features', NS_STREAMS), stepMs, '<stream:features/>');
  };

  try {
    // RFC 6120 §6: SASL PLAIN (RFC 4616: authzid NUL authcid NUL passwd).
    const features = await openStream();
    const mechs = features.getChild('mechanisms', NS_SASL)?.getChildren('mechanism').map((m) => m.getText()) ?? [];
    if (!mechs.includes('PLAIN')) throw new Error(`c2s client (${who}): server offers no SASL PLAIN (${mechs.join(', ')}): ${features.toString()}`);
    const token = Buffer.from(`\0${o.username}\0${o.password}`, 'utf8').toString('base64');
    write(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${token}</auth>`);
    const outcome = await waitFor((el) => (el.is('success', NS_SASL) || el.is('failure', NS_SASL)), stepMs, 'SASL outcome');
    if (outcome.name === 'failure') throw new Error(`c2s client (${who}): SASL PLAIN failed: ${outcome.toString()}`);

    // RFC 6120 §6.4.6: restart the stream on the same connection.
    reader.reset();
    const features2 = await openStream();
    if (!features2.getChild('bind', NS_BIND)) throw new Error(`c2s client (${who}): no resource binding offered: ${features2.toString()}`);
    write(`<iq type='set' id='bind_1'><bind xmlns='${NS_BIND}'><resource>${escapeXML(o.resource ?? 'harness')}</resource></bind></iq>`);
    const bound = await waitFor((el) => el.name === 'iq' && el.attrs['id'] === 'bind_1', stepMs, 'bind result');
    const jid = bound.getChild('bind', NS_BIND)?.getChildText('jid');
    if (bound.attrs['type'] !== 'result' || !jid) throw new Error(`c2s client (${who}): bind failed: ${bound.toString()}`);

    const session = features2.getChild('session', NS_SESSION);
    if (session && !session.getChild('optional')) {
      write(`<iq type='set' id='sess_1'><session xmlns='${NS_SESSION}'/></iq>`);
      const r = await waitFor((el) => el.name === 'iq' && el.attrs['id'] === 'sess_1', stepMs, 'session result');
      if (r.attrs['type'] !== 'result') throw new Error(`c2s client (${who}): session failed: ${r.toString()}`);
    }
    if (o.presence !== false) write('<presence/>');

    let closing: Promise<void> | null = null;
    return {
      jid,
      domain: o.domain,
      async iq(stanza, timeoutMs = stepMs) {
        const el = parseElement(typeof stanza === 'string' ? stanza : stanza.toString());
        if (el.name !== 'iq') throw new Error(`c2s client (${who}): iq() needs an <iq/>, got <${el.name}>`);
        const id = `h${++idCounter}`;
        el.attrs['id'] = id;
        const response = waitFor(
          (r) => r.name === 'iq' && r.attrs['id'] === id && (r.attrs['type'] === 'result' || r.attrs['type'] === 'error'),
          timeoutMs,
          `response to iq ${id} (${el.toString().slice(0, 200)})`,
        );
        write(el.toString());
        return response;
      },
      send(raw) {
        write(typeof raw === 'string' ? raw : raw.toString());
      },
      nextMessage: (timeoutMs = stepMs) => waitFor((el) => el.name === 'message', timeoutMs, '<message/>'),
      waitFor,
      close() {
        closing ??= (async () => {
          if (!socket.destroyed) {
            write('</stream:stream>');
            socket.end();
            await Promise.race([endedP, new Promise((r) => setTimeout(r, 2_000).unref())]);
          }
          socket.destroy();
        })();
        return closing;
      },
    };
  } catch (err) {
    socket.destroy();
    throw err;
  }
}
