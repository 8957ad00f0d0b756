/**
 * Hostile peers against the real gateway over loopback (127.0.0.0/8 only), black box: each case
 * checks the stream error or refusal the gateway answers with, that it does not crash (an
 * exception would fail the run), and that a well-behaved partner on another connection still
 * authenticates and is answered meanwhile.
 *
 * Cases already covered elsewhere are not repeated here:
 *  - restricted XML after the header, unknown entities, NUL, invalid UTF-8, oversized stanza
 *    before authentication, plaintext injected after <starttls/>, stanzas from a domain the
 *    stream did not authenticate (invalid-from), a second STARTTLS: stream-rules.test.ts;
 *  - oversized stanza after authentication (maxStanzaBytes): caps.test.ts;
 *  - silent peer after connect and after the header, stalled TLS handshake: timers.test.ts;
 *  - connections beyond maxUnauthenticatedConnectionsPerAddress: first-gate.test.ts; beyond
 *    connectionLimit: limits.test.ts;
 *  - db:result from a non-partner on a header without `from`: dialback-details.test.ts;
 *  - a peer that never reads (dropped) and an unsolicited <success/>: hardening.test.ts;
 *  - memory per never-reading peer: hostile-memory.test.ts.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { metricValue, sleep } from '../helpers/live-streams.js';
import { attempt } from '../helpers/partner-attempt.js';
import { ScriptedPeer } from '../helpers/scripted-peer.js';
import { startTestGateway, testPki, type TestGateway, type TestPki } from '../helpers/test-gateway.js';

const EXTERNAL_ONLY = 'TlsNegotiation: Required\n  SaslNegotiation: Required\n  SupportDialbackNegotiation: false';

let pki: TestPki;

beforeAll(() => {
  pki = testPki();
});

/** Opens an idle TCP connection from `localAddress` (closes when the gateway ends it). */
async function idle(port: number, localAddress: string): Promise<net.Socket> {
  const s = net.connect({ port, host: '127.0.0.1', localAddress });
  s.on('error', () => {});
  s.resume(); // read (and drop) whatever the gateway says
  await new Promise((r, j) => {
    s.once('connect', r);
    s.once('error', j);
  });
  return s;
}

describe('floods of unauthenticated connections', () => {
  let gw: TestGateway;

  beforeAll(async () => {
    gw = await startTestGateway({
      pki,
      partners: `- Identity: ext.test\n  ${EXTERNAL_ONLY}\n`,
      config: 'connectionLimit: 40\nmaxUnauthenticatedConnectionsPerAddress: 2\nstreamEstablishmentTimeoutSeconds: 30',
    });
  });

  afterAll(async () => {
    await gw?.close();
  });

  it('idle sockets from 50 addresses cannot fill connectionLimit: the oldest are shed and a partner gets in', async () => {
    const sockets: net.Socket[] = [];
    try {
      // 100 idle connections, 2 from each of 127.0.0.10-59: beyond connectionLimit (40) and
      // maxUnauthenticatedConnections (default: half of it, 20).
      for (let i = 0; i < 100; i++) sockets.push(await idle(gw.port, `127.0.0.${10 + (i % 50)}`));
      await sleep(200);
      // A partner connecting now is admitted (shedding the oldest idle socket) and authenticates.
      const { outcome, peer } = await attempt({ port: gw.port, from: 'ext.test', cert: pki.issue({ domain: 'ext.test' }) });
      expect(outcome).toBe('sasl-external');
      peer.destroy();
      expect(gw.gateway.streams.size).toBeLessThanOrEqual(40);
      const shed = await metricValue(gw.adminPort, 'gw_stream_refusals_total', { rule: 'maxUnauthenticatedConnections', condition: 'policy-violation' });
      expect(shed).toBeGreaterThanOrEqual(100 - 20);
      expect(gw.logs.some((l) => l.event === 'stream.refused' && l.rule === 'connectionLimit')).toBe(false);
      // One more from an address already at its own cap is refused (it sheds nobody).
      const mine = [await ScriptedPeer.connect(gw.port), await ScriptedPeer.connect(gw.port)];
      const third = await ScriptedPeer.connect(gw.port);
      third.sendHeader({ from: 'ext.test', to: 'gw.test' });
      await third.header();
      expect((await third.expectStreamError()).text).toMatch(/too many unauthenticated connections from 127\.0\.0\.1 \(limit 2\)/);
      for (const p of mine) p.destroy();
    } finally {
      for (const s of sockets) s.destroy();
    }
  });
});
