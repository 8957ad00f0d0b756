/**
 * How the pool's approvals store cuts its queue of etcd changes into transactions
 * (src/cluster/pool-approvals.ts): in order, never a key twice in one transaction, never a key
 * inside a prefix deleted in the same one, at most 100 operations.
 */
import { describe, expect, it } from 'vitest';
import { nextBatch, WriteQueue, type EtcdOp } from '../../src/cluster/pool-approvals.js';

const put = (key: string): EtcdOp => ({ kind: 'put', key, value: '{}' });
const del = (key: string): EtcdOp => ({ kind: 'delete', key });
const delPrefix = (prefix: string): EtcdOp => ({ kind: 'deletePrefix', prefix });

describe('nextBatch', () => {
  it('takes distinct keys together, in order', () => {
    const q = [put('approvals/a@x b@y'), put('approvals/a@x c@y'), del('approvals/d@x e@y')];
    expect(nextBatch(q)).toEqual(q);
  });

  it('stops before a key the batch already touches', () => {
    const q = [put('approvals/a@x b@y'), del('approvals/a@x b@y'), put('approvals/c@x d@y')];
    expect(nextBatch(q)).toEqual([q[0]]);
    expect(nextBatch(q.slice(1))).toEqual(q.slice(1));
  });

  it('stops before a put inside a prefix deleted earlier in the batch, and the other way round', () => {
    expect(nextBatch([delPrefix('approvals/a@x '), put('approvals/a@x b@y')])).toHaveLength(1);
    expect(nextBatch([put('approvals/a@x b@y'), delPrefix('approvals/a@x ')])).toHaveLength(1);
    // Another local user's key is outside the prefix (the space ends the local JID).
    expect(nextBatch([delPrefix('approvals/a@x '), put('approvals/a@x.org b@y')])).toHaveLength(2);
    expect(nextBatch([delPrefix('approvals/a@x '), delPrefix('approvals/a@x ')])).toHaveLength(1);
  });

  it('carries at most 100 operations', () => {
    const q = Array.from({ length: 250 }, (_, i) => put(`approvals/u${i}@x r@y`));
    expect(nextBatch(q)).toHaveLength(100);
  });
});

/**
 * The queue itself (issue 11 review, finding 2): one pending change per key, so it stays bounded
 * while etcd is away, with the order the transactions above rely on.
 */
describe('WriteQueue', () => {
  const drain = (q: WriteQueue): EtcdOp[][] => {
    const out: EtcdOp[][] = [];
    while (q.size > 0) {
      const b = q.take();
      q.written(b);
      out.push(b);
    }
    return out;
  };

  it('keeps one change per key: the last one', () => {
    const q = new WriteQueue();
    for (let i = 0; i < 1_000; i++) q.put('approvals/a@x b@y', `{"n":${i}}`, false);
    q.delete('approvals/a@x c@y');
    q.put('approvals/a@x c@y', '{"again":true}', true); // a delete then a put: the put wins
    expect(q.size).toBe(2);
    expect(drain(q)).toEqual([[{ kind: 'put', key: 'approvals/a@x b@y', value: '{"n":999}' }, { kind: 'put', key: 'approvals/a@x c@y', value: '{"again":true}' }]]);
  });

  it('a put then a delete of the same key is a delete, unless the put was of a pair never written', () => {
    const q = new WriteQueue();
    q.put('approvals/a@x b@y', '{}', false); // a refresh: the pair is in etcd
    q.delete('approvals/a@x b@y');
    q.put('approvals/a@x new@y', '{}', true); // recorded and pushed out before it was written
    q.delete('approvals/a@x new@y');
    expect(drain(q)).toEqual([[del('approvals/a@x b@y')]]);
  });

  it('a delete after a fresh put already sent still goes out, after it', () => {
    const q = new WriteQueue();
    q.put('approvals/a@x b@y', '{}', true);
    const sent = q.take();
    q.delete('approvals/a@x b@y');
    q.written(sent);
    expect(drain(q)).toEqual([[del('approvals/a@x b@y')]]);
  });

  it('a prefix delete drops the changes it covers, and a later put under it follows it', () => {
    const q = new WriteQueue();
    q.put('approvals/a@x b@y', '{}', false);
    q.delete('approvals/a@x c@y');
    q.put('approvals/a@x.org b@y', '{}', false); // another local user
    q.deletePrefix('approvals/a@x ');
    q.put('approvals/a@x d@y', '{}', true);
    q.deletePrefix('approvals/z@x ');
    q.deletePrefix('approvals/z@x '); // twice: once
    expect(q.size).toBe(4);
    expect(q.deletes('approvals/a@x ', 'approvals/a@x d@y')).toBe(true);
    expect(q.deletes('approvals/a@x.org ', 'approvals/a@x.org b@y')).toBe(false);
    expect(drain(q)).toEqual([
      [put('approvals/a@x.org b@y'), delPrefix('approvals/a@x ')],
      [put('approvals/a@x d@y'), delPrefix('approvals/z@x ')],
    ]);
  });
});
