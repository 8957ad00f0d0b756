/**
 * Verdict on the certificate a peer presented on an s2s TLS connection: does it chain to a CA we
 * trust, and does it name the peer's domain?
 *
 * References:
 *   RFC 6120 section 13.7.2 (certificate validation for XMPP s2s)
 *   XEP-0178 section 3 (SASL EXTERNAL: chain *and* identity must be valid before EXTERNAL is offered)
 *   RFC 5280 section 6.1 (path validation: signatures, validity periods, CA basic constraints)
 *   RFC 5280 section 4.2.1.12 (extKeyUsage; OpenSSL's "sslclient" purpose requires id-kp-clientAuth)
 *   RFC 6125 (identity; see identity.ts)
 *
 * The socket is expected to come from `{ isServer: true, requestCert: true, rejectUnauthorized: false }`
 * (docs/protocol.md 2.1) or from an outbound connection with `rejectUnauthorized: false`, so that a bad
 * certificate becomes a policy decision and a log line rather than an opaque handshake abort.
 * Call `socket.disableRenegotiation()` on the same socket (XEP-0344: a peer able to renegotiate could
 * swap certificates after this check); it is a no-op cost on TLS 1.3, which has no renegotiation.
 *
 * `authorizationError` values observed on Node 20.20 / OpenSSL 3.0 for a client certificate, server side
 * (the same for TLS 1.2 and 1.3):
 *   trusted, EKU serverAuth+clientAuth, clientAuth only, or no EKU   authorized=true, null
 *   trusted, serverAuth only (Let's Encrypt since 2026-02-11)        INVALID_PURPOSE
 *   issued by another CA, leaf only                                   UNABLE_TO_VERIFY_LEAF_SIGNATURE
 *   issued by another CA, that CA sent in the chain                  SELF_SIGNED_CERT_IN_CHAIN
 *   issued by another CA, chain sent, serverAuth only                 INVALID_PURPOSE   (!)
 *   trusted via an intermediate the peer sends, serverAuth only       INVALID_PURPOSE
 *   issued by a trusted end-entity certificate (not a CA), chain sent UNSPECIFIED
 *   self-signed                                                       DEPTH_ZERO_SELF_SIGNED_CERT
 *   expired (with or without serverAuth only)                         CERT_HAS_EXPIRED
 *   not yet valid, serverAuth only                                    CERT_NOT_YET_VALID
 *   no certificate sent                                               UNABLE_TO_GET_ISSUER_CERT
 * Node's verify callback lets OpenSSL continue past every error and reports only the *last* one;
 * the purpose check runs after chain building but before signature and date checks. So
 * INVALID_PURPOSE does not mean "only the purpose is wrong": an attacker's own CA sent along in the
 * chain is reported the same way as a trusted serverAuth-only certificate (row marked (!)). That is
 * why INVALID_PURPOSE is accepted only after `verifyChain` below re-validates the chain against the
 * configured trust anchors, dates included.
 */
import { X509Certificate } from 'node:crypto';
import { rootCertificates, type TLSSocket } from 'node:tls';
import { certificateNames, matchesDomain, type IdentityResult } from './identity.js';

export interface PeerCertificateOptions {
  /** Accept a CN-ID when the certificate has no SAN identifiers (opt-in per partner; see identity.ts). */
  allowCommonName?: boolean;
  /**
   * The CAs the socket's secure context trusts, for the independent check of INVALID_PURPOSE
   * (default: Node's bundled Mozilla roots, `tls.rootCertificates`). Must match the context's `ca`,
   * otherwise serverAuth-only certificates are rejected (safe, but not what the operator wants).
   */
  trustAnchors?: readonly X509Certificate[];
  /** Clock for the validity-period check (default now). */
  now?: Date;
}

