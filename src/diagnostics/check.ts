/**
 * `xmpp-gateway check`: the configuration and the machine, the way `prosodyctl check` looks at
 * them, with the gateway's own code: gateway.yaml (schema.ts, unknown keys with file:line), the
 * partner list (PartnerStore), each local domain's certificate and key (peer-certificate.ts chain
 * validation, identity.ts RFC 6125 names), the ports, the DNS records the world needs to reach us
 * (the configured resolver), each partner's ProxyFqdn and AdditionalDomains, and the internal link.
 * Every finding says what to do; any error makes the command exit non-zero.
 */
import { createPrivateKey, type X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import dgram from 'node:dgram';
import { adminJson, adminTarget } from '../admin/admin-client.js';
import { loadGatewayConfig } from '../config/load.js';
import type { GatewayConfig } from '../config/schema.js';
import { checkCombination } from '../policy/validate.js';
import { PartnerStore } from '../policy/partner-store.js';
import type { PartnerList } from '../policy/partner-list.js';
import { parseHostPort, Resolver, type Lookup, type SrvAnswer } from '../net/resolver.js';
import { streamHeader } from '../xml/builders.js';
import { checkCertificate, parseTrustAnchors } from '../tls/peer-certificate.js';
import { certificateSummary } from './certificate-summary.js';
import { configuredResolver } from './context.js';

export type Severity = 'error' | 'warning' | 'ok';

export interface Finding {
  readonly severity: Severity;
  /** What was checked: config, partners, trust, certificate, key, port, dns, partner, internal. */
  readonly check: string;
  /** The file, domain, address or partner it is about. */
  readonly subject: string;
  readonly message: string;
}

const EXPIRY_WARNING_DAYS = 30;

export async function check(configPath: string): Promise<Finding[]> {
  const findings: Finding[] = [];
  const add = (severity: Severity, check: string, subject: string, message: string) => findings.push({ severity, check, subject, message });

  const notes: string[] = [];
  let config: GatewayConfig;
  try {
    config = await loadGatewayConfig(configPath, (msg) => notes.push(msg));
  } catch (err) {
    add('error', 'config', configPath, `${(err as Error).message}; correct it (serve refuses to start)`);
    return findings;
  }
  for (const note of notes) {
    const m = /^(.*?:\d+): (.*)$/.exec(note);
    const [where, what] = m ? [m[1]!, m[2]!] : [config.file, note];
    if (/unknown setting/.test(what)) add('error', 'config', where, `${what.replace(/, ignored$/, '')}: serve ignores it, so a misspelt key silently does nothing; correct or remove it`);
    else add('warning', 'config', where, what);
  }
  if (notes.length === 0) add('ok', 'config', config.file, 'gateway.yaml is valid');

  const partners = await checkPartners(config, add);
  const anchors = await checkTrust(config, add);
  for (const local of config.localDomains) await checkLocalDomain(local, anchors, add);
  const running = await runningGateway(config);
  await checkPorts(config, running, add);
  const resolver = configuredResolver(config, { routes: false });
  for (const local of config.localDomains) await checkDns(config, resolver, local.domain, add);
  if (partners) await checkPartnerNames(config, partners, add);
  if (config.internal) await checkInternal(config, partners, running, add);
  return findings;
}

type Add = (severity: Severity, check: string, subject: string, message: string) => void;

async function checkPartners(config: GatewayConfig, add: Add): Promise<PartnerList | null> {
  const store = new PartnerStore(config.partners, new Set(config.localDomains.map((d) => d.domain)));
  let list: PartnerList;
  try {
    list = await store.read();
  } catch (err) {
    add('error', 'partners', config.partners, `${(err as Error).message}; the gateway refuses to apply this file`);
    return null;
  }
  if (list.size === 0) add('warning', 'partners', config.partners, '0 partners: all federation refused; add one with `xmpp-gateway partner new`');
  else add('ok', 'partners', config.partners, `${list.size} allowed partner${list.size === 1 ? '' : 's'}`);
  for (const r of list.records) {
    for (const w of checkCombination(r).warnings) add('warning', 'partner', r.Identity, w.text);
  }
  return list;
}

async function checkTrust(config: GatewayConfig, add: Add): Promise<X509Certificate[] | undefined> {
  if (config.trust.caFiles === null) {
    add('ok', 'trust', 'trust.caFiles', "unset: partners' certificates are checked against Node's bundled Mozilla roots");
    return undefined;
  }
  const anchors: X509Certificate[] = [];
  for (const file of config.trust.caFiles) {
    try {
      const found = parseTrustAnchors(await readFile(file, 'utf8'));
      if (found.length === 0) add('error', 'trust', file, 'holds no PEM certificate; give the CA certificates partners are issued by');
      else add('ok', 'trust', file, `${found.length} CA certificate${found.length === 1 ? '' : 's'}`);
      anchors.push(...found);
    } catch (err) {
      add('error', 'trust', file, `cannot be read or parsed (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); serve refuses to start`);
    }
  }
  return anchors;
}

async function checkLocalDomain(local: GatewayConfig['localDomains'][number], anchors: X509Certificate[] | undefined, add: Add): Promise<void> {
  const d = local.domain;
  const [certText, keyText] = await Promise.all([readFile(local.certificate, 'utf8').catch(() => null), readFile(local.privateKey, 'utf8').catch(() => null)]);
  if (certText === null || keyText === null) {
    const missing = certText === null ? local.certificate : local.privateKey;
    const both = certText === null && keyText === null;
    add(both ? 'warning' : 'error', 'certificate', d, both
      ? `${local.certificate} and its key do not exist: serve creates a development certificate from a local CA on first start (conventional paths only); use a certificate from a public CA in production`
      : `${missing} cannot be read; give the ${certText === null ? 'certificate' : 'private key'} for ${d}`);
    return;
  }
  let certs: X509Certificate[];
  try {
    certs = parseTrustAnchors(certText);
  } catch (err) {
    add('error', 'certificate', d, `${local.certificate} is not a valid PEM certificate (${(err as Error).message})`);
    return;
  }
  if (certs.length === 0) return void add('error', 'certificate', d, `${local.certificate} holds no PEM certificate`);
  const [leaf, ...chain] = certs as [X509Certificate, ...X509Certificate[]];
  try {
    if (!leaf.checkPrivateKey(createPrivateKey(keyText))) {
      add('error', 'key', d, `${local.privateKey} does not match the certificate ${local.certificate} (different key pair); give the key the certificate was issued for`);
    } else add('ok', 'key', d, 'the private key matches the certificate');
  } catch (err) {
    add('error', 'key', d, `${local.privateKey} is not a usable private key (${(err as Error).message})`);
  }
  const result = checkCertificate(leaf, chain, d, anchors ? { trustAnchors: anchors } : {});
  const summary = certificateSummary(result, d);
  const dateError = result.chainError === 'CERT_HAS_EXPIRED' || result.chainError === 'CERT_NOT_YET_VALID';
  const days = summary.daysLeft ?? 0;
  const problems: string[] = [];
  if (!result.chainValid && !(dateError && (days < 0 || Date.parse(leaf.validFrom) > Date.now()))) {
    problems.push(`its chain does not lead to a configured CA (${result.chainError}); include the intermediates in ${local.certificate} and the CA in trust.caFiles`);
  }
  if (!result.identity.ok) problems.push(`${result.identity.reason}; partners will refuse it (RFC 6125): reissue it with a DNS name ${d}`);
  if (days < 0) problems.push(`expired on ${new Date(leaf.validTo).toISOString().slice(0, 10)}: partners refuse it; renew it`);
  if (Date.parse(leaf.validFrom) > Date.now()) problems.push(`not valid before ${new Date(leaf.validFrom).toISOString()}; check the clock or the certificate`);
  for (const p of problems) add('error', 'certificate', d, p);
  if (problems.length === 0 && days < EXPIRY_WARNING_DAYS) add('warning', 'certificate', d, `expires in ${days} days (${new Date(leaf.validTo).toISOString().slice(0, 10)}); renew it soon`);
  else if (problems.length === 0) add('ok', 'certificate', d, summary.detail);
}

/** The running gateway's /status, when its admin listener answers. */
async function runningGateway(config: GatewayConfig): Promise<unknown> {
  try {
    return await adminJson(adminTarget(config), 'GET', '/status');
  } catch {
    return null;
  }
}

async function checkPorts(config: GatewayConfig, running: unknown, add: Add): Promise<void> {
  const tcp: [string, { host: string; port: number }][] = config.listen.map((l, i) => [`listen[${i}]${l.directTls ? ' (direct TLS)' : ''}`, l]);
  if (config.admin) tcp.push(['admin.listen', config.admin.listen]);
  if (config.internal) tcp.push(['internal.listen', config.internal.listen]);
  if (config.internal?.dns) tcp.push(['internal.dns', config.internal.dns]);
  for (const [field, { host, port }] of tcp) {
    const where = `${host.includes(':') ? `[${host}]` : host}:${port}`;
    if (port === 0) {
      add(field.startsWith('listen') ? 'warning' : 'ok', 'port', where, `${field}: port 0 picks a free port at each start${field.startsWith('listen') ? ', which no DNS record can point at' : ''}`);
      continue;
    }
    const problem = (await bindable(host, port, 'tcp')) ?? (field === 'internal.dns' ? await bindable(host, port, 'udp') : null);
    if (problem === null) add('ok', 'port', where, `${field}: free`);
    else if (problem === 'EADDRINUSE' && running) add('ok', 'port', where, `${field}: held by the running gateway (its admin listener answers)`);
    else if (problem === 'EADDRINUSE') add('error', 'port', where, `${field}: in use by another process (no gateway answers on admin.listen); stop it or choose another port`);
    else if (problem === 'EACCES') add('error', 'port', where, `${field}: binding needs privileges (port below 1024); grant CAP_NET_BIND_SERVICE or use a higher port`);
    else add('error', 'port', where, `${field}: cannot listen (${problem}); is ${host} an address of this machine?`);
  }
}

function bindable(host: string, port: number, kind: 'tcp' | 'udp'): Promise<string | null> {
  return new Promise((resolve) => {
    if (kind === 'udp') {
      const s = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
      s.once('error', (err: NodeJS.ErrnoException) => (s.close(), resolve(err.code ?? err.message)));
      s.bind(port, host, () => s.close(() => resolve(null)));
      return;
    }
    const server = net.createServer();
    server.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(null)));
  });
}

