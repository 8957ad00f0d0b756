/**
 * Starts the real gateway in-process (startGateway, the same composition root `serve` uses) on
 * 127.0.0.1 port 0, with a throw-away directory holding its config, partners.yaml and TLS
 * material from a test CA. Logs are captured as parsed JSON lines for assertions.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readLocalCredential } from '../../src/admin/local-credential.js';
import { parseGatewayConfig } from '../../src/config/schema.js';
import { startGateway, type Gateway } from '../../src/gateway.js';
import { createLogger } from '../../src/log.js';
import { writeFileAtomic } from '../../src/policy/atomic-write.js';
import { createCa, generateKeyPem, issueCertificate, type CertificateAndKey, type IssueOptions } from '../../src/tls/cert-factory.js';

/** One RSA key reused for every test certificate: key generation is the slow part (~0.2 s). */
let sharedKey: string | undefined;
export function testKey(): string {
  sharedKey ??= generateKeyPem(2048);
  return sharedKey;
}

export interface TestPki {
  readonly ca: CertificateAndKey;
  /** A CA the gateway does not trust. */
  readonly otherCa: CertificateAndKey;
  issue(opts: IssueOptions, ca?: CertificateAndKey): CertificateAndKey;
}

export function testPki(): TestPki {
  const keyPem = testKey();
  const ca = createCa({ commonName: 'Gateway Test CA', keyPem });
  const otherCa = createCa({ commonName: 'Unrelated Test CA', keyPem });
  return {
    ca,
    otherCa,
    issue: (opts, issuer = ca) => issueCertificate(issuer, { keyPem, ...opts }),
  };
}

export interface LogLine {
  level: string;
  event: string;
  [field: string]: unknown;
}

/** The admin token of each running test gateway, by admin port (live-streams.ts sends it). */
export const adminTokens = new Map<number, string>();

/** `Authorization` for the test gateway on `adminPort` (its local credential). */
export function adminHeaders(adminPort: number): Record<string, string> {
  const token = adminTokens.get(adminPort);
  return token === undefined ? {} : { authorization: `Bearer ${token}` };
}

export interface TestGateway {
  readonly gateway: Gateway;
  readonly port: number;
  readonly adminPort: number;
  /** The gateway's local credential (CsAdministrator), for admin requests. */
  readonly adminToken: string;
  /** The XEP-0368 direct-TLS listener's port (0 unless `directTls`). */
  readonly directTlsPort: number;
  readonly dir: string;
  readonly partnersFile: string;
  readonly logs: LogLine[];
  writePartners(yaml: string): Promise<void>;
  /** Resolves with the first log line (already seen or to come) that matches. */
  waitForLog(predicate: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  close(): Promise<void>;
}

export interface TestGatewayOptions {
  pki: TestPki;
  partners?: string;
  localDomains?: string[];
  /** Extra gateway.yaml lines (top-level keys). */
  config?: string;
  routes?: Record<string, string>;
  dnsServer?: string;
  /** Also listen with XEP-0368 direct TLS (second listener, `directTlsPort`). */
  directTls?: boolean;
  /** Start without a partners.yaml at all (issue 2: a missing file means no partners). */
  noPartnersFile?: boolean;
  /** More keys of the `admin` mapping, e.g. `openMetrics: true`. */
  admin?: string;
  /** A fixed admin port (default 0: any), for the CLI, which reads it from gateway.yaml. */
  adminPort?: number;
  /** `trust.allowCommonNameFor`. */
  allowCommonNameFor?: string[];
  /** The s2s listener (default 127.0.0.1, port 0). */
  listen?: { host: string; port: number };
  /** gateway.yaml `dialbackSecret` (default a fixed test secret; null: none, as in a pool that shares etcd's). */
  dialbackSecret?: string | null;
}

/** A throw-away directory with gateway.yaml, partners.yaml and TLS material for `opts`. */
export async function prepareGatewayDir(opts: TestGatewayOptions): Promise<{ dir: string; configFile: string; partnersFile: string; yaml: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'xgw-gw-'));
  const domains = opts.localDomains ?? ['gw.test'];
  for (const domain of domains) {
    // DNS-ID only: ejabberd 23.01 crashes on xmppAddr SANs (docs/peers.md).
    const cert = opts.pki.issue({ domain });
    await writeFile(join(dir, `${domain}.crt`), cert.certPem);
    await writeFile(join(dir, `${domain}.key`), cert.keyPem);
  }
  await writeFile(join(dir, 'ca.pem'), opts.pki.ca.certPem);
  const partnersFile = join(dir, 'partners.yaml');
  if (!opts.noPartnersFile) await writeFile(partnersFile, opts.partners ?? '');
  const routes = Object.entries(opts.routes ?? {}).map(([d, r]) => `    "${d}": "${r}"`).join('\n');
  const yaml = [
    'localDomains:',
    ...domains.map((d) => `  - { domain: ${d}, certificate: ${d}.crt, privateKey: ${d}.key }`),
    'listen:',
    `  - { host: ${opts.listen?.host ?? '127.0.0.1'}, port: ${opts.listen?.port ?? 0} }`,
    ...(opts.directTls ? ['  - { host: 127.0.0.1, port: 0, directTls: true }'] : []),
    'partners: partners.yaml',
    `trust: { caFiles: [ca.pem], allowCommonNameFor: [${(opts.allowCommonNameFor ?? []).join(', ')}] }`,
    `admin: { listen: { host: 127.0.0.1, port: ${opts.adminPort ?? 0} }${opts.admin ? `, ${opts.admin}` : ''} }`,
    ...(opts.dialbackSecret === null ? [] : [`dialbackSecret: "${opts.dialbackSecret ?? 'gateway-test-dialback-secret-0123456789'}"`]),
    'reloadDebounceMs: 20',
    'dns:',
    `  servers: ${opts.dnsServer ? `["${opts.dnsServer}"]` : '["127.0.0.1:9"]'}`,
    routes ? `  routes:\n${routes}` : '  routes: {}',
    opts.config ?? '',
  ].join('\n');
  const configFile = join(dir, 'gateway.yaml');
  await writeFile(configFile, `${yaml}\n`);
  return { dir, configFile, partnersFile, yaml };
}

