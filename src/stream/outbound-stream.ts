/**
 * The initiating side of a server-to-server stream (docs/protocol.md 1.3): the gateway connects to a
 * partner, either to send stanzas ('stream') or only to ask a dialback verification
 * ('dialback-verify', XEP-0220 section 2.1.2, closed after the answer).
 *
 * Feature handling follows docs/protocol.md 1.4 (Prosody's order: TLS, then SASL EXTERNAL, then
 * dialback), decided by the partner's record: TlsNegotiation Required sends STARTTLS even if it
 * is not offered (RFC 7590 section 3.1, no stripping), SASL failure falls back to dialback only
 * where the record allows it.
 */
import type { Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { GatewayError, StreamError } from '../errors.js';
import type { GatewayContext } from '../gateway-context.js';
import { dbResultRequest, dbVerifyRequest } from '../negotiation/dialback.js';
import { dialbackKey } from '../negotiation/dialback-key.js';
import { dialbackAllowed, saslAllowed, tlsAllowed } from '../negotiation/partner-policy.js';
import { externalAuth } from '../negotiation/sasl-external.js';
import { newlyAcked, NS_SM, parseH, SM_ENABLE } from '../negotiation/stream-management.js';
import type { PartnerRecord } from '../policy/types.js';
import type { Realm } from '../routing/realm.js';
import { checkPeerCertificate, type PeerCertificateResult } from '../tls/peer-certificate.js';
import { ALPN_XMPP_SERVER, MIN_TLS_VERSION } from '../tls/tls-contexts.js';
import { streamHeader } from '../xml/builders.js';
import type { Element } from '../xml/ltx.js';
import { NS_DIALBACK, NS_DIALBACK_FEATURE, NS_SASL, NS_STREAM_ERRORS, NS_STREAMS, NS_TLS } from '../xml/namespaces.js';
import { localName, nsOf } from '../xml/stream-parser.js';
import type { LimitVerdict } from './connection-limits.js';
import { now, S2SStream } from './s2s-stream.js';
import type { StreamAuth } from './stream-info.js';

export interface OutboundOptions {
  readonly localDomain: string;
  readonly remoteDomain: string;
  readonly partner: PartnerRecord;
  readonly purpose: 'stream' | 'dialback-verify';
  /** For 'dialback-verify': the stream id and key to ask about. */
  readonly verify?: { readonly streamId: string; readonly key: string };
  /** Told each negotiation step as it happens (`xmpp-gateway probe` prints them); the live gateway sets none. */
  readonly trace?: (step: OutboundStep) => void;
}

/** One negotiation step of an outbound stream, as `trace` reports it. */
export type OutboundStep =
  | { readonly step: 'header'; readonly streamId: string; readonly version: string | null }
  | { readonly step: 'features'; readonly features: Element }
  | { readonly step: 'starttls' }
  | { readonly step: 'tls'; readonly protocol: string | null; readonly certificate: PeerCertificateResult }
  | { readonly step: 'sasl'; readonly result: 'sent' | 'success' | 'failure'; readonly condition?: string }
  | { readonly step: 'dialback'; readonly result: 'sent' | 'valid' | 'invalid' | 'error' };

/** Why an outbound stream failed; bounces use `condition` as the stanza error. */
export class OutboundFailure extends GatewayError {
  constructor(readonly condition: 'remote-server-not-found' | 'remote-server-timeout' | 'policy-violation' | 'resource-constraint', message: string) {
    super(`GW_ERR_OUTBOUND_${condition.toUpperCase().replaceAll('-', '_')}`, message);
  }
}

export class OutboundStream extends S2SStream {
  readonly direction = 'outbound' as const;
  streamId = '';
  private isTls = false;
  private tlsSocket: TLSSocket | null = null;
  private starttlsSent = false;
  private saslTried = false;
  private saslDone = false;
  private dialbackSent = false;
  private authMethod: StreamAuth = 'none';
  private established = false;
  private countedPartner: string | null = null;
  /** The pool is deciding on this stream's admission (docs/design.md section 11). */
  private admitting = false;
  private resolveReady!: () => void;
  private rejectReady!: (err: OutboundFailure) => void;
  /** Resolves when the stream may carry stanzas (purpose 'stream'). */
  readonly ready: Promise<void>;
  private resolveVerify!: (verdict: 'valid' | 'invalid' | 'failed') => void;
  /** The authoritative server's answer (purpose 'dialback-verify'); 'failed' when none came. */
  readonly verdict: Promise<'valid' | 'invalid' | 'failed'>;
  /** Why the stream ended before doing its job, if it did. */
  failure: OutboundFailure | undefined;
  /** XEP-0198: `<enable/>` sent after SASL, and whether `<enabled/>` came back. */
  private smRequested = false;
  private smActive = false;
  /** Stanzas the peer confirmed with `<a h/>` (mod 2^32). */
  private smAcked = 0;
  /** Told, on each `<a h/>`, how many of this stream's stanzas the peer has handled in all (h). */
  onAcked: ((h: number) => void) | undefined;

  constructor(socket: Socket, private readonly ctx: GatewayContext, readonly realm: Realm, readonly opts: OutboundOptions, directTls: boolean) {
    super(socket, ctx.config.maxStanzaBytes);
    this.ready = new Promise((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => {});
    this.verdict = new Promise((resolve) => (this.resolveVerify = resolve));
    ctx.events.opened(this);
    if (directTls) this.startTls();
    else this.sendHeader(this.header());
  }

  private currentPartner: PartnerRecord | undefined;

  get partner(): PartnerRecord {
    return this.currentPartner ?? this.opts.partner;
  }

  /** A reloaded record for this partner (stream-supervisor checks whether the stream may stay). */
  updatePartner(record: PartnerRecord): void {
    this.currentPartner = record;
  }

  get auth(): StreamAuth {
    return this.authMethod;
  }

  get authenticated(): boolean {
    return this.established;
  }

  protected describe() {
    return {
      partner: this.partner.Identity,
      realm: this.realm.name,
      purpose: this.opts.purpose,
      localDomain: this.opts.localDomain,
      remoteDomain: this.opts.remoteDomain,
      authenticatedDomains: this.established ? [this.opts.remoteDomain] : [],
    };
  }

  /** Sends a serialised stanza; only once `ready` resolved (the pool queues before that). */
  sendStanza(text: string): boolean {
    this.stanzasOut++;
    this.meters?.stanzas.inc();
    this.lastStanzaAt = now();
    return this.send(text);
  }

  protected openingHeader(): string {
    return this.header();
  }

  private header(): string {
    return streamHeader({
      from: this.opts.localDomain,
      to: this.opts.remoteDomain,
      version: '1.0',
      lang: 'en',
      dialback: dialbackAllowed(this.partner, true).ok,
    });
  }

  protected released(): void {
    if (this.countedPartner) this.ctx.limits.removePartnerStream(this.countedPartner, 'outbound', this);
    this.fail(new OutboundFailure('remote-server-timeout', this.closeReason?.message ?? 'connection closed'));
    this.ctx.events.closed(this);
  }

  protected override closing(err: StreamError | undefined): void {
    this.fail(new OutboundFailure(err?.condition === 'policy-violation' ? 'policy-violation' : 'remote-server-timeout', err?.message ?? 'stream closed'));
  }

  private fail(err: OutboundFailure): void {
    this.rejectReady(err);
    this.failure ??= err;
    this.resolveVerify('failed');
  }

  /** Refuses to go on: the rule is reported and the stream closed with a stream error. */
  private giveUp(condition: 'policy-violation' | 'unsupported-feature' | 'undefined-condition', rule: string, text: string): void {
    this.ctx.events.refused(this, this.partner.Identity, rule, condition, text);
    this.fail(new OutboundFailure('policy-violation', text));
    this.close(new StreamError(condition, text));
  }

  // Stream header and features ------------------------------------------------------------------

  streamStart(attrs: Readonly<Record<string, string>>): void {
    if (this.closed) return;
    if (!attrs.id) {
      // The stream id is an input to the dialback key; a responder must send one (Prosody closes too).
      return this.giveUp('undefined-condition', 'stream-id', `${this.opts.remoteDomain} sent no stream id`);
    }
    this.streamId = attrs.id;
    this.opts.trace?.({ step: 'header', streamId: attrs.id, version: attrs.version ?? null });
    if (!attrs.version) {
      // Pre-1.0 peer: no features will come (docs/protocol.md 9.2).
      if (!this.isTls && this.partner.TlsNegotiation === 'Required') {
        return this.giveUp('policy-violation', 'TlsNegotiation', `TlsNegotiation is Required for partner ${this.partner.Identity} but ${this.opts.remoteDomain} does not speak XMPP 1.0 streams`);
      }
      this.authenticate(null);
    }
  }

  element(el: Element, _raw: string | undefined): void {
    if (this.closed) return;
    const ns = nsOf(el);
    const name = localName(el);
    if (ns === NS_STREAMS && name === 'features') return this.features(el);
    if (ns === NS_STREAMS && name === 'error') return this.streamErrorReceived(el);
    // Negotiation answers count only as answers to what we asked, in the state we asked it in:
    // an unsolicited <proceed/> or <success/> (a MITM on plain TCP) must not move us forward.
    if (ns === NS_TLS && (name === 'proceed' || name === 'failure')) {
      if (!this.starttlsSent || this.isTls) return this.unexpected(name);
      if (name === 'proceed') return this.startTls();
      return this.giveUp('policy-violation', 'TlsNegotiation', `${this.opts.remoteDomain} refused STARTTLS`);
    }
    if (ns === NS_SASL && (name === 'success' || name === 'failure')) {
      if (!this.saslTried || this.saslDone || !this.isTls) return this.unexpected(name);
      if (name === 'success') return this.saslSucceeded();
      return this.saslFailed(el);
    }
    if (ns === NS_SM) return this.streamManagement(el);
    if (ns === NS_DIALBACK && name === 'result') return this.dialbackAnswer(el);
    if (ns === NS_DIALBACK && name === 'verify') return this.verifyAnswer(el);
    // Stanzas on our outbound stream would need XEP-0288 bidi, which we never request: ignore.
    this.ctx.log.debug('outbound.ignored', { remote: this.opts.remoteDomain, element: name, ns });
  }

  private unexpected(name: string): void {
    this.giveUp('undefined-condition', 'negotiation', `unexpected <${name}/> from ${this.opts.remoteDomain}`);
  }

  private features(f: Element): void {
    const p = this.partner;
    this.opts.trace?.({ step: 'features', features: f });
    const dialbackFeature = f.getChild('dialback', NS_DIALBACK_FEATURE);
    if (dialbackFeature?.getChild('errors')) this.ctx.dialbackErrorsSupported.add(this.opts.remoteDomain);
    if (this.saslDone) {
      // XEP-0198 section 3: enable acknowledgements when the post-SASL features offer them.
      if (this.opts.purpose === 'stream' && f.getChild('sm', NS_SM)) {
        this.smRequested = true;
        this.send(SM_ENABLE);
      }
      return this.becomeEstablished('sasl-external');
    }
    const starttls = f.getChild('starttls', NS_TLS);
    if (!this.isTls) {
      if (tlsAllowed(p).ok && (starttls || p.TlsNegotiation === 'Required')) {
        // RFC 7590 section 3.1: when TLS is required, try it even if it was not offered.
        this.starttlsSent = true;
        this.opts.trace?.({ step: 'starttls' });
        this.send(`<starttls xmlns='${NS_TLS}'/>`);
        return;
      }
      if (starttls?.getChild('required') && !tlsAllowed(p).ok) {
        return this.giveUp('unsupported-feature', 'TlsNegotiation', `${this.opts.remoteDomain} requires TLS but TlsNegotiation is NotSupported for partner ${p.Identity}`);
      }
    }
    this.authenticate(f);
  }

  /** SASL EXTERNAL if offered and allowed, else dialback if allowed, else give up. */
  private authenticate(features: Element | null): void {
    const p = this.partner;
    if (this.opts.purpose === 'dialback-verify') {
      const v = this.opts.verify!;
      this.send(dbVerifyRequest(this.opts.localDomain, this.opts.remoteDomain, v.streamId, v.key));
      return;
    }
    const mechanisms = features?.getChild('mechanisms', NS_SASL);
    const external = mechanisms?.getChildren('mechanism').some((m) => m.getText().trim() === 'EXTERNAL') ?? false;
    if (external && !this.saslTried && saslAllowed(p, this.isTls).ok) {
      this.saslTried = true;
      this.opts.trace?.({ step: 'sasl', result: 'sent' });
      this.send(externalAuth(this.opts.localDomain));
      return;
    }
    this.tryDialback();
  }

  private tryDialback(): void {
    const p = this.partner;
    const allowed = dialbackAllowed(p, this.isTls);
    if (!allowed.ok) {
      const reason = p.SaslNegotiation === 'Required' ? `SASL EXTERNAL was not offered or failed, and ${allowed.text}` : allowed.text;
      return this.giveUp('unsupported-feature', allowed.rule, `no viable authentication method with ${this.opts.remoteDomain}: ${reason}`);
    }
    if (this.dialbackSent) return;
    this.dialbackSent = true;
    this.opts.trace?.({ step: 'dialback', result: 'sent' });
    // XEP-0185: key(receiving = partner, originating = us, their stream id).
    const key = dialbackKey(this.ctx.dialbackSecret, this.opts.remoteDomain, this.opts.localDomain, this.streamId);
    this.send(dbResultRequest(this.opts.localDomain, this.opts.remoteDomain, key));
  }

  // STARTTLS ------------------------------------------------------------------------------------

  private startTls(): void {
    this.parser.pause();
    if (this.parser.pendingBytes > 0) {
      // docs/protocol.md 1.5: anything after <proceed/> in plaintext is an injection attempt.
      return this.destroy(new StreamError('policy-violation', 'data after <proceed/> before the TLS handshake'));
    }
    const servername = this.opts.remoteDomain;
    this.upgradeToTls(
      (raw) =>
        tlsConnect({
          socket: raw,
          servername, // XEP-0368 / RFC 7590: SNI is the partner's domain, never the proxy's name
          secureContext: this.ctx.tls.contextFor(this.opts.localDomain),
          ALPNProtocols: [ALPN_XMPP_SERVER],
          rejectUnauthorized: false,
          minVersion: MIN_TLS_VERSION,
        }),
      (tlsSocket) => {
        if (this.isTls) return;
        this.isTls = true;
        this.tlsSocket = tlsSocket;
        const check = checkPeerCertificate(tlsSocket, this.opts.remoteDomain, {
          trustAnchors: this.ctx.tls.trustAnchors,
          allowCommonName: this.ctx.config.trust.allowCommonNameFor.includes(this.opts.remoteDomain),
        });
        this.opts.trace?.({ step: 'tls', protocol: tlsSocket.getProtocol(), certificate: check });
        const problem = !check.chainValid
          ? `certificate not trusted (${check.chainError ?? 'unknown'})`
          : !check.identity.ok
            ? `certificate does not name ${this.opts.remoteDomain}`
            : null;
        if (problem && this.partner.SaslNegotiation === 'Required') {
          return this.giveUp('policy-violation', 'SaslNegotiation', `SaslNegotiation is Required for partner ${this.partner.Identity} and ${this.opts.remoteDomain}'s ${problem}`);
        }
        if (problem) this.ctx.log.debug('outbound.certificate', { remote: this.opts.remoteDomain, problem });
        this.parser.takePending();
        this.parser.reset();
        this.parser.resume();
        this.sendHeader(this.header());
      },
    );
  }

  // SASL ----------------------------------------------------------------------------------------

  private saslSucceeded(): void {
    this.saslDone = true;
    this.opts.trace?.({ step: 'sasl', result: 'success' });
    this.authMethod = 'sasl-external';
    this.restartParser();
    this.sendHeader(this.header());
  }

  private saslFailed(el: Element): void {
    const condition = el.children.find((c) => typeof c !== 'string' && c.name !== 'text');
    this.ctx.log.info('outbound.sasl-failed', { remote: this.opts.remoteDomain, condition: typeof condition === 'object' ? condition.name : undefined });
    this.opts.trace?.({ step: 'sasl', result: 'failure', ...(typeof condition === 'object' ? { condition: condition.name } : {}) });
    // XEP-0178 / Prosody and ejabberd: fall back to dialback on the same stream where allowed.
    this.tryDialback();
  }

  // Dialback answers ----------------------------------------------------------------------------

  private dialbackAnswer(el: Element): void {
    const { from, to, type } = el.attrs;
    if (!this.dialbackSent || from !== this.opts.remoteDomain || to !== this.opts.localDomain) return;
    this.opts.trace?.({ step: 'dialback', result: type === 'valid' ? 'valid' : type === 'invalid' ? 'invalid' : 'error' });
    if (type === 'valid') {
      this.authMethod = 'dialback';
      return this.becomeEstablished('dialback');
    }
    const text = type === 'invalid' ? `${this.opts.remoteDomain} rejected our dialback key` : `${this.opts.remoteDomain} answered our dialback with an error`;
    this.ctx.events.refused(this, this.partner.Identity, 'dialback', type === 'invalid' ? 'invalid' : 'error', text);
    this.fail(new OutboundFailure('remote-server-timeout', text));
    this.close();
  }

  private verifyAnswer(el: Element): void {
    const v = this.opts.verify;
    const { from, to, id, type } = el.attrs;
    if (!v || from !== this.opts.remoteDomain || to !== this.opts.localDomain || id !== v.streamId) return;
    if (type === 'valid' || type === 'invalid') this.resolveVerify(type);
    else {
      // XEP-0220 section 2.6: an error answer says nothing about the key; report it as a failure.
      const condition = el.getChild('error')?.getChildElements()[0]?.name ?? 'undefined-condition';
      this.fail(new OutboundFailure('remote-server-timeout', `${this.opts.remoteDomain} answered the verification with an error (${condition})`));
    }
    this.close();
  }

  /** Acknowledgements are on: delivery barriers may be `<r/>` instead of pings. */
  get acksEnabled(): boolean {
    return this.smActive;
  }

  /** `<enable/>` is out and unanswered: the peer counts our stanzas, so no ping may go out now. */
  get acksPending(): boolean {
    return this.smRequested && !this.smActive;
  }

  /** The peer never answered `<enable/>`: treat it as `<failed/>` (a late `<enabled/>` is ignored). */
  abandonAcks(): void {
    if (this.acksPending) this.smRequested = false;
  }

  private streamManagement(el: Element): void {
    const name = localName(el);
    if (name === 'enabled' && this.smRequested) this.smActive = true;
    else if (name === 'failed') this.smRequested = false;
    else if (name === 'a' && this.smActive) {
      const h = parseH(el.attrs.h);
      const n = h === null ? null : newlyAcked(h, this.smAcked, this.stanzasOut);
      if (n === null) {
        // XEP-0198 section 4: an h larger than what was sent is a protocol error.
        return this.giveUp('undefined-condition', 'stream-management', `${this.opts.remoteDomain} acknowledged stanzas that were never sent (h='${el.attrs.h}')`);
      }
      this.smAcked = h!;
      if (n > 0) this.onAcked?.(h!);
    }
  }

  /**
   * Authenticated: counts against the partner's outbound limit, then the stream may carry stanzas.
   * Without a pool that is decided at once; in a pool (docs/design.md section 11) it waits for the
   * etcd transaction, reading nothing meanwhile, and the stanzas for the partner wait in the
   * pair's queue as they do during negotiation.
   */
  private becomeEstablished(method: StreamAuth): void {
    if (this.established || this.admitting) return;
    if (!this.realm.countsAgainstPartnerLimits) return this.establish(method);
    const partner = this.partner;
    const verdict = this.ctx.limits.admitPartnerStream(partner, 'outbound', this, { streamId: this.connectionId, remoteDomain: this.opts.remoteDomain });
    if (!(verdict instanceof Promise)) return this.admitted(partner, method, verdict);
    // Counted from now on, so that a stream that goes away while the pool decides gives its slot back.
    this.countedPartner = partner.Identity;
    this.admitting = true;
    void this.readNothingUntil(verdict, (v) => {
      this.admitting = false;
      this.admitted(partner, method, v);
    });
  }

  private admitted(partner: PartnerRecord, method: StreamAuth, verdict: LimitVerdict): void {
    if (!verdict.ok) {
      this.countedPartner = null;
      this.ctx.events.refused(this, partner.Identity, verdict.rule, 'policy-violation', verdict.text);
      this.fail(new OutboundFailure('resource-constraint', verdict.text));
      this.close();
      return;
    }
    this.countedPartner = partner.Identity;
    this.establish(method);
  }

  private establish(method: StreamAuth): void {
    this.established = true;
    this.authMethod = method;
    this.ctx.events.authenticated(this, this.partner.Identity, this.opts.remoteDomain, method);
    this.resolveReady();
  }

  private streamErrorReceived(el: Element): void {
    const condition = el.children.find((c) => typeof c !== 'string' && nsOf(c) === NS_STREAM_ERRORS && c.name !== 'text');
    const text = el.getChildText('text', NS_STREAM_ERRORS);
    const name = typeof condition === 'object' ? condition.name : 'undefined-condition';
    this.ctx.log.info('outbound.stream-error', { remote: this.opts.remoteDomain, condition: name, text });
    this.fail(new OutboundFailure('remote-server-timeout', `${this.opts.remoteDomain} closed the stream: ${name}${text ? ` (${text})` : ''}`));
    this.close();
  }
}
