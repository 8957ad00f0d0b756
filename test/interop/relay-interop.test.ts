/**
 * The gateway relays (issue 7): real partner servers outside, a real internal server inside, users
 * logged in over c2s on both sides. For each internal server (Prosody, then ejabberd):
 *  - messages both ways arrive, in order, complete;
 *  - a presence subscription between a local user and a PublicVerified partner's user completes
 *    both ways and presence flows;
 *  - the PublicUnverified gate blocks a partner's user, then lets them in once the local user
 *    wrote first;
 *  - a local user's message to a non-partner domain comes back as an error within seconds
 *    (the gateway's DNS view answers NXDOMAIN);
 *  - a partner removed during traffic stops while another continues.
 *
 * Addresses (block 5x of test/interop/README.md): partner Prosody a.test on 127.0.0.51, partner
 * ejabberd b.test on 127.0.0.52, the internal server corp.test on 127.0.0.53; the gateway on
 * 127.0.0.1 (ports chosen by the OS) with its internal listener and DNS view on 127.0.0.50.
 * The partners resolve through a harness DNS server; the internal server resolves through the
 * gateway's own DNS view.
 */
import { Resolver } from 'node:dns/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Element } from '../../src/xml/ltx.js';
import { startTestDns, type TestDns } from '../helpers/test-dns.js';
import type { TestGateway } from '../helpers/test-gateway.js';
import {
  connectClient, createPeerCerts, peerZone, startEjabberd, startProsody, startRelayGateway, withPeerLogs,
  type C2sClient, type PeerCerts, type PeerServer,
} from './harness/index.js';

const CORP = { domain: 'corp.test', ip: '127.0.0.53', s2sPort: 25269, c2sPort: 25222 };
const A = { domain: 'a.test', ip: '127.0.0.51', s2sPort: 25269, c2sPort: 25222 };
const B = { domain: 'b.test', ip: '127.0.0.52', s2sPort: 25269, c2sPort: 25222 };
const INTERNAL_IP = '127.0.0.50';

/** a.test: a PublicVerified partner; b.test: PublicUnverified (the trust-tier gate applies). */
const RECORD_A = `- Identity: ${A.domain}\n  TlsNegotiation: Required\n  SaslNegotiation: Optional\n  PartnerType: PublicVerified\n`;
const RECORD_B = `- Identity: ${B.domain}\n  TlsNegotiation: Required\n  SaslNegotiation: Optional\n  PartnerType: PublicUnverified\n`;
const PARTNERS = RECORD_A + RECORD_B;

let certs: PeerCerts;
let dns: TestDns;
let gw: TestGateway;
let partnerA: PeerServer;
let partnerB: PeerServer;
let alice: C2sClient;
let dave: C2sClient;

beforeAll(async () => {
  certs = await createPeerCerts([A.domain, B.domain, CORP.domain]);
  dns = await startTestDns(peerZone([A, B]));
  gw = await startRelayGateway({ certs, dns, internal: CORP, partners: [A, B], partnerRecords: PARTNERS, internalIp: INTERNAL_IP, queues: 'reconnectMinMs: 200, reconnectMaxMs: 2000' });
  const common = { mode: 'any' as const, dns: { ip: '127.0.0.1', port: dns.port }, certs };
  // mod_smacks: Prosody then acknowledges s2s stanzas (XEP-0198) on streams authenticated by SASL.
  [partnerA, partnerB] = await Promise.all([startProsody({ ...A, ...common, extraModules: ['smacks'] }), startEjabberd({ ...B, ...common })]);
  await Promise.all([partnerA.register('alice', 'pw'), partnerB.register('dave', 'pw')]);
  [alice, dave] = await Promise.all([connectClient(partnerA, 'alice', 'pw'), connectClient(partnerB, 'dave', 'pw')]);
}, 120_000);

afterAll(async () => {
  await Promise.allSettled([alice?.close(), dave?.close()]);
  await Promise.allSettled([partnerA?.stop(), partnerB?.stop()]);
  await gw?.close();
  await dns?.close();
  await certs?.cleanup();
}, 60_000);

const message = (to: string, body: string, id = body): Element =>
  new Element('message', { to, type: 'chat', id }).c('body').t(body).up();

const bodyOf = (el: Element): string => el.getChildText('body') ?? '';

/** Sends `count` numbered messages from `from` to `to`'s bare JID; resolves with the bodies received, in order. */
async function exchange(from: C2sClient, to: C2sClient, count: number, tag: string): Promise<string[]> {
  const bare = to.jid.split('/')[0]!;
  const sent: string[] = [];
  for (let i = 0; i < count; i++) {
    const body = `${tag}-${i}-${'x'.repeat(20)}`;
    sent.push(body);
    from.send(message(bare, body));
  }
  const received: string[] = [];
  while (received.length < count) {
    const el = await to.waitFor((e) => e.name === 'message' && bodyOf(e).startsWith(`${tag}-`), 20_000, `${tag} message ${received.length}`);
    received.push(bodyOf(el));
  }
  return received;
}