export async function startTestGateway(opts: TestGatewayOptions): Promise<TestGateway> {
  return startPreparedGateway(await prepareGatewayDir(opts));
}

/**
 * Starts the gateway in a directory prepareGatewayDir made; `keepDir` leaves the directory on
 * close, so that the same gateway (its state/ included) can be started again there.
 */
export async function startPreparedGateway(
  { dir, configFile, partnersFile, yaml }: Awaited<ReturnType<typeof prepareGatewayDir>>,
  { keepDir = false }: { keepDir?: boolean } = {},
): Promise<TestGateway> {
  const config = parseGatewayConfig(yaml, configFile);
  const logs: LogLine[] = [];
  const waiters: { predicate: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];
  const log = createLogger('debug', (line) => {
    const parsed = JSON.parse(line) as LogLine;
    logs.push(parsed);
    for (const w of [...waiters]) {
      if (w.predicate(parsed)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(parsed);
      }
    }
    if (process.env.XGW_TEST_LOGS) process.stderr.write(line);
  });
  const gateway = await startGateway(config, log);
  const adminToken = readLocalCredential(config.admin!.localCredential) ?? '';
  if (gateway.admin) adminTokens.set(gateway.admin.port, adminToken);
  return {
    gateway,
    port: gateway.listeners[0]!.port,
    adminPort: gateway.admin?.port ?? 0,
    adminToken,
    directTlsPort: gateway.listeners[1]?.port ?? 0,
    dir,
    partnersFile,
    logs,
    // Atomic like the CLI's writes: a reload never sees a half-written file.
    writePartners: (text) => writeFileAtomic(partnersFile, text),
    waitForLog(predicate, timeoutMs = 5000) {
      const seen = logs.find(predicate);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no matching log line within ${timeoutMs} ms; last lines:\n${logs.slice(-10).map((l) => JSON.stringify(l)).join('\n')}`)), timeoutMs);
        waiters.push({ predicate, resolve: (l) => (clearTimeout(timer), resolve(l)) });
      });
    },
    async close() {
      if (gateway.admin) adminTokens.delete(gateway.admin.port);
      await gateway.close();
      // Retries: a last atomic write (temp file, rename) may still be landing in state/.
      if (!keepDir) await rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
    },
  };
}
