/**
 * Proves the harness's mode table (docs/peers.md) against the real servers, with no gateway: for each
 * mode, a Prosody (p.test) and an ejabberd (e.test) federate in both directions, and ejabberd's
 * log shows the authentication method the mode is meant to produce:
 *
 *   external      STARTTLS + SASL EXTERNAL only
 *   tls-dialback  TLS, certificates not trusted (unrelated CA), so EXTERNAL fails and dialback is used
 *   dialback      no TLS at all, dialback
 *   any           TLS optional, both methods: EXTERNAL wins with the shared test CA
 *
 * Addresses (block 3x of the scheme in test/interop/README.md): Prosody 127.0.0.31, ejabberd
 * 127.0.0.32, s2s 25269, c2s 25222. The modes run one after the other on the same addresses.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestDns, type TestDns } from '../helpers/test-dns.js';
import { Element } from '../../src/xml/ltx.js';
import { NS_PING } from '../../src/xml/namespaces.js';
import {
  connectClient, createPeerCerts, ejabberdS2sAuthentications, peerZone, startEjabberd, startProsody, withPeerLogs,
  type C2sClient, type PeerCerts, type PeerMode, type PeerServer,
} from './harness/index.js';

const P = { domain: 'p.test', ip: '127.0.0.31', s2sPort: 25269, c2sPort: 25222 };
const E = { domain: 'e.test', ip: '127.0.0.32', s2sPort: 25269, c2sPort: 25222 };

let certs: PeerCerts | undefined;
let dns: TestDns | undefined;

beforeAll(async () => {
  certs = await createPeerCerts([P.domain, E.domain]);
  dns = await startTestDns(peerZone([P, E]));
});

afterAll(async () => {
  await dns?.close();
  await certs?.cleanup();
});

async function allOrFirstError(promises: Promise<unknown>[]): Promise<void> {
  const failed = (await Promise.allSettled(promises)).find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

const ping = (to: string): Element => new Element('iq', { type: 'get', to }).c('ping', { xmlns: NS_PING }).up();

const expected: Record<PeerMode, { mechanism: string; tls: boolean }> = {
  external: { mechanism: 'EXTERNAL', tls: true },
  'tls-dialback': { mechanism: 'dialback', tls: true },
  dialback: { mechanism: 'dialback', tls: false },
  any: { mechanism: 'EXTERNAL', tls: true },
};

describe.each(['external', 'tls-dialback', 'dialback', 'any'] as const)('mode %s', (mode) => {
  let prosody: PeerServer | undefined;
  let ejabberd: PeerServer | undefined;
  let pUser: C2sClient | undefined;
  let eUser: C2sClient | undefined;

  beforeAll(async () => {
    const common = { mode, dns: { ip: '127.0.0.1', port: dns!.port }, certs: certs! };
    await allOrFirstError([
      startProsody({ ...P, ...common }).then((s) => (prosody = s)),
      startEjabberd({ ...E, ...common }).then((s) => (ejabberd = s)),
    ]);
    await allOrFirstError([prosody!.register('u', 'pw'), ejabberd!.register('u', 'pw')]);
    await allOrFirstError([
      connectClient(prosody!, 'u', 'pw').then((c) => (pUser = c)),
      connectClient(ejabberd!, 'u', 'pw').then((c) => (eUser = c)),
    ]);
  }, 90_000);

  afterAll(async () => {
    await Promise.allSettled([pUser?.close(), eUser?.close()]);
    await Promise.allSettled([prosody?.stop(), ejabberd?.stop()]);
  }, 30_000);

  it('Prosody -> ejabberd and ejabberd -> Prosody pings get results', async () => {
    await withPeerLogs([prosody, ejabberd], async () => {
      const r1 = await pUser!.iq(ping(E.domain), 20_000);
      expect(r1.attrs['type'], r1.toString()).toBe('result');
      const r2 = await eUser!.iq(ping(P.domain), 20_000);
      expect(r2.attrs['type'], r2.toString()).toBe('result');
    });
  });

  it(`both directions authenticated with ${expected[mode].mechanism}${expected[mode].tls ? ' over TLS' : ' without TLS'}`, async () => {
    // ejabberd's file logger writes with delayed_write (flushed about every 2 s): poll.
    const auths = () => ejabberdS2sAuthentications(ejabberd!);
    const want = expected[mode];
    await expect.poll(auths, { timeout: 10_000 }).toContainEqual({ direction: 'inbound', from: P.domain, to: E.domain, ...want });
    await expect.poll(auths, { timeout: 10_000 }).toContainEqual({ direction: 'outbound', from: E.domain, to: P.domain, ...want });
  });
});