for (const kind of ['prosody', 'ejabberd'] as const) {
  describe(`relay through the gateway with a real internal ${kind}`, () => {
    let internal: PeerServer;
    let bob: C2sClient;
    let erin: C2sClient;

    beforeAll(async () => {
      const viewPort = gw.gateway.dnsView!.port;
      const opts = { ...CORP, mode: 'any' as const, dns: { ip: INTERNAL_IP, port: viewPort }, certs };
      internal = kind === 'prosody' ? await startProsody(opts) : await startEjabberd(opts);
      // Users named per run: partner rosters and the gateway's approvals outlive the internal server.
      await Promise.all([internal.register(`bob-${kind}`, 'pw'), internal.register(`erin-${kind}`, 'pw')]);
      [bob, erin] = await Promise.all([connectClient(internal, `bob-${kind}`, 'pw'), connectClient(internal, `erin-${kind}`, 'pw')]);
    }, 90_000);

    afterAll(async () => {
      await Promise.allSettled([bob?.close(), erin?.close()]);
      await internal?.stop();
    }, 30_000);

    it('messages both ways arrive, in order, complete', async () => {
      await withPeerLogs([internal, partnerA], async () => {
        const inbound = await exchange(alice, bob, 50, `in-${kind}`);
        expect(inbound).toEqual(Array.from({ length: 50 }, (_, i) => `in-${kind}-${i}-${'x'.repeat(20)}`));
        const outbound = await exchange(bob, alice, 50, `out-${kind}`);
        expect(outbound).toEqual(Array.from({ length: 50 }, (_, i) => `out-${kind}-${i}-${'x'.repeat(20)}`));
      });
      const live = () => [...gw.gateway.streams].filter((s) => !s.closed).map((s) => s.info());
      expect(live().some((s) => s.realm === 'internal' && s.auth === 'dialback')).toBe(true);
      // a.test (Prosody with mod_smacks) authenticated by SASL EXTERNAL both ways: XEP-0198 acks on
      // both streams (<enabled/> may trail the first stanzas a little).
      const acks = (direction: string) => live().filter((s) => s.partner === A.domain && s.auth === 'sasl-external' && s.direction === direction).map((s) => s.acks);
      for (let i = 0; i < 50 && !(acks('outbound').includes(true) && acks('inbound').includes(true)); i++) await new Promise((r) => setTimeout(r, 100));
      expect(acks('outbound')).toContain(true);
      expect(acks('inbound')).toContain(true);
    }, 90_000);

    it('a presence subscription with a PublicVerified partner completes both ways and presence flows', async () => {
      await withPeerLogs([internal, partnerA], async () => {
        const aliceBare = alice.jid.split('/')[0]!;
        const bobBare = bob.jid.split('/')[0]!;
        bob.send(`<presence to='${aliceBare}' type='subscribe'/>`);
        await alice.waitFor((e) => e.name === 'presence' && e.attrs.type === 'subscribe' && e.attrs.from?.startsWith(bobBare) === true, 20_000, 'subscribe at alice');
        alice.send(`<presence to='${bobBare}' type='subscribed'/>`);
        alice.send(`<presence to='${bobBare}' type='subscribe'/>`);
        await bob.waitFor((e) => e.name === 'presence' && e.attrs.type === 'subscribe' && e.attrs.from?.startsWith(aliceBare) === true, 20_000, 'subscribe at bob');
        bob.send(`<presence to='${aliceBare}' type='subscribed'/>`);
        // Mutual subscription: fresh available presence now flows both ways.
        alice.send(`<presence><status>alice-${kind}</status></presence>`);
        await bob.waitFor((e) => e.name === 'presence' && e.attrs.type === undefined && e.getChildText('status') === `alice-${kind}`, 20_000, 'alice presence at bob');
        bob.send(`<presence><status>bob-${kind}</status></presence>`);
        await alice.waitFor((e) => e.name === 'presence' && e.attrs.type === undefined && e.getChildText('status') === `bob-${kind}`, 20_000, 'bob presence at alice');
      });
    }, 90_000);

    it('the PublicUnverified gate blocks a partner user until the local user writes first', async () => {
      await withPeerLogs([internal, partnerB], async () => {
        const erinBare = erin.jid.split('/')[0]!;
        const daveBare = dave.jid.split('/')[0]!;
        dave.send(message(erinBare, `uninvited-${kind}`, `uninvited-${kind}`));
        const error = await dave.waitFor((e) => e.name === 'message' && e.attrs.type === 'error' && e.attrs.id === `uninvited-${kind}`, 20_000, 'gate bounce');
        expect(error.getChild('error')?.getChildElements()[0]?.name).toBe('service-unavailable');
        const refusal = await gw.waitForLog((l) => l.event === 'stanza.refused' && l.rule === 'PartnerType' && l.partner === B.domain);
        expect(refusal.condition).toBe('service-unavailable');
        erin.send(message(daveBare, `hello-${kind}`));
        await dave.waitFor((e) => e.name === 'message' && bodyOf(e) === `hello-${kind}`, 20_000, 'erin writes first');
        dave.send(message(erinBare, `welcome-${kind}`));
        await erin.waitFor((e) => e.name === 'message' && bodyOf(e) === `welcome-${kind}`, 20_000, 'dave answers');
      });
    }, 90_000);

    it('a partner removed during traffic stops in both directions while another continues', async () => {
      const viewResolver = new Resolver();
      viewResolver.setServers([`${INTERNAL_IP}:${gw.gateway.dnsView!.port}`]);
      expect((await viewResolver.resolveSrv(`_xmpp-server._tcp.${A.domain}`))[0]?.port).toBe(gw.gateway.internalListener!.port);
      const bobBare = bob.jid.split('/')[0]!;
      const erinBare = erin.jid.split('/')[0]!;
      const mark = gw.logs.length;
      await withPeerLogs([internal, partnerA, partnerB], async () => {
        // Traffic from both partners, then a.test disappears from the list mid-flow.
        for (let i = 0; i < 100; i++) {
          alice.send(message(bobBare, `flow-a-${kind}-${i}`));
          dave.send(message(erinBare, `flow-b-${kind}-${i}`));
          if (i === 50) await gw.writePartners(RECORD_B);
          await new Promise((r) => setTimeout(r, 5));
        }
        await gw.waitForLog((l) => gw.logs.indexOf(l) >= mark && l.event === 'partners.reloaded', 5000);
        // Every a.test stream is closed policy-violation, on the partner side and the internal side.
        const closed = await gw.waitForLog((l) => gw.logs.indexOf(l) >= mark && l.event === 'stream.refused' && l.rule === 'AllowedPartner' && l.condition === 'policy-violation');
        expect(closed.text).toMatch(/a\.test/);
        const live = [...gw.gateway.streams].filter((st) => !st.closed).map((st) => st.info());
        expect(live.filter((i) => i.partner === A.domain || (i.realm === "internal" && (i.localDomain === A.domain || i.remoteDomain === A.domain))).map((i) => JSON.stringify(i))).toEqual([]);
        // The DNS view stops answering for it at once.
        await expect(viewResolver.resolveSrv(`_xmpp-server._tcp.${A.domain}`)).rejects.toMatchObject({ code: 'ENOTFOUND' });
        // b.test's traffic continues: everything dave sent arrives, and more after the removal.
        const seen = new Set<string>();
        while (seen.size < 100) {
          const el = await erin.waitFor((e) => e.name === 'message' && bodyOf(e).startsWith(`flow-b-${kind}-`), 20_000, `flow-b ${seen.size}`);
          seen.add(bodyOf(el));
        }
        expect((await exchange(dave, erin, 10, `after-${kind}`)).length).toBe(10);
        // a.test's users can no longer reach the inside.
        alice.send(message(bobBare, `after-removal-${kind}`, `after-removal-${kind}`));
        const bounced = await alice.waitFor((e) => e.name === 'message' && e.attrs.type === 'error' && e.attrs.id === `after-removal-${kind}`, 30_000, 'a.test bounce after removal');
        expect(bounced.attrs.type).toBe('error');
      });
      await gw.writePartners(PARTNERS);
      await gw.waitForLog((l) => gw.logs.indexOf(l) >= mark && l.event === 'partners.reloaded' && l.partners === 2, 5000);
    }, 120_000);

    it("a local user's message to a non-partner domain comes back as an error within seconds", async () => {
      const started = Date.now();
      bob.send(message('someone@stranger.test', `stranger-${kind}`, `stranger-${kind}`));
      const error = await bob.waitFor((e) => e.name === 'message' && e.attrs.type === 'error' && e.attrs.id === `stranger-${kind}`, 15_000, 'non-partner bounce');
      expect(error.getChild('error')?.getChildElements()[0]?.name).toMatch(/remote-server-not-found|service-unavailable|remote-server-timeout/);
      expect(Date.now() - started).toBeLessThan(15_000);
    }, 30_000);
  });
}
