/**
 * Test-side fake partner s2s listener: the *receiving* side that the gateway connects out to,
 * both for its normal outbound streams (stanzas, pings) and for dialback verification
 * connections to the partner's Authoritative Server (db:verify).
 *
 * It behaves like a real receiving server (Prosody/ejabberd as described in docs/protocol.md):
 *   header with a fresh id → features per settings → `<proceed/>` + TLS server upgrade (client
 *   certificate requested, never required) → restart → features (EXTERNAL only when the client
 *   certificate chains to `ca` and names the header `from`; dialback) → `<success/>` → restart →
 *   empty features; db:result answered through `acceptResult`, db:verify through `answerVerify`
 *   (from/to swapped, id copied); stanzas collected once the sending domain is authenticated;
 *   `</stream:stream>` answered with ours and the socket ended.
 * Everything is logged per connection for assertions.
 *
 * TLS note: the upgrade goes through a non-listening `tls.Server` (`server.emit('connection', raw)`),
 * because a standalone `new tls.TLSSocket(raw, { isServer: true, requestCert: true })` never sets
 * `authorized`/`authorizationError` (Node 20: only sockets made by a tls.Server get them), and
 * checkPeerCertificate relies on both.
 *
 * References: RFC 6120 sections 4-6, XEP-0178, XEP-0220; docs/protocol.md sections 1-6, 9.
 */
import net, { type AddressInfo, type Server, type Socket } from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import type { StreamCondition } from '../../src/errors.js';
import { newStreamId } from '../../src/negotiation/dialback-key.js';
import {
  dialbackFeature,
  saslMechanismsFeature,
  starttlsFeature,
  STREAM_CLOSE,
  streamError,
  streamFeatures,
  streamHeader,
} from '../../src/xml/builders.js';
import { escapeXML, type Element } from '../../src/xml/ltx.js';
import { NS_DIALBACK, NS_SASL, NS_SERVER, NS_STANZAS, NS_STREAMS, NS_TLS } from '../../src/xml/namespaces.js';
import { localName, nsOf, StreamParser } from '../../src/xml/stream-parser.js';
import { checkPeerCertificate, parseTrustAnchors, type PeerCertificateResult } from '../../src/tls/peer-certificate.js';
import {
  DEFAULT_TIMEOUT_MS,
  dialbackElement,
  formatTranscript,
  jidDomain,
  parseStreamError,
  ScriptedPeerError,
  withTimeout,
  type TranscriptEntry,
} from './scripted-peer.js';

/** Answer to a db:verify / db:result: `ignore` sends nothing; `{ error }` sends `type='error'` with that stanza-error condition. */
export type DialbackAnswer = 'valid' | 'invalid' | 'ignore' | { error: string; errorType?: 'cancel' | 'wait' | 'modify' | 'auth' };

export interface VerifyRequest {
  from: string;
  to: string;
  id: string;
  key: string;
  connection: FakePartnerConnection;
}

export interface ResultRequest {
  from: string;
  to: string;
  key: string;
  /** The stream id this server issued on the stream the db:result arrived on. */
  streamId: string;
  connection: FakePartnerConnection;
}

