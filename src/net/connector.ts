/**
 * Opens the TCP (or XEP-0368 direct TLS) connection for an outbound stream: targets from the
 * resolver (ProxyFqdn, static route, SRV in RFC 2782 order, A/AAAA fallback), tried one after
 * another, each under a connect timeout.
 */
import net, { type Socket } from 'node:net';
import { GatewayError } from '../errors.js';
import type { Resolver, Target } from './resolver.js';

export interface Connected {
  readonly socket: Socket;
  readonly target: Target;
}

/** Default per-target connect timeout (ejabberd outgoing_s2s_timeout is 10 s). */
export const CONNECT_TIMEOUT_MS = 10_000;

export async function connectToDomain(
  resolver: Resolver,
  domain: string,
  proxyFqdn: string | null,
  timeoutMs = CONNECT_TIMEOUT_MS,
): Promise<Connected> {
  const targets = await resolver.resolveS2s(domain, proxyFqdn ?? undefined);
  return connectTargets(domain, targets, timeoutMs);
}

/** One connection attempt's outcome, for `attempted` (`xmpp-gateway probe` lists them). */
export interface ConnectAttempt {
  readonly target: Target;
  readonly ms: number;
  /** Why it failed; undefined when it connected. */
  readonly error?: string;
}

/** Tries `targets` (resolved for `domain`) in order until one accepts. */
export async function connectTargets(
  domain: string,
  targets: readonly Target[],
  timeoutMs = CONNECT_TIMEOUT_MS,
  attempted?: (attempt: ConnectAttempt) => void,
): Promise<Connected> {
  if (targets.length === 0) throw new GatewayError('GW_ERR_DNS_NOT_FOUND', `${domain} has no XMPP server (SRV target '.')`);
  const failures: string[] = [];
  for (const target of targets) {
    const started = Date.now();
    try {
      const socket = await connectOnce(target, timeoutMs);
      attempted?.({ target, ms: Date.now() - started });
      return { socket, target };
    } catch (err) {
      attempted?.({ target, ms: Date.now() - started, error: (err as Error).message });
      failures.push(`${target.host}:${target.port}: ${(err as Error).message}`);
    }
  }
  throw new GatewayError('GW_ERR_CONNECT', `cannot connect to ${domain}: ${failures.join('; ')}`);
}

function connectOnce(target: Target, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: target.host, port: target.port, autoSelectFamily: true });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`connect timeout after ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      socket.setNoDelay(true);
      resolve(socket);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}
