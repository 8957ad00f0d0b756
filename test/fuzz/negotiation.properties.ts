/**
 * Property-based test of the inbound negotiation state machine against the real gateway over
 * loopback: random sequences of negotiation elements (headers with good and bad addresses,
 * STARTTLS with and without a handshake, SASL, dialback with right and wrong keys, stanzas,
 * restarts, garbage, closing tags) sent by a scripted peer. For every sequence:
 *  - the gateway does not crash (no uncaught exception or unhandled rejection in the process);
 *  - everything it sends is a well-formed stream (the peer parses it with the stream parser);
 *  - the connection ends in exactly one stream error with an RFC 6120 condition, an established
 *    stream, or a clean close after our `</stream:stream>`;
 *  - once the peer is gone, no inbound stream is left behind;
 *  - a well-behaved partner still authenticates afterwards.
 * Shared by the bounded run in `npm test` (test/integration/negotiation.fuzz.test.ts) and
 * `npm run fuzz` (test/fuzz/negotiation.fuzz.ts).
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { dialbackKey } from '../../src/negotiation/dialback-key.js';
import { NS_DIALBACK, NS_SASL, NS_TLS } from '../../src/xml/namespaces.js';
import { isElement } from '../../src/xml/stream-parser.js';
import { eventually } from '../helpers/live-streams.js';
import { attempt, dialbackAuthority, PEER_DIALBACK_SECRET } from '../helpers/partner-attempt.js';
import { parseStreamError, ScriptedPeer } from '../helpers/scripted-peer.js';
import { startTestGateway, testPki, type TestGateway, type TestPki } from '../helpers/test-gateway.js';

const RFC6120_CONDITIONS = new Set([
  'bad-format', 'bad-namespace-prefix', 'conflict', 'connection-timeout', 'host-gone', 'host-unknown', 'improper-addressing',
  'internal-server-error', 'invalid-from', 'invalid-namespace', 'invalid-xml', 'not-authorized', 'not-well-formed',
  'policy-violation', 'remote-connection-failed', 'reset', 'resource-constraint', 'restricted-xml', 'see-other-host',
  'system-shutdown', 'undefined-condition', 'unsupported-encoding', 'unsupported-feature', 'unsupported-stanza-type',
  'unsupported-version',
]);

const domain = fc.constantFrom('db.test', 'ext.test', 'evil.test', 'gw.test', 'other.test', 'sub.db.test', '');
const partnerDomain = fc.constantFrom('db.test', 'ext.test', 'db.test', 'ext.test', 'evil.test', 'gw.test');

export type Step =
  | { kind: 'header'; from: string; to: string; version: string | null }
  | { kind: 'starttls'; handshake: boolean; cert: string | null }
  | { kind: 'auth'; mechanism: string; authzid: string | null }
  | { kind: 'dbresult'; from: string; to: string; key: 'right' | 'wrong' | 'empty'; type: string | null }
  | { kind: 'dbverify'; from: string; to: string; id: string; type: string | null }
  | { kind: 'stanza'; name: string; from: string; to: string }
  | { kind: 'raw'; text: string }
  | { kind: 'wait'; ms: number };

const RAW = [
  '<stream:features/>', '</stream:stream>', ' ', "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
  "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>", "<stream:error><host-gone xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
  "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>=</response>", "<abort xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
  "<bidi xmlns='urn:xmpp:bidi'/>", '<unknown/>', '<!-- c -->', '&amp;', '<<', "<iq type='get'",
];

export const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('header' as const), from: partnerDomain, to: fc.constantFrom('gw.test', 'gw.test', 'other.test', ''), version: fc.constantFrom('1.0', '1.0', null, '2.0') }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('starttls' as const), handshake: fc.boolean(), cert: fc.constantFrom('db.test', 'ext.test', null) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('auth' as const), mechanism: fc.constantFrom('EXTERNAL', 'EXTERNAL', 'PLAIN'), authzid: fc.constantFrom('=', 'ext.test', 'db.test', 'evil.test', null) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('dbresult' as const), from: partnerDomain, to: domain, key: fc.constantFrom('right' as const, 'right' as const, 'wrong' as const, 'empty' as const), type: fc.constantFrom(null, null, 'valid', 'invalid') }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('dbverify' as const), from: domain, to: domain, id: fc.constantFrom('abc', 'x'.repeat(129), ''), type: fc.constantFrom(null, 'valid') }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('stanza' as const), name: fc.constantFrom('message', 'iq', 'presence'), from: domain, to: domain }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('raw' as const), text: fc.constantFrom(...RAW) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 30 }) }) },
);

/** Mostly starting with a partner's header (else most runs would end at the first element). */
export const sequence = fc.tuple(
  fc.option(fc.record({ kind: fc.constant('header' as const), from: fc.constantFrom('db.test', 'ext.test'), to: fc.constant('gw.test'), version: fc.constant('1.0') }), { freq: 5 }),
  fc.array(step, { minLength: 1, maxLength: 10 }),
).map(([first, rest]): Step[] => (first === null ? rest : [first, ...rest]));