export interface FakePartnerOptions {
  /** The partner domain (header `from`, default target). */
  domain: string;
  /** Further domains hosted here (accepted as header/db:result `to`). */
  extraDomains?: string[];
  /** PEM certificate/key presented by the TLS server side (required unless tls: 'none'). */
  cert?: string;
  key?: string;
  /** CA(s) trusted for the gateway's client certificate (EXTERNAL is offered only for a valid chain). */
  ca?: string | string[];
  tls: 'required' | 'optional' | 'none';
  /** Offer SASL EXTERNAL after TLS when the client certificate is valid for the header `from`. */
  sasl: boolean;
  /** Support dialback (xmlns:db on our header, dialback feature, db:result/db:verify handling). */
  dialback: boolean;
  /** Advertise `<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>` (ejabberd-like); Prosody-like otherwise. */
  dialbackErrors?: boolean;
  /** How to answer db:verify (we as Authoritative Server). Default 'invalid'. */
  answerVerify?: (v: VerifyRequest) => DialbackAnswer | Promise<DialbackAnswer>;
  /** How to answer the gateway's own db:result (we as Receiving Server). Default 'valid' without calling back. */
  acceptResult?: (r: ResultRequest) => DialbackAnswer | Promise<DialbackAnswer>;
  /**
   * Called for every header (initial and restarts) before we answer; return a stream error to
   * refuse the stream (our header is sent first, then the error, then `</stream:stream>`).
   */
  onHeader?: (attrs: Readonly<Record<string, string>>, connection: FakePartnerConnection) =>
    | { condition: StreamCondition; text?: string }
    | void;
  /** Answer like a pre-1.0 server: no `version` on our header, never any features. */
  legacy?: boolean;
  /** Raw feature children added after SASL success (e.g. an XEP-0478 `<limits/>`). */
  postAuthFeatures?: string[];
  /** Reject stanzas whose from/to pair is not authenticated on that stream (not-authorized / host-unknown). Default true. */
  strictStanzas?: boolean;
  /** Accept a CN-ID for EXTERNAL (default false). */
  allowCommonName?: boolean;
  host?: string;
  port?: number;
  /** Max bytes per top-level element (default 1 MiB). */
  maxStanzaBytes?: number;
}

export interface TlsRecord {
  protocol: string | null;
  cipher: string | undefined;
  /** SNI sent by the gateway (false when none). */
  servername: string | false;
  /** ALPN protocol agreed (false when none). */
  alpn: string | false | null;
  /** Node's verdict on the client certificate against `ca`. */
  authorized: boolean;
  authorizationError: string | undefined;
  /** Subject of the client certificate (e.g. 'CN=gw.example'), undefined if none was sent. */
  clientCertSubject: string | undefined;
  clientCertSubjectAltName: string | undefined;
  /** checkPeerCertificate for the header `from` (undefined when the header had no `from`). */
  check: PeerCertificateResult | undefined;
}

export interface DbResultRecord {
  from: string;
  to: string;
  key: string;
  streamId: string;
  /** Set once answered; 'typed' = the element carried a type and was ignored (unsolicited result). */
  answer?: DialbackAnswer | 'typed' | 'refused';
}

export interface DbVerifyRecord {
  from: string;
  to: string;
  id: string;
  key: string;
  answer?: DialbackAnswer | 'typed' | 'refused';
}

/** One incoming connection: state and everything seen on it. */
export class FakePartnerConnection {
  readonly index: number;
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** Every header received (attrs as written), initial first. */
  readonly headers: Record<string, string>[] = [];
  /** Stream ids we issued, one per header. */
  readonly streamIds: string[] = [];
  tls: TlsRecord | undefined;
  tlsError: string | undefined;
  /** SASL outcome: 'success', or 'failure:<condition>'. */
  sasl: string | undefined;
  saslAuthzid: string | undefined;
  /** Domain authenticated by SASL EXTERNAL (the header from). */
  saslDomain: string | undefined;
  /** `from to` pairs validated by dialback on this stream. */
  readonly dialbackPairs = new Set<string>();
  readonly dbResults: DbResultRecord[] = [];
  readonly dbVerifies: DbVerifyRecord[] = [];
  /** Accepted stanzas (message/presence/iq), raw text when it has no header-bound prefix. */
  readonly stanzas: { el: Element; raw: string | undefined }[] = [];
  /** Every top-level element received, including negotiation. */
  readonly elements: Element[] = [];
  whitespace = 0;
  /** Protocol violations noticed (before any stream error we sent for them). */
  readonly violations: string[] = [];
  streamErrorSent: { condition: string; text: string | undefined } | undefined;
  /** A `<stream:error>` the gateway sent us. */
  streamErrorReceived: { condition: string; text: string | undefined } | undefined;
  /** `</stream:stream>` received from the gateway. */
  streamEndReceived = false;
  /** The TCP connection is gone. */
  isClosed = false;
  readonly transcript: TranscriptEntry[] = [];
  readonly closed: Promise<void>;