export interface PeerCertificateResult {
  /** The chain leads to a trusted CA and every certificate on it is within its validity period. */
  readonly chainValid: boolean;
  /** Why not: OpenSSL's code (e.g. `CERT_HAS_EXPIRED`), or ours in the same style, or `NO_PEER_CERTIFICATE`. */
  readonly chainError?: string;
  /** True when the chain was accepted although OpenSSL reported INVALID_PURPOSE (serverAuth-only client cert). */
  readonly purposeIgnored?: boolean;
  readonly identity: IdentityResult;
  readonly cert?: X509Certificate;
}

/** OpenSSL X509_V_ERR_INVALID_PURPOSE as Node names it, and its message in case a code is missing. */
const INVALID_PURPOSE = 'INVALID_PURPOSE';
const INVALID_PURPOSE_MESSAGE = 'unsupported certificate purpose';
/** RFC 5280 section 6.1: we stop following issuers well before any real chain would (OpenSSL's default depth is 100). */
const MAX_CHAIN_DEPTH = 10;

/** Checks chain and identity of the peer certificate on `socket` for the peer domain `domain`. */
export function checkPeerCertificate(
  socket: TLSSocket,
  domain: string,
  opts: PeerCertificateOptions = {},
): PeerCertificateResult {
  const cert = socket.getPeerX509Certificate();
  if (cert === undefined) {
    // OpenSSL reports a missing client certificate as UNABLE_TO_GET_ISSUER_CERT, which misleads in logs.
    return { chainValid: false, chainError: 'NO_PEER_CERTIFICATE', identity: { ok: false, reason: 'no certificate presented' } };
  }
  const identity = matchesDomain(certificateNames(cert), domain, { allowCommonName: opts.allowCommonName === true });
  if (socket.authorized) return { chainValid: true, identity, cert };

  const code = authorizationErrorCode(socket);
  if (code === INVALID_PURPOSE || code === INVALID_PURPOSE_MESSAGE) {
    // COMPAT(Let's Encrypt 2026): s2s initiators present their *server* certificate as a TLS client
    // certificate, and since 2026-02-11 LE issues serverAuth-only certificates; Prosody
    // (lsec_ignore_purpose) and ejabberd >= 25.08 ignore the purpose for s2s. We do the same, but only
    // after validating the chain ourselves (see the header comment for why).
    const ownError = verifyChain(cert, opts.trustAnchors ?? defaultTrustAnchors(), opts.now ?? new Date());
    if (ownError === null) return { chainValid: true, purposeIgnored: true, identity, cert };
    return { chainValid: false, chainError: ownError, identity, cert };
  }
  return { chainValid: false, chainError: code ?? 'UNKNOWN', identity, cert };
}

/**
 * The same verdict for a certificate read from a file (`xmpp-gateway explain --certificate`): no
 * handshake, so the chain is judged by `verifyChain` against the trust anchors, as the live check
 * does for serverAuth-only certificates. `presented` are the other certificates of the file.
 */
export function checkCertificate(
  cert: X509Certificate,
  presented: readonly X509Certificate[],
  domain: string,
  opts: PeerCertificateOptions = {},
): PeerCertificateResult {
  const identity = matchesDomain(certificateNames(cert), domain, { allowCommonName: opts.allowCommonName === true });
  const chainError = verifyChain(cert, opts.trustAnchors ?? defaultTrustAnchors(), opts.now ?? new Date(), presented);
  return chainError === null ? { chainValid: true, identity, cert } : { chainValid: false, chainError, identity, cert };
}

/** Why a checked certificate cannot authenticate `domain`, in the words of refusals and logs; null when it can. */
export function certificateProblem(check: PeerCertificateResult, domain: string): string | null {
  if (!check.chainValid) return `certificate not trusted (${check.chainError ?? 'unknown error'})`;
  // identity.ts's reasons mostly say "certificate does not name D (...)" already; never twice.
  if (!check.identity.ok) return check.identity.reason.startsWith('certificate does not name') ? check.identity.reason : `certificate does not name ${domain} (${check.identity.reason})`;
  return null;
}

/**
 * Node types `authorizationError` as Error, but sets it to OpenSSL's code string on the server side
 * (`verifyError.code`) and to `code || message` on the client side.
 */
