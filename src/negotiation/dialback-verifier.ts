/**
 * The receiving server's dialback step 2 (XEP-0220 section 2.1.2): ask the partner's
 * authoritative server whether a key is valid, over a fresh verification-only connection
 * (ejabberd does the same) that obeys the partner's record (STARTTLS when TLS is Required) and
 * is closed after the answer. Only allowed partners are ever contacted. Verification connections
 * are capped on their own and do not count against the partner's ConnectionLimit.
 */
import type { DialbackVerification, GatewayContext } from '../gateway-context.js';
import { connectToDomain } from '../net/connector.js';
import type { Resolver } from '../net/resolver.js';
import { OutboundStream } from '../stream/outbound-stream.js';

type Answer = Awaited<ReturnType<DialbackVerification['verify']>>;

/** Dialback verifications in flight for one partner (the gateway-wide cap is maxDialbackVerifications). */
export const MAX_VERIFICATIONS_PER_PARTNER = 10;

export class DialbackVerifier implements DialbackVerification {
  constructor(
    private readonly ctx: () => GatewayContext,
    private readonly resolver: Resolver,
    private readonly timeoutMs: () => number,
  ) {}

  /** Verifications in flight per partner: one partner (or someone claiming to be it) cannot take every slot. */
  private readonly perPartner = new Map<string, number>();

  async verify(request: Parameters<DialbackVerification['verify']>[0]): Promise<Answer> {
    const ctx = this.ctx();
    const partner = request.realm.peerFor(request.remoteDomain);
    if (!partner) return { result: 'error', condition: 'policy-violation', text: `${request.remoteDomain} is not an allowed partner` };
    const inFlight = this.perPartner.get(partner.Identity) ?? 0;
    if (inFlight >= MAX_VERIFICATIONS_PER_PARTNER) {
      return { result: 'error', condition: 'resource-constraint', text: `more than ${MAX_VERIFICATIONS_PER_PARTNER} dialback verifications in flight for partner ${partner.Identity}` };
    }
    const slot = ctx.limits.openVerification();
    if (!slot.ok) return { result: 'error', condition: 'resource-constraint', text: slot.text };
    this.perPartner.set(partner.Identity, inFlight + 1);
    let stream: OutboundStream | undefined;
    let timer: NodeJS.Timeout | undefined;
    try {
      const { socket, target } = await connectToDomain(this.resolver, request.remoteDomain, partner.ProxyFqdn);
      stream = new OutboundStream(socket, ctx, request.realm, {
        localDomain: request.localDomain,
        remoteDomain: request.remoteDomain,
        partner,
        purpose: 'dialback-verify',
        verify: { streamId: request.streamId, key: request.key },
      }, target.directTls);
      const timeout = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), this.timeoutMs());
      });
      // The stream that asked may go away first: then nobody needs the answer.
      const abandoned = new Promise<'abandoned'>((resolve) => {
        if (request.signal?.aborted) resolve('abandoned');
        request.signal?.addEventListener('abort', () => resolve('abandoned'), { once: true });
      });
      const verdict = await Promise.race([stream.verdict, timeout, abandoned]);
      if (verdict === 'abandoned') {
        return { result: 'error', condition: 'remote-connection-failed', text: 'the requesting stream closed before the answer' };
      }
      if (verdict === 'timeout') {
        return { result: 'error', condition: 'remote-server-timeout', text: `${request.remoteDomain} did not answer the dialback verification in time` };
      }
      if (verdict === 'failed') {
        // The verification stream itself failed (policy, TLS, stream error): not a verdict on the key.
        const why = stream.failure?.message ?? stream.closeReason?.message ?? 'closed without an answer';
        return { result: 'error', condition: 'remote-connection-failed', text: `verification connection to ${request.remoteDomain} failed: ${why}` };
      }
      return { result: verdict };
    } catch (err) {
      return { result: 'error', condition: 'remote-server-not-found', text: `cannot reach ${request.remoteDomain}'s authoritative server: ${(err as Error).message}` };
    } finally {
      clearTimeout(timer);
      stream?.close();
      ctx.limits.closeVerification();
      const left = (this.perPartner.get(partner.Identity) ?? 1) - 1;
      if (left <= 0) this.perPartner.delete(partner.Identity);
      else this.perPartner.set(partner.Identity, left);
    }
  }
}
