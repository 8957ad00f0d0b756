import { describe, expect, it } from 'vitest';
import { dialbackKey, keysEqual, newStreamId } from '../../src/negotiation/dialback-key.js';

// XEP-0185 examples (also docs/protocol.md section 4.2, checked against Prosody/ejabberd).
const SECRET = 's3cr3tf0rd14lb4ck';

describe('dialbackKey (XEP-0185)', () => {
  it('matches the XEP-0185 vector for xmpp.example.com / example.org', () => {
    expect(dialbackKey(SECRET, 'xmpp.example.com', 'example.org', 'D60000229F')).toBe(
      '37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643',
    );
  });

  it('matches the XEP-0220 montague/capulet vector', () => {
    expect(dialbackKey(SECRET, 'montague.example', 'capulet.example', 'D60000229F')).toBe(
      'b4835385f37fe2895af6c196b59097b16862406db80559900d96bf6fa7d23df3',
    );
  });

  it('matches the documented ends of the third vector (secret d14lb4ck43v3r)', () => {
    const key = dialbackKey('d14lb4ck43v3r', 'capulet.example', 'montague.example', '417GAF25');
    expect(key).toMatch(/^225cc5aa[0-9a-f]{51}c972d$/);
  });

  it('uses the hex string of SHA-256(secret) as the HMAC key, not the raw digest', async () => {
    const { createHash, createHmac } = await import('node:crypto');
    const rawDigestKey = createHmac('sha256', createHash('sha256').update(SECRET).digest())
      .update('montague.example capulet.example D60000229F')
      .digest('hex');
    expect(dialbackKey(SECRET, 'montague.example', 'capulet.example', 'D60000229F')).not.toBe(rawDigestKey);
  });

  it('depends on every input, including the order of the two domains', () => {
    const base = dialbackKey(SECRET, 'montague.example', 'capulet.example', 'D60000229F');
    expect(dialbackKey(SECRET, 'capulet.example', 'montague.example', 'D60000229F')).not.toBe(base);
    expect(dialbackKey(SECRET, 'montague.example', 'capulet.example', 'D60000229G')).not.toBe(base);
    expect(dialbackKey(`${SECRET}x`, 'montague.example', 'capulet.example', 'D60000229F')).not.toBe(base);
    expect(base).toMatch(/^[0-9a-f]{64}$/);
  });
});

describe('keysEqual', () => {
  const key = 'b4835385f37fe2895af6c196b59097b16862406db80559900d96bf6fa7d23df3';

  it('accepts an identical key', () => {
    expect(keysEqual(key, `${key}`)).toBe(true);
  });

  it('rejects a key differing in one character', () => {
    expect(keysEqual(key, `${key.slice(0, -1)}4`)).toBe(false);
  });

  it('rejects keys of different lengths without throwing', () => {
    expect(keysEqual(key, key.slice(0, 10))).toBe(false);
    expect(keysEqual('', key)).toBe(false);
    expect(keysEqual(key, `${key}00`)).toBe(false);
  });

  it('is case-sensitive (keys are lowercase hex)', () => {
    expect(keysEqual(key, key.toUpperCase())).toBe(false);
  });

  it('treats two empty strings as equal', () => {
    expect(keysEqual('', '')).toBe(true);
  });
});

describe('newStreamId', () => {
  it('is URL-safe and carries at least 128 bits', () => {
    const id = newStreamId();
    expect(id).toMatch(/^[A-Za-z0-9_-]+$/);
    // base64url: 6 bits per character, so >= 22 characters for 128 bits.
    expect(id.length).toBeGreaterThanOrEqual(22);
  });

  it('does not repeat', () => {
    const ids = new Set(Array.from({ length: 2000 }, () => newStreamId()));
    expect(ids.size).toBe(2000);
  });
});
