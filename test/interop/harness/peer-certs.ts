/**
 * Certificates for interop peers: a test CA, per-domain certificates, and an unrelated CA (for the
 * tls-dialback mode, where each peer must NOT trust the other's certificate), written to a temp
 * directory under the names the templates expect:
 *
 *   <dir>/ca.crt                      test CA (`ssl.cafile` / `ca_file` in modes external and any)
 *   <dir>/unrelated-ca.crt            a CA that signed nothing used here (mode tls-dialback)
 *   <dir>/capath/                     an empty directory (Prosody `capath`: no system CAs)
 *   <dir>/<domain><variant>.crt       certificate (Prosody `ssl.certificate`)
 *   <dir>/<domain>.key                private key, shared by all variants of a domain (Prosody `ssl.key`)
 *   <dir>/<domain><variant>.pem       certificate + key (ejabberd `certfiles`)
 *
 * Variants: '' has EKU serverAuth + clientAuth (s2s initiators present their server certificate as
 * a TLS client certificate); '-serverauth' has serverAuth only (what Let's Encrypt issues since
 * 2026, which partners must still accept).
 *
 * COMPAT(ejabberd): no id-on-xmppAddr SAN. ejabberd 23.01 crashes (`badarg` in
 * xmpp_stream_pkix:get_domains_from_san) verifying a peer certificate that carries one.
 *
 * As root, every file is chowned to the `ejabberd` user: ejabberdctl always switches to it, and
 * ejabberd must read its key. Prosody runs as root (`run_as_root`) and reads anything.
 */
import { chmod, chown, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createCa, generateKeyPem, issueCertificate, type CertificateAndKey, type ExtKeyUsageName,
} from '../../../src/tls/cert-factory.js';
import { KEEP_DIRS, ejabberdUser } from './common.js';

export interface CertFiles {
  /** PEM certificate. */
  readonly cert: string;
  /** PEM PKCS#8 private key (shared by all variants of the domain). */
  readonly key: string;
  /** Certificate followed by the key, for ejabberd `certfiles`. */
  readonly pem: string;
}

export interface IssuedCert extends CertificateAndKey {
  readonly files: CertFiles;
}

export interface PeerCertIssueOptions {
  /** File-name suffix after the domain (default ''). */
  variant?: string;
  /** Default serverAuth + clientAuth. */
  extKeyUsage?: ExtKeyUsageName[];
  /** Default `[domain, '*.' + domain]`. */
  dnsNames?: string[];
  /** Sign with the unrelated CA instead of the test CA. */
  byUnrelatedCa?: boolean;
  notBefore?: Date;
  notAfter?: Date;
}

export interface PeerCerts {
  /** The directory holding everything (Prosody `certificates`). */
  readonly dir: string;
  readonly ca: CertificateAndKey;
  readonly unrelatedCa: CertificateAndKey;
  /** `<dir>/ca.crt`. */
  readonly caFile: string;
  /** `<dir>/unrelated-ca.crt`. */
  readonly unrelatedCaFile: string;
  /** `<dir>/capath`, an empty directory, so Prosody trusts no system CA. */
  readonly emptyCaPath: string;
  /** Paths of a domain's files (whether or not they exist). */
  files(domain: string, variant?: string): CertFiles;
  /** Issues (and writes) another certificate, e.g. for the gateway's own domain. Reuses the domain's key if it has one. */
  issue(domain: string, opts?: PeerCertIssueOptions): Promise<IssuedCert>;
  /** Removes the directory. */
  cleanup(): Promise<void>;
}

export interface CreatePeerCertsOptions {
  /** RSA key size in bits (default 2048). */
  keyBits?: number;
  /** Where to create the directory (default the OS temp dir). */
  parentDir?: string;
}

/**
 * Creates the test CA, the unrelated CA and, for every domain, the '' and '-serverauth' variants.
 * One RSA key is shared by all leaf certificates (key generation dominates the cost).
 */
export async function createPeerCerts(domains: readonly string[], opts: CreatePeerCertsOptions = {}): Promise<PeerCerts> {
  const keyBits = opts.keyBits ?? 2048;
  const dir = await mkdtemp(join(opts.parentDir ?? tmpdir(), 'xmpp-interop-certs-'));
  // ejabberd (as its own user) must traverse the directory; keys are protected by their own mode.
  await chmod(dir, 0o755);
  const emptyCaPath = join(dir, 'capath');
  await mkdir(emptyCaPath, { mode: 0o755 });

  const owner = process.getuid?.() === 0 ? await ejabberdUser() : null;
  const put = async (path: string, text: string, mode: number): Promise<void> => {
    await writeFile(path, text, { mode });
    await chmod(path, mode);
    if (owner) await chown(path, owner.uid, owner.gid);
  };

  const ca = createCa({ commonName: 'XMPP interop test CA', keyBits });
  const unrelatedCa = createCa({ commonName: 'XMPP interop unrelated CA', keyBits });
  const caFile = join(dir, 'ca.crt');
  const unrelatedCaFile = join(dir, 'unrelated-ca.crt');
  await put(caFile, ca.certPem, 0o644);
  await put(unrelatedCaFile, unrelatedCa.certPem, 0o644);

  const leafKey = generateKeyPem(keyBits);
  const keys = new Map<string, string>();

  const files = (domain: string, variant = ''): CertFiles => ({
    cert: join(dir, `${domain}${variant}.crt`),
    key: join(dir, `${domain}.key`),
    pem: join(dir, `${domain}${variant}.pem`),
  });

  const issue = async (domain: string, o: PeerCertIssueOptions = {}): Promise<IssuedCert> => {
    if (!/^[a-z0-9.-]+$/.test(domain)) throw new Error(`interop harness: bad certificate domain '${domain}'`);
    let keyPem = keys.get(domain);
    const f = files(domain, o.variant ?? '');
    if (keyPem === undefined) {
      keyPem = leafKey;
      keys.set(domain, keyPem);
      await put(f.key, keyPem, 0o600);
    }
    const issued = issueCertificate(o.byUnrelatedCa ? unrelatedCa : ca, {
      domain,
      keyPem,
      ...(o.dnsNames ? { dnsNames: o.dnsNames } : {}),
      extKeyUsage: o.extKeyUsage ?? ['serverAuth', 'clientAuth'],
      ...(o.notBefore ? { notBefore: o.notBefore } : {}),
      ...(o.notAfter ? { notAfter: o.notAfter } : {}),
    });
    await put(f.cert, issued.certPem, 0o644);
    await put(f.pem, issued.certPem + issued.keyPem, 0o600);
    return { ...issued, files: f };
  };

  for (const domain of domains) {
    await issue(domain);
    await issue(domain, { variant: '-serverauth', extKeyUsage: ['serverAuth'] });
  }

  return {
    dir,
    ca,
    unrelatedCa,
    caFile,
    unrelatedCaFile,
    emptyCaPath,
    files,
    issue,
    async cleanup() {
      if (!KEEP_DIRS) await rm(dir, { recursive: true, force: true });
    },
  };
}
