/**
 * How the pool's approvals store cuts its queue of etcd changes into transactions
 * (src/cluster/pool-approvals.ts): in order, never a key twice in one transaction, never a key
 * inside a prefix deleted in the same one, at most 100 operations.
 */
import { describe, expect, it } from 'vitest';
import { nextBatch, type EtcdOp } from '../../src/cluster/pool-approvals.js';

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
