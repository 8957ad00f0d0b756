/**
 * docs/design.md section 2: the gateway whitespace-pings its own idle outbound streams to partners
 * with EnableKeepAlive at a fraction of keepAliveIntervalSeconds, and not to partners without.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dialbackKey, keysEqual } from '../../src/negotiation/dialback-key.js';
import { FakePartnerServer } from '../helpers/fake-partner-server.js';
import { attempt, PEER_DIALBACK_SECRET } from '../helpers/partner-attempt.js';
import { startTestGateway, testPki, type TestGateway } from '../helpers/test-gateway.js';

let gw: TestGateway;
let fake: FakePartnerServer;

beforeAll(async () => {
  fake = await FakePartnerServer.start({
    domain: 'alive.test',
    extraDomains: ['quiet.test'],
    tls: 'none',
    sasl: false,
    dialback: true,
    answerVerify: (v) => (keysEqual(dialbackKey(PEER_DIALBACK_SECRET, v.from, v.to, v.id), v.key) ? 'valid' : 'invalid'),
  });
  const dialbackOnly = 'TlsNegotiation: NotSupported\n  SaslNegotiation: NotSupported';
  gw = await startTestGateway({
    pki: testPki(),
    partners: `- Identity: alive.test\n  ${dialbackOnly}\n- Identity: quiet.test\n  ${dialbackOnly}\n  EnableKeepAlive: false\n`,
    routes: { 'alive.test': `127.0.0.1:${fake.port}`, 'quiet.test': `127.0.0.1:${fake.port}` },
    config: 'keepAliveIntervalSeconds: 1\nstreamInactivityTimeoutSeconds: 30',
  });
});

afterAll(async () => {
  await gw?.close();
  await fake?.close();
});

/** Opens an outbound stream to `domain` by pinging the gateway from it, returns that connection. */
async function outboundTo(domain: string) {
  const { outcome, peer } = await attempt({ port: gw.port, from: domain, useTls: false });
  expect(outcome).toBe('dialback');
  peer.sendRaw(`<iq type='get' from='u@${domain}/r' to='gw.test' id='ka-${domain}'><ping xmlns='urn:xmpp:ping'/></iq>`);
  await fake.waitForStanza((el) => el.attrs.id === `ka-${domain}`, 8000);
  const connection = fake.connections.find((c) => c.stanzas.some((s) => s.el.attrs.id === `ka-${domain}`))!;
  return { peer, connection };
}

describe('keep-alive on our outbound streams', () => {
  it('EnableKeepAlive: whitespace pings at about a third of keepAliveIntervalSeconds; without: none', async () => {
    const alive = await outboundTo('alive.test');
    const quiet = await outboundTo('quiet.test');
    // Count whitespace-only reads (the parser folds adjacent whitespace into one run).
    const pings = (c: typeof alive.connection) => c.transcript.filter((e) => e.dir === 'in' && e.text.trim() === '').length;
    const aliveStart = pings(alive.connection);
    const quietStart = pings(quiet.connection);
    // Keep the inbound streams alive meanwhile (they are EnableKeepAlive partners of a 1 s interval).
    const timer = setInterval(() => {
      alive.peer.sendWhitespace();
      quiet.peer.sendWhitespace();
    }, 250);
    await new Promise((r) => setTimeout(r, 2100));
    clearInterval(timer);
    expect(pings(alive.connection) - aliveStart).toBeGreaterThanOrEqual(4);
    expect(pings(quiet.connection) - quietStart).toBe(0);
    alive.peer.destroy();
    quiet.peer.destroy();
  });
});