async function lookup<R>(q: () => Promise<Lookup<R>>): Promise<Lookup<R> | { kind: 'failed'; message: string }> {
  try {
    return await q();
  } catch (err) {
    return { kind: 'failed', message: (err as Error).message };
  }
}

async function addresses(resolver: Resolver, host: string): Promise<string[] | string> {
  const bare = host.replace(/\.$/, '');
  if (net.isIP(bare)) return [bare];
  const [six, four] = await Promise.all([lookup(() => resolver.lookupAddresses(bare, 'AAAA')), lookup(() => resolver.lookupAddresses(bare, 'A'))]);
  const found = [six, four].flatMap((l) => (l.kind === 'records' ? l.records : []));
  if (found.length > 0) return found;
  const failed = [six, four].find((l) => l.kind === 'failed');
  return failed && failed.kind === 'failed' ? `lookup failed (${failed.message})` : 'no A/AAAA records';
}

async function checkDns(config: GatewayConfig, resolver: Resolver, domain: string, add: Add): Promise<void> {
  const via = config.dns.servers ? `dns.servers ${config.dns.servers.join(', ')}` : 'the system resolver';
  const plainPorts = config.listen.filter((l) => !l.directTls).map((l) => l.port);
  const tlsPorts = config.listen.filter((l) => l.directTls).map((l) => l.port);
  const own = await addresses(resolver, domain);
  const srv = await lookup(() => resolver.lookupSrv('_xmpp-server', domain));
  const name = `_xmpp-server._tcp.${domain}`;
  const publish = `publish '${name}. 3600 IN SRV 0 5 ${plainPorts[0] ?? 5269} <this host>.'`;
  if (srv.kind === 'failed') add('warning', 'dns', name, `could not be checked through ${via}: ${srv.message}`);
  else if (srv.kind === 'records') await checkSrvRecords(resolver, name, srv.records, plainPorts, 'listen', add);
  else if (typeof own !== 'string' && plainPorts.includes(5269)) {
    add('warning', 'dns', name, `no SRV record (${srv.kind === 'nxdomain' ? 'NXDOMAIN' : 'no data'}) through ${via}; partners fall back to ${domain}:5269 (${own.join(', ')}); ${publish}`);
  } else {
    add('error', 'dns', name, `no SRV record (${srv.kind === 'nxdomain' ? 'NXDOMAIN' : 'no data'}) through ${via}${typeof own === 'string' ? ` and ${domain} has ${own}` : `, and the fallback ${domain}:5269 is not a listen port`}: partners cannot find this gateway; ${publish}`);
  }
  const direct = await lookup(() => resolver.lookupSrv('_xmpps-server', domain));
  if (direct.kind === 'records') await checkSrvRecords(resolver, `_xmpps-server._tcp.${domain}`, direct.records, tlsPorts, 'listen with directTls', add);
  else if (tlsPorts.length > 0 && direct.kind !== 'failed') add('warning', 'dns', `_xmpps-server._tcp.${domain}`, `a direct TLS listener is configured but no _xmpps-server SRV record points at it (XEP-0368)`);
  if (typeof own === 'string') add(srv.kind === 'records' ? 'ok' : 'warning', 'dns', domain, `A/AAAA: ${own}${srv.kind === 'records' ? ' (not needed while the SRV record exists)' : ''}`);
  else add('ok', 'dns', domain, `A/AAAA: ${own.join(', ')}`);
}

