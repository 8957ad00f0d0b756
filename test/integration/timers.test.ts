/**
 * Stream timers (docs/design.md section 2) against the real gateway with second-sized settings:
 *  - streamEstablishmentTimeoutSeconds: header to authenticated, else `connection-timeout`; a
 *    TCP connection that never sends a header is closed too;
 *  - EnableKeepAlive partners must show traffic (a whitespace ping counts) within
 *    keepAliveIntervalSeconds, else `connection-timeout`;
 *  - partners without keep-alive are closed after streamInactivityTimeoutSeconds of silence.
 * The supervisor checks deadlines a few times a second, so bounds leave room for one sweep.
 * Tests run concurrently (each has its own connections) to keep the wall time short.
 */
import { afterAll, beforeAll, describe, it } from 'vitest';
import { NS_TLS } from '../../src/xml/namespaces.js';
import { attempt } from '../helpers/partner-attempt.js';
import { statusOf, streamErrorOf, sleep } from '../helpers/live-streams.js';
import { ScriptedPeer } from '../helpers/scripted-peer.js';
import { startTestGateway, testPki, type TestGateway, type TestPki } from '../helpers/test-gateway.js';

const EXTERNAL_ONLY = 'TlsNegotiation: Required\n  SaslNegotiation: Required\n  SupportDialbackNegotiation: false';

let pki: TestPki;
let gw: TestGateway;
const peers: ScriptedPeer[] = [];

beforeAll(async () => {
  pki = testPki();
  gw = await startTestGateway({
    pki,
    config: ['streamEstablishmentTimeoutSeconds: 1', 'keepAliveIntervalSeconds: 1', 'streamInactivityTimeoutSeconds: 2'].join('\n'),
    partners: `- Identity: ka.test
  EnableKeepAlive: true
  ${EXTERNAL_ONLY}
- Identity: idle.test
  EnableKeepAlive: false
  ${EXTERNAL_ONLY}
`,
  });
});

afterAll(async () => {
  for (const p of peers.splice(0)) p.destroy();
  await gw?.close();
});

async function connect(): Promise<ScriptedPeer> {
  const p = await ScriptedPeer.connect(gw.port);
  peers.push(p);
  return p;
}

/** An inbound stream authenticated by SASL EXTERNAL; returns the peer and when it was done. */
async function established(domain: string): Promise<{ peer: ScriptedPeer; at: number }> {
  const c = pki.issue({ domain });
  const { outcome, peer } = await attempt({ port: gw.port, from: domain, cert: { certPem: c.certPem, keyPem: c.keyPem } });
  peers.push(peer);
  if (outcome !== 'sasl-external') throw new Error(`${domain} did not authenticate: ${outcome}`);
  return { peer, at: Date.now() };
}