  /** @internal */ socket: Socket;
  private readonly tcp: Socket;
  private readonly parser: StreamParser;
  private readonly t0 = Date.now();
  private headerSent = false;
  private closeSent = false;
  private autoResume = false;
  private ourDomain: string;
  private resolveClosed!: () => void;
  private destroyTimer: NodeJS.Timeout | undefined;

  private readonly onData = (chunk: Buffer): void => this.receive(chunk);
  private readonly onClose = (): void => this.socketClosed();
  private readonly onError = (err: Error): void => this.note(`socket error: ${err.message}`);

  /** @internal */
  constructor(
    private readonly server: FakePartnerServer,
    private readonly opts: FakePartnerOptions,
    socket: Socket,
    index: number,
  ) {
    this.index = index;
    this.socket = socket;
    this.tcp = socket;
    this.remoteAddress = socket.remoteAddress ?? '';
    this.remotePort = socket.remotePort ?? 0;
    this.ourDomain = opts.domain;
    this.closed = new Promise<void>((r) => (this.resolveClosed = r));
    this.parser = new StreamParser({ maxStanzaBytes: opts.maxStanzaBytes ?? 1024 * 1024 });
    this.parser.handler = {
      streamStart: (attrs) => this.onHeader({ ...attrs }),
      element: (el, raw) => this.onElement(el, raw),
      streamEnd: () => this.onStreamEnd(),
      whitespace: () => {
        this.whitespace++;
        this.server.changed();
      },
      error: (err) => {
        this.violations.push(`parse error: ${err.condition}: ${err.message}`);
        this.streamError(err.condition, err.message);
      },
    };
    socket.on('data', this.onData);
    socket.on('close', this.onClose);
    socket.on('error', this.onError);
  }

  /** The first header received. */
  get header(): Record<string, string> | undefined {
    return this.headers[0];
  }

  get streamId(): string | undefined {
    return this.streamIds[this.streamIds.length - 1];
  }

  get isTls(): boolean {
    return this.tls !== undefined;
  }

  /** SASL succeeded or at least one dialback pair is valid. */
  get authenticated(): boolean {
    return this.saslDomain !== undefined || this.dialbackPairs.size > 0;
  }

  // --- test hooks ------------------------------------------------------------------------------

  /** Writes text as-is (e.g. a stanza the partner sends back on this stream — only valid with bidi!). */
  send(text: string): void {
    if (this.isClosed || this.closeSent || !this.socket.writable) return;
    this.transcript.push({ t: Date.now() - this.t0, dir: 'out', text });
    this.socket.write(text);
  }

  /** Header (if not sent yet), `<stream:error>`, `</stream:stream>`, end the socket. */
  streamError(condition: StreamCondition, text?: string): void {
    if (this.closeSent || this.isClosed) return;
    if (!this.headerSent) this.sendHeader(undefined);
    this.streamErrorSent = { condition, text };
    this.send(streamError(condition, text));
    this.close();
  }

  /** `</stream:stream>` and end the socket (destroyed after 1 s if the gateway keeps it open). */
  close(): void {
    if (this.isClosed) return;
    if (!this.closeSent) {
      if (!this.headerSent) this.sendHeader(undefined);
      this.send(STREAM_CLOSE);
      this.closeSent = true;
    }
    this.socket.end();
    this.destroyTimer ??= setTimeout(() => this.destroy(), 1_000);
    this.destroyTimer.unref();
  }

  /** Drops the TCP connection without any XML. */
  destroy(): void {
    this.socket.destroy();
    this.tcp.destroy();
  }

