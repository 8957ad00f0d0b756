/**
 * What a partner record permits on a stream (docs/design.md sections 3 and 4). Every refusal comes
 * with a text that names the rule, so the peer, the log and the metrics all say why.
 */
import type { PartnerRecord } from '../policy/types.js';

export type Permission = { readonly ok: true } | { readonly ok: false; readonly rule: string; readonly text: string };

const OK: Permission = { ok: true };

function deny(rule: string, text: string): Permission {
  return { ok: false, rule, text };
}

/** STARTTLS may be negotiated with this partner. */
export function tlsAllowed(p: PartnerRecord): Permission {
  return p.TlsNegotiation === 'NotSupported'
    ? deny('TlsNegotiation', `TlsNegotiation is NotSupported for partner ${p.Identity}`)
    : OK;
}

/** Server Dialback (XEP-0220) may authenticate this partner on a stream with/without TLS. */
export function dialbackAllowed(p: PartnerRecord, tls: boolean): Permission {
  if (!p.SupportDialbackNegotiation) {
    return deny('SupportDialbackNegotiation', `SupportDialbackNegotiation is false for partner ${p.Identity}: dialback is refused`);
  }
  if (p.SaslNegotiation === 'Required') {
    return deny('SaslNegotiation', `SaslNegotiation is Required for partner ${p.Identity}: only SASL EXTERNAL is accepted`);
  }
  if (p.TlsNegotiation === 'Required' && !tls) {
    return deny('TlsNegotiation', `TlsNegotiation is Required for partner ${p.Identity}: STARTTLS must come first`);
  }
  return OK;
}

/** SASL EXTERNAL (XEP-0178) may authenticate this partner (it always needs TLS). */
export function saslAllowed(p: PartnerRecord, tls: boolean): Permission {
  if (p.SaslNegotiation === 'NotSupported') {
    return deny('SaslNegotiation', `SaslNegotiation is NotSupported for partner ${p.Identity}`);
  }
  if (!tls) return deny('TlsNegotiation', `SASL EXTERNAL needs TLS (partner ${p.Identity})`);
  return OK;
}

/** Plaintext is acceptable only when the record does not require TLS. */
export function plaintextAllowed(p: PartnerRecord): Permission {
  return p.TlsNegotiation === 'Required'
    ? deny('TlsNegotiation', `TlsNegotiation is Required for partner ${p.Identity}: STARTTLS must come first`)
    : OK;
}

/**
 * Whether an already authenticated stream still satisfies a (possibly reloaded) record
 * (docs/design.md section 6: tightened rules close live streams).
 */
export function streamStillAllowed(p: PartnerRecord, tls: boolean, auth: 'sasl-external' | 'dialback' | 'none'): Permission {
  if (!tls && p.TlsNegotiation === 'Required') return plaintextAllowed(p);
  if (tls && p.TlsNegotiation === 'NotSupported') return tlsAllowed(p);
  if (auth === 'dialback') return dialbackAllowed(p, tls);
  if (auth === 'sasl-external') return saslAllowed(p, tls);
  return OK;
}
