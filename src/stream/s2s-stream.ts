/**
 * One server-to-server connection: the socket (plain, then TLS after STARTTLS), its XML stream
 * parser, batched writes and the single way a stream ends, `close(error?)`, which sends our
 * header if it was not sent yet, the stream error, `</stream:stream>`, and destroys the socket
 * after a short grace period. Inbound (receiving) and outbound (initiating) streams extend it.
 *
 * References: RFC 6120 section 4.4 (closing a stream), 4.9 (stream errors: the header comes
 * first even when refusing), 5.4.3.3 (TLS restart); Prosody's session_close with its
 * s2s_close_timeout; ws's close timer.
 */
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { performance } from 'node:perf_hooks';
import { StreamError } from '../errors.js';
import { STREAM_CLOSE, streamError } from '../xml/builders.js';
import type { Element } from '../xml/ltx.js';
import { StreamParser, type StreamParserHandler } from '../xml/stream-parser.js';
import type { StreamAuth, StreamDirection, StreamInfo } from './stream-info.js';
import { newStreamId } from '../negotiation/dialback-key.js';
import { TLS_PEER_CLOSED } from '../tls/server-upgrade.js';

/** Grace period for the peer's `</stream:stream>` before the socket is destroyed (Prosody: 5 s). */
export const CLOSE_TIMEOUT_MS = 2_000;
/** A peer that leaves this much of our output unread is too slow and is disconnected. */
export const MAX_WRITE_BUFFER_BYTES = 8 * 1024 * 1024;
/**
 * While more of our output than this waits for the peer (Node's socket buffer plus text queued
 * this tick), we stop reading from it, so requests whose answers it does not read stay in its
 * socket, not in our memory; reading resumes once the output has drained.
 */
export const READ_PAUSE_BYTES = 64 * 1024;
/**
 * Before authentication a peer needs a few KiB of our output (headers, features, dialback
 * answers): one that leaves more than this unread (beyond what the kernel buffers) is dropped.
 */
export const MAX_UNAUTHENTICATED_WRITE_BUFFER_BYTES = 32 * 1024;
/**
 * Output waiting for the peer above which a stream counts as congested: the router pauses the
 * streams that feed it until it drains (ws and Node streams' highWaterMark idea).
 */
export const CONGESTED_BYTES = 256 * 1024;

/** The reason in `readPauses` for stopping to read while our own output waits (READ_PAUSE_BYTES). */
const OWN_OUTPUT = Symbol('own output');
/** The reason in `readPauses` for stopping to read until a decision is made (readNothingUntil). */
const PENDING_DECISION = Symbol('pending decision');

export const now = (): number => performance.now();

/** Counters a stream increments on its hot path. */
export interface StreamMeters {
  readonly stanzas: { inc(n?: number): void };
  readonly bytes: { inc(n: number): void };
}

export abstract class S2SStream implements StreamParserHandler {
  /** Internal id for logs and status (not the XMPP stream id). */
  readonly connectionId = newStreamId().slice(0, 12);
  abstract readonly direction: StreamDirection;
  readonly createdAt = now();
  lastReceivedAt = this.createdAt;
  lastSentAt = this.createdAt;
  lastStanzaAt = this.createdAt;
  bytesIn = 0;
  bytesOut = 0;
  stanzasIn = 0;
  stanzasOut = 0;
  /**
   * The partner's metric children for this stream's direction, bound once at authentication so
   * the per-stanza cost is a field increment (gw_stanzas_total, gw_bytes_total).
   */
  meters: StreamMeters | null = null;
  tlsVersion: string | null = null;
  /** Set once `close()` ran: nothing more is read or written. */
  closed = false;
  closeReason: StreamError | undefined;
  protected headerSent = false;
  /** Server-side STARTTLS handshake under way: the raw socket belongs to TLS, no plaintext may be written. */
  private handshaking = false;
  protected readonly parser: StreamParser;
  private outQueue: string[] = [];
  /** UTF-16 code units waiting in outQueue (flushed on the next tick). */
  private outQueueChars = 0;
  private drainWaiters: (() => void)[] = [];
  /** Why reading is paused (backpressure from the streams this one feeds); empty ⇒ reading. */
  private readonly readPauses = new Set<unknown>();
  /** Waiting for our output to drain below READ_PAUSE_BYTES to read again. */
  private drainAwaited = false;
  private flushScheduled = false;
  private closeTimer: NodeJS.Timeout | undefined;
  private readonly onData = (chunk: Buffer) => this.receive(chunk);
  private readonly onSocketClose = () => this.socketClosed();
  private readonly onSocketError = (err: Error) => this.socketError(err);

