/**
 * gateway.yaml: the gateway-wide settings (docs/design.md section 2). The type, the defaults and the
 * validation live together here; a config is validated once, paths are resolved against the
 * file's directory, and the result is frozen (fastify's validate-then-freeze).
 *
 * Key names are a contract with the acceptance checks (issues 2 and 3): keep them.
 */
import { isIP } from 'node:net';
import { dirname, join, relative, resolve } from 'node:path';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Node } from 'yaml';
import { ConfigError } from '../errors.js';
import { normalizeDomain } from '../policy/domain.js';
import { yamlErrorLine } from './yaml-error.js';

export interface LocalDomainConfig {
  readonly domain: string;
  /** Absolute path of the PEM certificate (chain) for this domain. */
  readonly certificate: string;
  readonly privateKey: string;
}

export interface ListenConfig {
  readonly host: string;
  readonly port: number;
  /** XEP-0368 direct TLS instead of STARTTLS on this listener. */
  readonly directTls: boolean;
}

/**
 * The link to the organisation's own XMPP server (docs/design.md section 1; issue 7 pins the keys).
 * Absent: the gateway answers pings and disco#info itself and bounces everything else.
 */
export interface InternalConfig {
  /** The internal server's s2s address: our streams and dialback verifications go there. */
  readonly server: { readonly host: string; readonly port: number };
  /** The gateway's internal s2s listener: the internal server connects here for every partner domain. */
  readonly listen: { readonly host: string; readonly port: number };
  /** The internal DNS view (UDP and TCP): partner domains resolve to `listen`, the rest NXDOMAIN. */
  readonly dns: { readonly host: string; readonly port: number } | null;
  /** false: STARTTLS is used when the internal server offers it; true: required both ways. */
  readonly requireTls: boolean;
}

/** Relay queues and reconnect backoff (routing/outbound-pool.ts). */
export interface QueueConfig {
  /** Stanzas waiting per (our domain, peer domain) pair while its stream connects. */
  readonly maxStanzas: number;
  /** Bytes waiting per pair while its stream connects. */
  readonly maxBytes: number;
  /** First reconnect backoff after a failed attempt, doubled per failure (with jitter). */
  readonly reconnectMinMs: number;
  readonly reconnectMaxMs: number;
  /** A stream that stays congested this long while others wait on it is closed. */
  readonly drainTimeoutMs: number;
  /** Delivery barriers (XEP-0199 pings, routing/delivery-barriers.ts): one after this many stanzas... */
  readonly confirmEveryStanzas: number;
  /** ...or this long after the first unconfirmed stanza. */
  readonly confirmIntervalMs: number;
  /** An unanswered barrier gives up after this long; its stanzas count as unconfirmed. */
  readonly confirmTimeoutMs: number;
  /** Unconfirmed stanzas kept per pair; past it the oldest barrier's are released, counted in gw_relay_unconfirmed_total. */
  readonly maxUnconfirmed: number;
}

/** The admin listener (src/admin): where, TLS, who may use it. */
export interface AdminConfig {
  readonly listen: {
    readonly host: string;
    readonly port: number;
    /** HTTPS when both are set (required for a listener that is not on loopback). */
    readonly certificate: string | null;
    readonly privateKey: string | null;
  };
  /** Admin users and their salted token hashes (default admin-users.yaml beside gateway.yaml). */
  readonly usersFile: string;
  /** Serve /metrics without credentials (for a Prometheus that cannot send a token). */
  readonly openMetrics: boolean;
  /** The credential the gateway writes at start (mode 0600) for the CLI on this host. */
  readonly localCredential: string;
}

/**
 * A gateway pool on etcd (issue 11 pins `nodeName`, `etcd.endpoints`, `etcd.prefix`,
 * `leaseTtlSeconds`; docs/design.md section 11). Absent: a single gateway on partners.yaml.
 */
