/**
 * Raw TCP clients for hostile-peer tests (loopback only, any 127.0.0.0/8 source address): idle
 * connections for floods and connect/close churn with partial headers and early STARTTLS.
 */
import net from 'node:net';

/** An idle TCP connection from `localAddress` that reads (and drops) whatever the gateway says. */
export async function idleConnection(port: number, localAddress: string): Promise<net.Socket> {
  const s = net.connect({ port, host: '127.0.0.1', localAddress });
  s.on('error', () => {});
  s.resume();
  await new Promise((resolve, reject) => {
    s.once('connect', resolve);
    s.once('error', reject);
  });
  return s;
}

export interface ChurnOptions {
  rounds: number;
  /** Connections opened at once per round. */
  perRound: number;
  /** Source address of connection `i` of a round. */
  address: (i: number) => string;
  /** What connection `i` sends before going away: `payloads[i % payloads.length]` ('' = nothing). */
  payloads: readonly string[];
}

/** Opens and drops connections in bursts; odd ones end politely, even ones are destroyed. */
export async function churn(port: number, opts: ChurnOptions): Promise<void> {
  for (let round = 0; round < opts.rounds; round++) {
    await Promise.all(Array.from({ length: opts.perRound }, async (_, i) => {
      const s = await idleConnection(port, opts.address(i));
      const payload = opts.payloads[i % opts.payloads.length]!;
      if (payload !== '') s.write(payload);
      await new Promise((r) => setImmediate(r));
      if (i % 2 === 0) s.destroy();
      else s.end();
    }));
  }
}