  protected constructor(protected socket: Socket, maxStanzaBytes: number) {
    this.remoteAddress = socket.remoteAddress ?? '';
    this.remotePort = socket.remotePort ?? 0;
    this.parser = new StreamParser({ maxStanzaBytes });
    this.parser.handler = this;
    this.listen(socket);
  }

  abstract get auth(): StreamAuth;
  /** XEP-0198 acknowledgements are on (negotiation/stream-management.ts). */
  abstract get acksEnabled(): boolean;
  abstract get authenticated(): boolean;
  /** What differs between inbound and outbound streams in their status entry. */
  protected abstract describe(): Pick<StreamInfo, 'partner' | 'realm' | 'purpose' | 'localDomain' | 'remoteDomain' | 'authenticatedDomains'>;

  /** The stream's entry in `GET /status` (contract: stream-info.ts). */
  info(): StreamInfo {
    return {
      id: this.connectionId,
      direction: this.direction,
      ...this.describe(),
      tls: this.tlsVersion,
      auth: this.auth,
      acks: this.acksEnabled,
      remoteAddress: `${this.remoteAddress}:${this.remotePort}`,
      ageSeconds: Math.round((now() - this.createdAt) / 1000),
      stanzasIn: this.stanzasIn,
      stanzasOut: this.stanzasOut,
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
    };
  }
  /** The header to send before a stream error when none was sent yet (RFC 6120 section 4.9.1). */
  protected abstract openingHeader(): string;
  /** Called once when the stream is gone (socket closed); release limits, registry entries. */
  protected abstract released(): void;

  /** The peer's address and port, captured at connect (a closed TLS socket no longer knows them). */
  readonly remoteAddress: string;
  readonly remotePort: number;

  // StreamParserHandler -------------------------------------------------------------------------
  abstract streamStart(attrs: Readonly<Record<string, string>>, root: Element): void;
  abstract element(el: Element, raw: string | undefined): void;

  streamEnd(): void {
    // RFC 6120 section 4.4: answer the peer's closing tag with ours, then close the connection.
    this.close();
  }

  whitespace(): void {
    // Keep-alive: activity is already counted per chunk in receive().
  }

  error(err: StreamError): void {
    this.close(err);
  }

  // Writing -------------------------------------------------------------------------------------