export interface ClusterConfig {
  /** This node's name in the pool: unique, shown in status and as the `node` label of /metrics. */
  readonly nodeName: string;
  readonly etcd: {
    /** etcd client URLs (http://host:port); any reachable member serves. */
    readonly endpoints: readonly string[];
    /** Every key the pool writes starts with this; several pools can share one etcd. */
    readonly prefix: string;
  };
  /** A node's registrations (its streams, its membership) outlive it by at most this long. */
  readonly leaseTtlSeconds: number;
}

export interface GatewayConfig {
  readonly file: string;
  readonly internal: InternalConfig | null;
  /** The pool this node belongs to (null: a single gateway). */
  readonly cluster: ClusterConfig | null;
  readonly queues: QueueConfig;
  readonly localDomains: readonly LocalDomainConfig[];
  readonly listen: readonly ListenConfig[];
  /** Absolute path of partners.yaml. */
  readonly partners: string;
  /** This node's copy of the last partner list it applied (Get -LocalStore reads it). */
  readonly localStore: string;
  readonly trust: {
    readonly caFiles: readonly string[] | null;
    /**
     * Partner domains whose certificates may name them by subject CN alone (RFC 6125 section
     * 6.4.4 CN-ID, only when the certificate has no DNS-ID/SRV-ID/XmppAddr). Default: none.
     */
    readonly allowCommonNameFor: readonly string[];
  };
  readonly admin: AdminConfig | null;
  /** Absolute path of the audit trail (JSON lines); default `audit.log` beside partners.yaml. */
  readonly auditLog: string;
  readonly dns: { readonly servers: readonly string[] | null; readonly routes: Readonly<Record<string, string>> };
  readonly dialbackSecret: string | null;
  readonly connectionLimit: number;
  readonly partnerConnectionLimit: number;
  readonly keepAliveIntervalSeconds: number;
  readonly streamEstablishmentTimeoutSeconds: number;
  readonly streamInactivityTimeoutSeconds: number;
  readonly maxStanzaBytes: number;
  readonly preAuthMaxStanzaBytes: number;
  readonly logMessageBodies: boolean;
  /** Debounce for the partner-file watcher. */
  readonly reloadDebounceMs: number;
  /** Inbound connections not yet authenticated, per remote address (floods, slowloris). */
  readonly maxUnauthenticatedConnectionsPerAddress: number;
  /**
   * Inbound connections not yet authenticated, gateway-wide; below connectionLimit so
   * authenticated streams always have room. When full, a new connection sheds the oldest.
   * Default: half of connectionLimit, at most 500 (defaultMaxUnauthenticatedConnections).
   */
  readonly maxUnauthenticatedConnections: number;
  /** Dialback verification connections in flight, gateway-wide; not counted against partners. */
  readonly maxDialbackVerifications: number;
  /** PublicUnverified approvals (src/policy/approvals.ts): local users who reached out to remote users. */
  readonly approvals: {
    /** Absolute path of the JSON file they persist to (relative paths in gateway.yaml resolve against its directory). */
    readonly file: string;
    /** Most approvals kept, a count >= 1; beyond it the least recently seen are forgotten (about 200 bytes of memory each). */
    readonly maxEntries: number;
  };
}

/** Defaults: Lync's documented values where it has one (docs/design.md section 2). */
export const DEFAULTS = {
  partners: 'partners.yaml',
  localStore: 'state/partners.local.json',
  connectionLimit: 1000,
  partnerConnectionLimit: 20,
  keepAliveIntervalSeconds: 300,
  streamEstablishmentTimeoutSeconds: 60,
  streamInactivityTimeoutSeconds: 600,
  maxStanzaBytes: 262_144,
  preAuthMaxStanzaBytes: 8_192,
  logMessageBodies: false,
  reloadDebounceMs: 200,
  maxUnauthenticatedConnectionsPerAddress: 32,
  maxDialbackVerifications: 100,
  queues: { maxStanzas: 10_000, maxBytes: 8 * 1024 * 1024, reconnectMinMs: 1_000, reconnectMaxMs: 60_000, drainTimeoutMs: 30_000,
    confirmEveryStanzas: 100, confirmIntervalMs: 250, confirmTimeoutMs: 30_000, maxUnconfirmed: 5_000 },
  approvals: { file: 'state/approvals.json', maxEntries: 100_000 },
  cluster: { prefix: '/xmpp-gateway/', leaseTtlSeconds: 10 },
} as const;

