/**
 * Proves the interop harness itself, with real servers and no gateway: Prosody serves a.test,
 * ejabberd serves b.test, both in mode `any` (TLS optional, SASL EXTERNAL and dialback), resolving
 * each other through the harness DNS server. A user on each side pings the other server's domain
 * (XEP-0199) over real s2s, and a message crosses from Prosody to ejabberd.
 *
 * Addresses (block 2x of the scheme in test/interop/README.md): Prosody 127.0.0.21,
 * ejabberd 127.0.0.22, each with s2s 25269, c2s 25222 (ejabberd distribution 25270).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestDns, type TestDns } from '../helpers/test-dns.js';
import { Element } from '../../src/xml/ltx.js';
import { NS_PING } from '../../src/xml/namespaces.js';
import {
  connectClient, createPeerCerts, peerZone, startEjabberd, startProsody, withPeerLogs,
  type C2sClient, type PeerCerts, type PeerServer,
} from './harness/index.js';

const A = { domain: 'a.test', ip: '127.0.0.21', s2sPort: 25269, c2sPort: 25222 };
const B = { domain: 'b.test', ip: '127.0.0.22', s2sPort: 25269, c2sPort: 25222 };

let certs: PeerCerts | undefined;
let dns: TestDns | undefined;
let prosody: PeerServer | undefined;
let ejabberd: PeerServer | undefined;
let alice: C2sClient | undefined;
let bob: C2sClient | undefined;

/** Settles every promise, then rethrows the first failure (so nothing started is left unassigned). */
async function allOrFirstError(promises: Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

beforeAll(async () => {
  certs = await createPeerCerts([A.domain, B.domain]);
  dns = await startTestDns(peerZone([A, B]));
  const common = { mode: 'any' as const, dns: { ip: '127.0.0.1', port: dns.port }, certs };
  await allOrFirstError([
    startProsody({ ...A, ...common }).then((s) => (prosody = s)),
    startEjabberd({ ...B, ...common }).then((s) => (ejabberd = s)),
  ]);
  await allOrFirstError([prosody!.register('alice', 'alice-pw'), ejabberd!.register('bob', 'bob-pw')]);
  await allOrFirstError([
    connectClient(prosody!, 'alice', 'alice-pw').then((c) => (alice = c)),
    connectClient(ejabberd!, 'bob', 'bob-pw').then((c) => (bob = c)),
  ]);
}, 90_000);

afterAll(async () => {
  await Promise.allSettled([alice?.close(), bob?.close()]);
  await Promise.allSettled([prosody?.stop(), ejabberd?.stop()]);
  await dns?.close();
  await certs?.cleanup();
}, 30_000);

const ping = (to: string): Element => new Element('iq', { type: 'get', to }).c('ping', { xmlns: NS_PING }).up();

describe('interop harness smoke: Prosody (a.test) <-> ejabberd (b.test), mode any', () => {
  it('bound full JIDs on both servers', () => {
    expect(alice!.jid).toMatch(/^alice@a\.test\/.+/);
    expect(bob!.jid).toMatch(/^bob@b\.test\/.+/);
  });

  it('alice@a.test (Prosody) pings b.test (ejabberd) over s2s and gets a result', async () => {
    const res = await withPeerLogs([prosody, ejabberd], () => alice!.iq(ping(B.domain), 20_000));
    expect(res.attrs['type'], res.toString()).toBe('result');
    expect(res.attrs['from']).toBe(B.domain);
  });

  it('bob@b.test (ejabberd) pings a.test (Prosody) over s2s and gets a result', async () => {
    const res = await withPeerLogs([prosody, ejabberd], () => bob!.iq(ping(A.domain), 20_000));
    expect(res.attrs['type'], res.toString()).toBe('result');
    expect(res.attrs['from']).toBe(A.domain);
  });

  it('a message from alice@a.test reaches bob@b.test', async () => {
    alice!.send(`<message type='chat' to='${bob!.jid}' id='smoke1'><body>hello from a.test &lt;&amp;&gt; é</body></message>`);
    const msg = await withPeerLogs([prosody, ejabberd], () => bob!.nextMessage(20_000));
    expect(msg.attrs['from']).toBe(alice!.jid);
    expect(msg.getChildText('body')).toBe('hello from a.test <&> é');
  });

  it('the peers resolved each other through the harness DNS only', () => {
    expect(dns!.queries).toContain(`_xmpp-server._tcp.${B.domain}`);
    expect(dns!.queries).toContain(`_xmpp-server._tcp.${A.domain}`);
  });
});
