/**
 * `xmpp-gateway explain --from DOMAIN`: what the gateway would do with an incoming stream from
 * DOMAIN, decided by the functions the live inbound stream calls (realm.peerFor / notAPeer,
 * negotiation/inbound-offer.ts, partner-policy.ts), walked the way a flexible remote server
 * negotiates (Prosody and ejabberd with TLS: STARTTLS when offered, EXTERNAL when offered,
 * dialback otherwise; without TLS: dialback on the plain stream).
 *
 * One difference from a live stream: a certificate given as a file is judged by the gateway's own
 * chain validation (peer-certificate.ts verifyChain, against trust.caFiles) instead of OpenSSL's
 * verdict during a handshake; both accept and refuse the same certificate states.
 */
import { readFile } from 'node:fs/promises';
import type { GatewayConfig } from '../config/schema.js';
import { UsageError, type StreamCondition } from '../errors.js';
import type { RefusalEntry } from '../admin/refusal-log.js';
import { externalVerdict, inboundOffer, type FeatureOffer, type PresentedCertificate } from '../negotiation/inbound-offer.js';
import { dialbackAllowed } from '../negotiation/partner-policy.js';
import { normalizeDomain } from '../policy/domain.js';
import type { PartnerList } from '../policy/partner-list.js';
import { certificateProblem, checkCertificate, parseTrustAnchors, type PeerCertificateResult } from '../tls/peer-certificate.js';
import { certificateSummary } from './certificate-summary.js';
import { diagnosticContext } from './context.js';
import { recordSummary } from './record-summary.js';

