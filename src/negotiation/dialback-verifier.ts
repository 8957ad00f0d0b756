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

export class DialbackVerifier implements DialbackVerification {
  constructor(
    private readonly ctx: () => GatewayContext,
    private readonly resolver: Resolver,
    private readonly timeoutMs: () => number,
  ) {}

  async verify(request: { localDomain: string; remoteDomain: string; streamId: string; key: string }): Promise<Answer> {
    const ctx = this.ctx();
    const partner = ctx.partners().partnerFor(request.remoteDomain);
    if (!partner) return { result: 'error', condition: 'policy-violation', text: `${request.remoteDomain} is not an allowed partner` };
    const slot = ctx.limits.openVerification();
    if (!slot.ok) return { result: 'error', condition: 'resource-constraint', text: slot.text };
    let stream: OutboundStream | undefined;
    let timer: NodeJS.Timeout | undefined;
    try {
      const { socket, target } = await connectToDomain(this.resolver, request.remoteDomain, partner.ProxyFqdn);
      stream = new OutboundStream(socket, ctx, {
        localDomain: request.localDomain,
        remoteDomain: request.remoteDomain,
        partner,
        purpose: 'dialback-verify',
        verify: { streamId: request.streamId, key: request.key },
      }, target.directTls);
      const timeout = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), this.timeoutMs());
      });
      const verdict = await Promise.race([stream.verdict, timeout]);
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
    }
  }
}
