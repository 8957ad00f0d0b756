/**
 * Dialback keys and stream ids.
 *
 * References:
 *   XEP-0220 v1.1.1 Server Dialback (the key is opaque to the peer; only the Authoritative Server, which
 *     is us, recomputes and checks it in the db:verify round trip)
 *   XEP-0185 Dialback Key Generation and Validation (the HMAC-SHA256 construction below)
 *   RFC 6120 section 4.7.3 (stream id: unique and unpredictable, so a key cannot be replayed on another stream)
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * XEP-0185: `hex(HMAC-SHA256(key = hex(SHA256(secret)), text = "Receiving Originating StreamID"))`.
 * The HMAC key is the lowercase *hex string* of SHA-256(secret), used as ASCII bytes, not the raw digest:
 * that is what the XEP's examples do and what Prosody, ejabberd and node-xmpp-server compute, so keys we
 * issue on one gateway node validate on another sharing the secret.
 */
export function dialbackKey(
  secret: string,
  receivingDomain: string,
  originatingDomain: string,
  streamId: string,
): string {
  const hmacKey = createHash('sha256').update(secret, 'utf8').digest('hex');
  return createHmac('sha256', hmacKey)
    .update(`${receivingDomain} ${originatingDomain} ${streamId}`, 'utf8')
    .digest('hex');
}

/**
 * Constant-time comparison of two keys (XEP-0185: a timing side channel would let an attacker
 * guess a valid key byte by byte; Prosody moved to a constant-time compare in 2021 for this reason).
 * `timingSafeEqual` throws on different lengths, so both sides are hashed to a fixed 32 bytes first: the
 * comparison then takes the same time whatever the lengths, and never throws.
 */
export function keysEqual(a: string, b: string): boolean {
  const da = createHash('sha256').update(a, 'utf8').digest();
  const db = createHash('sha256').update(b, 'utf8').digest();
  // The hashes being equal implies equal strings (barring a SHA-256 collision); the length check is a
  // cheap belt-and-braces that leaks only the length, which the key format already makes public.
  return timingSafeEqual(da, db) && a.length === b.length;
}

/**
 * A fresh stream id: 144 random bits (RFC 6120 section 4.7.3 wants the id unique and unpredictable;
 * ≥128 bits from a CSPRNG makes both hold in practice), base64url
 * so it is safe in XML attributes and URLs with no escaping. XEP-0185 binds keys to it, so an id must never
 * repeat or be guessable.
 */
export function newStreamId(): string {
  return randomBytes(18).toString('base64url');
}
