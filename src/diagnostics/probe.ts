/**
 * `xmpp-gateway probe DOMAIN`: connects to a partner exactly as the gateway's outbound side
 * would, under that partner's record (the gateway's own Resolver, connectTargets and
 * OutboundStream, told to report each step), and says which step fails and which record property
 * decided.
 *
 * Dialback needs the partner to call our authoritative server back with the key (XEP-0220
 * section 2.1.2). The probe's keys are made with gateway.yaml's `dialbackSecret`, and:
 *  - when the s2s listen address is free (the gateway is not running), the probe listens there
 *    itself for the duration and answers db:verify with the gateway's own inbound stream code;
 *  - when it is taken (the gateway is running), the running gateway answers, which it can only
 *    do correctly when both share a configured `dialbackSecret` (without one, each start picks a
 *    random secret and the partner's verification says invalid; the probe says so).
 */
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import type { GatewayConfig } from '../config/schema.js';
import { UsageError } from '../errors.js';
import type { StreamEvents } from '../gateway-context.js';
import { dialbackAllowed } from '../negotiation/partner-policy.js';
import { connectTargets, type ConnectAttempt } from '../net/connector.js';
import { listen, type Listener } from '../net/listener.js';
import type { Target } from '../net/resolver.js';
import { normalizeDomain } from '../policy/domain.js';
import { PartnerList } from '../policy/partner-list.js';
import type { PartnerRecord } from '../policy/types.js';
import { newRecord } from '../policy/validate.js';
import { InboundStream } from '../stream/inbound-stream.js';
import { OutboundStream, type OutboundStep } from '../stream/outbound-stream.js';
import type { S2SStream } from '../stream/s2s-stream.js';
import type { StreamAuth } from '../stream/stream-info.js';
import { NS_DIALBACK_FEATURE, NS_SASL, NS_TLS } from '../xml/namespaces.js';
import { certificateSummary } from './certificate-summary.js';
import { diagnosticContext } from './context.js';
import { recordSummary } from './record-summary.js';

export interface ProbeStep {
  readonly name: string;
  readonly ok: boolean;
  /** Milliseconds since the previous step ended. */
  readonly ms: number;
  readonly detail: string;
}

export interface ProbeResult {
  readonly domain: string;
  readonly from: string;
  /** The partner's Identity, or null when probed with --unlisted under the default record. */
  readonly partner: string | null;
  readonly unlisted: boolean;
  readonly verdict: 'ok' | 'fail';
  readonly auth: 'sasl-external' | 'dialback' | null;
  /** The step that failed, the record property (or rule) that decided, and why. */
  readonly failedStep: string | null;
  readonly rule: string | null;
  readonly reason: string;
  readonly steps: ProbeStep[];
}

export interface ProbeOptions {
  readonly from?: string;
  readonly unlisted?: boolean;
  /** Whole negotiation, after the connection (default: streamEstablishmentTimeoutSeconds, at most 30 s). */
  readonly timeoutMs?: number;
  readonly connectTimeoutMs?: number;
}