async function checkSrvRecords(resolver: Resolver, name: string, records: readonly SrvAnswer[], ports: readonly number[], field: string, add: Add): Promise<void> {
  if (records.length === 1 && records[0]!.target.replace(/\.$/, '') === '') {
    add('error', 'dns', name, `SRV target '.' says this domain offers no service (RFC 2782); point it at this gateway`);
    return;
  }
  for (const r of records) {
    const target = `${r.priority} ${r.weight} ${r.port} ${r.target}`;
    const found = await addresses(resolver, r.target);
    if (typeof found === 'string') add('error', 'dns', name, `SRV ${target}: the target has ${found}; give it an A or AAAA record`);
    else if (!ports.includes(r.port)) add('warning', 'dns', name, `SRV ${target} (${found.join(', ')}): port ${r.port} is not a ${field} port of this gateway (${ports.join(', ') || 'none'})`);
    else add('ok', 'dns', name, `SRV ${target} (${found.join(', ')})`);
  }
}

async function checkPartnerNames(config: GatewayConfig, partners: PartnerList, add: Add): Promise<void> {
  const resolver = configuredResolver(config);
  const jobs: (() => Promise<void>)[] = [];
  for (const p of partners.records) {
    if (p.ProxyFqdn) {
      jobs.push(async () => {
        const { host } = parseHostPort(p.ProxyFqdn!, 5269);
        const found = await addresses(resolver, host);
        if (typeof found === 'string') add('error', 'partner', p.Identity, `ProxyFqdn ${p.ProxyFqdn}: ${host} has ${found}; outbound streams and dialback verifications to ${p.Identity} will fail`);
        else add('ok', 'partner', p.Identity, `ProxyFqdn ${p.ProxyFqdn} resolves to ${found.join(', ')}`);
      });
    }
    for (const d of p.AdditionalDomains) {
      jobs.push(async () => {
        try {
          const targets = await resolver.resolveS2s(d, p.ProxyFqdn ?? undefined);
          if (targets.length === 0) add('warning', 'partner', p.Identity, `AdditionalDomains ${d}: its SRV record says it offers no XMPP service`);
          else add('ok', 'partner', p.Identity, `AdditionalDomains ${d} resolves (${targets[0]!.source}: ${targets.map((t) => `${t.host}:${t.port}`).join(', ')})`);
        } catch (err) {
          add('warning', 'partner', p.Identity, `AdditionalDomains ${d} does not resolve (${(err as Error).message}): the gateway cannot connect to it or verify its dialback keys`);
        }
      });
    }
  }
  for (let i = 0; i < jobs.length; i += 8) await Promise.all(jobs.slice(i, i + 8).map((j) => j()));
}