  formatTranscript(): string {
    return formatTranscript(this.transcript);
  }

  // --- stream ----------------------------------------------------------------------------------

  private receive(chunk: Buffer): void {
    this.transcript.push({ t: Date.now() - this.t0, dir: 'in', text: chunk.toString('utf8') });
    this.parser.write(chunk);
    while (this.autoResume && this.parser.error === null) {
      this.autoResume = false;
      this.parser.resume();
    }
  }

  private note(text: string): void {
    this.transcript.push({ t: Date.now() - this.t0, dir: 'note', text });
  }

  private hosts(domain: string): boolean {
    return domain === this.opts.domain || (this.opts.extraDomains ?? []).includes(domain);
  }

  private sendHeader(peer: Record<string, string> | undefined): void {
    const id = newStreamId();
    this.streamIds.push(id);
    this.headerSent = true;
    const peerFrom = peer?.['from'];
    this.send(streamHeader({
      from: this.ourDomain,
      to: peerFrom !== undefined && peerFrom !== '' ? peerFrom : undefined,
      id,
      version: this.opts.legacy === true || peer?.['version'] === undefined ? undefined : '1.0',
      lang: 'en',
      dialback: this.opts.dialback,
    }));
  }

  private onHeader(attrs: Record<string, string>): void {
    const first = this.headers[0];
    this.headers.push(attrs);
    const to = attrs['to'] ?? '';
    if (first === undefined && to !== '' && this.hosts(to)) this.ourDomain = to;
    this.sendHeader(attrs);
    this.server.changed();
    if (to !== '' && !this.hosts(to)) return this.streamError('host-unknown', `${to} is not served here`);
    if (first !== undefined && ((first['from'] ?? '') !== (attrs['from'] ?? '') || (first['to'] ?? '') !== to)) {
      // Prosody: from/to must stay identical across restarts.
      return this.streamError('improper-addressing', 'from/to changed across a stream restart');
    }
    const refusal = this.opts.onHeader?.(attrs, this);
    if (refusal) return this.streamError(refusal.condition, refusal.text);
    if (this.opts.legacy === true || attrs['version'] === undefined) return;
    this.send(streamFeatures(this.features()));
  }

  private features(): string[] {
    const out: string[] = [];
    const dialback = this.opts.dialback ? dialbackFeature(this.opts.dialbackErrors === true).toString() : undefined;
    if (this.saslDomain !== undefined) return [...(this.opts.postAuthFeatures ?? [])];
    if (!this.isTls) {
      if (this.opts.tls === 'required') return [starttlsFeature(true).toString()];
      if (this.opts.tls === 'optional') out.push(starttlsFeature(false).toString());
      if (dialback !== undefined) out.push(dialback);
      return out;
    }
    if (this.opts.sasl && this.certValidForFrom()) out.push(saslMechanismsFeature(['EXTERNAL']).toString());
    if (dialback !== undefined) out.push(dialback);
    return out;
  }

  private certValidForFrom(): boolean {
    const c = this.tls?.check;
    return c !== undefined && c.chainValid && c.identity.ok;
  }

  private onStreamEnd(): void {
    this.streamEndReceived = true;
    this.note('</stream:stream> received');
    this.server.changed();
    this.close();
  }

  private onElement(el: Element, raw: string | undefined): void {
    this.elements.push(el);
    const ns = nsOf(el);
    const name = localName(el);
    try {
      if (ns === NS_STREAMS && name === 'error') {
        const info = parseStreamError(el);
        this.streamErrorReceived = { condition: info?.condition ?? '', text: info?.text };
        return;
      }
      if (ns === NS_TLS && name === 'starttls') return this.onStarttls();
      if (ns === NS_SASL && name === 'auth') return this.onAuth(el);
      if (ns === NS_DIALBACK && name === 'result') return this.onDbResult(el);
      if (ns === NS_DIALBACK && name === 'verify') return this.onDbVerify(el);
      if (ns === NS_SERVER && (name === 'message' || name === 'presence' || name === 'iq')) return this.onStanza(el, raw);
      this.violations.push(`unexpected element {${ns}}${name}`);
      this.streamError(this.authenticated ? 'unsupported-stanza-type' : 'not-authorized', `unexpected <${name}/>`);
    } finally {
      this.server.changed();
    }
  }

