/**
 * The receiving side of a server-to-server stream (docs/protocol.md 1.2): a partner connected to us.
 *
 * States: header ⇒ (features) ⇒ STARTTLS ⇒ header ⇒ (features) ⇒ SASL EXTERNAL ⇒ header ⇒
 * established, or dialback `db:result` pairs at any point the partner's record allows. What is
 * offered and accepted comes from the partner's record (negotiation/partner-policy.ts); every
 * refusal names the rule.
 *
 * References: RFC 6120 sections 4 (streams), 5 (STARTTLS), 6 (SASL), 13.7 (certificates);
 * XEP-0178 (SASL EXTERNAL for s2s); XEP-0220 (dialback); XEP-0288 is not offered, so the stream
 * stays one-way: we never send stanzas on it.
 */
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { StreamError, type StreamCondition } from '../errors.js';
import type { GatewayContext } from '../gateway-context.js';
import { dbResultAnswer, dbResultError, dbVerifyAnswer, dialbackKeyText, MAX_DIALBACK_ID_CHARS, type DialbackErrorCondition } from '../negotiation/dialback.js';
import { dialbackKey, keysEqual, newStreamId } from '../negotiation/dialback-key.js';
import { externalVerdict, inboundOffer } from '../negotiation/inbound-offer.js';
import { dialbackAllowed, plaintextAllowed, tlsAllowed, type Permission } from '../negotiation/partner-policy.js';
import { decodeAuthzid, SASL_SUCCESS, saslFailure } from '../negotiation/sasl-external.js';
import { NS_SM, SM_ENABLED, smAnswer, smFailed, smFeature } from '../negotiation/stream-management.js';
import { normalizeDomain } from '../policy/domain.js';
import type { PartnerRecord } from '../policy/types.js';
import { decide } from '../routing/decide.js';
import { jidDomain } from '../routing/jid.js';
import type { Realm } from '../routing/realm.js';
import { certificateProblem, checkPeerCertificate } from '../tls/peer-certificate.js';
import { dialbackFeature, saslMechanismsFeature, starttlsFeature, streamFeatures, streamHeader } from '../xml/builders.js';
import type { Element } from '../xml/ltx.js';
import { NS_DIALBACK, NS_SASL, NS_SERVER, NS_STREAMS, NS_TLS } from '../xml/namespaces.js';
import { localName, nsOf } from '../xml/stream-parser.js';
import { S2SStream } from './s2s-stream.js';
import type { StreamAuth } from './stream-info.js';

/** Dialback requests waiting for the authoritative server, per stream (XEP-0220 section 2.6.2). */
const MAX_PENDING_DIALBACK = 10;

export class InboundStream extends S2SStream {
  readonly direction = 'inbound' as const;
  /** XMPP stream id of the current stream document (fresh per header, an input to dialback keys). */
  streamId = '';
  localDomain: string | null = null;
  /** The header `from`, normalised; null for legacy peers that omit it. */
  remoteDomain: string | null = null;
  partner: PartnerRecord | null = null;
  private version1 = true;
  private isTls = false;
  private tlsSocket: TLSSocket | null = null;
  private saslDone = false;
  /** XEP-0198 acks enabled by the peer; `handled` counts the stanzas we delivered or bounced since. */
  private smEnabled = false;
  private handled = 0;
  private authMethod: StreamAuth = 'none';
  /** Authenticated (remote domain ⇒ local domains it may address) pairs. */
  private readonly pairs = new Map<string, Set<string>>();
  private pendingDialback = 0;
  /** Aborted when the stream is gone, so its dialback verifications stop too. */
  private readonly released$ = new AbortController();
  private countedPartner: string | null = null;
  /** The pool's admission decision while it is being made (docs/design.md section 11): true when admitted. */
  private admission: Promise<boolean> | null = null;
  private unauthCounted = false;

  private connectionCounted = false;

