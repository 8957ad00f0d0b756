/**
 * Real TLS handshakes on 127.0.0.1, server side configured as the gateway's s2s listener
 * (requestCert, rejectUnauthorized false), client presenting certificates from cert-factory.
 */
import { X509Certificate } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import forge from 'node-forge';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCa, generateKeyPem, issueCertificate, type CertificateAndKey, type IssueOptions } from '../../src/tls/cert-factory.js';
import { checkPeerCertificate, parseTrustAnchors, verifyChain } from '../../src/tls/peer-certificate.js';

const DAY = 86_400_000;

// Two keys for the whole file (one for the trusted PKI, one for the attacker's): RSA key generation
// is the only slow part, and which key a test certificate carries does not matter to these checks.
let key: string;
let rogueKey: string;
let ca: CertificateAndKey;
let intermediate: CertificateAndKey;
/** Same subject name as `ca`, different key: what an attacker would mint. */
let rogueCa: CertificateAndKey;
let anchors: X509Certificate[];
let server: tls.Server;
let port: number;
/** Server-side sockets by client port, or the waiter for one (whichever side comes first). */
const accepted = new Map<number, TLSSocket | ((s: TLSSocket) => void)>();

beforeAll(async () => {
  key = generateKeyPem();
  rogueKey = generateKeyPem();
  ca = createCa({ commonName: 'Peer Test CA', keyPem: key });
  intermediate = createCa({ commonName: 'Peer Test Intermediate', keyPem: key, issuer: ca });
  rogueCa = createCa({ commonName: 'Peer Test CA', keyPem: rogueKey });
  anchors = parseTrustAnchors(ca.certPem);
  const serverCert = issueCertificate(ca, { domain: 'gw.test', keyPem: key });
  server = tls.createServer({
    cert: serverCert.certPem,
    key: serverCert.keyPem,
    ca: [ca.certPem],
    requestCert: true,
    rejectUnauthorized: false, // docs/protocol.md 2.1: a bad certificate is a policy decision, not a handshake abort
    minVersion: 'TLSv1.2',
  });
  server.on('secureConnection', (s) => {
    // XEP-0344 / docs/protocol.md 2.2: no renegotiation, so the certificate checked below stays the peer's.
    s.disableRenegotiation();
    s.on('error', () => {});
    const remotePort = s.remotePort ?? -1;
    const waiter = accepted.get(remotePort);
    if (typeof waiter === 'function') waiter(s);
    else accepted.set(remotePort, s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  await new Promise<void>((r) => server.close(() => r()));
});

interface Handshake {
  /** The gateway side of the connection. */
  serverSocket: TLSSocket;
  client: TLSSocket;
}

/**
 * Connects presenting `cert` (plus `extraChain` PEM after the leaf, as a peer sending its chain
 * would) and resolves with both ends once the server side has finished the handshake.
 */
async function handshake(cert: CertificateAndKey | undefined, extraChain = '', maxVersion: tls.SecureVersion = 'TLSv1.3'): Promise<Handshake> {
  const client = tls.connect({
    host: '127.0.0.1',
    port,
    servername: 'gw.test',
    ca: [ca.certPem],
    maxVersion,
    ...(cert ? { cert: cert.certPem + extraChain, key: cert.keyPem } : {}),
  });
  client.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    client.once('secureConnect', resolve);
    client.once('error', reject);
  });
  const localPort = client.localPort ?? -1;
  const serverSocket = await new Promise<TLSSocket>((resolve, reject) => {
    const ready = accepted.get(localPort);
    if (ready !== undefined && typeof ready !== 'function') {
      resolve(ready);
      return;
    }
    const timer = setTimeout(() => reject(new Error('server side never finished the handshake')), 5_000);
    accepted.set(localPort, (s) => {
      clearTimeout(timer);
      resolve(s);
    });
  });
  accepted.delete(localPort);
  return { serverSocket, client };
}

/** Issues from the trusted CA with the file's key. */
function issue(opts: IssueOptions, issuer: CertificateAndKey = ca): CertificateAndKey {
  return issueCertificate(issuer, { keyPem: issuer === rogueCa ? rogueKey : key, ...opts });
}

async function check(cert: CertificateAndKey | undefined, domain: string, opts: { extraChain?: string; allowCommonName?: boolean } = {}) {
  const { serverSocket, client } = await handshake(cert, opts.extraChain);
  try {
    const result = checkPeerCertificate(serverSocket, domain, { trustAnchors: anchors, allowCommonName: opts.allowCommonName === true });
    return {
      result,
      authorized: serverSocket.authorized,
      authorizationError: serverSocket.authorizationError as unknown,
      serverSocket,
    };
  } finally {
    client.destroy();
  }
}

describe('chain validation', () => {
  it('accepts a trusted certificate that names the domain', async () => {
    const { result, authorized, authorizationError } = await check(issue({ domain: 'a.test' }), 'a.test');
    expect(authorized).toBe(true);
    expect(authorizationError).toBeNull();
    expect(result).toMatchObject({ chainValid: true, identity: { ok: true, via: 'dns-id' } });
    expect(result.chainError).toBeUndefined();
    expect(result.purposeIgnored).toBeUndefined();
    expect(result.cert?.subject).toBe('CN=a.test');
  });

  it('keeps chain and identity apart: trusted, but for another domain', async () => {
    const { result } = await check(issue({ domain: 'b.test' }), 'a.test');
    expect(result.chainValid).toBe(true);
    expect(result.identity.ok).toBe(false);
  });

  it('rejects a certificate from an untrusted CA', async () => {
    const { result, authorizationError } = await check(issue({ domain: 'a.test' }, rogueCa), 'a.test');
    expect(authorizationError).toBe('UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    expect(result).toMatchObject({ chainValid: false, chainError: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', identity: { ok: true } });
  });

  it('rejects an untrusted CA that the peer sends along in its chain', async () => {
    const { result, authorizationError } = await check(issue({ domain: 'a.test' }, rogueCa), 'a.test', { extraChain: rogueCa.certPem });
    expect(authorizationError).toBe('SELF_SIGNED_CERT_IN_CHAIN');
    expect(result).toMatchObject({ chainValid: false, chainError: 'SELF_SIGNED_CERT_IN_CHAIN' });
  });

  it('rejects a self-signed certificate', async () => {
    const selfSigned = createCa({ commonName: 'a.test', keyPem: key });
    const { result } = await check(selfSigned, 'a.test', { allowCommonName: true });
    expect(result).toMatchObject({ chainValid: false, chainError: 'DEPTH_ZERO_SELF_SIGNED_CERT' });
  });

  it('rejects an expired certificate', async () => {
    const expired = issue({ domain: 'a.test', notBefore: new Date(Date.now() - 30 * DAY), notAfter: new Date(Date.now() - DAY) });
    const { result } = await check(expired, 'a.test');
    expect(result).toMatchObject({ chainValid: false, chainError: 'CERT_HAS_EXPIRED', identity: { ok: true } });
  });

  it('rejects a client that sends no certificate', async () => {
    const { result, authorizationError } = await check(undefined, 'a.test');
    expect(authorizationError).toBe('UNABLE_TO_GET_ISSUER_CERT'); // OpenSSL's misleading code for "none sent"
    expect(result).toEqual({ chainValid: false, chainError: 'NO_PEER_CERTIFICATE', identity: { ok: false, reason: expect.any(String) } });
  });

  it('accepts a trusted chain through an intermediate the peer sends', async () => {
    const { result, authorized } = await check(issue({ domain: 'a.test' }, intermediate), 'a.test', { extraChain: intermediate.certPem });
    expect(authorized).toBe(true);
    expect(result.chainValid).toBe(true);
  });
});