const KNOWN_KEYS = new Set([
  'localDomains', 'listen', 'partners', 'localStore', 'trust', 'admin', 'dns', 'dialbackSecret',
  'connectionLimit', 'partnerConnectionLimit', 'keepAliveIntervalSeconds', 'streamEstablishmentTimeoutSeconds',
  'streamInactivityTimeoutSeconds', 'maxStanzaBytes', 'preAuthMaxStanzaBytes', 'logMessageBodies', 'reloadDebounceMs',
  'maxUnauthenticatedConnectionsPerAddress', 'maxUnauthenticatedConnections', 'maxDialbackVerifications', 'internal', 'queues', 'approvals',
  'auditLog', 'cluster',
]);
const ADMIN_KEYS = new Set(['listen', 'usersFile', 'openMetrics', 'localCredential']);
const APPROVALS_KEYS = new Set(['file', 'maxEntries']);

/** maxUnauthenticatedConnections when unset: half of connectionLimit, at least 1, at most 500. */
export function defaultMaxUnauthenticatedConnections(connectionLimit: number): number {
  return Math.max(1, Math.min(500, Math.floor(connectionLimit / 2)));
}

/** Parses and validates gateway.yaml text; `warn` receives non-fatal notes (unknown keys). */
export function parseGatewayConfig(text: string, file: string, warn: (msg: string) => void = () => {}): GatewayConfig {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const syntax = doc.errors[0];
  if (syntax) throw new ConfigError(`invalid YAML: ${syntax.message.split('\n')[0]}`, file, yamlErrorLine(text, lines, syntax));
  const root = doc.contents;
  const v = new Validator(file, lines, dirname(resolve(file)));
  if (!isMap(root)) throw new ConfigError('the file must be a YAML mapping of settings', file, v.lineOf(root));

  for (const pair of root.items) {
    const key = isScalar(pair.key) ? String(pair.key.value) : '';
    if (!KNOWN_KEYS.has(key)) warn(`${file}:${v.lineOf(pair.key as Node)}: ${key}: unknown setting, ignored`);
  }
  const get = (key: string) => root.get(key, true) as Node | undefined;
  /** Unknown keys inside a section are named too (file:line), as at the top level. */
  const unknownIn = (node: Node | undefined, prefix: string, known: readonly string[]) => {
    if (!isMap(node)) return;
    for (const pair of node.items) {
      const key = isScalar(pair.key) ? String(pair.key.value) : '';
      if (!known.includes(key)) warn(`${file}:${v.lineOf(pair.key as Node)}: ${prefix}.${key}: unknown setting, ignored`);
    }
  };

  const localDomainsNode = get('localDomains');
  const localDomains = v.list(localDomainsNode, 'localDomains', true).map((item, i) => {
    const field = `localDomains[${i}]`;
    const m = v.map(item, field);
    unknownIn(m, field, ['domain', 'certificate', 'privateKey']);
    const domain = v.domain(m.get('domain', true) as Node, `${field}.domain`);
    return {
      domain,
      certificate: v.path(m.get('certificate', true) as Node, `${field}.certificate`, `certs/${domain}.crt`),
      privateKey: v.path(m.get('privateKey', true) as Node, `${field}.privateKey`, `certs/${domain}.key`),
    };
  });
  if (localDomains.length === 0) throw new ConfigError('at least one local domain is required', file, v.lineOf(localDomainsNode), 'localDomains');

  const listen = v.list(get('listen'), 'listen', true).map((item, i) => {
    const m = v.map(item, `listen[${i}]`);
    unknownIn(m, `listen[${i}]`, ['host', 'port', 'directTls']);
    return {
      host: v.host(m.get('host', true) as Node, `listen[${i}].host`),
      port: v.port(m.get('port', true) as Node, `listen[${i}].port`),
      directTls: v.bool(m.get('directTls', true) as Node, `listen[${i}].directTls`, false),
    };
  });

  const trustNode = get('trust');
  unknownIn(trustNode, 'trust', ['caFiles', 'allowCommonNameFor']);
  unknownIn(get('admin'), 'admin', [...ADMIN_KEYS]);
  unknownIn(get('dns'), 'dns', ['servers', 'routes']);
  unknownIn(get('queues'), 'queues', Object.keys(DEFAULTS.queues));
  const caFilesNode = trustNode === undefined ? undefined : (v.map(trustNode, 'trust').get('caFiles', true) as Node | undefined);
  const caFiles = caFilesNode === undefined || isNull(caFilesNode)
    ? null
    : v.list(caFilesNode, 'trust.caFiles', false).map((n, i) => v.path(n, `trust.caFiles[${i}]`));
  const cnNode = trustNode === undefined ? undefined : (v.map(trustNode, 'trust').get('allowCommonNameFor', true) as Node | undefined);
  const allowCommonNameFor = v.list(cnNode, 'trust.allowCommonNameFor', false).map((n, i) => v.domain(n, `trust.allowCommonNameFor[${i}]`));

  const adminNode = get('admin');
  let admin: GatewayConfig['admin'] = null;
  if (adminNode !== undefined && !isNull(adminNode)) {
    const a = v.map(adminNode, 'admin');
    const l = v.map(a.get('listen', true) as Node, 'admin.listen');
    unknownIn(l, 'admin.listen', ['host', 'port', 'certificate', 'privateKey']);
    const certNode = l.get('certificate', true) as Node | undefined;
    const keyNode = l.get('privateKey', true) as Node | undefined;
    const certificate = certNode === undefined || isNull(certNode) ? null : v.path(certNode, 'admin.listen.certificate');
    const privateKey = keyNode === undefined || isNull(keyNode) ? null : v.path(keyNode, 'admin.listen.privateKey');
    if ((certificate === null) !== (privateKey === null)) {
      v.fail(certNode ?? keyNode ?? l, certificate === null ? 'admin.listen.certificate' : 'admin.listen.privateKey', 'certificate and privateKey go together (both for HTTPS, neither for HTTP on loopback)');
    }
    admin = {
      listen: { host: v.host(l.get('host', true) as Node, 'admin.listen.host'), port: v.port(l.get('port', true) as Node, 'admin.listen.port', true), certificate, privateKey },
      usersFile: v.path(a.get('usersFile', true) as Node | undefined, 'admin.usersFile', 'admin-users.yaml'),
      openMetrics: v.bool(a.get('openMetrics', true) as Node | undefined, 'admin.openMetrics', false),
      localCredential: v.path(a.get('localCredential', true) as Node | undefined, 'admin.localCredential', 'state/admin.credential'),
    };
  }

  const dnsNode = get('dns');
  let dns: GatewayConfig['dns'] = { servers: null, routes: {} };
  if (dnsNode !== undefined && !isNull(dnsNode)) {
    const m = v.map(dnsNode, 'dns');
    const serversNode = m.get('servers', true) as Node | undefined;
    const servers = serversNode === undefined || isNull(serversNode)
      ? null
      : v.list(serversNode, 'dns.servers', false).map((n, i) => v.hostPort(n, `dns.servers[${i}]`, 53));
    const routes: Record<string, string> = {};
    const routesNode = m.get('routes', true) as Node | undefined;
    if (routesNode !== undefined && !isNull(routesNode)) {
      for (const pair of v.map(routesNode, 'dns.routes').items) {
        const domain = v.domain(pair.key as Node, 'dns.routes');
        routes[domain] = v.hostPort(pair.value as Node, `dns.routes.${domain}`, 5269);
      }
    }
    dns = { servers, routes };
  }

  const secretNode = get('dialbackSecret');
  const dialbackSecret = secretNode === undefined || isNull(secretNode) ? null : v.string(secretNode, 'dialbackSecret');
  if (dialbackSecret !== null && dialbackSecret.length < 16) {
    warn(`${file}:${v.lineOf(secretNode)}: dialbackSecret: shorter than 16 characters; a longer random secret is safer`);
  }

  const approvalsNode = get('approvals');
  const approvalsMap = approvalsNode === undefined || isNull(approvalsNode) ? undefined : v.map(approvalsNode, 'approvals');
  for (const pair of approvalsMap?.items ?? []) {
    const key = isScalar(pair.key) ? String(pair.key.value) : '';
    if (!APPROVALS_KEYS.has(key)) warn(`${file}:${v.lineOf(pair.key as Node)}: approvals.${key}: unknown setting, ignored`);
  }
  const approvals = {
    file: v.path(approvalsMap?.get('file', true) as Node | undefined, 'approvals.file', DEFAULTS.approvals.file),
    maxEntries: v.int(approvalsMap?.get('maxEntries', true) as Node | undefined, 'approvals.maxEntries', DEFAULTS.approvals.maxEntries, 1),
  };

  const int = (key: keyof typeof DEFAULTS & string, min: number) =>
    v.int(get(key), key, DEFAULTS[key] as number, min);
  const connectionLimit = int('connectionLimit', 1);
  const unauthNode = get('maxUnauthenticatedConnections');
  const maxUnauthenticatedConnections = v.int(unauthNode, 'maxUnauthenticatedConnections', defaultMaxUnauthenticatedConnections(connectionLimit), 1);
  if (unauthNode !== undefined && connectionLimit > 1 && maxUnauthenticatedConnections >= connectionLimit) {
    v.fail(unauthNode, 'maxUnauthenticatedConnections', `${maxUnauthenticatedConnections} must be below connectionLimit (${connectionLimit}), so authenticated streams always have room`);
  }

  const internalNode = get('internal');
  let internal: InternalConfig | null = null;
  if (internalNode !== undefined && !isNull(internalNode)) {
    const m = v.map(internalNode, 'internal');
    for (const pair of m.items) {
      const key = isScalar(pair.key) ? String(pair.key.value) : '';
      if (!['server', 'listen', 'dns', 'requireTls'].includes(key)) warn(`${file}:${v.lineOf(pair.key as Node)}: internal.${key}: unknown setting, ignored`);
    }
    const address = (key: string, allowZero: boolean) => {
      const a = v.map(m.get(key, true) as Node | undefined, `internal.${key}`);
      return { host: v.host(a.get('host', true) as Node, `internal.${key}.host`), port: v.port(a.get('port', true) as Node, `internal.${key}.port`, allowZero) };
    };
    const dnsNodeInternal = m.get('dns', true) as Node | undefined;
    internal = {
      server: address('server', false),
      listen: address('listen', true),
      dns: dnsNodeInternal === undefined || isNull(dnsNodeInternal) ? null : address('dns', true),
      requireTls: v.bool(m.get('requireTls', true) as Node | undefined, 'internal.requireTls', false),
    };
  }

  const cluster = parseCluster(get('cluster'), v, warn);

  const queuesNode = get('queues');
  const q = queuesNode === undefined || isNull(queuesNode) ? undefined : v.map(queuesNode, 'queues');
  const qint = (key: keyof typeof DEFAULTS.queues, min: number) =>
    v.int(q?.get(key, true) as Node | undefined, `queues.${key}`, DEFAULTS.queues[key], min);
  const queues: QueueConfig = {
    maxStanzas: qint('maxStanzas', 1),
    maxBytes: qint('maxBytes', 1024),
    reconnectMinMs: qint('reconnectMinMs', 10),
    reconnectMaxMs: qint('reconnectMaxMs', 10),
    drainTimeoutMs: qint('drainTimeoutMs', 100),
    confirmEveryStanzas: qint('confirmEveryStanzas', 1),
    confirmIntervalMs: qint('confirmIntervalMs', 10),
    confirmTimeoutMs: qint('confirmTimeoutMs', 100),
    maxUnconfirmed: qint('maxUnconfirmed', 1),
  };

  const partners = v.path(get('partners'), 'partners', DEFAULTS.partners);
  const config: GatewayConfig = {
    file: resolve(file),
    internal,
    cluster,
    queues,
    localDomains,
    listen,
    partners,
    auditLog: v.path(get('auditLog'), 'auditLog', relative(dirname(resolve(file)), join(dirname(partners), 'audit.log'))),
    localStore: v.path(get('localStore'), 'localStore', DEFAULTS.localStore),
    trust: { caFiles, allowCommonNameFor },
    admin,
    dns,
    dialbackSecret,
    connectionLimit,
    partnerConnectionLimit: int('partnerConnectionLimit', 1),
    keepAliveIntervalSeconds: int('keepAliveIntervalSeconds', 1),
    streamEstablishmentTimeoutSeconds: int('streamEstablishmentTimeoutSeconds', 1),
    streamInactivityTimeoutSeconds: int('streamInactivityTimeoutSeconds', 1),
    maxStanzaBytes: int('maxStanzaBytes', 1024),
    preAuthMaxStanzaBytes: int('preAuthMaxStanzaBytes', 512),
    logMessageBodies: v.bool(get('logMessageBodies'), 'logMessageBodies', DEFAULTS.logMessageBodies),
    reloadDebounceMs: int('reloadDebounceMs', 0),
    maxUnauthenticatedConnectionsPerAddress: int('maxUnauthenticatedConnectionsPerAddress', 1),
    maxUnauthenticatedConnections,
    maxDialbackVerifications: int('maxDialbackVerifications', 1),
    approvals,
  };
  return deepFreeze(config);
}