  /**
   * @param directTls XEP-0368: the listener speaks TLS from the first byte (no STARTTLS); a
   * connection refused before its handshake is simply dropped, as no XML can be sent yet.
   */
  constructor(socket: Socket, private readonly ctx: GatewayContext, readonly realm: Realm, directTls = false) {
    super(socket, ctx.config.preAuthMaxStanzaBytes);
    ctx.events.opened(this);
    // Refusals at accept time still carry our header first (RFC 6120 section 4.9.1.1): close()
    // sends it before the error.
    const total = ctx.limits.openConnection();
    if (!total.ok) {
      this.refuseAtAccept(directTls, total.rule, total.text);
      return;
    }
    this.connectionCounted = true;
    const unauth = ctx.limits.openUnauthenticated(this.remoteAddress, this, realm.name === 'partners');
    if (!unauth.ok) {
      this.refuseAtAccept(directTls, unauth.rule, unauth.text);
      return;
    }
    this.unauthCounted = true;
    if (directTls) this.upgradeToTls((raw) => this.ctx.tlsUpgrade.upgrade(raw), (tls) => this.secured(tls));
  }

  private refuseAtAccept(directTls: boolean, rule: string, text: string): void {
    if (!directTls) return this.refuse(null, 'policy-violation', rule, text);
    this.ctx.events.refused(this, null, rule, 'policy-violation', text);
    this.destroy(new StreamError('policy-violation', text));
  }

  get auth(): StreamAuth {
    return this.authMethod;
  }

  get authenticated(): boolean {
    return this.pairs.size > 0;
  }

  get tls(): boolean {
    return this.isTls;
  }

  /** Remote domains authenticated on this stream. */
  get authenticatedDomains(): string[] {
    return [...this.pairs.keys()];
  }

  protected describe() {
    return {
      partner: this.partner?.Identity ?? null,
      realm: this.realm.name,
      purpose: 'stream' as const,
      localDomain: this.localDomain,
      remoteDomain: this.remoteDomain ?? this.authenticatedDomains[0] ?? null,
      authenticatedDomains: this.authenticatedDomains,
    };
  }

  /** A reloaded record for this partner (stream-supervisor checks whether the stream may stay). */
  updatePartner(record: PartnerRecord): void {
    this.partner = record;
  }

  protected openingHeader(): string {
    return this.header();
  }

  private header(): string {
    const dialback = !this.partner || dialbackAllowed(this.partner, true).ok;
    return streamHeader({
      from: this.localDomain ?? this.realm.defaultDomain ?? this.ctx.tls.defaultDomain,
      to: this.remoteDomain ?? undefined,
      id: this.streamId || (this.streamId = newStreamId()),
      version: this.version1 ? '1.0' : undefined,
      lang: 'en',
      dialback,
    });
  }

  protected released(): void {
    this.released$.abort();
    if (this.connectionCounted) this.ctx.limits.closeConnection();
    this.releaseUnauthenticated();
    if (this.countedPartner) this.ctx.limits.removePartnerStream(this.countedPartner, 'inbound', this);
    this.ctx.events.closed(this);
  }

  private releaseUnauthenticated(): void {
    if (this.unauthCounted) {
      this.unauthCounted = false;
      this.ctx.limits.closeUnauthenticated(this.remoteAddress, this);
    }
  }

  /** Ends the stream with a stream error and reports the rule that refused it. */
  refuse(partner: string | null, condition: StreamCondition, rule: string, text: string): void {
    if (this.closed) return;
    this.ctx.events.refused(this, partner, rule, condition, text);
    this.close(new StreamError(condition, text));
  }

  /** A peer domain this realm does not accept (a non-partner, or one of the domains we speak as). */
  private refuseNotAPeer(domain: string): void {
    const why = this.realm.notAPeer(domain);
    this.refuse(null, this.realm.speaksAs(domain) ? 'invalid-from' : 'policy-violation', why.rule, why.text);
  }

  private refusePermission(p: Permission, condition: StreamCondition = 'policy-violation'): void {
    if (!p.ok) this.refuse(this.partner?.Identity ?? null, condition, p.rule, p.text);
  }

  // Stream header (RFC 6120 section 4.7) ---------------------------------------------------------

