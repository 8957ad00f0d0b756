/**
 * The gateway as a relay for the interop tests: local domain = the internal server's domain,
 * certificates from the harness's test CA (as the peers'), `internal` pointing at the internal
 * server's s2s address, its internal listener and DNS view on `internalIp`; the harness DNS then
 * sends the partners to the gateway for that domain.
 */
import { issueCertificate } from '../../../src/tls/cert-factory.js';
import type { TestDns } from '../../helpers/test-dns.js';
import { startTestGateway, testKey, type TestGateway, type TestPki } from '../../helpers/test-gateway.js';
import { peerZone } from './common.js';
import type { PeerCerts } from './peer-certs.js';

/** A TestPki over the harness's CAs, so the gateway and the real servers trust each other. */
export function peerPki(certs: PeerCerts): TestPki {
  return {
    ca: certs.ca,
    otherCa: certs.unrelatedCa,
    issue: (opts, issuer = certs.ca) => issueCertificate(issuer, { keyPem: testKey(), ...opts }),
  };
}

export interface RelayGatewayOptions {
  certs: PeerCerts;
  /** The harness DNS the partners and the gateway resolve through; its zone is set here. */
  dns: TestDns;
  /** The internal server (its domain becomes the gateway's local domain). */
  internal: { domain: string; ip: string; s2sPort: number };
  /** The partner servers (their SRV/A records go into the harness zone). */
  partners: ReadonlyArray<{ domain: string; ip: string; s2sPort: number }>;
  /** partners.yaml text. */
  partnerRecords: string;
  /** Address of the gateway's internal listener and DNS view (ports chosen by the OS). */
  internalIp: string;
  /** `queues:` settings (flow-style YAML body). */
  queues?: string;
}

export async function startRelayGateway(o: RelayGatewayOptions): Promise<TestGateway> {
  const gw = await startTestGateway({
    pki: peerPki(o.certs),
    localDomains: [o.internal.domain],
    dnsServer: o.dns.address,
    partners: o.partnerRecords,
    config: [
      'internal:',
      `  server: { host: ${o.internal.ip}, port: ${o.internal.s2sPort} }`,
      `  listen: { host: ${o.internalIp}, port: 0 }`,
      `  dns: { host: ${o.internalIp}, port: 0 }`,
      ...(o.queues ? [`queues: { ${o.queues} }`] : []),
    ].join('\n'),
  });
  o.dns.setZone(peerZone(o.partners, {
    srv: { [`_xmpp-server._tcp.${o.internal.domain}`]: [{ target: '127.0.0.1.', port: gw.port }] },
    a: { [o.internal.domain]: ['127.0.0.1'] },
  }));
  return gw;
}