export async function probe(config: GatewayConfig, partners: PartnerList, domainArg: string, opts: ProbeOptions = {}): Promise<ProbeResult> {
  let domain: string;
  try {
    domain = normalizeDomain(domainArg);
  } catch (err) {
    throw new UsageError(`probe: ${(err as Error).message}`, 'DOMAIN');
  }
  const locals = config.localDomains.map((d) => d.domain);
  if (locals.includes(domain)) throw new UsageError(`probe: ${domain} is a local domain of this gateway, not a partner`, 'DOMAIN');
  const from = opts.from === undefined ? locals[0]! : normalizeDomain(opts.from);
  if (!locals.includes(from)) throw new UsageError(`probe: --from ${from} is not one of the gateway's localDomains (${locals.join(', ')})`, 'from');

  let record = partners.partnerFor(domain);
  const unlisted = record === undefined;
  if (!record) {
    if (!opts.unlisted) {
      throw new UsageError(`probe: ${domain} is not an allowed partner (the gateway never connects to it); --unlisted probes it under the default record`, 'DOMAIN');
    }
    record = newRecord(domain);
    partners = new PartnerList([...partners.records, record]);
  }
  const partner = record;

  const steps: ProbeStep[] = [];
  let mark = Date.now();
  const step = (name: string, ok: boolean, detail: string): void => {
    const t = Date.now();
    steps.push({ name, ok, ms: t - mark, detail });
    mark = t;
  };
  const result = (verdict: 'ok' | 'fail', auth: ProbeResult['auth'], failedStep: string | null, rule: string | null, reason: string): ProbeResult => ({
    domain, from, partner: unlisted ? null : partner.Identity, unlisted, verdict, auth, failedStep, rule, reason, steps,
  });

  step('record', true, unlisted
    ? `${domain} is not an allowed partner; probed with --unlisted under the default record (${recordSummary(partner)})`
    : `partner ${partner.Identity}${partner.Identity === domain ? '' : ` (AdditionalDomains)`}: ${recordSummary(partner)}`);

  // What the outbound stream reports: the one refusal that ends it and how it authenticated.
  let stream: OutboundStream | undefined;
  let refusal: { rule: string; condition: string; text: string } | undefined;
  let authenticated: StreamAuth | undefined;
  const inbound = new Set<S2SStream>();
  const events: StreamEvents = {
    opened: (s) => void (s !== stream && s.direction === 'inbound' && inbound.add(s)),
    refused: (s, _p, rule, condition, text) => void (s.direction === 'outbound' && (refusal ??= { rule, condition, text })),
    stanzaRefused() {},
    authenticated: (s, _p, _d, method) => void (s.direction === 'outbound' && (authenticated = method)),
    closed: (s) => void inbound.delete(s),
  };
  const usesDialback = dialbackAllowed(partner, true).ok || dialbackAllowed(partner, false).ok;
  const secret = config.dialbackSecret ?? randomBytes(32).toString('hex');
  const { ctx, realm, resolver } = await diagnosticContext(config, partners, { events, dialbackSecret: secret });

  let authority: Listener | null = null;
  let authorityNote = '';
  try {
    if (usesDialback) {
      const a = await openAuthority(config, (socket) => new InboundStream(socket, ctx, realm));
      authority = a.listener;
      authorityNote = a.note;
      step('authority', a.ok, a.note);
    }

    // Resolution, as the outbound pool does it: ProxyFqdn, dns.routes, SRV (RFC 2782 order), A/AAAA.
    let targets: Target[];
    try {
      targets = await resolver.resolveS2s(domain, partner.ProxyFqdn ?? undefined);
    } catch (err) {
      const srv = await describeSrv(resolver, domain);
      step('resolve', false, `${(err as Error).message}${srv ? `; ${srv}` : ''}`);
      return result('fail', null, 'resolve', partner.ProxyFqdn ? 'ProxyFqdn' : 'dns', `${domain} cannot be resolved: ${(err as Error).message}`);
    }
    if (targets.length === 0) {
      step('resolve', false, `_xmpp-server._tcp.${domain} SRV has target '.': the domain says it offers no server-to-server service`);
      return result('fail', null, 'resolve', 'dns', `${domain} publishes no XMPP server`);
    }
    step('resolve', true, await describeTargets(resolver, domain, partner, targets));

    const attempts: ConnectAttempt[] = [];
    let socket: Socket;
    let target: Target;
    try {
      ({ socket, target } = await connectTargets(domain, targets, opts.connectTimeoutMs, (a) => attempts.push(a)));
    } catch (err) {
      step('connect', false, attempts.map(formatAttempt).join('; ') || (err as Error).message);
      return result('fail', null, 'connect', partner.ProxyFqdn ? 'ProxyFqdn' : null, `no address of ${domain} accepts connections: ${attempts.map(formatAttempt).join('; ')}`);
    }
    step('connect', true, attempts.map(formatAttempt).join('; '));

    let tlsStep = false;
    const trace = (s: OutboundStep): void => {
      switch (s.step) {
        case 'header':
          return step('stream', true, `stream header from ${domain}, id ${s.streamId}, version ${s.version ?? '(none: pre-1.0 server)'}`);
        case 'features':
          return step('features', true, describeFeatures(s.features));
        case 'starttls':
          tlsStep = true;
          return;
        case 'tls': {
          tlsStep = false;
          step('starttls', true, `${target.directTls ? 'direct TLS' : 'STARTTLS'}: ${s.protocol ?? 'TLS'}`);
          const c = certificateSummary(s.certificate, domain);
          return step('certificate', c.ok, c.detail);
        }
        case 'sasl':
          if (s.result !== 'sent') step('sasl-external', s.result === 'success', s.result === 'success' ? `${domain} accepted our certificate for ${from}` : `${domain} refused EXTERNAL (${s.condition ?? 'failure'})`);
          return;
        case 'dialback':
          if (s.result !== 'sent') step('dialback', s.result === 'valid', `${domain} answered our db:result: ${s.result}`);
      }
    };
    stream = new OutboundStream(socket, ctx, realm, { localDomain: from, remoteDomain: domain, partner, purpose: 'stream', trace }, target.directTls);
    const timeoutMs = opts.timeoutMs ?? Math.min(config.streamEstablishmentTimeoutSeconds, 30) * 1000;
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      stream.ready.then(() => 'ready' as const, () => 'failed' as const),
      new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs))),
    ]);
    clearTimeout(timer);
    if (outcome === 'ready' && (authenticated === 'sasl-external' || authenticated === 'dialback')) {
      const how = authenticated === 'sasl-external' ? 'SASL EXTERNAL (our certificate)' : 'Server Dialback';
      return result('ok', authenticated, null, null, `the gateway would authenticate to ${domain} as ${from} with ${how}`);
    }
    if (tlsStep) step('starttls', false, `the TLS handshake with ${domain} did not complete`);
    const failed = [...steps].reverse().find((s) => !s.ok)?.name ?? null;
    if (refusal) return result('fail', null, failed ?? steps[steps.length - 1]!.name, refusal.rule, refusal.text);
    if (outcome === 'timeout') {
      const waiting = steps[steps.length - 1]!.name;
      const dialbackNote = waiting === 'features' || waiting === 'dialback' || waiting === 'sasl-external' ? ` ${authorityNote}` : '';
      step('answer', false, `no answer from ${domain} within ${timeoutMs / 1000} s after ${waiting}`);
      return result('fail', null, 'answer', null, `${domain} did not complete the negotiation within ${timeoutMs / 1000} s.${dialbackNote}`);
    }
    const why = stream.failure?.message ?? stream.closeReason?.message ?? 'the stream closed';
    const dialbackRejected = steps.some((s) => s.name === 'dialback' && !s.ok);
    return result('fail', null, failed ?? 'stream', dialbackRejected ? 'dialback' : null, `${why}${dialbackRejected && authorityNote ? ` (${authorityNote})` : ''}`);
  } finally {
    stream?.close();
    for (const s of inbound) s.close();
    await authority?.close();
  }
}

