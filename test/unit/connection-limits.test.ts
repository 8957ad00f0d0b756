import { describe, expect, it } from 'vitest';
import { defaultMaxUnauthenticatedConnections, parseGatewayConfig } from '../../src/config/schema.js';
import { ConnectionLimits, type LimitSettings, type LimitVerdict, type PoolAdmissionRequest, type PoolGate } from '../../src/stream/connection-limits.js';
import { RECORD_DEFAULTS, type PartnerRecord } from '../../src/policy/types.js';

const BASE: LimitSettings = { connectionLimit: 100, partnerConnectionLimit: 5, maxUnauthenticatedPerAddress: 3, maxDialbackVerifications: 10 };

describe('maxUnauthenticatedConnections', () => {
  it('a full cap sheds the oldest unauthenticated connection and admits the new one', () => {
    const shed: [object, string, string][] = [];
    const limits = new ConnectionLimits({ ...BASE, maxUnauthenticated: 3, shed: (c, rule, text) => shed.push([c, rule, text]) });
    const [a, b, c, d, e] = [{}, {}, {}, {}, {}];
    expect(limits.openUnauthenticated('127.0.0.2', a).ok).toBe(true);
    expect(limits.openUnauthenticated('127.0.0.3', b).ok).toBe(true);
    expect(limits.openUnauthenticated('127.0.0.4', c).ok).toBe(true);
    expect(limits.openUnauthenticated('127.0.0.5', d).ok).toBe(true);
    expect(shed.map(([x]) => x)).toEqual([a]);
    expect(shed[0]![1]).toBe('maxUnauthenticatedConnections');
    expect(shed[0]![2]).toMatch(/maxUnauthenticatedConnections \(3\)/);
    expect(limits.unauthenticatedConnections).toBe(3);
    // b authenticated: it is no longer counted, nothing is shed for the next one.
    limits.closeUnauthenticated('127.0.0.3', b);
    expect(limits.openUnauthenticated('127.0.0.6', e).ok).toBe(true);
    expect(shed).toHaveLength(1);
    // The shed connection's own release later is a no-op (its slot was already given back).
    limits.closeUnauthenticated('127.0.0.2', a);
    expect(limits.unauthenticatedConnections).toBe(3);
  });

  it('a shed connection frees its per-address slot at once', () => {
    const limits = new ConnectionLimits({ ...BASE, maxUnauthenticatedPerAddress: 1, maxUnauthenticated: 1, shed: () => {} });
    const [a, b] = [{}, {}];
    expect(limits.openUnauthenticated('127.0.0.2', a).ok).toBe(true);
    expect(limits.openUnauthenticated('127.0.0.3', b).ok).toBe(true); // sheds a
    expect(limits.openUnauthenticated('127.0.0.2', {}).ok).toBe(true); // 127.0.0.2 has no connection left; sheds b
  });

  it('the per-address cap still refuses the newcomer (a flood from one address sheds nobody else)', () => {
    const shed: object[] = [];
    const limits = new ConnectionLimits({ ...BASE, maxUnauthenticatedPerAddress: 2, maxUnauthenticated: 2, shed: (c) => shed.push(c) });
    limits.openUnauthenticated('127.0.0.2', {});
    limits.openUnauthenticated('127.0.0.2', {});
    const v = limits.openUnauthenticated('127.0.0.2', {});
    expect(v).toMatchObject({ ok: false, rule: 'maxUnauthenticatedPerAddress' });
    expect(shed).toEqual([]);
  });

  it('connections kept apart (the internal server\'s) are never shed nor count against the cap', () => {
    const shed: object[] = [];
    const limits = new ConnectionLimits({ ...BASE, maxUnauthenticated: 1, shed: (c) => shed.push(c) });
    const internal = {};
    expect(limits.openUnauthenticated('10.0.0.1', internal, false).ok).toBe(true);
    expect(limits.openUnauthenticated('127.0.0.2', {}).ok).toBe(true);
    expect(limits.openUnauthenticated('127.0.0.3', {}).ok).toBe(true);
    expect(shed).not.toContain(internal);
    expect(shed).toHaveLength(1);
    limits.closeUnauthenticated('10.0.0.1', internal);
    for (let i = 0; i < 3; i++) expect(limits.openUnauthenticated('10.0.0.1', {}, false).ok).toBe(true); // its per-address slot was freed
    expect(limits.openUnauthenticated('10.0.0.1', {}, false)).toMatchObject({ ok: false, rule: 'maxUnauthenticatedPerAddress' });
  });

  it('without a shed function the newcomer is refused, naming the cap', () => {
    const limits = new ConnectionLimits({ ...BASE, maxUnauthenticated: 1 });
    limits.openUnauthenticated('127.0.0.2', {});
    expect(limits.openUnauthenticated('127.0.0.3', {})).toMatchObject({ ok: false, rule: 'maxUnauthenticatedConnections' });
  });

  it('gateway.yaml: default half of connectionLimit (at most 500), explicit values must stay below connectionLimit', () => {
    const yaml = (extra: string) => `localDomains:\n  - domain: gw.test\nlisten:\n  - { host: 127.0.0.1, port: 0 }\n${extra}`;
    expect(parseGatewayConfig(yaml(''), 'g.yaml').maxUnauthenticatedConnections).toBe(500);
    expect(parseGatewayConfig(yaml('connectionLimit: 40\n'), 'g.yaml').maxUnauthenticatedConnections).toBe(20);
    expect(parseGatewayConfig(yaml('connectionLimit: 40\nmaxUnauthenticatedConnections: 39\n'), 'g.yaml').maxUnauthenticatedConnections).toBe(39);
    expect(() => parseGatewayConfig(yaml('connectionLimit: 40\nmaxUnauthenticatedConnections: 40\n'), 'g.yaml')).toThrow(/g\.yaml:6: maxUnauthenticatedConnections: 40 must be below connectionLimit \(40\)/);
    expect([1, 2, 3, 2000].map(defaultMaxUnauthenticatedConnections)).toEqual([1, 1, 1, 500]);
    const warnings: string[] = [];
    parseGatewayConfig(yaml('maxUnauthenticatedConnections: 10\n'), 'g.yaml', (w) => warnings.push(w));
    expect(warnings).toEqual([]);
  });
});

