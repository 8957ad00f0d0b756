/**
 * Real Prosody and ejabberd federating IN to the gateway (issue 3): for the docs/peers.md modes
 * external, tls-dialback and dialback, a user on each server pings the gateway's domain and gets
 * a result (the gateway answers over its own outbound stream to that server, negotiated per the
 * same partner record). A partner whose record the server cannot meet, and a non-partner, fail.
 *
 * Addresses (block 4x of test/interop/README.md): Prosody a.test on 127.0.0.41, ejabberd b.test
 * on 127.0.0.42; the gateway (gw.test) on 127.0.0.1, port chosen by the OS; one dns2 server that
 * all three resolve through.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Element } from '../../src/xml/ltx.js';
import { NS_PING } from '../../src/xml/namespaces.js';
import { startTestDns, type TestDns } from '../helpers/test-dns.js';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway.js';
import {
  connectClient, createPeerCerts, peerPki, peerZone, startEjabberd, startProsody, withPeerLogs,
  type C2sClient, type PeerCerts, type PeerMode, type PeerServer,
} from './harness/index.js';

const GW = 'gw.test';
const A = { domain: 'a.test', ip: '127.0.0.41', s2sPort: 25269, c2sPort: 25222 };
const B = { domain: 'b.test', ip: '127.0.0.42', s2sPort: 25269, c2sPort: 25222 };

/** The partner record that matches each docs/peers.md mode. */
const RECORD: Record<Exclude<PeerMode, 'any'>, string> = {
  external: 'TlsNegotiation: Required\n  SaslNegotiation: Required\n  SupportDialbackNegotiation: false',
  'tls-dialback': 'TlsNegotiation: Required\n  SaslNegotiation: NotSupported\n  SupportDialbackNegotiation: true',
  dialback: 'TlsNegotiation: NotSupported\n  SaslNegotiation: NotSupported\n  SupportDialbackNegotiation: true',
};
const EXPECTED_AUTH: Record<Exclude<PeerMode, 'any'>, { method: string; tls: boolean }> = {
  external: { method: 'sasl-external', tls: true },
  'tls-dialback': { method: 'dialback', tls: true },
  dialback: { method: 'dialback', tls: false },
};

let certs: PeerCerts;
let dns: TestDns;
let gw: TestGateway;

beforeAll(async () => {
  certs = await createPeerCerts([A.domain, B.domain]);
  dns = await startTestDns(peerZone([A, B]));
  // The gateway's certificate comes from the same test CA as the peers' (DNS-ID only: ejabberd 23.01).
  gw = await startTestGateway({ pki: peerPki(certs), localDomains: [GW], dnsServer: dns.address, partners: '' });
  dns.setZone(peerZone([A, B], { srv: { [`_xmpp-server._tcp.${GW}`]: [{ target: '127.0.0.1.', port: gw.port }] }, a: { [GW]: ['127.0.0.1'] } }));
}, 60_000);

afterAll(async () => {
  await gw?.close();
  await dns?.close();
  await certs?.cleanup();
}, 30_000);

async function setPartners(yaml: string): Promise<void> {
  const before = gw.logs.length;
  await gw.writePartners(yaml);
  await gw.waitForLog((l) => l.event === 'partners.reloaded' && gw.logs.indexOf(l) >= before, 5000);
}

const ping = (): Element => new Element('iq', { type: 'get', to: GW }).c('ping', { xmlns: NS_PING }).up();

/** 'result', 'error:<condition>' or 'timeout' for a ping from `client` to the gateway's domain. */
async function pingOutcome(client: C2sClient, timeoutMs: number): Promise<string> {
  try {
    const reply = await client.iq(ping(), timeoutMs);
    if (reply.attrs.type === 'result') {
      expect(reply.attrs.from).toBe(GW);
      return 'result';
    }
    const condition = reply.getChild('error')?.getChildElements()[0]?.name ?? '?';
    return `error:${condition}`;
  } catch (err) {
    if (/timed? ?out/i.test((err as Error).message)) return 'timeout';
    throw err;
  }
}

/** Log lines written after `mark` (an index into gw.logs). */
const after = (l: { event: string }, mark: number) => gw.logs.indexOf(l as never) >= mark;

async function startPeer(kind: 'prosody' | 'ejabberd', mode: PeerMode): Promise<{ server: PeerServer; client: C2sClient; mark: number }> {
  const mark = gw.logs.length;
  const common = { mode, dns: { ip: '127.0.0.1', port: dns.port }, certs };
  const server = kind === 'prosody' ? await startProsody({ ...A, ...common }) : await startEjabberd({ ...B, ...common });
  await server.register('user', 'user-pw');
  const client = await connectClient(server, 'user', 'user-pw');
  return { server, client, mark };
}