  private onStarttls(): void {
    if (this.opts.tls === 'none' || this.isTls || this.saslDomain !== undefined) {
      // RFC 6120 section 5.4.2.2: <failure/> then close.
      this.violations.push('starttls not allowed now');
      this.send(`<failure xmlns='${NS_TLS}'/>`);
      return this.close();
    }
    // Stop reading XML (Prosody block_reads); anything already here was sent in plaintext after <starttls/>.
    this.parser.reset();
    if (this.parser.pendingBytes > 0) {
      const injected = this.parser.takePending().toString('utf8');
      this.violations.push(`data after <starttls/> before the TLS handshake: ${injected}`);
      this.note('STARTTLS command injection: dropping the connection');
      return this.destroy();
    }
    this.send(`<proceed xmlns='${NS_TLS}'/>`);
    const raw = this.socket;
    raw.off('data', this.onData);
    // A tls.Server computes authorized/authorizationError for the client certificate (a bare TLSSocket does not).
    const tlsServer = tls.createServer({
      cert: this.opts.cert,
      key: this.opts.key,
      ca: this.opts.ca,
      requestCert: true,
      rejectUnauthorized: false,
      ALPNProtocols: ['xmpp-server'],
      minVersion: 'TLSv1.2',
      handshakeTimeout: 5_000,
    });
    tlsServer.once('secureConnection', (ts: TLSSocket) => this.onSecure(ts));
    tlsServer.once('tlsClientError', (err: Error) => {
      this.tlsError = err.message;
      this.note(`TLS handshake failed: ${err.message}`);
      this.destroy();
      this.socketClosed();
    });
    tlsServer.emit('connection', raw);
  }

  private onSecure(ts: TLSSocket): void {
    this.socket = ts;
    ts.on('error', this.onError);
    ts.on('close', this.onClose);
    ts.disableRenegotiation();
    const from = this.headers[0]?.['from'];
    const x509 = ts.getPeerX509Certificate();
    const authErr: unknown = ts.authorizationError;
    this.tls = {
      protocol: ts.getProtocol(),
      cipher: ts.getCipher()?.name,
      servername: (ts as TLSSocket & { servername?: string | false }).servername ?? false,
      alpn: ts.alpnProtocol,
      authorized: ts.authorized,
      authorizationError: authErr === null || authErr === undefined ? undefined : String(authErr),
      clientCertSubject: x509?.subject,
      clientCertSubjectAltName: x509?.subjectAltName,
      check: from !== undefined && from !== ''
        ? checkPeerCertificate(ts, from, {
          trustAnchors: this.opts.ca === undefined ? [] : parseTrustAnchors(this.opts.ca),
          allowCommonName: this.opts.allowCommonName === true,
        })
        : undefined,
    };
    this.note(`TLS up: ${this.tls.protocol ?? '?'} sni=${String(this.tls.servername)} alpn=${String(this.tls.alpn)} client=${this.tls.clientCertSubject ?? '-'} authorized=${String(this.tls.authorized)}`);
    this.server.changed();
    ts.on('data', this.onData);
    this.parser.resume();
  }