  /**
   * Queues text; all text queued in one tick goes out in one socket write (one syscall per
   * burst). Nothing is queued once the stream is closed, nor while a server-side TLS handshake
   * owns the connection (RFC 6120 section 5.4.3.3: no plaintext after <proceed/>).
   */
  send(text: string): boolean {
    if (this.closed || this.handshaking) return true;
    this.outQueue.push(text);
    this.outQueueChars += text.length;
    if (!this.readPauses.has(OWN_OUTPUT) && this.outQueueChars + this.socket.writableLength > READ_PAUSE_BYTES) this.pauseForOutput();
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      process.nextTick(() => this.flush());
    }
    return !this.congested;
  }

  /** Bytes the peer has taken from us so far (handed to the kernel): progress of a slow reader. */
  get bytesDrained(): number {
    return this.socket.bytesWritten - this.socket.writableLength;
  }

  /** More output waits for the peer than CONGESTED_BYTES. */
  get congested(): boolean {
    return this.outQueueChars + this.socket.writableLength > CONGESTED_BYTES;
  }

  /** Runs `cb` once the output has drained below the congestion mark, or the stream is gone. */
  whenDrained(cb: () => void): void {
    if (!this.congested || this.closed) return cb();
    this.drainWaiters.push(cb);
    this.armDrain();
  }

  private drainArmed = false;

  /**
   * Waits for the socket's 'drain' when it has one to give (a write returned false); otherwise
   * the backlog is still in outQueue and flush() looks again once it has written it.
   */
  private armDrain(): void {
    if (this.drainArmed || this.drainWaiters.length === 0 || !this.socket.writableNeedDrain) return;
    this.drainArmed = true;
    this.socket.once('drain', () => {
      this.drainArmed = false;
      this.onDrain();
    });
  }

  private readonly onDrain = (): void => {
    if (this.drainWaiters.length === 0) return;
    if (this.congested && !this.closed) return this.armDrain();
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const cb of waiters) cb();
  };

  /**
   * Stops reading from the peer on behalf of `reason` (a congested stream this one feeds);
   * false when it was already paused for that reason.
   */
  pauseReading(reason: unknown): boolean {
    if (this.readPauses.has(reason)) return false;
    if (this.readPauses.size === 0) this.socket.pause();
    this.readPauses.add(reason);
    return true;
  }

  resumeReading(reason: unknown): void {
    if (this.readPauses.delete(reason) && this.readPauses.size === 0 && !this.closed) this.socket.resume();
  }

  protected flush(): void {
    this.flushScheduled = false;
    if (this.outQueue.length === 0 || this.socket.destroyed) {
      this.outQueue = [];
      this.outQueueChars = 0;
      return;
    }
    const text = this.outQueue.length === 1 ? this.outQueue[0]! : this.outQueue.join('');
    this.outQueue = [];
    this.outQueueChars = 0;
    const bytes = Buffer.from(text, 'utf8');
    this.bytesOut += bytes.length;
    if (this.direction === 'outbound') this.meters?.bytes.inc(bytes.length);
    this.lastSentAt = now();
    this.socket.write(bytes);
    // Streams waiting for this one: drained already, or now waiting on the socket's 'drain'.
    if (this.drainWaiters.length > 0) this.onDrain();
    if (this.closed) return;
    const unread = this.socket.writableLength;
    const limit = this.authenticated ? MAX_WRITE_BUFFER_BYTES : MAX_UNAUTHENTICATED_WRITE_BUFFER_BYTES;
    if (unread > limit) {
      // A peer that does not read cannot read a stream error either: drop it.
      const why = this.authenticated
        ? `peer left more than ${MAX_WRITE_BUFFER_BYTES} bytes of its stream unread`
        : `peer left more than ${MAX_UNAUTHENTICATED_WRITE_BUFFER_BYTES} bytes of its stream unread before authenticating`;
      this.reportRefusal?.('writeBuffer', 'resource-constraint', why);
      this.destroy(new StreamError('resource-constraint', why));
      return;
    }
    if (unread > READ_PAUSE_BYTES) this.pauseForOutput();
    if (this.readPauses.has(OWN_OUTPUT)) this.awaitDrain(unread > READ_PAUSE_BYTES);
  }

  /**
   * Reports a refusal decided here rather than by negotiation (write buffer, TLS handshake), as
   * `stream.refused` and in gw_stream_refusals_total; set by whoever registers the stream.
   */
  reportRefusal: ((rule: string, condition: string, text: string) => void) | null = null;

  /**
   * Stops reading while our own output waits: the socket (a reason of its own among the
   * router's, see pauseReading()) and the parser right after the element being handled.
   */
  private pauseForOutput(): void {
    this.pauseReading(OWN_OUTPUT);
    this.parser.hold();
  }

  /** Resumes reading once the output is (nearly) gone: on 'drain', or at once when it is small. */
  private awaitDrain(full: boolean): void {
    if (this.drainAwaited) return;
    this.drainAwaited = true;
    const socket = this.socket;
    const go = (): void => {
      this.drainAwaited = false;
      socket.removeListener('drain', go);
      if (this.closed || !this.readPauses.has(OWN_OUTPUT)) return;
      if (this.socket.writableLength > READ_PAUSE_BYTES) return this.awaitDrain(true);
      this.readPauses.delete(OWN_OUTPUT);
      // The parser stays held while a decision is pending too; readNothingUntil releases it then.
      if (!this.decisionPending) this.parser.release(); // may queue output and pause again
      if (!this.readPauses.has(OWN_OUTPUT)) {
        this.readPauses.add(OWN_OUTPUT);
        this.resumeReading(OWN_OUTPUT); // the socket resumes unless the router holds it too
      }
    };
    // Not from inside a parser handler (release() is not re-entrant): 'drain' or the next turn.
    if (full) socket.on('drain', go);
    else setImmediate(go);
  }

  private decisionPending = false;

  /**
   * Reads nothing more from the peer (socket paused, parser held after the current element) until
   * `decision` settles; then runs `then` and reads again, unless the stream closed meanwhile. For
   * what must be decided before the peer's next element is handled: the pool's admission of an
   * authenticating stream (docs/design.md section 11). The parser's hold is shared with our own
   * output's flow control (pauseForOutput): whichever of the two ends last releases it.
   */
  protected readNothingUntil<T>(decision: Promise<T>, then: (value: T) => void): Promise<void> {
    this.decisionPending = true;
    this.parser.hold();
    this.pauseReading(PENDING_DECISION);
    return decision.then((value) => {
      this.decisionPending = false;
      if (this.closed) return;
      then(value);
      if (this.closed) return;
      // After `then`: a SASL restart resets the parser first, so held bytes start the new stream.
      if (!this.readPauses.has(OWN_OUTPUT)) this.parser.release();
      this.resumeReading(PENDING_DECISION);
    });
  }

  protected sendHeader(header: string): void {
    this.headerSent = true;
    this.send(header);
  }

  // Reading -------------------------------------------------------------------------------------

  private receive(chunk: Buffer): void {
    if (this.closed) return;
    this.bytesIn += chunk.length;
    if (this.direction === 'inbound') this.meters?.bytes.inc(chunk.length);
    this.lastReceivedAt = now();
    this.parser.write(chunk);
  }

  // TLS -----------------------------------------------------------------------------------------

  /**
   * Moves the stream onto TLS on the same TCP connection. Our listeners move to the TLS socket,
   * so no plaintext byte is parsed after this point (RFC 6120 section 5.4.3.3). `make` returns
   * the TLS socket at once (client side) or once the handshake is done (server side).
   */
  protected upgradeToTls(make: (raw: Socket) => TLSSocket | Promise<TLSSocket>, onSecure: (tls: TLSSocket) => void): void {
    const raw = this.socket;
    this.unlisten(raw);
    const made = make(raw);
    if (made instanceof TLSSocket) {
      this.adopt(made);
      let done = false;
      const secured = () => {
        if (done) return;
        done = true;
        this.tlsVersion = made.getProtocol();
        onSecure(made);
      };
      made.once('secure', secured);
      made.once('secureConnect', secured);
      return;
    }
    // Until the handshake completes, a closing TCP socket still ends this stream.
    raw.on('close', this.onSocketClose);
    this.handshaking = true;
    made.then(
      (tlsSocket) => {
        this.handshaking = false;
        raw.removeListener('close', this.onSocketClose);
        this.adopt(tlsSocket);
        this.tlsVersion = tlsSocket.getProtocol();
        onSecure(tlsSocket);
      },
      (err: Error & { code?: string }) => {
        // A peer that went away is no refusal; a handshake that failed or timed out is one.
        if (!this.closed && err.code !== TLS_PEER_CLOSED && err.code !== 'ECONNRESET') {
          const timedOut = err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT';
          this.reportRefusal?.('tlsHandshake', timedOut ? 'connection-timeout' : 'tls-handshake-failed', `TLS handshake failed: ${err.code ?? err.message}`);
        }
        raw.destroy();
      },
    );
  }

  private adopt(tlsSocket: TLSSocket): void {
    // A new stream document starts on TLS (RFC 6120 section 5.4.3.3): an error before our next
    // header must be preceded by one (section 4.9.1.1), like on a fresh connection.
    this.headerSent = false;
    this.socket = tlsSocket;
    this.listen(tlsSocket);
  }

  /**
   * RFC 6120 section 6.4.6: after SASL success a new stream document starts right after the
   * current element. Called from a parser handler: the reset takes effect when it returns and
   * parsing resumes on the next tick (the parser refuses re-entrant resume()).
   */
  protected restartParser(): void {
    this.headerSent = false; // as after TLS (see adopt())
    this.parser.reset();
    process.nextTick(() => {
      if (!this.closed) this.parser.resume();
    });
  }

  // Closing -------------------------------------------------------------------------------------

  /**
   * Ends the stream: header first if none was sent, then `<stream:error>` (when `err`), then
   * `</stream:stream>`; the socket is ended and destroyed after CLOSE_TIMEOUT_MS.
   */
  close(err?: StreamError): void {
    if (this.closed) return;
    // RFC 6120 section 5.4.3.3: after <proceed/> nothing but TLS may go out on this connection;
    // mid-handshake (server side) the only clean way out is to drop it.
    if (this.handshaking) return this.destroy(err);
    if (err) this.closeReason = err;
    if (!this.headerSent) this.sendHeader(this.openingHeader());
    if (err) this.send(streamError(err.condition, err.message));
    this.send(STREAM_CLOSE);
    // Closed before the final flush, so nothing the flush triggers can re-enter close().
    this.closed = true;
    this.flush();
    this.closing(err);
    this.socket.end();
    this.closeTimer = setTimeout(() => this.socket.destroy(), CLOSE_TIMEOUT_MS);
    this.closeTimer.unref();
  }

  /** Hook: the stream is closing (before the socket is gone); e.g. count the refusal. */
  protected closing(_err: StreamError | undefined): void {}

  /** Drops the connection without any XML (TLS failure, or after an injection attempt). */
  destroy(err?: StreamError): void {
    if (!this.closed) {
      this.closed = true;
      if (err) this.closeReason = err;
      this.closing(err);
    }
    this.socket.destroy();
  }

  private socketError(err: Error & { code?: string }): void {
    // Usually 'close' follows and there is nothing else to do: peers that vanish are normal on
    // s2s. Not after a renegotiation attempt: Node only reports it (disableRenegotiation(), see
    // XEP-0344) and the connection would go on under a certificate nobody checked.
    if (err.code === 'ERR_TLS_RENEGOTIATION_DISABLED' && !this.closed) {
      const text = 'TLS renegotiation is not allowed (XEP-0344)';
      this.reportRefusal?.('tlsRenegotiation', 'policy-violation', text);
      this.destroy(new StreamError('policy-violation', text));
    }
  }

  private isReleased = false;
  private releaseCallbacks: (() => void)[] = [];

  /** Runs `cb` once the socket is gone (at once if it already is). */
  onRelease(cb: () => void): void {
    if (this.isReleased) cb();
    else this.releaseCallbacks.push(cb);
  }

  private socketClosed(): void {
    clearTimeout(this.closeTimer);
    if (!this.closed) {
      this.closed = true;
      this.closing(undefined);
    }
    // Streams waiting for this one to drain must not wait forever.
    this.onDrain();
    if (!this.isReleased) {
      this.isReleased = true;
      this.released();
      for (const cb of this.releaseCallbacks) cb();
      this.releaseCallbacks = [];
    }
  }

  private listen(socket: Socket): void {
    socket.on('data', this.onData);
    socket.on('close', this.onSocketClose);
    socket.on('error', this.onSocketError);
  }

  private unlisten(socket: Socket): void {
    socket.removeListener('data', this.onData);
    socket.removeListener('close', this.onSocketClose);
    socket.removeListener('error', this.onSocketError);
  }
}
