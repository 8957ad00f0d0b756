/**
 * Development and test certificates: a private CA and per-domain s2s certificates, built with
 * node-forge (Node has no API to *create* X.509 certificates).
 *
 * References:
 *   RFC 5280 (X.509 profile: basicConstraints, keyUsage, extKeyUsage, subjectAltName, key identifiers)
 *   RFC 6120 section 13.7.1.2 (what an XMPP server certificate should contain: DNS-ID, SRV-ID, XmppAddr)
 *   RFC 4985 (id-on-dnsSRV otherName, 1.3.6.1.5.5.7.8.7, IA5String "_Service.Name")
 *   RFC 6120 section 13.7.1.4 (id-on-xmppAddr otherName, 1.3.6.1.5.5.7.8.5, UTF8String)
 *   RFC 6125 (how peers match the names above; see identity.ts)
 *
 * Keys are RSA and generated with `node:crypto` `generateKeyPairSync` (OpenSSL, ~0.2 s for 2048 bits
 * on a small VM; node-forge 1.x delegates to the same call when it runs under Node, its pure-JS
 * fallback is far slower). forge can only sign with RSA, so there is no EC option here.
 */
import {
  createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign as cryptoSign, type KeyObject,
} from 'node:crypto';
import { mkdir, stat, writeFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { domainToASCII } from 'node:url';
import forge from 'node-forge';
import { GatewayError } from '../errors.js';

const { pki, asn1 } = forge;

/** RFC 6120 section 13.7.1.4: id-on-xmppAddr. */
export const OID_XMPP_ADDR = '1.3.6.1.5.5.7.8.5';
/** RFC 4985 section 2: id-on-dnsSRV. */
export const OID_DNS_SRV = '1.3.6.1.5.5.7.8.7';

/** A PEM certificate and its PEM (PKCS#8) private key. */
export interface CertificateAndKey {
  readonly certPem: string;
  readonly keyPem: string;
}

export interface CaOptions {
  commonName: string;
  /** Validity in days from now (default 3650). */
  validDays?: number;
  /** RSA modulus length in bits (default 2048). */
  keyBits?: number;
  /** Reuse this PEM private key instead of generating one (tests use it to skip key generation). */
  keyPem?: string;
  /** Sign with this CA to make an intermediate CA (default: self-signed root). */
  issuer?: CertificateAndKey;
}

export type ExtKeyUsageName = 'serverAuth' | 'clientAuth';

export interface IssueOptions {
  /** The XMPP domain the certificate is for; also the default CN and DNS-IDs. */
  domain: string;
  /** SAN dNSName entries (default `[domain, '*.' + domain]`); `[]` for none. */
  dnsNames?: string[];
  /** SAN otherName id-on-dnsSRV entries, e.g. `_xmpp-server.example.org` (IA5String, RFC 4985). */
  srvNames?: string[];
  /** SAN otherName id-on-xmppAddr entries (UTF8String, RFC 6120 section 13.7.1.4). */
  xmppAddrs?: string[];
  /** Subject CN (default `domain`). */
  commonName?: string;
  /**
   * extKeyUsage purposes (default both: s2s initiators present their server certificate as a TLS
   * client certificate). `[]` omits the extension, which RFC 5280 section 4.2.1.12 reads as "any purpose".
   */
  extKeyUsage?: ExtKeyUsageName[];
  /** Start of validity (default: 5 minutes ago, to tolerate clock skew between peers). */
  notBefore?: Date;
  /** End of validity (default: notBefore + validDays); set it in the past to make an expired certificate. */
  notAfter?: Date;
  /** Validity in days when notAfter is not given (default 825). */
  validDays?: number;
  /** RSA modulus length in bits (default 2048). */
  keyBits?: number;
  /** Reuse this PEM private key instead of generating one (tests use it to skip key generation). */
  keyPem?: string;
}

const DAY_MS = 86_400_000;
const SKEW_MS = 5 * 60_000;

/** Generates an RSA key pair with OpenSSL (fast) and returns it as PEM (PKCS#8). */
export function generateKeyPem(keyBits = 2048): string {
  const { privateKey } = generateKeyPairSync('rsa', {
    modulusLength: keyBits,
    publicExponent: 0x10001,
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  return privateKey;
}

interface KeyMaterial {
  /** The private key as PKCS#8 PEM (what we write to disk). */
  readonly pem: string;
  readonly privateKey: KeyObject;
  /** The public key in forge's form, for the certificate's subjectPublicKeyInfo. */
  readonly forgePublicKey: forge.pki.PublicKey;
}

function loadKey(keyPem: string): KeyMaterial {
  const privateKey = createPrivateKey(keyPem);
  if (privateKey.asymmetricKeyType !== 'rsa') {
    // forge can only encode RSA subjectPublicKeyInfo, and we only emit sha256WithRSAEncryption.
    throw new GatewayError('GW_ERR_TLS_CERT_KEY', `only RSA keys are supported, got ${privateKey.asymmetricKeyType ?? 'unknown'}`);
  }
  const spki = createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }) as string;
  return {
    pem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    privateKey,
    forgePublicKey: pki.publicKeyFromPem(spki),
  };
}

/**
 * Signs the TBSCertificate with OpenSSL instead of forge's pure-JS RSA (~1 ms instead of ~30 ms per
 * certificate), producing what `cert.sign(key, sha256)` would: sha256WithRSAEncryption, PKCS#1 v1.5.
 */
function signCertificate(cert: forge.pki.Certificate, issuerKey: KeyObject): void {
  const oid = pki.oids['sha256WithRSAEncryption'];
  if (oid === undefined) throw new Error('node-forge lacks the sha256WithRSAEncryption OID');
  const mutable = cert as forge.pki.Certificate & { tbsCertificate: forge.asn1.Asn1; signatureOid: string; signature: string };
  mutable.siginfo.algorithmOid = oid;
  mutable.signatureOid = oid;
  // getTBSCertificate is public in node-forge but missing from @types/node-forge.
  const tbs = (pki as unknown as { getTBSCertificate(c: forge.pki.Certificate): forge.asn1.Asn1 }).getTBSCertificate(cert);
  mutable.tbsCertificate = tbs;
  const der = Buffer.from(asn1.toDer(tbs).getBytes(), 'binary');
  mutable.signature = cryptoSign('sha256', der, issuerKey).toString('binary');
}

/**
 * RFC 5280 section 4.1.2.2: a positive INTEGER of at most 20 octets, unique per CA; 16 random bytes
 * with the top bit cleared (a set top bit would make the DER INTEGER negative).
 */
function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = ((bytes[0] ?? 0) & 0x7f) | 0x01; // and never a leading zero octet
  return bytes.toString('hex');
}

