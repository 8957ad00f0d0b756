/**
 * Server-side STARTTLS on an existing TCP connection.
 *
 * Node only verifies a client certificate (sets `authorized` / `authorizationError`) on TLS
 * sockets created by a `tls.Server`; a bare `new TLSSocket(raw, { isServer: true })` never does,
 * so SASL EXTERNAL could never be offered. So the upgrade hands the raw socket to a
 * non-listening `tls.Server` (one per gateway), the way its own listener would, and picks the
 * resulting socket up from 'secureConnection'. SNI selects the local domain's certificate
 * (XEP-0368, docs/protocol.md 2.2); without SNI the first local domain's certificate is used.
 */
import type { Socket } from 'node:net';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import { GatewayError } from '../errors.js';
import type { TlsContexts } from './tls-contexts.js';
import { ALPN_XMPP_SERVER, MIN_TLS_VERSION } from './tls-contexts.js';

/** Code of the rejection when the peer closed the connection before the handshake completed. */
export const TLS_PEER_CLOSED = 'GW_ERR_TLS_PEER_CLOSED';

type Pending = { resolve: (tls: TLSSocket) => void; reject: (err: Error) => void };

export class TlsServerUpgrade {
  private readonly server: Server;
  private readonly pending = new Map<Socket, Pending>();

  constructor(contexts: TlsContexts) {
    const fallback = contexts.defaultMaterial;
    this.server = createServer({
      cert: fallback.certPem,
      key: fallback.keyPem,
      ca: [...contexts.caPem],
      minVersion: MIN_TLS_VERSION,
      requestCert: true, // needed for SASL EXTERNAL (XEP-0178) and to inspect the partner's certificate
      rejectUnauthorized: false, // policy decides what an untrusted certificate means, not the handshake
      ALPNProtocols: [ALPN_XMPP_SERVER],
      SNICallback: (servername, cb) => cb(null, contexts.contextFor(servername)),
    });
    this.server.on('secureConnection', (tls: TLSSocket) => {
      // `_parent` is the wrapped TCP socket (Node's _tls_wrap sets it on server-side sockets).
      const raw = (tls as unknown as { _parent?: Socket })._parent;
      const p = raw ? this.pending.get(raw) : undefined;
      if (!raw || !p) return;
      this.pending.delete(raw);
      p.resolve(tls);
    });
    this.server.on('tlsClientError', (err: Error, tls: TLSSocket) => {
      const raw = (tls as unknown as { _parent?: Socket })._parent;
      const p = raw ? this.pending.get(raw) : undefined;
      if (!raw || !p) return;
      this.pending.delete(raw);
      p.reject(err);
    });
  }

  /** Runs the server handshake on `raw`; resolves with the secured socket. */
  upgrade(raw: Socket): Promise<TLSSocket> {
    return new Promise((resolve, reject) => {
      this.pending.set(raw, { resolve, reject });
      raw.once('close', () => {
        if (this.pending.delete(raw)) reject(new GatewayError(TLS_PEER_CLOSED, 'connection closed during the TLS handshake'));
      });
      this.server.emit('connection', raw);
    });
  }
}