for (const mode of ['external', 'tls-dialback', 'dialback'] as const) {
  describe(`mode ${mode}: a user on each real server pings ${GW}`, () => {
    let prosody: Awaited<ReturnType<typeof startPeer>> | undefined;
    let ejabberd: Awaited<ReturnType<typeof startPeer>> | undefined;

    beforeAll(async () => {
      await setPartners(`- Identity: ${A.domain}\n  ${RECORD[mode]}\n- Identity: ${B.domain}\n  ${RECORD[mode]}\n`);
      const [p, e] = await Promise.allSettled([startPeer('prosody', mode), startPeer('ejabberd', mode)]);
      if (p.status === 'fulfilled') prosody = p.value;
      if (e.status === 'fulfilled') ejabberd = e.value;
      if (p.status === 'rejected') throw p.reason;
      if (e.status === 'rejected') throw e.reason;
    }, 90_000);

    afterAll(async () => {
      await Promise.allSettled([prosody?.client.close(), ejabberd?.client.close()]);
      await Promise.allSettled([prosody?.server.stop(), ejabberd?.server.stop()]);
    }, 30_000);

    for (const kind of ['prosody', 'ejabberd'] as const) {
      it(`${kind} (${kind === 'prosody' ? A.domain : B.domain}) gets a ping result, authenticated by ${EXPECTED_AUTH[mode].method}`, async () => {
        const peer = kind === 'prosody' ? prosody! : ejabberd!;
        const domain = kind === 'prosody' ? A.domain : B.domain;
        const outcome = await withPeerLogs([peer.server], () => pingOutcome(peer.client, 20_000));
        expect(outcome).toBe('result');
        const auth = await gw.waitForLog((l) => after(l, peer.mark) && l.event === 'stream.authenticated' && l.direction === 'inbound' && l.partner === domain);
        expect(auth.method).toBe(EXPECTED_AUTH[mode].method);
        if (EXPECTED_AUTH[mode].tls) expect(String(auth.tls)).toMatch(/^TLSv1\.[23]$/);
        else expect(auth.tls).toBeNull();
        const outbound = await gw.waitForLog((l) => after(l, peer.mark) && l.event === 'stream.authenticated' && l.direction === 'outbound' && l.partner === domain);
        expect(outbound.method).toBe(EXPECTED_AUTH[mode].method);
      }, 60_000);
    }
  });
}

describe('servers that must not get in', () => {
  let prosody: Awaited<ReturnType<typeof startPeer>> | undefined;
  let ejabberd: Awaited<ReturnType<typeof startPeer>> | undefined;

  afterAll(async () => {
    await Promise.allSettled([prosody?.client.close(), ejabberd?.client.close()]);
    await Promise.allSettled([prosody?.server.stop(), ejabberd?.server.stop()]);
  }, 30_000);

  it('Prosody without TLS against a record that requires TLS: no result, refusal names TlsNegotiation', async () => {
    await setPartners(`- Identity: ${A.domain}\n  ${RECORD['tls-dialback']}\n- Identity: ${B.domain}\n  ${RECORD.external}\n`);
    prosody = await startPeer('prosody', 'dialback');
    const outcome = await withPeerLogs([prosody.server], () => pingOutcome(prosody!.client, 15_000));
    expect(outcome).not.toBe('result');
    const refusal = await gw.waitForLog((l) => after(l, prosody!.mark) && l.event === 'stream.refused' && l.partner === A.domain);
    expect(refusal.rule).toBe('TlsNegotiation');
  }, 60_000);

  it('ejabberd requiring STARTTLS against a record that does not support TLS: no result', async () => {
    await setPartners(`- Identity: ${A.domain}\n  ${RECORD.dialback}\n- Identity: ${B.domain}\n  ${RECORD.dialback}\n`);
    ejabberd = await startPeer('ejabberd', 'external');
    const outcome = await withPeerLogs([ejabberd.server], () => pingOutcome(ejabberd!.client, 15_000));
    expect(outcome).not.toBe('result');
    expect(gw.logs.some((l) => after(l, ejabberd!.mark) && l.event === 'stream.authenticated' && l.direction === 'inbound' && l.partner === B.domain)).toBe(false);
  }, 60_000);

  it('a server that is not on the allowed-partner list is refused at the stream header', async () => {
    const mark = gw.logs.length;
    await setPartners(`- Identity: ${B.domain}\n  ${RECORD.dialback}\n`);
    const outcome = await withPeerLogs([prosody!.server], () => pingOutcome(prosody!.client, 15_000));
    expect(outcome).not.toBe('result');
    const refusal = await gw.waitForLog((l) => after(l, mark) && l.event === 'stream.refused' && l.rule === 'AllowedPartner' && String(l.text).startsWith(`${A.domain} is not an allowed partner`));
    expect(refusal.condition).toBe('policy-violation');
  }, 60_000);
});