/** RFC 5280 section 4.1.2.4: UTF8String attribute values (forge defaults to PrintableString, which forbids `*`, `_`, `@`). */
function nameAttrs(commonName: string): forge.pki.CertificateField[] {
  // @types/node-forge types valueTagClass as asn1.Class; forge itself reads it as a universal *type* tag.
  const utf8 = asn1.Type.UTF8 as unknown as forge.asn1.Class;
  return [{ name: 'commonName', value: commonName, valueTagClass: utf8 }];
}

/** `[0] IMPLICIT OtherName ::= SEQUENCE { type-id OID, value [0] EXPLICIT ANY }` (RFC 5280 section 4.2.1.6). */
function otherName(oid: string, value: forge.asn1.Asn1): forge.asn1.Asn1 {
  return asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, true, [
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OID, false, asn1.oidToDer(oid).getBytes()),
    asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, true, [value]),
  ]);
}

/**
 * The subjectAltName extension value, built by hand because forge's encoder only knows the
 * primitive GeneralName forms (it cannot emit the constructed otherName that SRV-ID and XmppAddr need).
 */
function subjectAltName(dnsNames: string[], srvNames: string[], xmppAddrs: string[]): forge.asn1.Asn1 {
  const names: forge.asn1.Asn1[] = [];
  for (const dns of dnsNames) {
    // dNSName [2] IA5String: RFC 5280 section 4.2.1.6 requires the A-label form of IDNs.
    names.push(asn1.create(asn1.Class.CONTEXT_SPECIFIC, 2, false, toIa5(dns, 'dNSName')));
  }
  for (const srv of srvNames) {
    // RFC 4985 section 2: SRVName is an IA5String "_Service.Name" with Name in A-label form.
    names.push(otherName(OID_DNS_SRV, asn1.create(asn1.Class.UNIVERSAL, asn1.Type.IA5STRING, false, toIa5(srv, 'SRVName'))));
  }
  for (const addr of xmppAddrs) {
    // RFC 6120 section 13.7.1.4: XmppAddr is a UTF8String (JIDs may contain U-labels).
    names.push(otherName(OID_XMPP_ADDR, asn1.create(asn1.Class.UNIVERSAL, asn1.Type.UTF8, false, forge.util.encodeUtf8(addr))));
  }
  return asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, names);
}

/**
 * RFC 5280 section 4.2.1.1: the authorityKeyIdentifier must equal the issuer's subjectKeyIdentifier,
 * which a CA made elsewhere (openssl, an operator's CA) may not have derived the way forge does;
 * OpenSSL refuses an issuer whose SKI differs from the child's AKID. Copy it when present.
 */
function keyIdentifierOf(issuer: forge.pki.Certificate): string {
  const ext = issuer.getExtension('subjectKeyIdentifier') as { subjectKeyIdentifier?: string } | undefined;
  if (ext?.subjectKeyIdentifier) return forge.util.hexToBytes(ext.subjectKeyIdentifier);
  return issuer.generateSubjectKeyIdentifier().getBytes();
}

