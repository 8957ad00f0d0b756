import { execFileSync, spawnSync } from 'node:child_process';
import { X509Certificate, createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createCa, ensureDevCertificates, generateKeyPem, issueCertificate, type CertificateAndKey,
} from '../../src/tls/cert-factory.js';
import { GatewayError } from '../../src/errors.js';

const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
// The openssl CLI is a test requirement (.ci/run installs it): these checks must run, not skip.

// One RSA key for the whole file: key generation (~0.15-0.4 s for 2048 bits) would dominate otherwise.
let key: string;
let ca: CertificateAndKey;
let tmp: string;

beforeAll(async () => {
  key = generateKeyPem();
  ca = createCa({ commonName: 'Factory Test CA', keyPem: key });
  tmp = await mkdtemp(join(tmpdir(), 'cert-factory-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof GatewayError ? err.code : `not a GatewayError: ${String(err)}`;
  }
  return undefined;
}

describe('createCa', () => {
  it('makes a self-signed CA certificate with the requested name and lifetime', () => {
    const root = createCa({ commonName: 'Lifetime CA', validDays: 10, keyPem: key });
    const x = new X509Certificate(root.certPem);
    expect(x.ca).toBe(true);
    expect(x.subject).toBe('CN=Lifetime CA');
    expect(x.issuer).toBe('CN=Lifetime CA');
    expect(x.checkIssued(x)).toBe(true);
    expect(x.verify(x.publicKey)).toBe(true);
    const lifetimeDays = (Date.parse(x.validTo) - Date.parse(x.validFrom)) / 86_400_000;
    expect(lifetimeDays).toBeCloseTo(10, 3);
    expect(x.checkPrivateKey(createPrivateKey(root.keyPem))).toBe(true);
  });

  it('makes an intermediate CA signed by another CA', () => {
    const inter = new X509Certificate(createCa({ commonName: 'Intermediate', keyPem: key, issuer: ca }).certPem);
    const root = new X509Certificate(ca.certPem);
    expect(inter.ca).toBe(true);
    expect(inter.checkIssued(root)).toBe(true);
    expect(inter.verify(root.publicKey)).toBe(true);
  });

  it('generates a 2048-bit RSA key by default and writes PKCS#8', () => {
    const root = createCa({ commonName: 'Fresh key CA' });
    expect(root.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    const details = createPrivateKey(root.keyPem).asymmetricKeyDetails;
    expect(details?.modulusLength).toBe(2048);
  });
});

describe('issueCertificate', () => {
  it('defaults to DNS-IDs domain and *.domain, both EKUs, signed by the CA', () => {
    const leaf = issueCertificate(ca, { domain: 'a.example', keyPem: key });
    const x = new X509Certificate(leaf.certPem);
    expect(x.subjectAltName).toBe('DNS:a.example, DNS:*.a.example');
    expect(x.subject).toBe('CN=a.example');
    expect(x.ca).toBe(false);
    expect(x.keyUsage).toEqual([SERVER_AUTH, CLIENT_AUTH]);
    const root = new X509Certificate(ca.certPem);
    expect(x.checkIssued(root)).toBe(true);
    expect(x.verify(root.publicKey)).toBe(true);
    expect(x.checkPrivateKey(createPrivateKey(leaf.keyPem))).toBe(true);
  });

  it('encodes SRV-IDs (IA5String) and XmppAddrs (UTF8String) as otherName SANs Node can read', () => {
    const leaf = issueCertificate(ca, {
      domain: 'b.example',
      keyPem: key,
      dnsNames: ['b.example'],
      srvNames: ['_xmpp-server.b.example'],
      xmppAddrs: ['b.example', 'bücher.example'],
    });
    const x = new X509Certificate(leaf.certPem);
    // Node only names SRVName/XmppAddr when type-id *and* string type are right; otherwise it
    // prints `othername:<unsupported>`, so this also checks the ASN.1 encoding.
    expect(x.subjectAltName).toBe(
      'DNS:b.example, othername:SRVName:_xmpp-server.b.example, othername:XmppAddr:b.example, othername:XmppAddr:bücher.example',
    );
  });

  it('writes IDNs in DNS-IDs and SRV-IDs as A-labels (RFC 5280 4.2.1.6, RFC 4985)', () => {
    const x = new X509Certificate(issueCertificate(ca, {
      domain: 'bücher.example', keyPem: key, srvNames: ['_xmpp-server.bücher.example'],
    }).certPem);
    expect(x.subjectAltName).toBe(
      'DNS:xn--bcher-kva.example, DNS:*.xn--bcher-kva.example, othername:SRVName:_xmpp-server.xn--bcher-kva.example',
    );
  });

  it('omits the SAN extension when no names are requested (CN-only certificate)', () => {
    const x = new X509Certificate(issueCertificate(ca, { domain: 'c.example', keyPem: key, dnsNames: [] }).certPem);
    expect(x.subjectAltName).toBeUndefined();
    expect(x.subject).toBe('CN=c.example');
  });

  it('restricts or omits extKeyUsage', () => {
    const serverOnly = new X509Certificate(issueCertificate(ca, { domain: 'd.example', keyPem: key, extKeyUsage: ['serverAuth'] }).certPem);
    expect(serverOnly.keyUsage).toEqual([SERVER_AUTH]);
    const none = new X509Certificate(issueCertificate(ca, { domain: 'd.example', keyPem: key, extKeyUsage: [] }).certPem);
    expect(none.keyUsage).toBeUndefined();
  });

  it('honours notBefore/notAfter, so expired certificates can be made', () => {
    const notBefore = new Date('2020-01-01T00:00:00Z');
    const notAfter = new Date('2020-02-01T00:00:00Z');
    const x = new X509Certificate(issueCertificate(ca, { domain: 'e.example', keyPem: key, notBefore, notAfter }).certPem);
    expect(Date.parse(x.validFrom)).toBe(notBefore.getTime());
    expect(Date.parse(x.validTo)).toBe(notAfter.getTime());
  });

  it('rejects an empty validity period and non-RSA keys with stable codes', () => {
    const now = new Date();
    expect(codeOf(() => issueCertificate(ca, { domain: 'f.example', keyPem: key, notBefore: now, notAfter: now })))
      .toBe('GW_ERR_TLS_CERT_VALIDITY');
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    expect(codeOf(() => issueCertificate(ca, { domain: 'f.example', keyPem: ec }))).toBe('GW_ERR_TLS_CERT_KEY');
  });

  it('is readable and verifiable by the openssl CLI', async () => {
    const leaf = issueCertificate(ca, {
      domain: 'g.example', keyPem: key, srvNames: ['_xmpp-server.g.example'], xmppAddrs: ['g.example'],
    });
    const dir = join(tmp, 'openssl');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'ca.pem'), ca.certPem);
    await writeFile(join(dir, 'leaf.pem'), leaf.certPem);
    const text = execFileSync('openssl', ['x509', '-noout', '-text', '-in', join(dir, 'leaf.pem')], { encoding: 'utf8' });
    expect(text).toContain('DNS:g.example, DNS:*.g.example');
    expect(text).toMatch(/SRVName:+_xmpp-server\.g\.example/);
    expect(text).toMatch(/XmppAddr:+g\.example/);
    expect(text).toContain('TLS Web Server Authentication, TLS Web Client Authentication');
    const ok = spawnSync('openssl', ['verify', '-CAfile', join(dir, 'ca.pem'), join(dir, 'leaf.pem')], { encoding: 'utf8' });
    expect(ok.status).toBe(0);
    // Control: a different CA must not verify it, or the check above proves nothing.
    await writeFile(join(dir, 'other.pem'), createCa({ commonName: 'Other CA', keyPem: key }).certPem);
    const bad = spawnSync('openssl', ['verify', '-CAfile', join(dir, 'other.pem'), join(dir, 'leaf.pem')], { encoding: 'utf8' });
    expect(bad.status).not.toBe(0);
  });

  it('issues from a CA made by openssl whose key identifier forge would not derive', async () => {
    // docs/peers.md's test CA is made with openssl; its SKI must be copied into our AKID, not recomputed.
    const dir = join(tmp, 'openssl-ca');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'ca.key'), key, { mode: 0o600 });
    execFileSync('openssl', [
      'req', '-x509', '-new', '-key', join(dir, 'ca.key'), '-out', join(dir, 'ca.pem'), '-days', '2', '-subj', '/CN=OpenSSL CA',
      // authorityKeyIdentifier=none: otherwise openssl puts the *hash* in the root's own AKID, and a root
      // whose AKID differs from its SKI no longer counts as self-signed.
      '-addext', 'subjectKeyIdentifier=01:02:03:04', '-addext', 'authorityKeyIdentifier=none',
      '-addext', 'basicConstraints=critical,CA:TRUE',
      '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    ], { stdio: 'pipe' });
    const opensslCa = { certPem: await readFile(join(dir, 'ca.pem'), 'utf8'), keyPem: key };
    const leaf = issueCertificate(opensslCa, { domain: 'h.example', keyPem: key });
    await writeFile(join(dir, 'leaf.pem'), leaf.certPem);
    const text = execFileSync('openssl', ['x509', '-noout', '-text', '-in', join(dir, 'leaf.pem')], { encoding: 'utf8' });
    expect(text).toMatch(/Authority Key Identifier:\s*(keyid:)?01:02:03:04/);
    expect(spawnSync('openssl', ['verify', '-CAfile', join(dir, 'ca.pem'), join(dir, 'leaf.pem')]).status).toBe(0);
  });

  it('is accepted by node:tls in a mutual-auth handshake when each side trusts the CA', async () => {
    const serverCert = issueCertificate(ca, { domain: 'server.example', keyPem: key });
    const clientCert = issueCertificate(ca, { domain: 'client.example', keyPem: key });
    const server = tls.createServer({
      ...pair(serverCert), ca: [ca.certPem], requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2',
    });
    const serverSide = new Promise<{ authorized: boolean; peer: string | undefined }>((resolve) => {
      server.once('secureConnection', (s) => {
        resolve({ authorized: s.authorized, peer: s.getPeerX509Certificate()?.subject });
        s.end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const { port } = server.address() as AddressInfo;
      // Default checkServerIdentity: the DNS-ID server.example must match servername.
      const client = tls.connect({ host: '127.0.0.1', port, servername: 'server.example', ca: [ca.certPem], ...pair(clientCert) });
      const clientAuthorized = await new Promise<boolean>((resolve, reject) => {
        client.once('secureConnect', () => resolve(client.authorized));
        client.once('error', reject);
      });
      expect(clientAuthorized).toBe(true);
      expect(await serverSide).toEqual({ authorized: true, peer: 'CN=client.example' });
      client.destroy();
    } finally {
      server.close();
    }
  });
});

function pair(c: CertificateAndKey): { cert: string; key: string } {
  return { cert: c.certPem, key: c.keyPem };
}

describe('ensureDevCertificates', () => {
  it('creates a CA and per-domain certificates once, with DNS-IDs only and 0600 keys', async () => {
    const dir = join(tmp, 'dev1');
    const first = await ensureDevCertificates(dir, ['gw.example', 'Other.Example']);
    expect(first.caCreated).toBe(true);
    expect(first.created.map((p) => p.slice(dir.length + 1)).sort()).toEqual(
      ['ca.key', 'ca.pem', 'gw.example.crt', 'gw.example.key', 'other.example.crt', 'other.example.key'],
    );
    for (const f of ['ca.key', 'gw.example.key', 'other.example.key']) {
      expect((await stat(join(dir, f))).mode & 0o777).toBe(0o600);
    }
    const root = new X509Certificate(await readFile(join(dir, 'ca.pem')));
    const leaf = new X509Certificate(await readFile(join(dir, 'gw.example.crt')));
    expect(root.ca).toBe(true);
    // docs/peers.md: ejabberd 23.01 crashes on an XmppAddr SAN, so dev certificates carry DNS-IDs only.
    expect(leaf.subjectAltName).toBe('DNS:gw.example, DNS:*.gw.example');
    expect(leaf.checkIssued(root) && leaf.verify(root.publicKey)).toBe(true);
    expect(leaf.checkPrivateKey(createPrivateKey(await readFile(join(dir, 'gw.example.key'))))).toBe(true);

    // Second start: nothing is created and nothing is rewritten.
    const before = await readFile(join(dir, 'gw.example.crt'), 'utf8');
    const second = await ensureDevCertificates(dir, ['gw.example', 'other.example']);
    expect(second).toEqual({ caCreated: false, created: [] });
    expect(await readFile(join(dir, 'gw.example.crt'), 'utf8')).toBe(before);
  });

  it('issues a certificate for a newly added domain from the existing CA', async () => {
    const dir = join(tmp, 'dev2');
    await ensureDevCertificates(dir, ['one.example']);
    const caPem = await readFile(join(dir, 'ca.pem'), 'utf8');
    const result = await ensureDevCertificates(dir, ['one.example', 'bücher.example']);
    expect(result.caCreated).toBe(false);
    expect(result.created.map((p) => p.slice(dir.length + 1))).toEqual(['xn--bcher-kva.example.key', 'xn--bcher-kva.example.crt']);
    expect(await readFile(join(dir, 'ca.pem'), 'utf8')).toBe(caPem);
    const leaf = new X509Certificate(await readFile(join(dir, 'xn--bcher-kva.example.crt')));
    expect(leaf.verify(new X509Certificate(caPem).publicKey)).toBe(true);
  });

  it('refuses to overwrite a lone certificate or key, and to issue without ca.key', async () => {
    const dir = join(tmp, 'dev3');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'lone.example.crt'), 'operator data');
    await expect(ensureDevCertificates(dir, ['lone.example'])).rejects.toMatchObject({ code: 'GW_ERR_TLS_DEV_CERT' });
    expect(await readFile(join(dir, 'lone.example.crt'), 'utf8')).toBe('operator data');
    expect((await readdir(dir)).sort()).toEqual(['lone.example.crt']);

    const dir2 = join(tmp, 'dev4');
    await mkdir(dir2, { recursive: true });
    await writeFile(join(dir2, 'ca.pem'), ca.certPem);
    await expect(ensureDevCertificates(dir2, ['new.example'])).rejects.toMatchObject({ code: 'GW_ERR_TLS_DEV_CERT' });
    expect(await readdir(dir2)).toEqual(['ca.pem']);
  });

  it('rejects domains that are not DNS names (no path traversal through file names)', async () => {
    const dir = join(tmp, 'dev5');
    await expect(ensureDevCertificates(dir, ['../escape'])).rejects.toMatchObject({ code: 'GW_ERR_TLS_DEV_CERT' });
    await expect(ensureDevCertificates(dir, ['a/b.example'])).rejects.toMatchObject({ code: 'GW_ERR_TLS_DEV_CERT' });
    await expect(readdir(tmp)).resolves.not.toContain('escape.crt');
  });
});