async function checkInternal(config: GatewayConfig, partners: PartnerList | null, running: unknown, add: Add): Promise<void> {
  const internal = config.internal!;
  const server = `${internal.server.host}:${internal.server.port}`;
  const partnerDomain = partners?.records[0]?.Identity;
  const answer = await streamAnswer(internal.server.host, internal.server.port, partnerDomain ?? 'gateway-check.invalid', config.localDomains[0]!.domain);
  if (answer === null) add('ok', 'internal', server, 'the internal server answers with a stream header');
  else add('error', 'internal', server, `the internal server does not answer: ${answer}; check internal.server`);
  if (!internal.dns) return;
  const where = `${internal.dns.host}:${internal.dns.port}`;
  if (!running) {
    add('warning', 'internal', where, 'the DNS view is served by the running gateway, which is not running: start it and check again');
    return;
  }
  const view = new Resolver({ servers: [internal.dns.host.includes(':') ? `[${internal.dns.host}]:${internal.dns.port}` : where], maxCacheTtlMs: 0, timeoutMs: 2000 });
  if (partnerDomain) {
    const srv = await lookup(() => view.lookupSrv('_xmpp-server', partnerDomain));
    const ok = srv.kind === 'records' && srv.records.some((r) => r.port === internal.listen.port || internal.listen.port === 0);
    add(ok ? 'ok' : 'error', 'internal', where, ok
      ? `partner ${partnerDomain}: SRV points at the internal listener (${srv.kind === 'records' ? srv.records.map((r) => `${r.target}:${r.port}`).join(', ') : ''})`
      : `partner ${partnerDomain}: expected an SRV record pointing at internal.listen, got ${srv.kind === 'failed' ? srv.message : srv.kind}`);
  }
  const stranger = 'not-a-partner.gateway-check.invalid';
  const nx = await lookup(() => view.lookupAddresses(stranger, 'A'));
  add(nx.kind === 'nxdomain' ? 'ok' : 'error', 'internal', where, nx.kind === 'nxdomain'
    ? 'a non-partner name is NXDOMAIN'
    : `a non-partner name should be NXDOMAIN, got ${nx.kind === 'failed' ? nx.message : nx.kind}`);
}

/** null when `host:port` answers a stream header with one of its own within 3 s; else why not. */
function streamAnswer(host: string, port: number, from: string, to: string): Promise<string | null> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    let text = '';
    const done = (why: string | null) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(why);
    };
    const timer = setTimeout(() => done('no stream header within 3 s'), 3000);
    socket.once('connect', () => socket.write(streamHeader({ from, to, version: '1.0', dialback: true })));
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('utf8');
      if (/<(\w+:)?stream[\s>]/.test(text)) done(null);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code ?? err.message));
    socket.once('close', () => done('connection closed without a stream header'));
  });
}