function toIa5(value: string, what: string): string {
  // A wildcard label is kept as is; the rest goes through IDNA ToASCII so IDNs end up as A-labels.
  const wildcard = value.startsWith('*.');
  const rest = wildcard ? value.slice(2) : value;
  const ascii = /^[\x21-\x7e]*$/.test(rest) ? rest : domainToASCII(rest);
  if (ascii === '' || !/^[\x21-\x7e]+$/.test(ascii)) {
    throw new GatewayError('GW_ERR_TLS_CERT_NAME', `${what} '${value}' cannot be encoded as an IA5String`);
  }
  return wildcard ? `*.${ascii}` : ascii;
}

function validity(from: Date | undefined, to: Date | undefined, days: number): { notBefore: Date; notAfter: Date } {
  const notBefore = from ?? new Date(Date.now() - SKEW_MS);
  const notAfter = to ?? new Date(notBefore.getTime() + days * DAY_MS);
  if (notAfter.getTime() <= notBefore.getTime()) {
    throw new GatewayError('GW_ERR_TLS_CERT_VALIDITY', 'notAfter must be later than notBefore');
  }
  return { notBefore, notAfter };
}

/**
 * Creates a CA certificate, self-signed unless `issuer` is given (RFC 5280 section 4.2.1.9
 * basicConstraints cA, critical; section 4.2.1.3 keyUsage keyCertSign + cRLSign, critical).
 */
export function createCa(opts: CaOptions): CertificateAndKey {
  const key = loadKey(opts.keyPem ?? generateKeyPem(opts.keyBits));
  const issuerCert = opts.issuer ? pki.certificateFromPem(opts.issuer.certPem) : undefined;
  const signingKey = opts.issuer ? loadKey(opts.issuer.keyPem).privateKey : key.privateKey;
  const cert = pki.createCertificate();
  cert.publicKey = key.forgePublicKey;
  cert.serialNumber = randomSerial();
  const { notBefore, notAfter } = validity(undefined, undefined, opts.validDays ?? 3650);
  cert.validity.notBefore = notBefore;
  cert.validity.notAfter = notAfter;
  cert.setSubject(nameAttrs(opts.commonName));
  cert.setIssuer(issuerCert ? issuerCert.subject.attributes : nameAttrs(opts.commonName));
  const extensions: object[] = [
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ];
  if (issuerCert) {
    extensions.push({ name: 'authorityKeyIdentifier', keyIdentifier: keyIdentifierOf(issuerCert) });
  }
  cert.setExtensions(extensions);
  signCertificate(cert, signingKey);
  return { certPem: pki.certificateToPem(cert), keyPem: key.pem };
}

/**
 * Issues an end-entity certificate for an XMPP domain, signed by `ca`.
 * Defaults: DNS-IDs `domain` and `*.domain`, no SRV-ID/XmppAddr, EKU serverAuth + clientAuth,
 * 825 days from 5 minutes ago, a fresh 2048-bit RSA key.
 */
export function issueCertificate(ca: CertificateAndKey, opts: IssueOptions): CertificateAndKey {
  const caCert = pki.certificateFromPem(ca.certPem);
  const caKey = loadKey(ca.keyPem).privateKey;
  const key = loadKey(opts.keyPem ?? generateKeyPem(opts.keyBits));

  const dnsNames = opts.dnsNames ?? [opts.domain, `*.${opts.domain}`];
  const srvNames = opts.srvNames ?? [];
  const xmppAddrs = opts.xmppAddrs ?? [];
  const eku = opts.extKeyUsage ?? ['serverAuth', 'clientAuth'];

  const cert = pki.createCertificate();
  cert.publicKey = key.forgePublicKey;
  cert.serialNumber = randomSerial();
  const { notBefore, notAfter } = validity(opts.notBefore, opts.notAfter, opts.validDays ?? 825);
  cert.validity.notBefore = notBefore;
  cert.validity.notAfter = notAfter;
  cert.setSubject(nameAttrs(opts.commonName ?? opts.domain));
  // Copy the CA's subject verbatim (with its original string types) so issuer and subject names compare equal.
  cert.setIssuer(caCert.subject.attributes);

  const extensions: object[] = [
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'subjectKeyIdentifier' },
    // RFC 5280 section 4.2.1.1: lets verifiers pick the right CA key when a CA has rolled its key.
    { name: 'authorityKeyIdentifier', keyIdentifier: keyIdentifierOf(caCert) },
  ];
  if (eku.length > 0) {
    extensions.push({ name: 'extKeyUsage', serverAuth: eku.includes('serverAuth'), clientAuth: eku.includes('clientAuth') });
  }
  if (dnsNames.length + srvNames.length + xmppAddrs.length > 0) {
    // RFC 5280 section 4.2.1.6: critical only when the subject DN is empty; ours always has a CN.
    extensions.push({ name: 'subjectAltName', value: subjectAltName(dnsNames, srvNames, xmppAddrs) });
  }
  cert.setExtensions(extensions);
  signCertificate(cert, caKey);
  return { certPem: pki.certificateToPem(cert), keyPem: key.pem };
}