export interface ExplainStep {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

export interface ExplainResult {
  readonly from: string;
  readonly to: string;
  /** The partner whose record applies, or null when none does. */
  readonly partner: string | null;
  readonly record: string | null;
  readonly tls: boolean;
  readonly certificate: string | null;
  readonly steps: ExplainStep[];
  /** How the stream would authenticate (dialback: once the partner's authoritative server confirms the key). */
  readonly auth: 'sasl-external' | 'dialback' | null;
  /** The refusal that ends the stream otherwise: stream error condition, rule, text. */
  readonly refusal: { readonly condition: StreamCondition; readonly rule: string; readonly text: string } | null;
  /** The running gateway's last refusals of this partner (status), or null with `recentRefusalsNote` saying why. */
  readonly recentRefusals: readonly RefusalEntry[] | null;
  readonly recentRefusalsNote: string;
}

export interface ExplainOptions {
  readonly from: string;
  readonly to?: string;
  /** PEM file: the partner's certificate first, then any chain it sends. Implies tls. */
  readonly certificateFile?: string;
  readonly tls?: boolean;
  /** The running gateway's /status body, when it answered; a string says why there is none. */
  readonly status?: unknown;
}

export async function explain(config: GatewayConfig, partners: PartnerList, opts: ExplainOptions): Promise<ExplainResult> {
  const from = domainArg(opts.from, 'from');
  const { ctx, realm } = await diagnosticContext(config, partners);
  const to = opts.to === undefined ? ctx.tls.defaultDomain : domainArg(opts.to, 'to');
  if (!realm.speaksAs(to)) throw new UsageError(`explain: --to ${to} is not one of the gateway's localDomains (${[...ctx.localDomains].join(', ')})`, 'to');
  const useTls = opts.tls === true || opts.certificateFile !== undefined;

  let presented: { leaf: import('node:crypto').X509Certificate; chain: import('node:crypto').X509Certificate[] } | null = null;
  if (opts.certificateFile !== undefined) {
    let pem: string;
    try {
      pem = await readFile(opts.certificateFile, 'utf8');
    } catch (err) {
      throw new UsageError(`explain: cannot read --certificate ${opts.certificateFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, 'certificate');
    }
    const certs = parseTrustAnchors(pem);
    if (certs.length === 0) throw new UsageError(`explain: ${opts.certificateFile} holds no PEM certificate`, 'certificate');
    presented = { leaf: certs[0]!, chain: certs.slice(1) };
  }
  const check = (domain: string): PeerCertificateResult =>
    presented
      ? checkCertificate(presented.leaf, presented.chain, domain, { trustAnchors: ctx.tls.trustAnchors, allowCommonName: config.trust.allowCommonNameFor.includes(domain) })
      : { chainValid: false, chainError: 'NO_PEER_CERTIFICATE', identity: { ok: false, reason: 'no certificate presented' } };
  const cert: PresentedCertificate = {
    chainProblem: () => (check(to).chainValid ? null : certificateProblem(check(to), to)),
    problemFor: (domain) => certificateProblem(check(domain), domain),
  };

  const steps: ExplainStep[] = [];
  const base = { from, to, tls: useTls, certificate: presented ? certificateSummary(check(from), from).detail : null };
  const refusals = recentRefusals(opts.status, from);
  const done = (partner: string | null, record: string | null, auth: ExplainResult['auth'], refusal: ExplainResult['refusal']): ExplainResult =>
    ({ ...base, partner, record, steps, auth, refusal, ...refusals(partner) });

  const p = realm.peerFor(from);
  if (!p) {
    const why = realm.notAPeer(from);
    const refusal = { condition: (realm.speaksAs(from) ? 'invalid-from' : 'policy-violation') as StreamCondition, rule: why.rule, text: why.text };
    steps.push({ name: 'header', ok: false, detail: `no record applies: ${why.text}; refused at the stream header, before any TLS work` });
    return done(null, null, null, refusal);
  }
  const record = recordSummary(p);
  steps.push({ name: 'header', ok: true, detail: `partner ${p.Identity}${p.Identity === from ? '' : ` (${from} is one of its AdditionalDomains)`}: ${record}` });

  const plain = inboundOffer(p, from, { tls: false, saslDone: false }, cert);
  if (!plain.ok) return refuse('features', plain);
  steps.push({ name: 'features', ok: true, detail: `before TLS: ${describeOffer(plain.offer)}` });

  if (useTls && plain.offer.starttls !== null) {
    steps.push({ name: 'starttls', ok: true, detail: presented ? `TLS with the certificate: ${base.certificate}` : 'TLS without a client certificate' });
    const secured = inboundOffer(p, from, { tls: true, saslDone: false }, cert);
    if (!secured.ok) return refuse('features', secured);
    steps.push({ name: 'features', ok: true, detail: `after TLS: ${describeOffer(secured.offer)}` });
    if (secured.offer.external) {
      const verdict = externalVerdict(p, from, cert.problemFor(from));
      if (verdict.ok) {
        steps.push({ name: 'sasl-external', ok: true, detail: `EXTERNAL accepted: the certificate authenticates ${from}` });
        return done(p.Identity, record, 'sasl-external', null);
      }
      steps.push({ name: 'sasl-external', ok: false, detail: `${verdict.saslCondition}: ${verdict.text} (rule ${verdict.rule})` });
      if (verdict.closesStream) return done(p.Identity, record, null, { condition: 'not-authorized', rule: verdict.rule, text: verdict.text });
    }
    return dialback(true);
  }
  if (useTls) steps.push({ name: 'starttls', ok: false, detail: 'STARTTLS is not offered to this partner: the stream stays plain' });
  return dialback(false);

  function dialback(tls: boolean): ExplainResult {
    const allowed = dialbackAllowed(p!, tls);
    if (!allowed.ok) {
      steps.push({ name: 'dialback', ok: false, detail: `db:result ${tls ? 'over TLS' : 'on the plain stream'} refused: ${allowed.text}` });
      return done(p!.Identity, record, null, { condition: 'policy-violation', rule: allowed.rule, text: allowed.text });
    }
    steps.push({ name: 'dialback', ok: true, detail: `db:result ${tls ? 'over TLS' : 'on the plain stream'} accepted once ${from}'s authoritative server confirms the key (found by ${p!.ProxyFqdn ? `ProxyFqdn ${p!.ProxyFqdn}` : 'dns.routes or DNS SRV'})` });
    return done(p!.Identity, record, 'dialback', null);
  }

  function refuse(name: string, d: { condition: StreamCondition; rule: string; text: string }): ExplainResult {
    steps.push({ name, ok: false, detail: `stream error ${d.condition}: ${d.text} (rule ${d.rule})` });
    return done(p!.Identity, record, null, { condition: d.condition, rule: d.rule, text: d.text });
  }
}

function domainArg(value: string, option: string): string {
  try {
    return normalizeDomain(value);
  } catch (err) {
    throw new UsageError(`explain: --${option}: ${(err as Error).message}`, option);
  }
}

function describeOffer(o: FeatureOffer): string {
  const parts = [
    ...(o.starttls ? [`STARTTLS${o.starttls === 'required' ? ' (required, nothing else)' : ''}`] : []),
    ...(o.external ? ['SASL EXTERNAL'] : []),
    ...(o.dialback ? ['dialback'] : []),
  ];
  return parts.length === 0 ? 'nothing' : parts.join(', ');
}

/** The refusals in the running gateway's status for this partner (or, for a non-partner, for this domain). */
function recentRefusals(status: unknown, from: string) {
  return (partner: string | null): Pick<ExplainResult, 'recentRefusals' | 'recentRefusalsNote'> => {
    if (typeof status === 'string') return { recentRefusals: null, recentRefusalsNote: status };
    const all = (status as { partners?: { recentRefusals?: Record<string, RefusalEntry[]> } } | undefined)?.partners?.recentRefusals;
    if (!all) return { recentRefusals: null, recentRefusalsNote: 'the running gateway reports no refusals (an older version?)' };
    const entries = partner === null
      ? (all['-'] ?? []).filter((e) => e.domain === from)
      : (all[partner] ?? []);
    return { recentRefusals: entries, recentRefusalsNote: entries.length === 0 ? 'no recent refusals in the running gateway' : `the running gateway's last ${entries.length} refusal(s)` };
  };
}