function authorizationErrorCode(socket: TLSSocket): string | undefined {
  const e: unknown = socket.authorizationError;
  if (typeof e === 'string') return e;
  if (e instanceof Error) {
    const code = (e as NodeJS.ErrnoException).code;
    return typeof code === 'string' ? code : e.message;
  }
  return undefined;
}

/**
 * RFC 5280 section 6.1, reduced to what the purpose override needs: from the leaf, follow issuers
 * (certificates the peer sent, as Node links them on `issuerCertificate`) until one is issued by a
 * trust anchor; each link must pass `checkIssued` (names, key identifiers, keyCertSign) *and* a
 * signature check, issuers must be CAs, and every certificate including the anchor must be within
 * its validity period. Returns null when valid, else an OpenSSL-style code.
 * `presented` defaults to the issuers Node linked from the handshake (`leaf.issuerCertificate`...).
 */
export function verifyChain(
  leaf: X509Certificate,
  anchors: readonly X509Certificate[],
  now: Date,
  presented?: readonly X509Certificate[],
): string | null {
  const pool: X509Certificate[] = presented ? [...presented] : [];
  if (!presented) {
    for (let c = leaf.issuerCertificate; c !== undefined && pool.length < MAX_CHAIN_DEPTH; c = c.issuerCertificate) {
      if (pool.some((p) => p.fingerprint256 === c?.fingerprint256)) break;
      pool.push(c);
    }
  }
  let current = leaf;
  for (let depth = 0; depth < MAX_CHAIN_DEPTH; depth++) {
    const dateError = validityError(current, now);
    if (dateError !== null) return dateError;
    if (depth > 0 && !current.ca) return 'INVALID_CA';

    const anchor = anchors.find((a) => issuedBy(current, a));
    if (anchor !== undefined) {
      if (!anchor.ca && anchor.fingerprint256 !== current.fingerprint256) return 'INVALID_CA';
      return anchor.fingerprint256 === current.fingerprint256 ? null : validityError(anchor, now);
    }
    // Never climb through a self-signed certificate that is not an anchor: that is a rogue root.
    const next = pool.find((p) => p.fingerprint256 !== current.fingerprint256 && issuedBy(current, p));
    if (next === undefined) {
      // The same codes OpenSSL would give when nothing else is wrong, so logs read alike either way.
      if (issuedBy(current, current)) return depth === 0 ? 'DEPTH_ZERO_SELF_SIGNED_CERT' : 'SELF_SIGNED_CERT_IN_CHAIN';
      return depth === 0 ? 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' : 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY';
    }
    current = next;
  }
  return 'CERT_CHAIN_TOO_LONG';
}

function issuedBy(subject: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return subject.checkIssued(issuer) && subject.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

function validityError(cert: X509Certificate, now: Date): string | null {
  const from = Date.parse(cert.validFrom);
  const to = Date.parse(cert.validTo);
  if (Number.isNaN(from) || Number.isNaN(to)) return 'ERROR_IN_CERT_NOT_BEFORE_FIELD';
  if (now.getTime() < from) return 'CERT_NOT_YET_VALID';
  if (now.getTime() > to) return 'CERT_HAS_EXPIRED';
  return null;
}

/** Splits PEM text (one or more bundles) into certificates, e.g. the gateway's configured `ca` file. */
export function parseTrustAnchors(pem: string | Buffer | readonly (string | Buffer)[]): X509Certificate[] {
  const texts = (Array.isArray(pem) ? pem : [pem]) as (string | Buffer)[];
  const out: X509Certificate[] = [];
  for (const t of texts) {
    for (const m of t.toString().matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)) {
      out.push(new X509Certificate(m[0]));
    }
  }
  return out;
}

let bundledRoots: X509Certificate[] | undefined;

function defaultTrustAnchors(): X509Certificate[] {
  bundledRoots ??= parseTrustAnchors(rootCertificates);
  return bundledRoots;
}