/** What `ensureDevCertificates` wrote (absolute or dir-relative paths as built from `dir`). */
export interface DevCertificatesResult {
  /** True when `ca.pem` and `ca.key` were created by this call. */
  caCreated: boolean;
  /** Every file written, in order. */
  created: string[];
}

/**
 * First-start helper: makes sure `<dir>/ca.pem` and `<dir>/<domain>.crt` + `<dir>/<domain>.key`
 * exist for every local domain, creating a development CA (`ca.pem`, `ca.key`) when needed.
 * Certificates carry DNS-IDs only (`domain`, `*.domain`) because ejabberd 23.01 crashes verifying
 * an id-on-xmppAddr SAN (see docs/peers.md "Certificates"). Existing files are never overwritten
 * (opened with `wx`); private keys are written with mode 0600. File names use the domain's
 * lowercase A-label.
 * @throws GatewayError GW_ERR_TLS_DEV_CERT when a domain is invalid, when a certificate exists
 *   without its key (or the reverse), or when a certificate must be issued but `ca.key` is missing.
 */
export async function ensureDevCertificates(dir: string, domains: readonly string[]): Promise<DevCertificatesResult> {
  const names = domains.map(devDomainName);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const caCertPath = join(dir, 'ca.pem');
  const caKeyPath = join(dir, 'ca.key');
  const created: string[] = [];

  const pending: string[] = [];
  for (const domain of names) {
    const crt = await exists(join(dir, `${domain}.crt`));
    const key = await exists(join(dir, `${domain}.key`));
    if (crt !== key) {
      throw new GatewayError(
        'GW_ERR_TLS_DEV_CERT',
        `${join(dir, crt ? `${domain}.crt` : `${domain}.key`)} exists without its ${crt ? 'key' : 'certificate'}; refusing to overwrite it`,
      );
    }
    if (!crt && !pending.includes(domain)) pending.push(domain);
  }

  let ca: CertificateAndKey | undefined;
  let caCreated = false;
  const haveCaCert = await exists(caCertPath);
  const haveCaKey = await exists(caKeyPath);
  if (!haveCaCert && !haveCaKey) {
    ca = createCa({ commonName: 'XMPP gateway development CA' });
    // Key first, so a crash in between never leaves a CA certificate nobody can issue from.
    await writeFile(caKeyPath, ca.keyPem, { flag: 'wx', mode: 0o600 });
    created.push(caKeyPath);
    await writeFile(caCertPath, ca.certPem, { flag: 'wx', mode: 0o644 });
    created.push(caCertPath);
    caCreated = true;
  } else if (pending.length > 0) {
    if (!haveCaCert || !haveCaKey) {
      throw new GatewayError(
        'GW_ERR_TLS_DEV_CERT',
        `cannot issue certificates for ${pending.join(', ')}: ${haveCaCert ? caKeyPath : caCertPath} is missing`,
      );
    }
    ca = { certPem: await readFile(caCertPath, 'utf8'), keyPem: await readFile(caKeyPath, 'utf8') };
  }

  for (const domain of pending) {
    if (!ca) break; // unreachable: pending > 0 always loads or creates the CA
    const issued = issueCertificate(ca, { domain, dnsNames: [domain, `*.${domain}`] });
    const keyPath = join(dir, `${domain}.key`);
    const crtPath = join(dir, `${domain}.crt`);
    await writeFile(keyPath, issued.keyPem, { flag: 'wx', mode: 0o600 });
    created.push(keyPath);
    await writeFile(crtPath, issued.certPem, { flag: 'wx', mode: 0o644 });
    created.push(crtPath);
  }
  return { caCreated, created };
}

/** A domain that is safe to use both as a dNSName and as a file name (no `/`, `..`, NUL). */
function devDomainName(input: string): string {
  const trimmed = input.trim().replace(/\.$/, '');
  const ascii = /^[\x21-\x7e]*$/.test(trimmed) ? trimmed.toLowerCase() : domainToASCII(trimmed);
  const labels = ascii.split('.');
  if (ascii === '' || ascii.length > 253 || !labels.every((l) => /^(?!-)[a-z0-9-]{1,63}(?<!-)$/.test(l))) {
    throw new GatewayError('GW_ERR_TLS_DEV_CERT', `'${input}' is not a valid domain name`);
  }
  return ascii;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}