/** The `cluster` section: every key checked, unknown ones named (file:line). */
function parseCluster(node: Node | undefined, v: Validator, warn: (msg: string) => void): ClusterConfig | null {
  if (node === undefined || isNull(node)) return null;
  const m = v.map(node, 'cluster');
  for (const pair of m.items) {
    const key = isScalar(pair.key) ? String(pair.key.value) : '';
    if (!['nodeName', 'etcd', 'leaseTtlSeconds'].includes(key)) warn(`${v.file}:${v.lineOf(pair.key as Node)}: cluster.${key}: unknown setting, ignored`);
  }
  const nameNode = m.get('nodeName', true) as Node | undefined;
  const nodeName = v.string(nameNode, 'cluster.nodeName');
  // The name is part of etcd keys and a Prometheus label value: keep it to a safe alphabet.
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(nodeName)) {
    v.fail(nameNode, 'cluster.nodeName', `'${nodeName}' must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit`);
  }
  const e = v.map(m.get('etcd', true) as Node | undefined, 'cluster.etcd');
  for (const pair of e.items) {
    const key = isScalar(pair.key) ? String(pair.key.value) : '';
    if (!['endpoints', 'prefix'].includes(key)) warn(`${v.file}:${v.lineOf(pair.key as Node)}: cluster.etcd.${key}: unknown setting, ignored`);
  }
  const endpointsNode = e.get('endpoints', true) as Node | undefined;
  const endpoints = v.list(endpointsNode, 'cluster.etcd.endpoints', true).map((n, i) => {
    const field = `cluster.etcd.endpoints[${i}]`;
    const text = v.string(n, field);
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      return v.fail(n, field, `'${text}' is not a URL (expected http://host:port)`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') v.fail(n, field, `'${text}' must be an http:// or https:// URL`);
    if (!url.port) v.fail(n, field, `'${text}' must name the port (etcd's client port is usually 2379)`);
    return text;
  });
  if (endpoints.length === 0) v.fail(endpointsNode, 'cluster.etcd.endpoints', 'at least one etcd endpoint is required');
  const prefixNode = e.get('prefix', true) as Node | undefined;
  const prefix = prefixNode === undefined || isNull(prefixNode) ? DEFAULTS.cluster.prefix : v.string(prefixNode, 'cluster.etcd.prefix');
  if (!prefix.startsWith('/') || !prefix.endsWith('/')) v.fail(prefixNode, 'cluster.etcd.prefix', `'${prefix}' must start and end with '/'`);
  const leaseTtlSeconds = v.int(m.get('leaseTtlSeconds', true) as Node | undefined, 'cluster.leaseTtlSeconds', DEFAULTS.cluster.leaseTtlSeconds, 2);
  return { nodeName, etcd: { endpoints, prefix }, leaseTtlSeconds };
}