  streamStart(attrs: Readonly<Record<string, string>>): void {
    if (this.closed) return;
    const restart = this.streamId !== ''; // a header after STARTTLS or SASL success
    this.streamId = newStreamId();
    const version = attrs.version;
    this.version1 = version !== undefined && version !== '' && /^1\.\d+$/.test(version);
    if (version && !/^[01]\.\d+$/.test(version)) {
      this.version1 = true;
      return this.refuse(null, 'unsupported-version', 'version', `stream version ${version} is not supported (1.0 is)`);
    }
    // Empty from/to are treated as absent (Prosody sends from='' when unknown).
    // COMPAT(gmail, legacy dialback servers): no `to` ⇒ our default domain (ejabberd does the same).
    const to = attrs.to || this.realm.defaultDomain;
    if (!to) return this.refuse(null, 'host-unknown', 'to', "the stream header has no 'to'");
    let local: string;
    try {
      local = normalizeDomain(to);
    } catch {
      return this.refuse(null, 'host-unknown', 'to', `'${attrs.to}' is not a domain served here`);
    }
    let remote: string | null = null;
    if (attrs.from) {
      try {
        remote = normalizeDomain(attrs.from);
      } catch {
        return this.refuse(null, 'invalid-from', 'from', `'${attrs.from}' is not a valid domain`);
      }
    }
    if (restart && (local !== this.localDomain || remote !== this.remoteDomain)) {
      // RFC 6120 section 4.3.3 restarts keep the addresses (Prosody refuses a change the same way).
      this.localDomain ??= local;
      return this.refuse(this.partner?.Identity ?? null, 'improper-addressing', 'restart', "'from'/'to' changed on the stream restart");
    }
    this.localDomain = local;
    this.remoteDomain = remote;
    if (!this.realm.speaksAs(local)) {
      this.localDomain = null;
      return this.refuse(null, 'host-unknown', 'to', `${local} is not a domain served ${this.realm.name === 'partners' ? 'by this gateway' : 'on the internal listener'}`);
    }
    if (remote !== null) {
      const partner = this.realm.peerFor(remote);
      if (!partner) return this.refuseNotAPeer(remote);
      this.partner = partner;
      if (!restart && this.realm.countsAgainstPartnerLimits) {
        const room = this.ctx.limits.partnerHasRoom(partner, 'inbound');
        if (!room.ok) return this.refuse(partner.Identity, 'policy-violation', room.rule, room.text);
      }
    }
    this.sendHeader(this.header());
    if (this.version1) this.sendFeatures();
  }

  /** Stream features for the current state (docs/protocol.md 1.4), decided by the partner's record (negotiation/inbound-offer.ts). */
  private sendFeatures(): void {
    const decision = inboundOffer(this.partner, this.remoteDomain, { tls: this.isTls, saslDone: this.saslDone }, {
      chainProblem: () => this.chainProblem(),
      problemFor: (domain) => this.certificateProblem(domain),
    });
    if (!decision.ok) return this.refuse(this.partner?.Identity ?? null, decision.condition, decision.rule, decision.text);
    const { starttls, external, dialback } = decision.offer;
    const features: Element[] = [];
    if (starttls) features.push(starttlsFeature(starttls === 'required'));
    if (external) features.push(saslMechanismsFeature(['EXTERNAL']));
    if (dialback) features.push(dialbackFeature(true));
    // XEP-0198: acknowledgements are offered once the stream is authenticated (as Prosody does).
    if (this.saslDone) features.push(smFeature());
    this.send(streamFeatures(features));
  }

  // Elements ----------------------------------------------------------------------------------

  element(el: Element, raw: string | undefined): void {
    if (this.closed) return;
    const ns = nsOf(el);
    const name = localName(el);
    if (ns === NS_SERVER && (name === 'message' || name === 'presence' || name === 'iq')) return this.stanza(el, raw);
    if (ns === NS_DIALBACK) {
      if (name === 'result') return this.dialbackResult(el);
      if (name === 'verify') return this.dialbackVerify(el);
    }
    if (ns === NS_STREAMS && name === 'error') {
      // RFC 6120 section 4.9.1.2: a stream error from the peer ends the stream; never answer it with one.
      this.ctx.log.info('stream.error-received', { stream: this.connectionId, partner: this.partner?.Identity ?? null, condition: el.getChildElements()[0]?.name });
      return this.close();
    }
    if (ns === NS_SM) return this.streamManagement(name);
    if (ns === NS_TLS && name === 'starttls') return this.starttls();
    if (ns === NS_SASL && name === 'auth') return this.saslAuth(el);
    if (!this.authenticated) {
      return this.refuse(this.partner?.Identity ?? null, 'not-authorized', 'authentication', `<${name}/> before authentication`);
    }
    this.refuse(this.partner?.Identity ?? null, 'unsupported-stanza-type', 'stanza', `<${name} xmlns='${ns}'/> is not a stanza this gateway accepts`);
  }