describe.concurrent('streamEstablishmentTimeoutSeconds: 1', () => {
  it('a peer that sends a header and then nothing is closed connection-timeout after about 1 s', async ({ expect }) => {
    const peer = await connect();
    const t0 = Date.now();
    peer.sendHeader({ from: 'ka.test', to: 'gw.test' });
    await peer.header();
    await peer.features();
    const err = await peer.expectStreamError(4500);
    const after = Date.now() - t0;
    expect(err.condition).toBe('connection-timeout');
    expect(err.text).toMatch(/streamEstablishmentTimeoutSeconds/);
    expect(after).toBeGreaterThanOrEqual(900);
    expect(after).toBeLessThan(3000); // generous: CI runs real XMPP servers alongside
    expect((await peer.closed()).streamEnd).toBe(true);
  });

  it('whitespace does not extend the establishment deadline', async ({ expect }) => {
    const peer = await connect();
    const t0 = Date.now();
    peer.sendHeader({ from: 'ka.test', to: 'gw.test' });
    await peer.header();
    await peer.features();
    const timer = setInterval(() => {
      if (!peer.closedAlready) peer.sendRaw(' ');
    }, 200);
    try {
      const err = await peer.expectStreamError(4500);
      expect(err.condition).toBe('connection-timeout');
      expect(Date.now() - t0).toBeLessThan(3000);
    } finally {
      clearInterval(timer);
    }
  });

  it('a peer that stalls in the TLS handshake after <proceed/> is closed, without plaintext after <proceed/>', async ({ expect }) => {
    const peer = await connect();
    const t0 = Date.now();
    peer.sendHeader({ from: 'ka.test', to: 'gw.test' });
    await peer.header();
    await peer.features();
    peer.sendRaw(`<starttls xmlns='${NS_TLS}'/>`);
    await peer.expect('proceed', NS_TLS);
    const afterProceed = peer.transcript.length;
    // No ClientHello follows: the connection sits in the TLS handshake until the deadline.
    await peer.closed(3000);
    const after = Date.now() - t0;
    expect(after).toBeGreaterThanOrEqual(900);
    expect(after).toBeLessThan(3000); // generous: CI runs real XMPP servers alongside
    // RFC 6120 section 5.4.3.3: after <proceed/> only TLS may follow on this connection.
    const plaintext = peer.transcript.slice(afterProceed).filter((e) => e.dir === 'in').map((e) => e.text).join('');
    expect(plaintext, 'plaintext sent after <proceed/>').toBe('');
  });

  it('a silent TCP connection that never sends a header is closed', async ({ expect }) => {
    const peer = await connect();
    const t0 = Date.now();
    await sleep(800);
    expect(peer.closedAlready, 'closed before the establishment timeout').toBe(false);
    await peer.closed(3000);
    const after = Date.now() - t0;
    expect(after).toBeGreaterThanOrEqual(900);
    expect(after).toBeLessThan(3000); // generous: CI runs real XMPP servers alongside
    // Whatever the gateway said before closing, if anything, was a connection-timeout.
    const err = streamErrorOf(peer);
    if (err) expect(err.condition).toBe('connection-timeout');
  });
});

describe.concurrent('keep-alive and inactivity', () => {
  it('EnableKeepAlive: a silent authenticated stream is closed connection-timeout after keepAliveIntervalSeconds', async ({ expect }) => {
    const { peer, at } = await established('ka.test');
    const err = await peer.expectStreamError(4500);
    const after = Date.now() - at;
    expect(err.condition).toBe('connection-timeout');
    expect(err.text).toMatch(/keepAliveIntervalSeconds/);
    expect(after).toBeGreaterThanOrEqual(900);
    expect(after).toBeLessThan(3000); // generous: CI runs real XMPP servers alongside
    expect((await peer.closed()).streamEnd).toBe(true);
  });

  it('EnableKeepAlive: a stream that sends a whitespace ping every 300 ms stays open for 3 s', async ({ expect }) => {
    const { peer } = await established('ka.test');
    const timer = setInterval(() => {
      if (!peer.closedAlready) peer.sendWhitespace();
    }, 300);
    try {
      await peer.expectNothing(3000);
      expect(peer.closedAlready).toBe(false);
      expect(streamErrorOf(peer)).toBeUndefined();
      expect(await statusOf(gw.adminPort, peer)).toMatchObject({ partner: 'ka.test', auth: 'sasl-external' });
    } finally {
      clearInterval(timer);
    }
  });

  it('EnableKeepAlive false: silence is allowed past keepAliveIntervalSeconds, closed after streamInactivityTimeoutSeconds', async ({ expect }) => {
    const { peer, at } = await established('idle.test');
    await sleep(1500 - (Date.now() - at));
    expect(peer.closedAlready, 'closed before streamInactivityTimeoutSeconds').toBe(false);
    expect(streamErrorOf(peer)).toBeUndefined();
    expect(await statusOf(gw.adminPort, peer)).toMatchObject({ partner: 'idle.test' });
    const err = await peer.expectStreamError(4500);
    const after = Date.now() - at;
    expect(err.condition).toBe('connection-timeout');
    expect(err.text).toMatch(/streamInactivityTimeoutSeconds/);
    expect(after).toBeGreaterThanOrEqual(1900);
    expect(after).toBeLessThan(4000);
  });
});