describe('serverAuth-only certificates (Let\'s Encrypt since 2026-02-11)', () => {
  it('accepts a trusted serverAuth-only certificate that OpenSSL flags INVALID_PURPOSE', async () => {
    const { result, authorized, authorizationError } = await check(issue({ domain: 'a.test', extKeyUsage: ['serverAuth'] }), 'a.test');
    expect(authorized).toBe(false);
    expect(authorizationError).toBe('INVALID_PURPOSE');
    expect(result).toMatchObject({ chainValid: true, purposeIgnored: true, identity: { ok: true, via: 'dns-id' } });
    expect(result.chainError).toBeUndefined();
  });

  it('accepts one issued by an intermediate, as LE certificates are', async () => {
    const leaf = issue({ domain: 'a.test', extKeyUsage: ['serverAuth'] }, intermediate);
    const { result, authorizationError } = await check(leaf, 'a.test', { extraChain: intermediate.certPem });
    expect(authorizationError).toBe('INVALID_PURPOSE');
    expect(result).toMatchObject({ chainValid: true, purposeIgnored: true });
  });

  it('still rejects it when expired (OpenSSL reports the later date error, not the purpose)', async () => {
    const leaf = issue({
      domain: 'a.test', extKeyUsage: ['serverAuth'], notBefore: new Date(Date.now() - 30 * DAY), notAfter: new Date(Date.now() - DAY),
    });
    const { result, authorizationError } = await check(leaf, 'a.test');
    expect(authorizationError).toBe('CERT_HAS_EXPIRED');
    expect(result).toMatchObject({ chainValid: false, chainError: 'CERT_HAS_EXPIRED' });
  });

  it('rejects an attacker CA sent in the chain, which OpenSSL also reports as INVALID_PURPOSE', async () => {
    // The trap: with the rogue root in the chain, the untrusted-root error is recorded *before* the
    // purpose check and then overwritten by it, so INVALID_PURPOSE alone would accept any self-made CA.
    const leaf = issue({ domain: 'a.test', extKeyUsage: ['serverAuth'] }, rogueCa);
    const { result, authorizationError } = await check(leaf, 'a.test', { extraChain: rogueCa.certPem });
    expect(authorizationError).toBe('INVALID_PURPOSE');
    expect(result).toMatchObject({ chainValid: false, chainError: 'SELF_SIGNED_CERT_IN_CHAIN' });
    expect(result.purposeIgnored).toBeUndefined();
  });

  it('rejects it when the configured trust anchors do not include its CA', async () => {
    const { serverSocket, client } = await handshake(issue({ domain: 'a.test', extKeyUsage: ['serverAuth'] }));
    try {
      expect(serverSocket.authorizationError as unknown).toBe('INVALID_PURPOSE');
      // Default anchors are Node's bundled Mozilla roots, which do not contain the test CA (Node links
      // the CA from the context's store as the leaf's issuer, so it is reached and found untrusted).
      expect(checkPeerCertificate(serverSocket, 'a.test')).toMatchObject({ chainValid: false, chainError: 'SELF_SIGNED_CERT_IN_CHAIN' });
      expect(checkPeerCertificate(serverSocket, 'a.test', { trustAnchors: anchors }).chainValid).toBe(true);
    } finally {
      client.destroy();
    }
  });

  it('checks validity dates itself when it overrides the purpose error', async () => {
    // OpenSSL never lets a date error hide behind INVALID_PURPOSE (dates are checked last), so
    // exercise the independent date check by moving the clock instead.
    const { serverSocket, client } = await handshake(issue({ domain: 'a.test', extKeyUsage: ['serverAuth'], validDays: 30 }));
    try {
      const later = new Date(Date.now() + 60 * DAY);
      const earlier = new Date(Date.now() - DAY);
      expect(checkPeerCertificate(serverSocket, 'a.test', { trustAnchors: anchors, now: later }))
        .toMatchObject({ chainValid: false, chainError: 'CERT_HAS_EXPIRED' });
      expect(checkPeerCertificate(serverSocket, 'a.test', { trustAnchors: anchors, now: earlier }))
        .toMatchObject({ chainValid: false, chainError: 'CERT_NOT_YET_VALID' });
    } finally {
      client.destroy();
    }
  });
});