  // STARTTLS (RFC 6120 section 5.4) -------------------------------------------------------------

  private starttls(): void {
    const p = this.partner;
    if (this.isTls || this.saslDone) {
      return this.refuse(p?.Identity ?? null, 'policy-violation', 'starttls', 'STARTTLS is not allowed now (TLS or SASL already negotiated)');
    }
    if (this.authenticated || this.pendingDialback > 0) {
      // RFC 6120 section 5.4.3.3: what was negotiated in plaintext does not carry over into TLS;
      // real servers always secure the stream before dialback, so refuse the other order.
      return this.refuse(p?.Identity ?? null, 'policy-violation', 'starttls', 'STARTTLS must come before dialback on a stream');
    }
    if (p && !tlsAllowed(p).ok) {
      // RFC 6120 section 5.4.2.2: failure, then close the stream.
      this.ctx.events.refused(this, p.Identity, 'TlsNegotiation', 'failure', `TlsNegotiation is NotSupported for partner ${p.Identity}`);
      this.send(`<failure xmlns='${NS_TLS}'/>`);
      return this.close();
    }
    // Stop reading XML before <proceed/> (Prosody mod_tls block_reads); anything already received
    // after <starttls/> was sent in plaintext ahead of the handshake: a command injection attempt.
    this.parser.pause();
    if (this.parser.pendingBytes > 0) {
      return this.refuse(p?.Identity ?? null, 'policy-violation', 'starttls', 'data after <starttls/> before the TLS handshake');
    }
    this.send(`<proceed xmlns='${NS_TLS}'/>`);
    this.flush();
    this.upgradeToTls((raw) => this.ctx.tlsUpgrade.upgrade(raw), (tls) => this.secured(tls));
  }

  /** TLS is up (after STARTTLS, or at once on a direct-TLS listener): a new stream document follows. */
  private secured(tlsSocket: TLSSocket): void {
    if (this.isTls) return;
    this.isTls = true;
    this.tlsSocket = tlsSocket;
    // XEP-0344: identity checks are void if the peer can renegotiate to another certificate.
    tlsSocket.disableRenegotiation();
    this.parser.takePending();
    this.parser.reset();
    this.parser.resume();
  }

  /** Why the peer certificate cannot authenticate anyone (null when its chain is trusted). */
  private chainProblem(): string | null {
    if (!this.tlsSocket) return 'no TLS';
    const check = checkPeerCertificate(this.tlsSocket, this.ctx.tls.defaultDomain, { trustAnchors: this.ctx.tls.trustAnchors });
    return check.chainValid ? null : `certificate not trusted (${check.chainError ?? 'unknown error'})`;
  }

  /** Why the peer certificate cannot authenticate `domain` (null when it can). */
  private certificateProblem(domain: string): string | null {
    if (!this.tlsSocket) return 'no TLS';
    const check = checkPeerCertificate(this.tlsSocket, domain, {
      trustAnchors: this.ctx.tls.trustAnchors,
      allowCommonName: this.ctx.config.trust.allowCommonNameFor.includes(domain),
    });
    return certificateProblem(check, domain);
  }

  // SASL EXTERNAL (XEP-0178) --------------------------------------------------------------------