export interface NegotiationFixture {
  readonly gw: TestGateway;
  readonly property: fc.IAsyncProperty<[Step[]]>;
  close(): Promise<void>;
}

export async function negotiationFixture(): Promise<NegotiationFixture> {
  const pki: TestPki = testPki();
  const serverCert = pki.issue({ domain: 'db.test', dnsNames: ['db.test', 'ext.test'] });
  const authority = await dialbackAuthority('db.test', { extraDomains: ['ext.test'], cert: serverCert.certPem, key: serverCert.keyPem, ca: pki.ca.certPem, tls: 'optional', sasl: true });
  const route = `127.0.0.1:${authority.port}`;
  const gw = await startTestGateway({
    pki,
    partners: '- Identity: db.test\n  TlsNegotiation: Optional\n  SaslNegotiation: NotSupported\n- Identity: ext.test\n  TlsNegotiation: Required\n  SaslNegotiation: Optional\n',
    routes: { 'db.test': route, 'ext.test': route },
    config: 'streamEstablishmentTimeoutSeconds: 3',
  });
  const certs = new Map(['db.test', 'ext.test'].map((d) => [d, pki.issue({ domain: d })]));
  const problems: unknown[] = [];
  const onProblem = (e: unknown): void => {
    problems.push(e);
  };
  process.on('uncaughtException', onProblem);
  process.on('unhandledRejection', onProblem);

  async function play(steps: Step[]): Promise<void> {
    const peer = await ScriptedPeer.connect(gw.port);
    /** Sends unless the gateway closed the connection meanwhile (then the sequence is over). */
    const send = (text: string): boolean => {
      if (peer.closedAlready || peer.socket.destroyed || !peer.socket.writable) return false;
      peer.sendRaw(text);
      return true;
    };
    try {
      let from = '';
      for (const s of steps) {
        if (peer.closedAlready || peer.socket.destroyed || !peer.socket.writable) break;
        switch (s.kind) {
          case 'header':
            from = s.from;
            if (peer.socket.writable) peer.sendHeader({ from: s.from || undefined, to: s.to || undefined, version: s.version });
            break;
          case 'starttls': {
            // Take what was answered so far, so the reply to <starttls/> is the next element.
            await new Promise((r) => setTimeout(r, 15));
            while (peer.queued > 0) await peer.next();
            const cert = s.cert === null ? undefined : certs.get(s.cert);
            if (!s.handshake) {
              send(`<starttls xmlns='${NS_TLS}'/>`);
              break;
            }
            if (peer.closedAlready || !peer.socket.writable) break;
            try {
              await peer.starttls({ timeoutMs: 1500, ...(cert ? { cert: cert.certPem, key: cert.keyPem } : {}) });
            } catch {
              // Refused, or the handshake failed: what happens next is part of the test.
            }
            break;
          }
          case 'auth': {
            const body = s.authzid === null ? '' : s.authzid === '=' ? '=' : Buffer.from(s.authzid).toString('base64');
            send(`<auth xmlns='${NS_SASL}' mechanism='${s.mechanism}'>${body}</auth>`);
            break;
          }
          case 'dbresult': {
            const key = s.key === 'empty' ? '' : dialbackKey(s.key === 'right' ? PEER_DIALBACK_SECRET : 'not-the-secret-0123456789', s.to, s.from, peer.streamId);
            const type = s.type === null ? '' : ` type='${s.type}'`;
            send(`<db:result from='${s.from}' to='${s.to}'${type}>${key}</db:result>`);
            break;
          }
          case 'dbverify': {
            const type = s.type === null ? '' : ` type='${s.type}'`;
            send(`<db:verify from='${s.from}' to='${s.to}' id='${s.id}'${type}>k</db:verify>`);
            break;
          }
          case 'stanza':
            send(`<${s.name} from='u@${s.from || from}' to='v@${s.to}' id='f1'/>`);
            break;
          case 'raw':
            send(s.text);
            break;
          case 'wait':
            await new Promise((r) => setTimeout(r, s.ms));
            break;
        }
      }
      // Let the gateway answer (dialback verification takes a round trip to the authority).
      await eventually(() => peer.closedAlready || peer.streamEnded || errors(peer).length > 0, 300, 20);
      const established = peer.received.some(({ el }) => (isElement(el, 'result', NS_DIALBACK) && el.attrs.type === 'valid') || isElement(el, 'success', NS_SASL));
      if (!peer.closedAlready && !peer.streamEnded && errors(peer).length === 0 && !established) {
        // Still negotiating: our closing tag must end it cleanly.
        send('</stream:stream>');
        await eventually(() => peer.closedAlready || peer.streamEnded || errors(peer).length > 0, 3000, 20);
        if (!peer.closedAlready && !peer.streamEnded && errors(peer).length === 0) throw new Error(`the gateway did not end the stream after </stream:stream>\n${peer.ctx()}`);
      }
      if (peer.parseError !== null) throw new Error(`the gateway sent a malformed stream: ${peer.parseError.condition} ${peer.parseError.message}\n${peer.ctx()}`);
      const errs = errors(peer);
      if (errs.length > 1) throw new Error(`${errs.length} stream errors\n${peer.ctx()}`);
      if (errs[0] !== undefined && !RFC6120_CONDITIONS.has(errs[0])) throw new Error(`stream error <${errs[0]}/> is not an RFC 6120 condition\n${peer.ctx()}`);
    } finally {
      peer.destroy();
    }
    const inbound = () => [...gw.gateway.streams].filter((x) => x.direction === 'inbound').length;
    if (!(await eventually(() => inbound() === 0, 3000, 20))) throw new Error(`${inbound()} inbound stream(s) left behind`);
    if (problems.length > 0) throw new Error(`the gateway process failed: ${String(problems[0])}`);
  }

  let runs = 0;
  const property = fc.asyncProperty(sequence, async (steps) => {
    await play(steps);
    if (++runs % 10 === 0) await stillServed();
  });

  async function stillServed(): Promise<void> {
    const { outcome, peer } = await attempt({ port: gw.port, from: 'db.test', useTls: false });
    peer.destroy();
    if (outcome !== 'dialback') throw new Error(`a well-behaved partner was refused: ${outcome}`);
  }

  return {
    gw,
    property,
    async close() {
      await stillServed();
      process.off('uncaughtException', onProblem);
      process.off('unhandledRejection', onProblem);
      await gw.close();
      await authority.close();
    },
  };
}

function errors(peer: ScriptedPeer): string[] {
  return peer.received.map((r) => parseStreamError(r.el)?.condition).filter((c): c is string => c !== undefined);
}

/** Registers the negotiation property as a vitest suite running with `params` (bounded or time-boxed). */
export function negotiationSuite(title: string, params: () => fc.Parameters<[Step[]]>, timeoutMs?: number): void {
  let fixture: NegotiationFixture;
  beforeAll(async () => {
    fixture = await negotiationFixture();
  });
  afterAll(async () => {
    await fixture?.close();
  });
  describe(title, () => {
    it('random negotiation sequences never crash the gateway and end in a stream error, an established stream or a clean close', async () => {
      await fc.assert(fixture.property, params());
    }, timeoutMs);
  });
}
