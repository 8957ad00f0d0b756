/**
 * Barrier ids in a pool (src/cluster/barrier-ids.ts) and how DeliveryBarriers uses them
 * (src/routing/delivery-barriers.ts; docs/design.md section 11, "Delivery barriers").
 */
import { describe, expect, it } from 'vitest';
import { PoolBarrierIds } from '../../src/cluster/barrier-ids.js';
import { DeliveryBarriers, type BarrierPool } from '../../src/routing/delivery-barriers.js';

describe('PoolBarrierIds', () => {
  it('every node with the same secret recognises the others\' ids and names their issuer', () => {
    const gw1 = new PoolBarrierIds('gw1', () => 'secret');
    const gw2 = new PoolBarrierIds('gw-2.b_c', () => 'secret');
    const a = `${gw1.ownPrefix()}0`;
    const b = `${gw2.ownPrefix()}zz`;
    expect(a).toMatch(/^gwb-[0-9a-f]{16}-gw1:[0-9a-f]{8}-0$/);
    expect([gw2.issuerOf(a), gw1.issuerOf(b), gw1.issuerOf(a)]).toEqual(['gw1', 'gw-2.b_c', 'gw1']);
  });

  it('another secret, a plain id, or a damaged tail is no pool id', () => {
    const gw1 = new PoolBarrierIds('gw1', () => 'secret');
    const other = new PoolBarrierIds('gw2', () => 'another secret');
    const prefix = gw1.ownPrefix();
    expect(other.issuerOf(`${prefix}1`)).toBeNull();
    for (const id of ['ping-1', 'gwb-', prefix, `${prefix}1 x`, `${prefix}-1`, `${prefix.replace('gw1:', 'gw1/')}1`, `${prefix}${'1'.repeat(13)}`]) {
      expect(gw1.issuerOf(id), id).toBeNull();
    }
  });

  it('ids differ per process (incarnation), and the tag follows the secret; the previous tag is still recognised', () => {
    let secret = 'one';
    const gw1 = new PoolBarrierIds('gw1', () => secret);
    const again = new PoolBarrierIds('gw1', () => secret);
    expect(again.ownPrefix()).not.toBe(gw1.ownPrefix());
    const before = `${gw1.ownPrefix()}5`;
    secret = 'two';
    const after = `${gw1.ownPrefix()}6`;
    expect(after.slice(0, 21)).not.toBe(before.slice(0, 21));
    expect([gw1.issuerOf(before), gw1.issuerOf(after)]).toEqual(['gw1', 'gw1']);
    secret = 'three';
    gw1.ownPrefix();
    expect(gw1.issuerOf(before)).toBeNull();
  });
});

describe('DeliveryBarriers in a pool', () => {
  const pool = (nodeName: string, forwarded: [string, string][]): BarrierPool => {
    const ids = new PoolBarrierIds(nodeName, () => 'secret');
    return { nodeName, ownPrefix: () => ids.ownPrefix(), issuerOf: (id) => ids.issuerOf(id), forward: (issuer, id) => forwarded.push([issuer, id]) };
  };

  it('consumes its own answers and confirms them; passes another node\'s on; leaves the rest to the router', () => {
    const forwarded: [string, string][] = [];
    const gw1 = new DeliveryBarriers(pool('gw1', forwarded));
    const gw2 = new DeliveryBarriers(pool('gw2', []));
    const answered: string[] = [];
    const own = gw1.next({ barrierAnswered: (id) => answered.push(id) });
    const theirs = gw2.next({ barrierAnswered: () => {} });
    expect(gw1.answer('get', own)).toBe(false);
    expect(gw1.answer('result', 'client-id-7')).toBe(false);
    expect(gw1.answer('error', theirs)).toBe(true);
    expect(forwarded).toEqual([['gw2', theirs]]);
    expect(gw1.pending).toBe(1);
    expect(gw1.answer('result', own)).toBe(true);
    expect([answered, gw1.pending]).toEqual([[own], 0]);
    // Once, not twice; an id it never issued (a guess, a previous run) is consumed and confirms nothing.
    expect(gw1.answer('result', own)).toBe(true);
    gw1.answerForwarded(`${own}0`);
    expect(answered).toEqual([own]);
  });

  it('an answer passed on by another node confirms like one read here', () => {
    const gw1 = new DeliveryBarriers(pool('gw1', []));
    const answered: string[] = [];
    const id = gw1.next({ barrierAnswered: (a) => answered.push(a) });
    gw1.answerForwarded(id);
    expect([answered, gw1.pending]).toEqual([[id], 0]);
  });

  it('without a pool: ids of this process only, as before', () => {
    const barriers = new DeliveryBarriers();
    const id = barriers.next({ barrierAnswered: () => {} });
    expect(id).toMatch(/^gw-[0-9a-f]{12}-0$/);
    expect(barriers.answer('result', `${new PoolBarrierIds('gw1', () => 's').ownPrefix()}0`)).toBe(false);
    expect(barriers.answer('result', id)).toBe(true);
    expect(barriers.pending).toBe(0);
  });
});