  private saslAuth(el: Element): void {
    if (this.saslDone || this.authenticated) {
      return this.refuse(this.partner?.Identity ?? null, 'policy-violation', 'sasl', 'SASL is not allowed now (already authenticated)');
    }
    if (!this.isTls) {
      this.send(saslFailure('encryption-required'));
      return this.refuse(this.partner?.Identity ?? null, 'policy-violation', 'TlsNegotiation', 'SASL EXTERNAL needs TLS first');
    }
    if (el.attrs.mechanism !== 'EXTERNAL') return this.saslRefused('invalid-mechanism', 'sasl', `mechanism ${el.attrs.mechanism ?? '(none)'} is not offered`, false);
    const decoded = decodeAuthzid(el.getText());
    if (!decoded.ok) return this.saslRefused(decoded.condition, 'sasl', `malformed EXTERNAL response (${decoded.condition})`, false);
    let domain: string;
    try {
      domain = normalizeDomain(decoded.authzid || this.remoteDomain || '');
    } catch {
      return this.saslRefused('invalid-authzid', 'sasl', 'no usable authorization identity', false);
    }
    if (this.remoteDomain && decoded.authzid && domain !== this.remoteDomain) {
      // XEP-0178 section 3 step 9: the authzid must be the header `from`.
      return this.saslRefused('invalid-authzid', 'sasl', `authzid ${domain} differs from the stream's from ${this.remoteDomain}`, false);
    }
    const partner = this.realm.peerFor(domain);
    if (!partner) {
      this.send(saslFailure('not-authorized'));
      return this.refuseNotAPeer(domain);
    }
    this.partner = partner;
    // XEP-0178: a refused EXTERNAL keeps the stream for dialback unless the record requires SASL.
    const verdict = externalVerdict(partner, domain, this.certificateProblem(domain));
    if (!verdict.ok) return this.saslRefused(verdict.saslCondition, verdict.rule, verdict.text, verdict.closesStream);
    this.countAgainstPartner(partner, domain, () => {
      this.send(SASL_SUCCESS);
      this.saslDone = true;
      this.authMethod = 'sasl-external';
      this.addPair(domain, this.localDomain!);
      this.ctx.events.authenticated(this, partner.Identity, domain, 'sasl-external');
      this.restartParser();
    });
  }

  private saslRefused(condition: Parameters<typeof saslFailure>[0], rule: string, text: string, closeStream: boolean): void {
    const partner = this.partner?.Identity ?? null;
    this.send(saslFailure(condition, text));
    if (closeStream) return this.refuse(partner, 'not-authorized', rule, text);
    this.ctx.events.refused(this, partner, rule, `sasl-${condition}`, text);
  }

  // Dialback, receiving role (XEP-0220 section 2.1) ---------------------------------------------

  private dialbackResult(el: Element): void {
    if (el.attrs.type) return; // answers are never valid inbound without bidi (XEP-0220 section 3.1)
    const from = el.attrs.from;
    const to = el.attrs.to;
    if (!from || !to) return this.refuse(this.partner?.Identity ?? null, 'improper-addressing', 'dialback', 'db:result without from or to');
    let remote: string;
    let local: string;
    try {
      remote = normalizeDomain(from);
      local = normalizeDomain(to);
    } catch {
      return this.refuse(this.partner?.Identity ?? null, 'improper-addressing', 'dialback', 'db:result with an invalid from or to');
    }
    if (!this.realm.speaksAs(local)) {
      return this.dialbackError(remote, local, 'item-not-found', 'host-unknown', 'to', `${local} is not a domain served by this gateway`);
    }
    const partner = this.realm.peerFor(remote);
    // Never connect out for a domain that is not a partner, not even to verify it.
    if (!partner) return this.refuseNotAPeer(remote);
    if (this.partner && partner.Identity !== this.partner.Identity) {
      return this.refuse(this.partner.Identity, 'policy-violation', 'AdditionalDomains', `${remote} belongs to partner ${partner.Identity}, not to ${this.partner.Identity}`);
    }
    const allowed = dialbackAllowed(partner, this.isTls);
    if (!allowed.ok) {
      this.partner ??= partner;
      return this.refusePermission(allowed);
    }
    if (!this.partner) {
      this.partner = partner;
      const room = this.realm.countsAgainstPartnerLimits ? this.ctx.limits.partnerHasRoom(partner, 'inbound') : null;
      if (room && !room.ok) return this.refuse(partner.Identity, 'policy-violation', room.rule, room.text);
    }
    if (this.pairs.get(remote)?.has(local)) {
      this.send(dbResultAnswer(local, remote, 'valid'));
      return;
    }
    if (this.pendingDialback >= MAX_PENDING_DIALBACK) {
      return this.dialbackError(remote, local, 'resource-constraint', 'resource-constraint', 'dialback', `more than ${MAX_PENDING_DIALBACK} dialback requests pending on one stream`);
    }
    this.pendingDialback++;
    const streamId = this.streamId;
    const key = dialbackKeyText(el.getText());
    void this.ctx.verifier.verify({ realm: this.realm, localDomain: local, remoteDomain: remote, streamId, key, signal: this.released$.signal }).then(
      (answer) => {
        this.pendingDialback--;
        if (this.closed) return;
        // The list may have been reloaded while we waited: the answer counts only if the domain
        // still belongs to this stream's partner and that partner still allows dialback here.
        const current = this.realm.peerFor(remote);
        if (!current || current.Identity !== partner.Identity) {
          return this.refuse(partner.Identity, 'policy-violation', 'AllowedPartner', `${remote} is no longer a domain of partner ${partner.Identity}`);
        }
        const still = dialbackAllowed(current, this.isTls);
        if (!still.ok) return this.refusePermission(still);
        if (answer.result === 'error') {
          return this.dialbackError(remote, local, answer.condition, 'remote-connection-failed', 'dialback', answer.text);
        }
        if (answer.result === 'valid') return this.dialbackValid(remote, local);
        {
          this.send(dbResultAnswer(local, remote, 'invalid'));
          // XEP-0220 section 2.3.2: an invalid key ends the stream unless other pairs are valid.
          if (!this.authenticated) this.refuse(partner.Identity, 'not-authorized', 'dialback', `dialback key for ${remote} was not confirmed by its authoritative server`);
          else this.ctx.events.refused(this, partner.Identity, 'dialback', 'invalid', `dialback key for ${remote} was invalid`);
        }
      },
      (err: Error) => {
        this.pendingDialback--;
        this.dialbackError(remote, local, 'remote-server-timeout', 'remote-connection-failed', 'dialback', `dialback verification failed: ${err.message}`);
      },
    );
  }

