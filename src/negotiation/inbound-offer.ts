/**
 * What the receiving side offers and accepts, decided from the partner's record and the
 * certificate on the stream (docs/design.md sections 3 and 4). Pure functions: the live inbound
 * stream (stream/inbound-stream.ts) and `xmpp-gateway explain` (diagnostics/explain.ts) both call
 * them, so the explanation cannot drift from what the gateway does.
 */
import type { StreamCondition } from '../errors.js';
import type { PartnerRecord } from '../policy/types.js';
import { dialbackAllowed, saslAllowed } from './partner-policy.js';

/** The stream features of one state (docs/protocol.md 1.4). */
export interface FeatureOffer {
  /** `<starttls/>`, with `<required/>` or without; null when not offered. */
  readonly starttls: 'required' | 'optional' | null;
  /** SASL EXTERNAL offered. */
  readonly external: boolean;
  /** The dialback feature (with `<errors/>`). */
  readonly dialback: boolean;
}

export type OfferDecision =
  | { readonly ok: true; readonly offer: FeatureOffer }
  | { readonly ok: false; readonly condition: StreamCondition; readonly rule: string; readonly text: string };

/** The certificate the peer presented on this stream, as the offer needs to know it. */
export interface PresentedCertificate {
  /** Why the chain cannot authenticate anyone; null when it leads to a trusted CA. */
  chainProblem(): string | null;
  /** Why it cannot authenticate `domain`; null when it can. */
  problemFor(domain: string): string | null;
}

const NOTHING: FeatureOffer = { starttls: null, external: false, dialback: false };

/**
 * The features an inbound stream offers in its current state, or the refusal that ends it.
 * `partner` is null while the header had no `from` (legacy peers); `remoteDomain` is that `from`.
 */
export function inboundOffer(
  partner: PartnerRecord | null,
  remoteDomain: string | null,
  state: { readonly tls: boolean; readonly saslDone: boolean },
  cert: PresentedCertificate,
): OfferDecision {
  if (state.saslDone) return { ok: true, offer: NOTHING };
  const p = partner;
  let offer: FeatureOffer;
  if (!state.tls) {
    if (!p || p.TlsNegotiation === 'Required') {
      // Legacy header without `from`: the strictest offer until the partner is known.
      offer = { ...NOTHING, starttls: 'required' };
    } else {
      offer = { starttls: p.TlsNegotiation === 'Optional' ? 'optional' : null, external: false, dialback: dialbackAllowed(p, false).ok };
    }
  } else if (!p || remoteDomain === null) {
    // No `from` yet: the partner is named by the EXTERNAL authzid (checked then), but only a
    // certificate that chains to a trusted CA can ever succeed, so only then is it offered.
    offer = { starttls: null, external: cert.chainProblem() === null, dialback: true };
  } else {
    const external = saslAllowed(p, true).ok && cert.problemFor(remoteDomain) === null;
    offer = { starttls: null, external, dialback: dialbackAllowed(p, true).ok };
    if (!external && p.SaslNegotiation === 'Required') {
      // docs/design.md section 3: SASL Required and a certificate that fails ⇒ not-authorized.
      const problem = cert.problemFor(remoteDomain) ?? `SaslNegotiation is Required for partner ${p.Identity}`;
      return { ok: false, condition: 'not-authorized', rule: 'SaslNegotiation', text: `SaslNegotiation is Required for partner ${p.Identity} and its certificate cannot be used: ${problem}` };
    }
  }
  if (offer.starttls === null && !offer.external && !offer.dialback) {
    return { ok: false, condition: 'not-authorized', rule: 'negotiation', text: `no authentication method is left for partner ${p?.Identity ?? '(unknown)'}` };
  }
  return { ok: true, offer };
}

export type ExternalVerdict =
  | { readonly ok: true }
  | {
      readonly ok: false;
      /** The SASL `<failure/>` condition. */
      readonly saslCondition: 'invalid-mechanism' | 'not-authorized';
      readonly rule: string;
      readonly text: string;
      /** XEP-0178: the stream stays open for dialback unless the record leaves no other way in. */
      readonly closesStream: boolean;
    };

/** Whether SASL EXTERNAL authenticates `domain` of `partner`, given what is wrong with the certificate (null: nothing). */
export function externalVerdict(partner: PartnerRecord, domain: string, certificateProblem: string | null): ExternalVerdict {
  const allowed = saslAllowed(partner, true);
  if (!allowed.ok) return { ok: false, saslCondition: 'invalid-mechanism', rule: allowed.rule, text: allowed.text, closesStream: false };
  if (certificateProblem !== null) {
    const closesStream = partner.SaslNegotiation === 'Required' || !dialbackAllowed(partner, true).ok;
    return { ok: false, saslCondition: 'not-authorized', rule: 'certificate', text: `${domain}: ${certificateProblem}`, closesStream };
  }
  return { ok: true };
}
