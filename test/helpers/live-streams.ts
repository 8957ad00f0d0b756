/**
 * Small probes for integration tests that watch live streams from the outside: the admin
 * endpoint's `/status` and `/metrics`, the stream error a scripted peer received, and waiting for
 * a partner-list reload to be applied (or refused) after a write.
 */
import { expect } from 'vitest';
import type { StreamInfo } from '../../src/stream/stream-info.js';
import { attempt, type AttemptOptions, type Outcome } from './partner-attempt.js';
import { parseStreamError, type ScriptedPeer, type StreamErrorInfo } from './scripted-peer.js';
import { adminHeaders, type LogLine, type TestGateway } from './test-gateway.js';

export interface StatusBody {
  streams: StreamInfo[];
  partners: { count: number; file: string; lastReloadError: string | null };
}

/** `GET /status` on the admin listener. */
export async function getStatus(adminPort: number): Promise<StatusBody> {
  const res = await fetch(`http://127.0.0.1:${adminPort}/status`, { headers: adminHeaders(adminPort) });
  expect(res.status).toBe(200);
  return (await res.json()) as StatusBody;
}

/** The live stream whose peer address is this scripted peer's local port, if listed. */
export async function statusOf(adminPort: number, peer: ScriptedPeer): Promise<StreamInfo | undefined> {
  const { streams } = await getStatus(adminPort);
  return streams.find((s) => s.direction === 'inbound' && s.remoteAddress.endsWith(`:${peer.tcp.localPort}`));
}

/**
 * Sum of every sample of `name` whose labels include all of `labels` (0 when none), read from
 * `GET /metrics`.
 */
export async function metricValue(adminPort: number, name: string, labels: Record<string, string>): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${adminPort}/metrics`, { headers: adminHeaders(adminPort) });
  expect(res.status).toBe(200);
  const text = await res.text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const m = /^[^{\s]+(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const got = new Map<string, string>();
    for (const l of (m[1] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) got.set(l[1]!, l[2]!);
    if (Object.entries(labels).every(([k, v]) => got.get(k) === v)) sum += Number(m[2]);
  }
  return sum;
}

/** The first `<stream:error>` this peer has received so far. */
export function streamErrorOf(peer: ScriptedPeer): StreamErrorInfo | undefined {
  for (const r of peer.received) {
    const info = parseStreamError(r.el);
    if (info) return info;
  }
  return undefined;
}

/** Resolves with the stream error and how long after `since` it arrived; fails after `timeoutMs`. */
export async function streamErrorWithin(peer: ScriptedPeer, timeoutMs: number, since: number): Promise<{ error: StreamErrorInfo; afterMs: number }> {
  const error = await peer.expectStreamError(timeoutMs);
  return { error, afterMs: Date.now() - since };
}

/**
 * Writes partners.yaml through the test gateway and waits for the reload it triggers:
 * resolves with the first `partners.reloaded` or `partners.reload-failed` line logged after
 * the write.
 */
export async function writeAndReload(gw: TestGateway, yaml: string, timeoutMs = 3000): Promise<LogLine> {
  const from = gw.logs.length;
  const isReload = (l: LogLine): boolean =>
    (l.event === 'partners.reloaded' || l.event === 'partners.reload-failed') && gw.logs.indexOf(l) >= from;
  const done = gw.waitForLog(isReload, timeoutMs);
  await gw.writePartners(yaml);
  return done;
}

/** `attempt()` that destroys the peer unless it authenticated (refusals leave nothing open). */
export async function authenticate(opts: AttemptOptions): Promise<{ outcome: Outcome; peer: ScriptedPeer; error: StreamErrorInfo | undefined }> {
  const { outcome, peer } = await attempt(opts);
  const error = streamErrorOf(peer);
  if (outcome !== 'sasl-external' && outcome !== 'dialback') peer.destroy();
  return { outcome, peer, error };
}

/** Polls `cond` every `everyMs` until it holds or `timeoutMs` passed; returns whether it held. */
export async function eventually(cond: () => Promise<boolean> | boolean, timeoutMs: number, everyMs = 50): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