  private dialbackValid(remote: string, local: string): void {
    const partner = this.partner!;
    const valid = () => {
      this.send(dbResultAnswer(local, remote, 'valid'));
      if (this.authMethod === 'none') this.authMethod = 'dialback';
      this.addPair(remote, local);
      this.ctx.events.authenticated(this, partner.Identity, remote, 'dialback');
    };
    if (this.authenticated && !this.admission) return valid();
    this.countAgainstPartner(partner, remote, valid);
  }

  /**
   * A dialback error (XEP-0220 section 2.6) where the peer's server advertised support for them,
   * else a stream error: without `<errors/>` a stream error is the only signal it understands.
   */
  private dialbackError(remote: string, local: string, dbCondition: DialbackErrorCondition, streamCondition: StreamCondition, rule: string, text: string): void {
    if (this.closed) return;
    if (this.ctx.dialbackErrorsSupported.has(remote)) {
      this.ctx.events.refused(this, this.partner?.Identity ?? null, rule, dbCondition, text);
      this.send(dbResultError(local, remote, dbCondition, text));
      return;
    }
    this.refuse(this.partner?.Identity ?? null, streamCondition, rule, text);
  }

  // Dialback, authoritative role (XEP-0220 section 2.1.3) ---------------------------------------

  private dialbackVerify(el: Element): void {
    if (el.attrs.type) return; // typed verify answers are not accepted inbound (XEP-0220 section 3.1)
    const { from, to, id } = el.attrs;
    if (!from || !to || !id) return this.refuse(this.partner?.Identity ?? null, 'improper-addressing', 'dialback', 'db:verify without from, to or id');
    if (id.length > MAX_DIALBACK_ID_CHARS) return this.refuse(this.partner?.Identity ?? null, 'policy-violation', 'dialback', `db:verify id longer than ${MAX_DIALBACK_ID_CHARS} characters`);
    let receiving: string;
    let originating: string;
    try {
      receiving = normalizeDomain(from);
      originating = normalizeDomain(to);
    } catch {
      return this.refuse(this.partner?.Identity ?? null, 'improper-addressing', 'dialback', 'db:verify with an invalid from or to');
    }
    const partner = this.partner ?? this.realm.peerFor(receiving);
    if (!partner || this.realm.peerFor(receiving)?.Identity !== partner.Identity) return this.refuseNotAPeer(receiving);
    if (!this.isTls) {
      const plain = plaintextAllowed(partner);
      if (!plain.ok) return this.refusePermission(plain);
    }
    if (!this.realm.speaksAs(originating)) {
      this.send(dbVerifyAnswer(originating, receiving, id, 'invalid'));
      return;
    }
    // XEP-0185: recompute the key we would have sent; compare in constant time.
    const expected = dialbackKey(this.ctx.dialbackSecret, receiving, originating, id);
    const verdict = keysEqual(expected, dialbackKeyText(el.getText())) ? 'valid' : 'invalid';
    this.send(dbVerifyAnswer(originating, receiving, id, verdict));
  }

