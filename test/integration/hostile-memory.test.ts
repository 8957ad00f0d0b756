/**
 * Peers that never read (issue "hardened against hostile peers"): after a partner's header, a
 * connection pipelines requests whose answers it never reads. The gateway runs in a process of
 * its own; its memory is measured after full garbage collections, before and while 32 such
 * connections (from four loopback addresses) sit on it:
 *  - 16 unauthenticated ones send the reported attack, db:verify with a 4,000-character id;
 *  - 16 authenticated by dialback pipeline db:verify with ids of a legal length, and the
 *    already-valid db:result of their own pair (both answered at once, neither ever read).
 * Each may cost the gateway at most 256 KiB of retained memory (heap plus buffers), whatever it
 * sends; before the fix every one of them queued megabytes of answers. Then rapid connect/close
 * churn must leave the retained memory back near its baseline.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FakePartnerServer } from '../helpers/fake-partner-server.js';
import { startGatewayProcess, type GatewayProcess, type MemorySample } from '../helpers/gateway-process.js';
import { sleep } from '../helpers/live-streams.js';
import { churn } from '../helpers/hostile-clients.js';
import { attempt, dialbackAuthority } from '../helpers/partner-attempt.js';
import { testPki } from '../helpers/test-gateway.js';

const HOSTILE = 32;
const BUDGET_PER_CONNECTION = 6 * 1024 * 1024;
const MAX_RETAINED_PER_CONNECTION = 256 * 1024;
const HEADER = `<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='db.test' to='gw.test' version='1.0'>`;

let authority: FakePartnerServer;
let gw: GatewayProcess;

beforeAll(async () => {
  authority = await dialbackAuthority('db.test');
  gw = await startGatewayProcess({
    pki: testPki(),
    partners: '- Identity: db.test\n  TlsNegotiation: NotSupported\n  SaslNegotiation: NotSupported\n',
    routes: { 'db.test': `127.0.0.1:${authority.port}` },
    config: 'partnerConnectionLimit: 64',
  });
});

afterAll(async () => {
  await gw?.close();
  await authority?.close();
});

/** Writes `batch` until `budget` bytes went out or the gateway closed the connection. */
function flood(socket: net.Socket, batch: Buffer, budget: number): Promise<void> {
  return new Promise((resolve) => {
    let sent = 0;
    const pump = (): void => {
      while (!socket.destroyed && sent < budget) {
        sent += batch.length;
        if (!socket.write(batch)) return void socket.once('drain', pump);
      }
      resolve();
    };
    socket.once('close', () => resolve());
    pump();
  });
}

function repeatTo(unit: string, bytes: number): Buffer {
  return Buffer.from(unit.repeat(Math.ceil(bytes / unit.length)));
}

/** Samples until the gateway has stopped reading (bytes in unchanged between two samples). */
async function settled(): Promise<MemorySample> {
  let last = await gw.memory();
  for (let i = 0; i < 60; i++) {
    await sleep(250);
    const now = await gw.memory();
    if (now.bytesIn === last.bytesIn && now.streams === last.streams) return now;
    last = now;
  }
  return last;
}

describe('peers that never read', () => {
  it(`${HOSTILE} connections pipelining requests they never read cost < 256 KiB each; a partner still gets in`, async () => {
    // Warm up (first connection, dialback verification, code paths), then the baseline.
    const warm = await attempt({ port: gw.port, from: 'db.test', useTls: false });
    expect(warm.outcome).toBe('dialback');
    await warm.peer.close();
    await sleep(200);
    const base = await gw.memory();

    const sockets: net.Socket[] = [];
    const floods: Promise<void>[] = [];
    // Unauthenticated: the reported attack.
    const longId = repeatTo(`<db:verify from='db.test' to='gw.test' id='${'x'.repeat(4000)}'>k</db:verify>`, 64 * 1024);
    for (let i = 0; i < HOSTILE / 2; i++) {
      const s = net.connect({ port: gw.port, host: '127.0.0.1', localAddress: `127.0.0.${2 + (i % 4)}` });
      s.on('error', () => {});
      s.pause(); // never read
      sockets.push(s);
      await new Promise((r) => s.once('connect', r));
      s.write(HEADER);
      floods.push(flood(s, longId, BUDGET_PER_CONNECTION));
    }
    // Authenticated by dialback, then the answers nobody reads.
    const legalId = `<db:verify from='db.test' to='gw.test' id='${'y'.repeat(128)}'>k</db:verify><db:result from='db.test' to='gw.test'>k</db:result>`;
    for (let i = 0; i < HOSTILE / 2; i++) {
      const { outcome, peer } = await attempt({ port: gw.port, from: 'db.test', useTls: false });
      expect(outcome).toBe('dialback');
      peer.tcp.on('error', () => {});
      peer.tcp.pause();
      sockets.push(peer.tcp);
      floods.push(flood(peer.tcp, repeatTo(legalId, 64 * 1024), BUDGET_PER_CONNECTION));
    }
    await Promise.race([Promise.all(floods), sleep(15_000)]);
    const loaded = await settled();

    // A well-behaved partner is served meanwhile.
    const good = await attempt({ port: gw.port, from: 'db.test', useTls: false });
    expect(good.outcome).toBe('dialback');
    await good.peer.close();

    const retained = (m: MemorySample): number => m.heapUsed + m.external;
    const perConnection = (retained(loaded) - retained(base)) / HOSTILE;
    const rssPerConnection = (loaded.rss - base.rss) / HOSTILE;
    console.log(`hostile-memory: retained ${(perConnection / 1024).toFixed(0)} KiB, RSS ${(rssPerConnection / 1024).toFixed(0)} KiB per connection; ${loaded.streams} streams open`);
    expect(perConnection).toBeLessThan(MAX_RETAINED_PER_CONNECTION);
    for (const s of sockets) s.destroy();
  }, 60_000);

  it('2,000 rapid connect/close cycles leave no stream behind and memory back near the baseline', async () => {
    await sleep(300);
    const base = await settled();
    const header = HEADER.replace(/ version='1.0'>$/, '>');
    await churn(gw.port, {
      rounds: 20,
      perRound: 100,
      address: (i) => `127.0.0.${10 + (i % 10)}`,
      payloads: ['', header.slice(0, 60), `${header}<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`, `${header}<db:verify from='db.test' to='gw.test' id='c1'>k</db:verify>`],
    });
    let after = await gw.memory();
    for (let i = 0; i < 40 && after.streams > base.streams; i++) {
      await sleep(100);
      after = await gw.memory();
    }
    expect(after.streams).toBeLessThanOrEqual(base.streams);
    const retained = (m: MemorySample): number => m.heapUsed + m.external;
    const growth = retained(after) - retained(base);
    console.log(`hostile-memory: after 2,000 connect/close cycles retained memory grew by ${(growth / 1024).toFixed(0)} KiB`);
    expect(growth).toBeLessThan(2 * 1024 * 1024); // less than a kilobyte per connection ever made
  }, 60_000);
});
