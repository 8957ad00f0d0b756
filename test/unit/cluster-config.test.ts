/** gateway.yaml `cluster` (issue 11 pins its keys): defaults, validation with field names, unknown keys. */
import { describe, expect, it } from 'vitest';
import { parseGatewayConfig } from '../../src/config/schema.js';
import { ConfigError } from '../../src/errors.js';

const BASE = 'localDomains:\n  - domain: gw.example\nlisten:\n  - host: 127.0.0.1\n    port: 0\n';
const FILE = '/etc/xgw/gateway.yaml';

function parse(extra: string, warnings: string[] = []) {
  return parseGatewayConfig(`${BASE}${extra}`, FILE, (m) => warnings.push(m));
}

describe('gateway.yaml cluster', () => {
  it('is absent by default: a single gateway', () => {
    expect(parse('').cluster).toBeNull();
  });

  it('reads the issue\'s example exactly', () => {
    const text = 'cluster:\n  nodeName: gw1\n  etcd:\n    endpoints: ["http://127.0.0.1:2379"]\n    prefix: /xmpp-gateway/\n  leaseTtlSeconds: 10\n';
    expect(parse(text).cluster).toEqual({ nodeName: 'gw1', etcd: { endpoints: ['http://127.0.0.1:2379'], prefix: '/xmpp-gateway/' }, leaseTtlSeconds: 10 });
  });

  it('defaults the prefix to /xmpp-gateway/ and the lease to 10 s', () => {
    const c = parse('cluster: { nodeName: a, etcd: { endpoints: ["http://10.0.0.1:2379", "http://10.0.0.2:2379"] } }\n').cluster;
    expect(c).toEqual({ nodeName: 'a', etcd: { endpoints: ['http://10.0.0.1:2379', 'http://10.0.0.2:2379'], prefix: '/xmpp-gateway/' }, leaseTtlSeconds: 10 });
  });

  it('warns about unknown keys with file:line', () => {
    const warnings: string[] = [];
    parse('cluster:\n  nodeName: a\n  etcd:\n    endpoints: ["http://127.0.0.1:2379"]\n    prefx: /p/\n  leaseTTL: 3\n', warnings);
    expect(warnings).toEqual([`${FILE}:11: cluster.leaseTTL: unknown setting, ignored`, `${FILE}:10: cluster.etcd.prefx: unknown setting, ignored`]);
  });

  it.each([
    ['cluster: { etcd: { endpoints: ["http://127.0.0.1:2379"] } }\n', 'cluster.nodeName'],
    ['cluster: { nodeName: "gw 1", etcd: { endpoints: ["http://127.0.0.1:2379"] } }\n', 'cluster.nodeName'],
    ['cluster: { nodeName: gw1 }\n', 'cluster.etcd'],
    ['cluster: { nodeName: gw1, etcd: { endpoints: [] } }\n', 'cluster.etcd.endpoints'],
    ['cluster: { nodeName: gw1, etcd: { endpoints: ["127.0.0.1:2379"] } }\n', 'cluster.etcd.endpoints[0]'],
    ['cluster: { nodeName: gw1, etcd: { endpoints: ["http://127.0.0.1"] } }\n', 'cluster.etcd.endpoints[0]'],
    ['cluster: { nodeName: gw1, etcd: { endpoints: ["http://127.0.0.1:2379"], prefix: gw } }\n', 'cluster.etcd.prefix'],
    ['cluster: { nodeName: gw1, etcd: { endpoints: ["http://127.0.0.1:2379"] }, leaseTtlSeconds: 1 }\n', 'cluster.leaseTtlSeconds'],
  ])('refuses %j naming %s', (extra, field) => {
    let error: unknown;
    try {
      parse(extra);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).field).toBe(field);
    expect((error as Error).message).toContain('/etc/xgw/gateway.yaml:');
  });
});
