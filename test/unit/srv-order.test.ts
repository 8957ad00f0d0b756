import { describe, expect, it } from 'vitest';
import { orderSrv, srvTarget, type SrvRecord } from '../../src/net/srv-order.js';

/** A `random` that replays a fixed sequence (values in [0, 1)). */
function seq(...values: number[]): () => number {
  let i = 0;
  return () => {
    const v = values[i++];
    if (v === undefined) throw new Error('random called more often than expected');
    return v;
  };
}

/** mulberry32: a fixed-seed PRNG, so statistical tests are deterministic yet exercise the real distribution. */
function mulberry32(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const rec = (target: string, priority: number, weight: number, port = 5269): SrvRecord => ({
  target,
  priority,
  weight,
  port,
});

const targets = (records: readonly SrvRecord[]): string[] => records.map(srvTarget);

describe('orderSrv (RFC 2782)', () => {
  it('orders by ascending priority regardless of answer order', () => {
    const out = orderSrv([rec('c', 30, 0), rec('a', 10, 0), rec('b', 20, 0)], seq(0, 0, 0));
    expect(out.unavailable).toBe(false);
    expect(targets(out.records)).toEqual(['a', 'b', 'c']);
  });

  it('never lets a heavier weight jump ahead of a lower priority', () => {
    const out = orderSrv([rec('heavy', 20, 65535), rec('light', 10, 1)], seq(0.99, 0.99));
    expect(targets(out.records)).toEqual(['light', 'heavy']);
  });

  it('selects within a priority by running sum: draw in the second record\'s share picks it first', () => {
    // Weights 1 and 3, no weight 0: draw from 1..4; running sums 1, 4.
    // random 0.5 -> 1 + floor(0.5 * 4) = 3 -> 'b' (running sum 4 >= 3); then only 'a' is left.
    const out = orderSrv([rec('a', 10, 1), rec('b', 10, 3)], seq(0.5, 0));
    expect(targets(out.records)).toEqual(['b', 'a']);
  });

  it('selects within a priority by running sum: draw in the first record\'s share picks it first', () => {
    // random 0.2 -> 1 + floor(0.8) = 1 -> 'a' (running sum 1 >= 1).
    const out = orderSrv([rec('a', 10, 1), rec('b', 10, 3)], seq(0.2, 0));
    expect(targets(out.records)).toEqual(['a', 'b']);
  });

  it('places weight-0 records first, so a draw of 0 selects one of them', () => {
    // Arranged as [z(0), a(5)], sum 5, draw 0..5. random 0 -> 0 -> 'z' (running sum 0 >= 0).
    const first = orderSrv([rec('a', 10, 5), rec('z', 10, 0)], seq(0, 0));
    expect(targets(first.records)).toEqual(['z', 'a']);
    // random 0.5 -> floor(0.5 * 6) = 3 -> 'a' (running sums 0, 5).
    const second = orderSrv([rec('a', 10, 5), rec('z', 10, 0)], seq(0.5, 0));
    expect(targets(second.records)).toEqual(['a', 'z']);
  });

  it('keeps answer order when every weight in a priority is 0', () => {
    const out = orderSrv([rec('x', 10, 0), rec('y', 10, 0), rec('z', 10, 0)], seq(0.9, 0.9, 0.9));
    expect(targets(out.records)).toEqual(['x', 'y', 'z']);
  });

  it('does not overshoot when random returns 1', () => {
    const out = orderSrv([rec('a', 10, 1), rec('b', 10, 3)], seq(1, 1));
    expect(targets(out.records)).toEqual(['b', 'a']);
  });

  it('treats a single "." target as "service decidedly not available"', () => {
    for (const target of ['.', '']) {
      const out = orderSrv([rec(target, 0, 0, 0)]);
      expect(out).toEqual({ records: [], unavailable: true });
    }
  });

  it('drops a "." that is mixed in with real records instead of declaring the service unavailable', () => {
    const out = orderSrv([rec('.', 0, 0), rec('real.example', 10, 0)], seq(0));
    expect(out.unavailable).toBe(false);
    expect(targets(out.records)).toEqual(['real.example']);
  });

  it('returns an empty, available order for no records', () => {
    expect(orderSrv([])).toEqual({ records: [], unavailable: false });
  });

  it('accepts node:dns style records (name instead of target) and strips a trailing dot', () => {
    const out = orderSrv(
      [
        { name: 'b.example.', port: 1, priority: 2, weight: 0 },
        { name: 'a.example', port: 2, priority: 1, weight: 0 },
      ],
      seq(0, 0),
    );
    expect(targets(out.records)).toEqual(['a.example', 'b.example']);
  });

  it('carries extra fields through (XEP-0368 merged sets)', () => {
    const out = orderSrv(
      [
        { target: 'tls.example', port: 5270, priority: 5, weight: 0, directTls: true },
        { target: 'plain.example', port: 5269, priority: 10, weight: 0, directTls: false },
      ],
      seq(0, 0),
    );
    expect(out.records.map((r) => r.directTls)).toEqual([true, false]);
  });

  it('does not modify its input', () => {
    const input = [rec('b', 20, 0), rec('a', 10, 0)];
    orderSrv(input, seq(0, 0));
    expect(targets(input)).toEqual(['b', 'a']);
  });

  it('spreads first picks in proportion to weight (1:3 over 4000 draws)', () => {
    const prng = mulberry32(0x5eed);
    const records = [rec('light', 10, 1), rec('heavy', 10, 3)];
    let heavyFirst = 0;
    const draws = 4000;
    for (let i = 0; i < draws; i++) {
      if (srvTarget(orderSrv(records, prng).records[0]!) === 'heavy') heavyFirst++;
    }
    // Expected 3000 (75 %); binomial sd ≈ 27, so ±150 is > 5 sd. The literal inclusive-0 reading of
    // RFC 2782 without weight-0 records would give 60 % (2400) and fail this.
    expect(heavyFirst).toBeGreaterThan(2850);
    expect(heavyFirst).toBeLessThan(3150);
  });

  it('gives weight-0 records a small but non-zero chance of going first', () => {
    const prng = mulberry32(12345);
    const records = [rec('w9', 10, 9), rec('w0', 10, 0)];
    let zeroFirst = 0;
    for (let i = 0; i < 4000; i++) {
      if (srvTarget(orderSrv(records, prng).records[0]!) === 'w0') zeroFirst++;
    }
    // Draw from 0..9: only 0 selects the weight-0 record, so about 1/10.
    expect(zeroFirst).toBeGreaterThan(250);
    expect(zeroFirst).toBeLessThan(550);
  });
});