  // Stanzas: the hot path (docs/design.md section 5) -------------------------------------------------

  private stanza(el: Element, raw: string | undefined): void {
    if (!this.authenticated) {
      return this.refuse(this.partner?.Identity ?? null, 'not-authorized', 'authentication', 'stanza before authentication');
    }
    const fromDomain = jidDomain(el.attrs.from);
    const toDomain = jidDomain(el.attrs.to);
    const decision = decide(this.pairs, this.realm, this.partner!, this.ctx.approvals, el, fromDomain, toDomain);
    if (decision.kind === 'close') return this.refuse(this.partner!.Identity, decision.condition, decision.rule, decision.text);
    this.stanzasIn++;
    this.meters?.stanzas.inc();
    this.lastStanzaAt = this.lastReceivedAt;
    if (this.smEnabled) this.handled = (this.handled + 1) >>> 0;
    if (decision.kind === 'deliver') this.realm.sink.deliver(el, raw, fromDomain, toDomain, this);
    else {
      this.ctx.events.stanzaRefused(this, this.partner!.Identity, decision.rule, decision.condition, decision.text);
      this.realm.sink.bounce(el, fromDomain, toDomain, decision.condition, decision.text, this);
    }
  }

  // XEP-0198 acknowledgements ------------------------------------------------------------------

  private streamManagement(name: string): void {
    if (name === 'enable') {
      if (!this.saslDone || this.smEnabled) return void this.send(smFailed('unexpected-request'));
      this.smEnabled = true;
      this.send(SM_ENABLED);
      return;
    }
    // A stanza we counted has been delivered or bounced: nothing of it is left for the peer to keep.
    if (name === 'r' && this.smEnabled) return void this.send(smAnswer(this.handled));
    // <a/> answers requests we never send on an inbound stream; anything else is ignored.
  }

  /** XEP-0198 acknowledgements are on for this stream. */
  get acksEnabled(): boolean {
    return this.smEnabled;
  }

  // Helpers -------------------------------------------------------------------------------------

  private addPair(remote: string, local: string): void {
    let set = this.pairs.get(remote);
    if (!set) {
      set = new Set();
      this.pairs.set(remote, set);
    }
    set.add(local);
    if (this.pairs.size === 1 && set.size === 1) {
      // First authenticated pair: no longer an unauthenticated connection; stanzas may be larger.
      this.releaseUnauthenticated();
      this.parser.setMaxStanzaBytes(this.ctx.config.maxStanzaBytes);
    }
  }

  /**
   * Counts the stream against the partner's inbound limit at first authentication, then runs
   * `admitted` (the success answer), or refuses the stream. Without a pool this happens at once,
   * synchronously. In a pool the decision is an etcd transaction (docs/design.md section 11):
   * nothing more is read from the peer until it is made, so the stream's next element is handled
   * only after the success answer (or never, after a refusal); requests for further domains that
   * arrive meanwhile wait for the same decision.
   */
  private countAgainstPartner(partner: PartnerRecord, remoteDomain: string, admitted: () => void): void {
    if (this.admission) {
      void this.admission.then((ok) => {
        if (ok && !this.closed) admitted();
      });
      return;
    }
    if (this.countedPartner || !this.realm.countsAgainstPartnerLimits) return admitted();
    const verdict = this.ctx.limits.admitPartnerStream(partner, 'inbound', this, { streamId: this.connectionId, remoteDomain });
    if (!(verdict instanceof Promise)) {
      if (!verdict.ok) return this.refuse(partner.Identity, 'policy-violation', verdict.rule, verdict.text);
      this.countedPartner = partner.Identity;
      return admitted();
    }
    // Counted from now on, so that a stream that goes away while the pool decides gives its slot back.
    this.countedPartner = partner.Identity;
    let ok = false;
    this.admission = this.readNothingUntil(verdict, (v) => {
      this.admission = null;
      ok = v.ok;
      if (v.ok) return admitted();
      this.countedPartner = null;
      this.refuse(partner.Identity, 'policy-violation', v.rule, v.text);
    }).then(() => ok);
  }
}
