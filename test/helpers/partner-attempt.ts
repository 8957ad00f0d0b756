/**
 * How a flexible remote server tries to get in (what Prosody and ejabberd in mode "any" do):
 * STARTTLS whenever offered (with its certificate), SASL EXTERNAL whenever offered, dialback
 * otherwise. Returns how far it got: the authentication method, or the refusal it received.
 */
import { dialbackKey, keysEqual } from '../../src/negotiation/dialback-key.js';
import { isElement } from '../../src/xml/stream-parser.js';
import { NS_DIALBACK, NS_SASL, NS_STREAMS } from '../../src/xml/namespaces.js';
import type { Element } from '../../src/xml/ltx.js';
import { FakePartnerServer, type FakePartnerOptions } from './fake-partner-server.js';
import { parseStreamError, ScriptedPeer, summarizeFeatures } from './scripted-peer.js';

/** The secret our scripted partners' authoritative servers (FakePartnerServer) verify keys with. */
export const PEER_DIALBACK_SECRET = 'scripted-partner-secret-0123456789';

/**
 * A partner's authoritative server for dialback (plain TCP unless `more` says otherwise) that
 * confirms exactly the keys made with PEER_DIALBACK_SECRET.
 */
export function dialbackAuthority(domain: string, more: Partial<FakePartnerOptions> = {}): Promise<FakePartnerServer> {
  return FakePartnerServer.start({ domain, tls: 'none', sasl: false, dialback: true, answerVerify: verifyWithPeerSecret, ...more });
}

/** A FakePartnerServer `answerVerify` that confirms exactly the keys made with PEER_DIALBACK_SECRET. */
export const verifyWithPeerSecret = (v: { from: string; to: string; id: string; key: string }): 'valid' | 'invalid' =>
  keysEqual(dialbackKey(PEER_DIALBACK_SECRET, v.from, v.to, v.id), v.key) ? 'valid' : 'invalid';

export type Outcome = 'sasl-external' | 'dialback' | `refused:${string}`;

export interface AttemptOptions {
  port: number;
  from: string;
  to?: string;
  cert?: { certPem: string; keyPem: string };
  /** Use STARTTLS when offered (default true). */
  useTls?: boolean;
  /** Send db:result even when the dialback feature is absent (Prosody and ejabberd do, header xmlns:db suffices). */
  forceDialback?: boolean;
}

export async function attempt(opts: AttemptOptions): Promise<{ outcome: Outcome; peer: ScriptedPeer; tls: string | null }> {
  const to = opts.to ?? 'gw.test';
  const peer = await ScriptedPeer.connect(opts.port);
  let tlsVersion: string | null = null;
  const refused = (el: Element): Outcome => {
    const err = isElement(el, 'error', NS_STREAMS) ? parseStreamError(el) : null;
    return `refused:${err?.condition ?? el.name}`;
  };
  try {
    peer.sendHeader({ from: opts.from, to });
    await peer.header();
    let features = await peer.next();
    if (!isElement(features, 'features', NS_STREAMS)) return { outcome: refused(features), peer, tls: tlsVersion };
    let summary = summarizeFeatures(features);
    if (summary.starttls && opts.useTls !== false) {
      const info = await peer.starttls(opts.cert ? { cert: opts.cert.certPem, key: opts.cert.keyPem } : {});
      tlsVersion = info.protocol;
      peer.sendHeader({ from: opts.from, to });
      await peer.header();
      features = await peer.next();
      if (!isElement(features, 'features', NS_STREAMS)) return { outcome: refused(features), peer, tls: tlsVersion };
      summary = summarizeFeatures(features);
    }
    if (summary.mechanisms.includes('EXTERNAL')) {
      const reply = await peer.saslExternal();
      if (isElement(reply, 'success', NS_SASL)) {
        peer.sendHeader({ from: opts.from, to });
        await peer.header();
        const post = await peer.next();
        if (!isElement(post, 'features', NS_STREAMS)) return { outcome: refused(post), peer, tls: tlsVersion };
        return { outcome: 'sasl-external', peer, tls: tlsVersion };
      }
      if (!isElement(reply, 'failure', NS_SASL)) return { outcome: refused(reply), peer, tls: tlsVersion };
    }
    if (summary.dialback || opts.forceDialback) {
      const key = dialbackKey(PEER_DIALBACK_SECRET, to, opts.from, peer.streamId);
      peer.dialbackResult(opts.from, to, key);
      const answer = await peer.next(8000);
      if (isElement(answer, 'result', NS_DIALBACK) && answer.attrs.type === 'valid') return { outcome: 'dialback', peer, tls: tlsVersion };
      if (isElement(answer, 'result', NS_DIALBACK)) return { outcome: `refused:dialback-${answer.attrs.type ?? '?'}`, peer, tls: tlsVersion };
      return { outcome: refused(answer), peer, tls: tlsVersion };
    }
    return { outcome: 'refused:no-method', peer, tls: tlsVersion };
  } catch (err) {
    const el = (err as { element?: Element }).element;
    if (el) return { outcome: refused(el), peer, tls: tlsVersion };
    throw err;
  }
}

/** Opens a stream from `from` (no TLS) and sends a db:result with the key its authoritative server will confirm. */
export async function sendDialbackResult(port: number, from: string, to = 'gw.test'): Promise<ScriptedPeer> {
  const peer = await ScriptedPeer.connect(port);
  peer.sendHeader({ from, to });
  await peer.header();
  await peer.features();
  peer.dialbackResult(from, to, dialbackKey(PEER_DIALBACK_SECRET, to, from, peer.streamId));
  return peer;
}
