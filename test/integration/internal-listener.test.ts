/**
 * The internal listener (issue 7): only the internal server's domains may connect, only to allowed
 * partner domains; STARTTLS is offered (optional by default, alone and required with
 * internal.requireTls); its streams show as partner/realm `internal` and never count against a
 * partner's ConnectionLimit; the internal server's dialback keys are verified at internal.server.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { FakePartnerServer } from '../helpers/fake-partner-server.js';
import { ScriptedPeer, summarizeFeatures } from '../helpers/scripted-peer.js';
import { startTestGateway, testPki, type TestGateway } from '../helpers/test-gateway.js';

let gw: TestGateway | undefined;
let internal: FakePartnerServer | undefined;

afterEach(async () => {
  await gw?.close();
  await internal?.close();
  gw = internal = undefined;
});

async function setUp(requireTls: boolean): Promise<number> {
  // The internal server confirms its own dialback keys when the gateway asks (its authoritative role).
  internal = await FakePartnerServer.start({ domain: 'corp.test', tls: 'none', sasl: false, dialback: true, answerVerify: () => 'valid' });
  gw = await startTestGateway({
    pki: testPki(),
    localDomains: ['corp.test'],
    partners: '- Identity: part.test\n  ConnectionLimit: 1\n',
    config: ['internal:', `  server: { host: 127.0.0.1, port: ${internal.port} }`, '  listen: { host: 127.0.0.1, port: 0 }', `  requireTls: ${requireTls}`].join('\n'),
  });
  return gw.gateway.internalListener!.port;
}

describe('the internal listener', () => {
  it('refuses peers that are not the internal server and targets that are not partners', async () => {
    const port = await setUp(false);
    const cases: [string, string, string][] = [
      ['stranger.test', 'part.test', 'policy-violation'], // not an internal domain
      ['part.test', 'part.test', 'invalid-from'], // a partner domain is what we speak as here
      ['corp.test', 'nobody.test', 'host-unknown'], // not an allowed partner
    ];
    for (const [from, to, condition] of cases) {
      const peer = await ScriptedPeer.connect(port);
      try {
        peer.sendHeader({ from, to });
        await peer.header();
        expect((await peer.expectStreamError()).condition, `${from} -> ${to}`).toBe(condition);
      } finally {
        peer.destroy();
      }
    }
  });

  it('offers optional STARTTLS and dialback; dialback keys are verified at internal.server; streams are "internal" and uncounted', async () => {
    const port = await setUp(false);
    const streams: ScriptedPeer[] = [];
    try {
      // Two streams from the internal server to the same partner domain: ConnectionLimit 1 does not apply.
      for (let i = 0; i < 2; i++) {
        const peer = await ScriptedPeer.connect(port);
        streams.push(peer);
        const result = await peer.negotiate({ from: 'corp.test', to: 'part.test', dialback: { key: 'k'.repeat(64) } });
        const offered = summarizeFeatures(result.features[0]!);
        expect(offered.starttls).toBe(true);
        expect(offered.starttlsRequired).toBe(false);
        expect(result.dialback?.type).toBe('valid');
      }
      expect(internal!.connections.some((c) => c.dbVerifies.length > 0)).toBe(true);
      const infos = [...gw!.gateway.streams].filter((s) => !s.closed && s.direction === 'inbound').map((s) => s.info());
      expect(infos.filter((i) => i.realm === 'internal' && i.partner === 'internal' && i.auth === 'dialback')).toHaveLength(2);
    } finally {
      for (const p of streams) p.destroy();
    }
  });

  it('with internal.requireTls offers STARTTLS alone, required, and refuses dialback in the clear', async () => {
    const port = await setUp(true);
    const peer = await ScriptedPeer.connect(port);
    try {
      peer.sendHeader({ from: 'corp.test', to: 'part.test' });
      await peer.header();
      const features = summarizeFeatures(await peer.features());
      expect(features.starttls).toBe(true);
      expect(features.starttlsRequired).toBe(true);
      expect(features.dialback).toBe(false);
      peer.dialbackResult('corp.test', 'part.test', 'k'.repeat(64));
      expect((await peer.expectStreamError()).condition).toBe('policy-violation');
    } finally {
      peer.destroy();
    }
  });
});