function isNull(node: Node): boolean {
  return isScalar(node) && node.value === null;
}

/** Typed accessors that throw ConfigError(file, line, field). */
class Validator {
  constructor(readonly file: string, readonly lines: LineCounter, readonly baseDir: string) {}

  lineOf(node: Node | null | undefined): number | undefined {
    const offset = node?.range?.[0];
    return offset === undefined ? undefined : this.lines.linePos(offset).line;
  }

  fail(node: Node | null | undefined, field: string, message: string): never {
    throw new ConfigError(message, this.file, this.lineOf(node), field);
  }

  map(node: Node | undefined, field: string) {
    if (!isMap(node)) this.fail(node, field, node === undefined ? 'is required' : 'must be a mapping');
    return node;
  }

  list(node: Node | undefined, field: string, required: boolean): Node[] {
    if (node === undefined || isNull(node)) {
      if (required) this.fail(node, field, 'is required');
      return [];
    }
    if (!isSeq(node)) this.fail(node, field, 'must be a list');
    return node.items as Node[];
  }

  scalar(node: Node | undefined, field: string): unknown {
    if (node === undefined) this.fail(node, field, 'is required');
    if (!isScalar(node)) this.fail(node, field, 'must be a single value');
    return node.value;
  }

  string(node: Node | undefined, field: string): string {
    const value = this.scalar(node, field);
    if (typeof value !== 'string' || value === '') this.fail(node, field, 'must be a non-empty string');
    return value;
  }