describe('verifyChain', () => {
  const x = (c: CertificateAndKey) => new X509Certificate(c.certPem);

  it('refuses an end-entity certificate as an issuer (RFC 5280 basicConstraints)', () => {
    const notACa = issue({ domain: 'evil.test' });
    const leaf = x(issueCertificate(notACa, { domain: 'a.test', keyPem: key, extKeyUsage: ['serverAuth'] }));
    expect(verifyChain(leaf, [x(notACa)], new Date())).not.toBeNull();
    expect(verifyChain(leaf, anchors, new Date())).not.toBeNull();
  });

  it('follows presented intermediates, and only CA ones (RFC 5280 6.1.4 (k))', () => {
    const leaf = x(issue({ domain: 'a.test' }, intermediate));
    expect(verifyChain(leaf, anchors, new Date(), [x(intermediate)])).toBeNull();
    expect(verifyChain(leaf, anchors, new Date(), [])).toBe('UNABLE_TO_VERIFY_LEAF_SIGNATURE');

    // An issuer with no keyUsage passes OpenSSL's X509_check_issued (which only looks at keyUsage),
    // so basicConstraints cA=false is what must stop it. cert-factory always sets keyUsage, so build it here.
    const pseudo = forge.pki.createCertificate();
    pseudo.publicKey = forge.pki.publicKeyFromPem(x(ca).publicKey.export({ type: 'spki', format: 'pem' }) as string);
    pseudo.serialNumber = '01';
    pseudo.validity.notBefore = new Date(Date.now() - DAY);
    pseudo.validity.notAfter = new Date(Date.now() + DAY);
    pseudo.setSubject([{ name: 'commonName', value: 'not a CA' }]);
    pseudo.setIssuer(forge.pki.certificateFromPem(ca.certPem).subject.attributes);
    pseudo.setExtensions([{ name: 'basicConstraints', cA: false }]);
    pseudo.sign(forge.pki.privateKeyFromPem(ca.keyPem) as forge.pki.rsa.PrivateKey, forge.md.sha256.create());
    const notACa = { certPem: forge.pki.certificateToPem(pseudo), keyPem: key };
    const below = x(issueCertificate(notACa, { domain: 'a.test', keyPem: key }));
    expect(below.checkIssued(x(notACa)) && below.verify(x(notACa).publicKey)).toBe(true); // the link itself is sound
    expect(verifyChain(below, anchors, new Date(), [x(notACa)])).toBe('INVALID_CA');
  });

  it('refuses a leaf whose issuer has the anchor\'s name but another key', () => {
    const leaf = x(issue({ domain: 'a.test' }, rogueCa));
    expect(verifyChain(leaf, anchors, new Date())).toBe('UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    expect(verifyChain(leaf, [x(rogueCa)], new Date())).toBeNull(); // control: the right anchor accepts it
  });

  it('rejects an expired trust anchor', () => {
    const leaf = x(issue({ domain: 'a.test' }));
    expect(verifyChain(leaf, anchors, new Date(Date.now() + 3651 * DAY))).toBe('CERT_HAS_EXPIRED');
  });
});

describe('identity over a real handshake', () => {
  it('matches a wildcard DNS-ID for one label only', async () => {
    const { result, serverSocket } = await check(issue({ domain: 'wild.test', dnsNames: ['*.wild.test'] }), 'chat.wild.test');
    expect(result.identity).toEqual({ ok: true, via: 'dns-id' });
    expect(checkPeerCertificate(serverSocket, 'wild.test', { trustAnchors: anchors }).identity.ok).toBe(false);
    expect(checkPeerCertificate(serverSocket, 'a.b.wild.test', { trustAnchors: anchors }).identity.ok).toBe(false);
  });

  it('matches an SRV-ID-only certificate', async () => {
    const cert = issue({ domain: 'srv.test', dnsNames: [], srvNames: ['_xmpp-server.srv.test'], commonName: 'unrelated.test' });
    const { result } = await check(cert, 'srv.test');
    expect(result).toMatchObject({ chainValid: true, identity: { ok: true, via: 'srv-id' } });
  });

  it('does not let an _xmpp-client SRV-ID authenticate a server', async () => {
    const cert = issue({ domain: 'srv.test', dnsNames: [], srvNames: ['_xmpp-client.srv.test'] });
    const { result } = await check(cert, 'srv.test', { allowCommonName: true });
    expect(result.identity.ok).toBe(false);
  });

  it('matches an XmppAddr-only certificate', async () => {
    const cert = issue({ domain: 'addr.test', dnsNames: [], xmppAddrs: ['addr.test'], commonName: 'unrelated.test' });
    const { result } = await check(cert, 'addr.test');
    expect(result).toMatchObject({ chainValid: true, identity: { ok: true, via: 'xmpp-addr' } });
  });

  it('matches a CN-only certificate only when the partner allows CN', async () => {
    const cert = issue({ domain: 'cn.test', dnsNames: [] });
    const denied = await check(cert, 'cn.test');
    expect(denied.result.chainValid).toBe(true);
    expect(denied.result.identity.ok).toBe(false);
    const allowed = await check(cert, 'cn.test', { allowCommonName: true });
    expect(allowed.result.identity).toEqual({ ok: true, via: 'cn' });
  });

  it('ignores the CN when SANs exist, even with allowCommonName', async () => {
    const cert = issue({ domain: 'cn.test', dnsNames: ['other.test'] });
    const { result } = await check(cert, 'cn.test', { allowCommonName: true });
    expect(result.identity.ok).toBe(false);
  });
});

describe('outbound side', () => {
  it('checks the server certificate on a client socket the same way', async () => {
    const target = issue({ domain: 'remote.test', extKeyUsage: ['serverAuth'] });
    const remote = tls.createServer({ cert: target.certPem, key: target.keyPem });
    await new Promise<void>((r) => remote.listen(0, '127.0.0.1', r));
    try {
      const client = tls.connect({
        host: '127.0.0.1', port: (remote.address() as AddressInfo).port, servername: 'remote.test', ca: [ca.certPem], rejectUnauthorized: false,
      });
      await new Promise<void>((resolve, reject) => {
        client.once('secureConnect', resolve);
        client.once('error', reject);
      });
      // A serverAuth-only certificate is the right purpose for a *server*: OpenSSL authorizes it.
      expect(client.authorized).toBe(true);
      expect(checkPeerCertificate(client, 'remote.test', { trustAnchors: anchors })).toMatchObject({ chainValid: true, identity: { ok: true } });
      expect(checkPeerCertificate(client, 'elsewhere.test', { trustAnchors: anchors }).identity.ok).toBe(false);
      client.destroy();
    } finally {
      remote.close();
    }
  });
});

describe('renegotiation', () => {
  it('is refused after disableRenegotiation() on a TLS 1.2 connection', async () => {
    const { serverSocket, client } = await handshake(issue({ domain: 'a.test' }), '', 'TLSv1.2');
    try {
      expect(serverSocket.getProtocol()).toBe('TLSv1.2');
      const serverError = new Promise<string | undefined>((resolve) => {
        serverSocket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code));
      });
      const started = client.renegotiate({ rejectUnauthorized: false }, () => {});
      expect(started).toBe(true);
      expect(await serverError).toBe('ERR_TLS_RENEGOTIATION_DISABLED');
    } finally {
      client.destroy();
    }
  });
});
