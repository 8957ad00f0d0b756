/**
 * Backpressure on the relay (issue 7): when the internal server stops reading, the gateway stops
 * reading from the partner stream that feeds it (its memory does not grow with the flood), and
 * everything arrives, in order, once the internal server reads again; a receiver that stays
 * stuck past queues.drainTimeoutMs is closed, so its sources read again.
 *
 * The internal server and the partner's authoritative server are scripted (FakePartnerServer):
 * the point is the gateway's own buffering, which real servers would hide behind their own.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { MAX_RESENDS } from '../../src/routing/outbound-pool.js';
import { FakePartnerServer } from '../helpers/fake-partner-server.js';
import { attempt, dialbackAuthority } from '../helpers/partner-attempt.js';
import type { ScriptedPeer } from '../helpers/scripted-peer.js';
import { startTestGateway, testPki, type TestGateway } from '../helpers/test-gateway.js';

const STANZA_BYTES = 1024;

let gw: TestGateway | undefined;
let internal: FakePartnerServer | undefined;
let authority: FakePartnerServer | undefined;
let peer: ScriptedPeer | undefined;

afterEach(async () => {
  peer?.destroy();
  await gw?.close();
  await internal?.close();
  await authority?.close();
  gw = internal = authority = peer = undefined;
});

async function setUp(queues: string): Promise<void> {
  // The internal server: hosts corp.test, accepts the gateway's dialback as valid (it is ours).
  internal = await FakePartnerServer.start({ domain: 'corp.test', tls: 'none', sasl: false, dialback: true, strictStanzas: false });
  // part.test's authoritative server: confirms the partner's dialback key.
  authority = await dialbackAuthority('part.test');
  gw = await startTestGateway({
    pki: testPki(),
    localDomains: ['corp.test'],
    partners: '- Identity: part.test\n  TlsNegotiation: NotSupported\n  SaslNegotiation: NotSupported\n  PartnerType: Federated\n',
    routes: { 'part.test': `127.0.0.1:${authority.port}` },
    config: [
      'internal:',
      `  server: { host: 127.0.0.1, port: ${internal.port} }`,
      '  listen: { host: 127.0.0.1, port: 0 }',
      `queues: { ${queues} }`,
    ].join('\n'),
  });
  const a = await attempt({ port: gw.port, from: 'part.test', to: 'corp.test', useTls: false });
  expect(a.outcome).toBe('dialback');
  peer = a.peer;
}

const message = (i: number): string => {
  const head = `<message from='u@part.test/r' to='bob@corp.test' type='chat' id='m${i}'><body>`;
  return `${head}${'x'.repeat(STANZA_BYTES - head.length - 17)}</body></message>`;
};

/** Writes `count` messages as fast as the socket takes them; `progress.written` counts them. */
async function flood(p: ScriptedPeer, from: number, count: number, progress = { written: 0 }): Promise<void> {
  for (let i = from; i < from + count; i++) {
    if (!p.socket.write(message(i))) await new Promise((r) => p.socket.once('drain', r));
    progress.written++;
  }
}

describe('delivery confirmation', () => {
  it(`a stanza whose stream keeps dying unconfirmed is sent again, then bounced after ${MAX_RESENDS} resends`, async () => {
    // No barrier answers come back from the fake internal server within the test: every stream
    // that dies leaves the stanza unconfirmed, so it goes out again on the next one.
    await setUp('confirmTimeoutMs: 600000, reconnectMinMs: 10, reconnectMaxMs: 20');
    peer!.sendRaw("<message from='u@part.test/r' to='bob@corp.test' type='chat' id='poison'><body>x</body></message>");
    for (let death = 0; death <= MAX_RESENDS; death++) {
      await internal!.waitForStanza((el) => el.attrs.id === 'poison' && internal!.connections.filter((c) => c.stanzas.some((s) => s.el.attrs.id === 'poison')).length > death, 10_000);
      const carrier = internal!.connections.filter((c) => c.stanzas.some((s) => s.el.attrs.id === 'poison'))[death]!;
      carrier.socket.destroy(); // the internal server drops the stream without confirming
    }
    // After the last resend the sender gets the stanza back, on the gateway's stream to part.test.
    const bounce = await authority!.waitForStanza((el) => el.attrs.id === 'poison' && el.attrs.type === 'error', 10_000);
    expect(bounce.getChild('error')?.getChildElements()[0]?.name).toBe('remote-server-timeout');
    expect(internal!.connections.filter((c) => c.stanzas.some((s) => s.el.attrs.id === 'poison'))).toHaveLength(MAX_RESENDS + 1);
  }, 60_000);
});

describe('relay backpressure', () => {
  it('a stalled internal server pauses the partner stream; memory stays bounded; all arrive in order after', async () => {
    // Barriers out of the way: this is about socket backpressure alone.
    await setUp('maxUnconfirmed: 1000000, confirmTimeoutMs: 600000, drainTimeoutMs: 600000');
    peer!.sendRaw(message(0));
    const connection = await internal!.waitForStanza((el) => el.attrs.id === 'm0', 5000).then(() => internal!.connections.find((c) => c.stanzas.some((s) => s.el.attrs.id === 'm0'))!);
    connection.socket.pause(); // the internal server stops reading

    const total = 24 * 1024; // 24 MiB of stanzas
    const before = process.memoryUsage();
    const progress = { written: 0 };
    const flooding = flood(peer!, 1, total - 1, progress);
    // The gateway stops reading: the partner cannot write more than the sockets' buffers hold.
    let last = -1;
    while (progress.written !== last) {
      last = progress.written;
      await new Promise((r) => setTimeout(r, 1000));
    }
    expect(progress.written).toBeLessThan(total / 2);
    global.gc?.();
    const during = process.memoryUsage();
    const grown = during.heapUsed + during.arrayBuffers - (before.heapUsed + before.arrayBuffers);
    expect(grown).toBeLessThan(16 * 1024 * 1024); // without backpressure: the whole 24 MiB, twice over

    connection.socket.resume();
    await flooding;
    await internal!.waitForStanza((el) => el.attrs.id === `m${total - 1}`, 60_000);
    const ids = internal!.stanzas.filter((el) => el.name === 'message').map((el) => el.attrs.id);
    expect(ids.length).toBe(total);
    expect(ids.every((id, i) => id === `m${i}`)).toBe(true);
  }, 120_000);

  it('a receiver stuck past queues.drainTimeoutMs is closed and its sources read again', async () => {
    await setUp('maxUnconfirmed: 1000000, confirmTimeoutMs: 600000, drainTimeoutMs: 500, maxBytes: 67108864');
    peer!.sendRaw(message(0));
    await internal!.waitForStanza((el) => el.attrs.id === 'm0', 5000);
    const stuck = internal!.connections.find((c) => c.stanzas.some((s) => s.el.attrs.id === 'm0'))!;
    stuck.socket.pause();
    void flood(peer!, 1, 16 * 1024).catch(() => {}); // more than the kernel's socket buffers hold
    const refusal = await gw!.waitForLog((l) => l.event === 'stream.refused' && l.rule === 'drainTimeoutMs', 15_000);
    expect(refusal.condition).toBe('resource-constraint');
    // What the stuck stream had not confirmed goes out again on a fresh stream: the last one arrives.
    await internal!.waitForStanza((el) => el.attrs.id === `m${16 * 1024}`, 30_000);
  }, 60_000);
});