  domain(node: Node | undefined, field: string): string {
    try {
      return normalizeDomain(this.string(node, field));
    } catch (err) {
      if (err instanceof ConfigError) throw err;
      this.fail(node, field, (err as Error).message);
    }
  }

  host(node: Node | undefined, field: string): string {
    const host = this.string(node, field);
    if (!isIP(host) && host !== 'localhost') this.fail(node, field, `'${host}' must be an IP address to listen on`);
    return host;
  }

  port(node: Node | undefined, field: string, allowZero = true): number {
    const value = this.scalar(node, field);
    if (typeof value !== 'number' || !Number.isInteger(value) || value < (allowZero ? 0 : 1) || value > 65535) {
      this.fail(node, field, `${JSON.stringify(value)} is not a port number (0-65535)`);
    }
    return value;
  }

  hostPort(node: Node | undefined, field: string, defaultPort: number): string {
    const text = String(this.scalar(node, field));
    const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+))(?::(\d{1,5}))?$/.exec(text);
    const port = m?.[3] === undefined ? defaultPort : Number(m[3]);
    if (!m || port < 1 || port > 65535) this.fail(node, field, `'${text}' is not host[:port]`);
    return m[1] !== undefined ? `[${m[1]}]:${port}` : `${m[2]}:${port}`;
  }

  int(node: Node | undefined, field: string, fallback: number, min: number): number {
    if (node === undefined || isNull(node)) return fallback;
    const value = this.scalar(node, field);
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
      this.fail(node, field, `${JSON.stringify(value)} is not a whole number >= ${min}`);
    }
    return value;
  }

  bool(node: Node | undefined, field: string, fallback: boolean): boolean {
    if (node === undefined || isNull(node)) return fallback;
    const value = this.scalar(node, field);
    if (typeof value !== 'boolean') this.fail(node, field, `${JSON.stringify(value)} is not true or false`);
    return value;
  }

  path(node: Node | undefined, field: string, fallback?: string): string {
    if ((node === undefined || isNull(node)) && fallback !== undefined) return resolve(this.baseDir, fallback);
    return resolve(this.baseDir, this.string(node, field));
  }
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