/** Listens on the gateway's s2s address for the partner's dialback call-back, when it is free. */
async function openAuthority(config: GatewayConfig, onConnection: (socket: Socket) => void): Promise<{ listener: Listener | null; ok: boolean; note: string }> {
  const l = config.listen.find((x) => !x.directTls) ?? config.listen[0];
  if (!l) return { listener: null, ok: false, note: 'gateway.yaml has no listen address, so no partner can call back to verify a dialback key' };
  const where = `${l.host}:${l.port}`;
  if (l.port === 0) return { listener: null, ok: false, note: `listen port is 0 (any free port): a partner cannot find the authoritative server to verify dialback keys` };
  try {
    const listener = await listen(l.host, l.port, onConnection);
    return { listener, ok: true, note: `the gateway is not running: the probe answers dialback verifications on ${where} itself` };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EADDRINUSE') return { listener: null, ok: false, note: `cannot listen on ${where} to answer dialback verifications: ${code ?? (err as Error).message}` };
    if (config.dialbackSecret === null) {
      return { listener: null, ok: false, note: `${where} is in use (the gateway is running) and gateway.yaml sets no dialbackSecret: the running gateway cannot confirm the probe's dialback key; set dialbackSecret and restart the gateway` };
    }
    return { listener: null, ok: true, note: `${where} is in use (the gateway is running): it answers dialback verifications with the shared dialbackSecret` };
  }
}

function formatAttempt(a: ConnectAttempt): string {
  const where = `${a.target.host.includes(':') ? `[${a.target.host}]` : a.target.host}:${a.target.port}${a.target.directTls ? ' (direct TLS)' : ''}`;
  return a.error === undefined ? `connected to ${where} in ${a.ms} ms` : `${where}: ${a.error}`;
}

async function describeSrv(resolver: { lookupSrv: (s: '_xmpp-server', d: string) => Promise<{ kind: string }> }, domain: string): Promise<string> {
  try {
    const srv = await resolver.lookupSrv('_xmpp-server', domain);
    return srv.kind === 'records' ? '' : `no _xmpp-server._tcp.${domain} SRV record (${srv.kind === 'nxdomain' ? 'NXDOMAIN' : 'no data'})`;
  } catch {
    return '';
  }
}

async function describeTargets(resolver: Parameters<typeof describeSrv>[0], domain: string, p: PartnerRecord, targets: readonly Target[]): Promise<string> {
  const list = targets.map((t) => `${t.host}:${t.port}${t.directTls ? ' (direct TLS)' : ''}`).join(', ');
  switch (targets[0]!.source) {
    case 'proxy':
      return `ProxyFqdn ${p.ProxyFqdn} (record property ProxyFqdn, instead of DNS): ${list}`;
    case 'route':
      return `dns.routes in gateway.yaml: ${list}`;
    case 'srv':
      return `SRV _xmpp-server._tcp.${domain} / _xmpps-server._tcp.${domain}, in RFC 2782 order: ${list}`;
    case 'fallback':
      return `${await describeSrv(resolver, domain) || 'no SRV record'}; A/AAAA of ${domain} on port 5269: ${list}`;
  }
}

function describeFeatures(f: import('../xml/ltx.js').Element): string {
  const parts: string[] = [];
  const starttls = f.getChild('starttls', NS_TLS);
  if (starttls) parts.push(starttls.getChild('required') ? 'STARTTLS (required)' : 'STARTTLS');
  const mechanisms = f.getChild('mechanisms', NS_SASL)?.getChildren('mechanism').map((m) => m.getText().trim()) ?? [];
  if (mechanisms.length > 0) parts.push(`SASL ${mechanisms.join(' ')}`);
  if (f.getChild('dialback', NS_DIALBACK_FEATURE)) parts.push('dialback');
  return parts.length === 0 ? 'none' : parts.join(', ');
}