  private onAuth(el: Element): void {
    const fail = (condition: string): void => {
      this.sasl = `failure:${condition}`;
      this.send(`<failure xmlns='${NS_SASL}'><${condition}/></failure>`);
    };
    if (el.attrs['mechanism'] !== 'EXTERNAL' || !this.opts.sasl) return fail('invalid-mechanism');
    if (!this.isTls) return fail('encryption-required');
    if (this.saslDomain !== undefined) return fail('aborted');
    const text = el.getText().trim();
    if (text === '') return fail('malformed-request');
    let authzid = '';
    if (text !== '=') {
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) return fail('incorrect-encoding');
      authzid = Buffer.from(text, 'base64').toString('utf8');
    }
    this.saslAuthzid = authzid;
    const from = this.headers[0]?.['from'] ?? '';
    if (authzid !== '' && authzid !== from) return fail('invalid-authzid');
    if (from === '' || !this.certValidForFrom()) return fail('not-authorized');
    this.sasl = 'success';
    this.saslDomain = from;
    this.send(`<success xmlns='${NS_SASL}'/>`);
    this.parser.reset();
    this.autoResume = true;
  }

  /** Checks common to db:result and db:verify; returns false when the stream was closed. */
  private dialbackAllowed(kind: string): boolean {
    if (!this.opts.dialback) {
      this.violations.push(`${kind} but dialback is not supported here`);
      this.streamError('unsupported-stanza-type', 'dialback is not supported');
      return false;
    }
    if (this.opts.tls === 'required' && !this.isTls) {
      // ejabberd: policy-violation when dialback comes before the required STARTTLS.
      this.violations.push(`${kind} before the required STARTTLS`);
      this.streamError('policy-violation', 'TLS is required');
      return false;
    }
    return true;
  }

  private onDbResult(el: Element): void {
    const from = el.attrs['from'] ?? '';
    const to = el.attrs['to'] ?? '';
    const rec: DbResultRecord = { from, to, key: el.getText().trim(), streamId: this.streamId ?? '' };
    this.dbResults.push(rec);
    if (el.attrs['type'] !== undefined) {
      // A typed db:result inbound is an answer we never asked for (XEP-0220 section 3.1): ignore.
      rec.answer = 'typed';
      this.violations.push(`typed db:result (${el.attrs['type']}) on an inbound stream`);
      return;
    }
    if (from === '' || to === '') {
      rec.answer = 'refused';
      return this.streamError('improper-addressing', 'db:result without from/to');
    }
    if (!this.dialbackAllowed('db:result')) {
      rec.answer = 'refused';
      return;
    }
    if (!this.hosts(to)) {
      rec.answer = 'refused';
      if (this.opts.dialbackErrors === true) return this.send(dialbackErrorElement('result', to, from, undefined, 'item-not-found', 'cancel'));
      return this.streamError('host-unknown', `${to} is not served here`); // Prosody
    }
    const answer = this.opts.acceptResult ?? ((): DialbackAnswer => 'valid');
    void Promise.resolve()
      .then(() => answer({ from, to, key: rec.key, streamId: rec.streamId, connection: this }))
      .then((a) => {
        rec.answer = a;
        if (this.isClosed || this.closeSent) return;
        if (a === 'ignore') return;
        if (a === 'valid') {
          this.dialbackPairs.add(`${from} ${to}`);
          this.send(dialbackElement('result', { from: to, to: from, type: 'valid' }));
        } else if (a === 'invalid') {
          // XEP-0220: the Receiving Server MUST close the stream after type='invalid' (Prosody: not-authorized).
          this.send(dialbackElement('result', { from: to, to: from, type: 'invalid' }));
          this.streamError('not-authorized', 'dialback authentication failed');
        } else {
          this.send(dialbackErrorElement('result', to, from, undefined, a.error, a.errorType ?? 'cancel'));
        }
        this.server.changed();
      })
      .catch((err: unknown) => {
        this.violations.push(`acceptResult threw: ${String(err)}`);
        this.streamError('internal-server-error', 'acceptResult threw');
      });
  }

  private onDbVerify(el: Element): void {
    const from = el.attrs['from'] ?? '';
    const to = el.attrs['to'] ?? '';
    const id = el.attrs['id'] ?? '';
    const rec: DbVerifyRecord = { from, to, id, key: el.getText().trim() };
    this.dbVerifies.push(rec);
    if (el.attrs['type'] !== undefined) {
      rec.answer = 'typed';
      this.violations.push(`typed db:verify (${el.attrs['type']}) on an inbound stream`);
      return;
    }
    if (from === '' || to === '' || id === '') {
      rec.answer = 'refused';
      return this.streamError('improper-addressing', 'db:verify without from/to/id');
    }
    if (!this.dialbackAllowed('db:verify')) {
      rec.answer = 'refused';
      return;
    }
    this.server.verifyReceived(rec, this);
    const answer = this.opts.answerVerify ?? ((): DialbackAnswer => 'invalid');
    void Promise.resolve()
      .then(() => answer({ from, to, id, key: rec.key, connection: this }))
      .then((a) => {
        rec.answer = a;
        if (this.isClosed || this.closeSent || a === 'ignore') return;
        if (a === 'valid' || a === 'invalid') this.send(dialbackElement('verify', { from: to, to: from, id, type: a }));
        else this.send(dialbackErrorElement('verify', to, from, id, a.error, a.errorType ?? 'cancel'));
        this.server.changed();
      })
      .catch((err: unknown) => {
        this.violations.push(`answerVerify threw: ${String(err)}`);
        this.streamError('internal-server-error', 'answerVerify threw');
      });
  }

  private onStanza(el: Element, raw: string | undefined): void {
    const from = el.attrs['from'];
    const to = el.attrs['to'];
    const strict = this.opts.strictStanzas !== false;
    if (strict) {
      if (!this.authenticated) {
        this.violations.push(`stanza before authentication: ${el.toString()}`);
        return this.streamError('not-authorized', 'stanza before authentication');
      }
      if (from === undefined || to === undefined) {
        this.violations.push(`stanza without from/to: ${el.toString()}`);
        return this.streamError('improper-addressing', 'stanza without from/to');
      }
      const fd = jidDomain(from);
      const td = jidDomain(to);
      if (!this.hosts(td)) {
        this.violations.push(`stanza to a domain not served here: ${el.toString()}`);
        return this.streamError('host-unknown', `${td} is not served here`);
      }
      if (this.saslDomain !== fd && !this.dialbackPairs.has(`${fd} ${td}`)) {
        // Prosody closes with not-authorized for a from-domain not authenticated on this stream.
        this.violations.push(`stanza from an unauthenticated domain: ${el.toString()}`);
        return this.streamError('not-authorized', `${fd} is not authenticated on this stream`);
      }
    }
    this.stanzas.push({ el, raw });
    this.server.stanzaReceived(el, this);
  }

  private socketClosed(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    clearTimeout(this.destroyTimer);
    this.note('socket closed');
    this.resolveClosed();
    this.server.changed();
  }
}

