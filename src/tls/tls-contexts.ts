/**
 * The gateway's TLS material: one SecureContext per local domain (its certificate is presented
 * as the server certificate to partners connecting in, picked by SNI, and as the client
 * certificate when the gateway connects out), and the trust anchors that partner certificates
 * are checked against.
 *
 * References: RFC 7590 (TLS for XMPP: TLS 1.2 or later, RFC 7525 / BCP 195 cipher guidance),
 * XEP-0368 (SNI names the partner domain), RFC 6120 section 13.7.2 (certificate validation).
 */
import { readFile } from 'node:fs/promises';
import { rootCertificates, createSecureContext, type SecureContext } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { ConfigError } from '../errors.js';
import type { GatewayConfig } from '../config/schema.js';
import { parseTrustAnchors } from './peer-certificate.js';

/** TLS 1.2 is the floor (RFC 7590 section 3.1 via RFC 7525 section 3.1.1). */
export const MIN_TLS_VERSION = 'TLSv1.2' as const;
/** XEP-0368 section 3 / docs/protocol.md 2.2: ALPN protocol id for server-to-server XMPP. */
export const ALPN_XMPP_SERVER = 'xmpp-server';

export class TlsContexts {
  private constructor(
    private readonly byDomain: ReadonlyMap<string, SecureContext>,
    readonly defaultDomain: string,
    /** PEM certificate and key of the first local domain (the certificate shown without SNI). */
    readonly defaultMaterial: { readonly certPem: string; readonly keyPem: string },
    /** PEM text of the trust anchors (for `ca:` options) and parsed forms (for chain checks). */
    readonly caPem: readonly string[],
    readonly trustAnchors: readonly X509Certificate[],
  ) {}

  static async load(config: GatewayConfig): Promise<TlsContexts> {
    const caPem: string[] = [];
    if (config.trust.caFiles) {
      for (const file of config.trust.caFiles) caPem.push(await readPem(file, 'trust.caFiles'));
    } else {
      caPem.push(...rootCertificates);
    }
    let trustAnchors: X509Certificate[];
    try {
      trustAnchors = parseTrustAnchors(caPem);
    } catch (err) {
      throw new ConfigError(`cannot parse CA certificates: ${(err as Error).message}`, config.file, undefined, 'trust.caFiles');
    }
    const contexts = new Map<string, SecureContext>();
    let defaultMaterial: { certPem: string; keyPem: string } | undefined;
    for (const local of config.localDomains) {
      const cert = await readPem(local.certificate, 'certificate');
      const key = await readPem(local.privateKey, 'privateKey');
      defaultMaterial ??= { certPem: cert, keyPem: key };
      try {
        contexts.set(
          local.domain,
          createSecureContext({ cert, key, ca: caPem, minVersion: MIN_TLS_VERSION }),
        );
      } catch (err) {
        throw new ConfigError(`TLS material for ${local.domain} is unusable: ${(err as Error).message}`, config.file, undefined, 'localDomains');
      }
    }
    return new TlsContexts(contexts, config.localDomains[0]!.domain, defaultMaterial!, caPem, trustAnchors);
  }

  /** The context for a local domain (falls back to the first one, e.g. when SNI is absent). */
  contextFor(domain: string | undefined): SecureContext {
    return (domain && this.byDomain.get(domain)) || this.byDomain.get(this.defaultDomain)!;
  }
}

async function readPem(file: string, field: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, undefined, undefined, field);
  }
}
