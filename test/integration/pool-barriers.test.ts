/**
 * Delivery barriers in a pool (docs/design.md section 11, "Delivery barriers"): a node confirms
 * the stanzas it relays with XEP-0199 pings (src/routing/delivery-barriers.ts); the peer answers
 * on its own stream back (RFC 6120 section 2.5), which may reach ANOTHER node. That node consumes
 * the answer (never relays it) and passes it to the issuer through etcd (src/cluster/barrier-answers.ts).
 *
 * Real etcd (three members, test/helpers/etcd-cluster.ts) and two real gateway nodes in this
 * process (test/helpers/pool-test-nodes.ts), each relaying between one scripted internal server
 * (corp.test) and one scripted dialback-only partner server (u1.test). Neither scripted server
 * answers pings by itself: the test answers each barrier on a stream it opens to the OTHER node,
 * as a peer whose stream back DNS sent there would.
 *
 * Addresses: etcd on 127.0.0.81-.83 with client/peer ports 52379/52380 (test/interop/README.md,
 * block 8x); everything else on 127.0.0.1, ports chosen by the OS.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EtcdCluster } from '../helpers/etcd-cluster.js';
import type { FakePartnerServer } from '../helpers/fake-partner-server.js';
import { eventually } from '../helpers/live-streams.js';
import { chat, poolTestNodes, PREFIX } from '../helpers/pool-test-nodes.js';
import type { Element } from '../../src/xml/ltx.js';
import { NS_PING } from '../../src/xml/namespaces.js';

const CONFIRM_TIMEOUT_MS = 3_000;
/** A pool barrier id issued by `node` (src/cluster/barrier-ids.ts). */
const idOf = (node: string): RegExp => new RegExp(`^gwb-[0-9a-f]{16}-${node}:[0-9a-f]{8}-[0-9a-z]+$`);

const pool = poolTestNodes({
  clientPort: 52379,
  peerPort: 52380,
  partnerDomains: ['u1.test'],
  acceptResult: () => 'valid',
  // A barrier after every stanza; one nobody answers gives up within the test.
  queues: `confirmEveryStanzas: 1, confirmTimeoutMs: ${CONFIRM_TIMEOUT_MS}`,
  // One after the other: gw1 creates the dialback secret (from which barrier ids derive), gw2 reads it.
  nodes: ['gw1', 'gw2'],
});
const { node, fromInside } = pool;
/** The partner server's stream from u1.test to node `name` (dialback: the node calls the partner server back). */
const fromPartner = (name: string) => pool.fromPartner(name, 'u1.test');
let etcd: EtcdCluster;
let internal: FakePartnerServer;
let partner: FakePartnerServer;

const result = (from: string, to: string, id: string): string => `<iq type='result' from='${from}' to='${to}' id='${id}'/>`;
const isPing = (el: Element): boolean => el.name === 'iq' && el.attrs.type === 'get' && el.getChild('ping', NS_PING) !== undefined;
/** Every stanza a scripted server received with this id. */
const withId = (server: FakePartnerServer, id: string): Element[] => server.stanzas.filter((el) => el.attrs.id === id);
const pingsSeen = new Set<string>();
/** The next barrier `server` receives (one it had not been asked for before). */
async function nextPing(server: FakePartnerServer): Promise<string> {
  const el = await server.waitForStanza((e) => isPing(e) && !pingsSeen.has(e.attrs.id!), 10_000);
  pingsSeen.add(el.attrs.id!);
  return el.attrs.id!;
}

beforeAll(async () => { ({ etcd, internal, partner } = await pool.setUp()); }, 90_000);
afterAll(() => pool.tearDown(), 60_000);