describe('admitPartnerStream', () => {
  const partner = (over: Partial<PartnerRecord> = {}) => ({ ...RECORD_DEFAULTS, Identity: 'p.example', ConnectionLimit: 2, ...over }) as PartnerRecord;
  const ids = { streamId: 'k1', remoteDomain: 'p.example' };

  it('without a pool answers at once, as addPartnerStream does', () => {
    const limits = new ConnectionLimits(BASE);
    const [a, b, c] = [{}, {}, {}];
    expect(limits.admitPartnerStream(partner(), 'inbound', a, ids)).toEqual({ ok: true });
    expect(limits.admitPartnerStream(partner(), 'inbound', b, ids)).toEqual({ ok: true });
    expect(limits.admitPartnerStream(partner(), 'inbound', c, ids)).toMatchObject({ ok: false, rule: 'ConnectionLimit' });
  });

  it('in a pool asks after the local check, counts the stream while it waits, uncounts it when refused', async () => {
    const asked: PoolAdmissionRequest[] = [];
    const released: object[] = [];
    let answer: LimitVerdict = { ok: true };
    const pool: PoolGate = { admit: async (r) => (asked.push(r), answer), release: (s) => released.push(s), applyLimits: async () => [] };
    const limits = new ConnectionLimits({ ...BASE, pool });
    const [a, b, c] = [{}, {}, {}];
    const first = limits.admitPartnerStream(partner({ ConnectionLimit: null }), 'outbound', a, ids);
    expect(first).toBeInstanceOf(Promise);
    expect(limits.partnerStreams(partner(), 'outbound').has(a)).toBe(true);
    expect(await first).toEqual({ ok: true });
    expect(asked).toEqual([{ partner: 'p.example', direction: 'outbound', limit: 5, limitName: 'partnerConnectionLimit', stream: a, streamId: 'k1', remoteDomain: 'p.example' }]);

    answer = { ok: false, rule: 'ConnectionLimit', text: 'the pool is full' };
    expect(await limits.admitPartnerStream(partner(), 'inbound', b, ids)).toEqual(answer);
    expect(limits.partnerStreams(partner(), 'inbound').has(b)).toBe(false);
    // Refused locally: the pool is not asked.
    answer = { ok: true };
    await limits.admitPartnerStream(partner({ ConnectionLimit: 1 }), 'inbound', c, ids);
    expect(limits.admitPartnerStream(partner({ ConnectionLimit: 1 }), 'inbound', {}, ids)).toMatchObject({ ok: false, rule: 'ConnectionLimit' });
    expect(asked).toHaveLength(3);

    // Closing gives the slot back, once; a stream never counted gives nothing back.
    limits.removePartnerStream('p.example', 'outbound', a);
    limits.removePartnerStream('p.example', 'outbound', a);
    limits.removePartnerStream('p.example', 'inbound', b);
    expect(released).toEqual([a]);
  });

  it('after a reload hands the pool each partner\'s limit in force', async () => {
    let seen: ((p: string) => unknown) | undefined;
    const pool: PoolGate = { admit: async () => ({ ok: true }), release: () => {}, applyLimits: async (limitOf) => ((seen = limitOf), []) };
    expect(new ConnectionLimits(BASE).applyPoolLimits([partner()], () => true)).toBeNull();
    await new ConnectionLimits({ ...BASE, pool }).applyPoolLimits([partner(), partner({ Identity: 'q.example', ConnectionLimit: null })], () => true);
    expect(['p.example', 'q.example', 'gone.example'].map((p) => seen!(p))).toEqual([
      { limit: 2, limitName: 'ConnectionLimit' },
      { limit: 5, limitName: 'partnerConnectionLimit' },
      undefined,
    ]);
  });
});
