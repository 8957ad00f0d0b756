/**
 * A real etcd cluster on loopback for the pool tests (issue 11): `members` etcd processes from
 * Debian's `etcd-server`, each on its own loopback address, with a fresh data directory. A
 * missing binary fails loudly (`ETCD MISSING`); it never skips.
 *
 * Each test file picks its own client/peer ports (see test/interop/README.md, "Addresses"), so
 * files can run in parallel on the same addresses.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';

const ETCD = '/usr/bin/etcd';

export interface EtcdClusterOptions {
  /** One loopback address per member, e.g. ['127.0.0.81', '127.0.0.82', '127.0.0.83']. */
  ips: readonly string[];
  clientPort: number;
  peerPort: number;
}

export interface EtcdMember {
  readonly name: string;
  readonly ip: string;
  readonly endpoint: string;
  readonly running: boolean;
  readonly pid: number | undefined;
}

export interface EtcdCluster {
  readonly members: readonly EtcdMember[];
  /** Client URLs of every member (what `cluster.etcd.endpoints` lists). */
  readonly endpoints: string[];
  /** SIGKILLs one member. */
  kill(index: number): Promise<void>;
  /** Stops every member (SIGTERM, then waits). */
  stopAll(): Promise<void>;
  /** Starts every stopped member again on its data (the cluster resumes). */
  startAll(): Promise<void>;
  /** Resolves once a write through any running member succeeds. */
  healthy(timeoutMs?: number): Promise<void>;
  /** A plain client on the cluster, for the test's own reads and writes. */
  client(): Etcd3;
  /** Everything the members logged (for post-mortems). */
  logs(): string;
  close(): Promise<void>;
}

export async function startEtcdCluster(opts: EtcdClusterOptions): Promise<EtcdCluster> {
  const probe = spawnSync(ETCD, ['--version'], { encoding: 'utf8' });
  if (probe.status !== 0) {
    throw new Error(`ETCD MISSING: ${ETCD} does not run (${probe.error?.message ?? probe.stderr}). Install Debian's etcd-server (.ci/run does).`);
  }
  const dir = await mkdtemp(join(tmpdir(), 'xgw-etcd-'));
  const names = opts.ips.map((_, i) => `m${i + 1}`);
  const initialCluster = opts.ips.map((ip, i) => `${names[i]}=http://${ip}:${opts.peerPort}`).join(',');
  const token = `xgw-${process.pid}-${Date.now()}`;
  let log = '';
  const procs: (ChildProcess | null)[] = opts.ips.map(() => null);
  const clients: Etcd3[] = [];

  const start = (i: number, state: 'new' | 'existing') => {
    const ip = opts.ips[i]!;
    const child = spawn(ETCD, [
      '--name', names[i]!,
      '--data-dir', join(dir, names[i]!),
      '--listen-peer-urls', `http://${ip}:${opts.peerPort}`,
      '--initial-advertise-peer-urls', `http://${ip}:${opts.peerPort}`,
      '--listen-client-urls', `http://${ip}:${opts.clientPort}`,
      '--advertise-client-urls', `http://${ip}:${opts.clientPort}`,
      '--initial-cluster', initialCluster,
      '--initial-cluster-state', state,
      '--initial-cluster-token', token,
      // Loopback: short heartbeats, so a lost leader is replaced in well under a second.
      '--heartbeat-interval', '50',
      '--election-timeout', '500',
      '--log-level', 'warn',
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (log += `[${names[i]}] ${d}`));
    procs[i] = child;
    child.once('exit', () => {
      if (procs[i] === child) procs[i] = null;
    });
  };
  const stop = async (i: number, signal: NodeJS.Signals) => {
    const child = procs[i];
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill(signal);
    await exited;
  };

  const endpoints = opts.ips.map((ip) => `http://${ip}:${opts.clientPort}`);
  const cluster: EtcdCluster = {
    members: opts.ips.map((ip, i) => ({
      name: names[i]!,
      ip,
      endpoint: endpoints[i]!,
      get running() {
        return procs[i] !== null;
      },
      get pid() {
        return procs[i]?.pid;
      },
    })),
    endpoints,
    kill: (i) => stop(i, 'SIGKILL'),
    stopAll: async () => {
      await Promise.all(opts.ips.map((_, i) => stop(i, 'SIGTERM')));
    },
    startAll: async () => {
      opts.ips.forEach((_, i) => {
        if (!procs[i]) start(i, 'existing');
      });
      await cluster.healthy();
    },
    healthy: async (timeoutMs = 15_000) => {
      const c = new Etcd3({ hosts: endpoints.filter((_, i) => procs[i]), dialTimeout: 1000 });
      const deadline = Date.now() + timeoutMs;
      try {
        for (;;) {
          try {
            await c.put('/xgw-test/health').value(String(Date.now())).options({ deadline: Date.now() + 1000 });
            return;
          } catch (err) {
            if (Date.now() > deadline) throw new Error(`etcd cluster not healthy within ${timeoutMs} ms: ${(err as Error).message}\n${log.slice(-3000)}`);
            await new Promise((r) => setTimeout(r, 100));
          }
        }
      } finally {
        c.close();
      }
    },
    client: () => {
      const c = new Etcd3({ hosts: endpoints, dialTimeout: 1000 });
      clients.push(c);
      return c;
    },
    logs: () => log,
    close: async () => {
      for (const c of clients) c.close();
      await Promise.all(opts.ips.map((_, i) => stop(i, 'SIGKILL')));
      await rm(dir, { recursive: true, force: true });
    },
  };
  opts.ips.forEach((_, i) => start(i, 'new'));
  try {
    await cluster.healthy();
  } catch (err) {
    await cluster.close();
    throw err;
  }
  return cluster;
}