describe('delivery barriers answered through another node of the pool', () => {
  it('gw1\'s barrier to a partner, answered on the partner\'s stream to gw2, confirms gw1\'s stanzas; gw2 does not relay it', async () => {
    const inside = await fromInside('gw1', 'u1.test');
    inside.send(chat('keys@corp.test/r', 'bob@u1.test/r', 'out-1'));
    await partner.waitForStanza((el) => el.attrs.id === 'out-1', 10_000);
    const id = await nextPing(partner);
    expect(id).toMatch(idOf('gw1'));
    expect(node('gw1').gateway.barriers.pending).toBe(1);

    const partnerToGw2 = await fromPartner('gw2');
    partnerToGw2.send(result('u1.test', 'corp.test', id));
    expect(await eventually(() => node('gw1').gateway.barriers.pending === 0, 2_000, 20)).toBe(true);
    // It went through etcd, under gw2's name, and nowhere else.
    expect(JSON.parse((await etcd.client().get(`${PREFIX}barrier-answers/gw1/gw2`).string()) ?? '[]')).toContain(id);
    expect(withId(internal, id)).toEqual([]);
  });

  it('gw1\'s barrier to the internal server, answered on the internal server\'s stream to gw2, confirms gw1\'s stanzas', async () => {
    // keys@corp.test wrote to bob first (the previous test): bob may write back (PublicUnverified gate).
    const partnerToGw1 = await fromPartner('gw1');
    partnerToGw1.send(chat('bob@u1.test/r', 'keys@corp.test/r', 'in-1'));
    await internal.waitForStanza((el) => el.attrs.id === 'in-1', 10_000);
    const id = await nextPing(internal);
    expect(id).toMatch(idOf('gw1'));
    expect(node('gw1').gateway.barriers.pending).toBe(1);

    const insideToGw2 = await fromInside('gw2', 'u1.test');
    insideToGw2.send(result('corp.test', 'u1.test', id));
    expect(await eventually(() => node('gw1').gateway.barriers.pending === 0, 2_000, 20)).toBe(true);
    expect(withId(partner, id)).toEqual([]);
  });

  it('made-up answers confirm nothing: the barrier times out, counted; a wrong pool tag is relayed as any iq', async () => {
    const inside = await fromInside('gw1', 'u1.test');
    inside.send(chat('keys@corp.test/r', 'bob@u1.test/r', 'out-2'));
    const id = await nextPing(partner);
    const [, tag, incarnation, seq] = /^(gwb-[0-9a-f]{16}-)gw1:([0-9a-f]{8})-([0-9a-z]+)$/.exec(id)!;
    const guesses = [
      `${tag}gw1:${incarnation}-${(parseInt(seq!, 36) + 1).toString(36)}`, // the next sequence number
      `${tag}gw1:${incarnation === '00000000' ? '11111111' : '00000000'}-${seq}`, // another incarnation
      `${tag}gw3:${incarnation}-${seq}`, // another node
    ];
    const wrongTag = `gwb-0123456789abcdef-gw1:${incarnation}-${seq}`;
    const partnerToGw2 = await fromPartner('gw2');
    for (const guess of [...guesses, wrongTag]) partnerToGw2.send(result('u1.test', 'corp.test', guess));

    // Not the pool's: relayed to the internal server like any iq result, with gw2's own barrier
    // after it, which the internal server answers on its stream to gw1 (the other way round).
    await internal.waitForStanza((el) => el.attrs.id === wrongTag, 10_000);
    const gw2Barrier = await nextPing(internal);
    expect(gw2Barrier).toMatch(idOf('gw2'));
    (await fromInside('gw1', 'u1.test')).send(result('corp.test', 'u1.test', gw2Barrier));
    expect(await eventually(() => node('gw2').gateway.barriers.pending === 0, 2_000, 20)).toBe(true);
    // The guesses that look like gw1's were consumed by gw2 and passed on to gw1, which ignored them.
    expect(await eventually(async () => {
      const passed = JSON.parse((await etcd.client().get(`${PREFIX}barrier-answers/gw1/gw2`).string()) ?? '[]') as string[];
      return guesses.slice(0, 2).every((g) => passed.includes(g));
    }, 2_000, 20)).toBe(true);
    for (const guess of guesses) expect(withId(internal, guess)).toEqual([]);
    const unconfirmed = await node('gw1').waitForLog((l) => l.event === 'relay.unconfirmed', CONFIRM_TIMEOUT_MS + 5_000);
    expect(unconfirmed).toMatchObject({ realm: 'partners', remote: 'u1.test', stanzas: 1 });
    expect(node('gw1').gateway.barriers.pending).toBe(0);
  }, 20_000);

  it('in all, only the made-up test\'s stanza went unconfirmed, on either node', () => {
    const count = (name: string, realm: string) => node(name).gateway.metrics.unconfirmed.get([realm]);
    expect([count('gw1', 'partners'), count('gw1', 'internal'), count('gw2', 'partners'), count('gw2', 'internal')]).toEqual([1, 0, 0, 0]);
    expect(node('gw1').logs.filter((l) => l.event === 'relay.unconfirmed')).toHaveLength(1);
    expect(node('gw2').logs.filter((l) => l.event === 'cluster.barrier-answers-failed')).toEqual([]);
  });
});