function dialbackErrorElement(
  name: 'result' | 'verify',
  from: string,
  to: string,
  id: string | undefined,
  condition: string,
  type: string,
): string {
  const idAttr = id === undefined ? '' : ` id='${escapeXML(id)}'`;
  return `<db:${name} from='${escapeXML(from)}' to='${escapeXML(to)}'${idAttr} type='error'>` +
    `<error type='${escapeXML(type)}'><${condition} xmlns='${NS_STANZAS}'/></error></db:${name}>`;
}

interface ChangeWaiter {
  check(): boolean;
}

export class FakePartnerServer {
  readonly connections: FakePartnerConnection[] = [];
  /** Every accepted stanza, from all connections, in arrival order. */
  readonly stanzas: Element[] = [];
  /** Every db:verify received (answered or not), in arrival order. */
  readonly verifies: (DbVerifyRecord & { connection: FakePartnerConnection })[] = [];
  private verifyCursor = 0;
  private readonly waiters = new Set<ChangeWaiter>();

  private constructor(
    private readonly server: Server,
    readonly options: FakePartnerOptions,
  ) {}

  static async start(opts: FakePartnerOptions): Promise<FakePartnerServer> {
    if (opts.tls !== 'none' && (opts.cert === undefined || opts.key === undefined)) {
      throw new Error(`FakePartnerServer(${opts.domain}): tls '${opts.tls}' needs cert and key`);
    }
    const server = net.createServer();
    const fake = new FakePartnerServer(server, opts);
    server.on('connection', (s) => {
      s.setNoDelay(true);
      fake.connections.push(new FakePartnerConnection(fake, opts, s, fake.connections.length));
      fake.changed();
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    return fake;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  get address(): string {
    return (this.server.address() as AddressInfo).address;
  }

  /** First stanza (already received or future) matching `predicate`. Stanzas are not consumed. */
  waitForStanza(
    predicate: (el: Element, connection: FakePartnerConnection) => boolean = () => true,
    timeoutMs = DEFAULT_TIMEOUT_MS,
  ): Promise<Element> {
    let found: Element | undefined;
    return this.waitUntil(() => {
      for (const c of this.connections) {
        for (const s of c.stanzas) {
          if (predicate(s.el, c)) {
            found = s.el;
            return true;
          }
        }
      }
      return false;
    }, timeoutMs, 'a matching stanza').then(() => found!);
  }

  /** The next db:verify not yet returned by an earlier call (a cursor over `verifies`). */
  waitForVerify(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<DbVerifyRecord & { connection: FakePartnerConnection }> {
    return this.waitUntil(() => this.verifies.length > this.verifyCursor, timeoutMs, 'a db:verify')
      .then(() => this.verifies[this.verifyCursor++]!);
  }

  /** Resolves once there are more than `index` connections; returns connection `index`. */
  waitForConnection(index = this.connections.length, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<FakePartnerConnection> {
    return this.waitUntil(() => this.connections.length > index, timeoutMs, `connection #${index}`)
      .then(() => this.connections[index]!);
  }

  /**
   * Resolves when `cond()` holds; re-checked after every event on any connection (header, element,
   * TLS, answers sent, close). E.g. `waitUntil(() => fake.connections[0]?.sasl === 'success')`.
   */
  waitUntil(cond: () => boolean, timeoutMs = DEFAULT_TIMEOUT_MS, what = 'a condition'): Promise<void> {
    if (cond()) return Promise.resolve();
    let waiter: ChangeWaiter | undefined;
    const p = new Promise<void>((resolve) => {
      waiter = {
        check: () => {
          if (!cond()) return false;
          resolve();
          return true;
        },
      };
      this.waiters.add(waiter);
    });
    return withTimeout(p, timeoutMs, what, () => this.transcripts()).finally(() => {
      if (waiter !== undefined) this.waiters.delete(waiter);
    });
  }

  /** Every connection's transcript tail, for failure messages. */
  transcripts(): string {
    return this.connections.map((c) => `#${c.index}:\n${c.formatTranscript()}`).join('\n');
  }

  /** Stops listening; sends `</stream:stream>` on open streams and destroys them shortly after. */
  async close(): Promise<void> {
    const done = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const c of this.connections) c.close();
    const all = Promise.all(this.connections.map((c) => c.closed));
    const t = setTimeout(() => this.connections.forEach((c) => c.destroy()), 300);
    await all;
    clearTimeout(t);
    await done;
  }

  /** @internal */ changed(): void {
    for (const w of [...this.waiters]) {
      try {
        if (w.check()) this.waiters.delete(w);
      } catch {
        this.waiters.delete(w);
      }
    }
  }

  /** @internal */ stanzaReceived(el: Element, _c: FakePartnerConnection): void {
    this.stanzas.push(el);
    this.changed();
  }

  /** @internal */ verifyReceived(rec: DbVerifyRecord, c: FakePartnerConnection): void {
    this.verifies.push(Object.assign(rec, { connection: c }));
    this.changed();
  }
}

export { ScriptedPeerError };
