/**
 * The real gateway in a child process of its own (test/helpers/gateway-child.mjs over the built
 * dist/), so its memory can be measured apart from the test runner (`memory()` runs full garbage
 * collections in the child and returns process.memoryUsage() with live stream counts), and so it
 * can die as a process does: `kill()` SIGKILLs it (the pool's nodes, docs/design.md section 11).
 * Its admin token is registered for the admin helpers (live-streams.ts) by admin port.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import { readLocalCredential } from '../../src/admin/local-credential.js';
import { parseGatewayConfig } from '../../src/config/schema.js';
import { waitForText } from './cli.js';
import { adminTokens, prepareGatewayDir, type TestGatewayOptions } from './test-gateway.js';

const CHILD = resolve(import.meta.dirname, 'gateway-child.mjs');

export interface MemorySample extends NodeJS.MemoryUsage {
  /** Streams not closed yet. */
  streams: number;
  /** Bytes read so far by the streams still registered. */
  bytesIn: number;
}

export interface GatewayProcess {
  readonly port: number;
  readonly pid: number;
  /** The admin listener's port (0 without one). */
  readonly adminPort: number;
  /** The gateway's directory and its gateway.yaml (for the CLI: `--config configFile`). */
  readonly dir: string;
  readonly configFile: string;
  /** Everything the child logged (JSON lines). */
  readonly stderr: () => string;
  /** Resolves with the first match of `pattern` in the log from character `from` on. */
  waitForLog(pattern: RegExp, timeoutMs?: number, from?: number): Promise<RegExpMatchArray>;
  memory(): Promise<MemorySample>;
  /** SIGKILL: the process dies at once, nothing is closed or given back. Resolves once it has exited. */
  kill(): Promise<void>;
  /** A graceful stop (the gateway's close()), SIGKILL after 3 s; removes its directory. */
  close(): Promise<void>;
}

export async function startGatewayProcess(opts: TestGatewayOptions): Promise<GatewayProcess> {
  const { dir, configFile, yaml } = await prepareGatewayDir(opts);
  const child: ChildProcess = fork(CHILD, [configFile], { execArgv: ['--expose-gc'], stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const waiters: ((msg: { type: string }) => void)[] = [];
  child.on('message', (msg: { type: string }) => waiters.shift()?.(msg));
  const next = <T>(): Promise<T> =>
    new Promise<T>((res, rej) => {
      const onExit = (code: number | null) => rej(new Error(`gateway process exited (${code}):\n${stderr.slice(-2000)}`));
      child.once('exit', onExit);
      waiters.push((m) => {
        child.off('exit', onExit);
        res(m as T);
      });
    });
  const ready = await next<{ port: number; adminPort: number }>();
  const admin = parseGatewayConfig(yaml, configFile).admin;
  if (ready.adminPort && admin) adminTokens.set(ready.adminPort, readLocalCredential(admin.localCredential) ?? '');
  const exited = new Promise<void>((r) => (child.exitCode !== null || child.signalCode !== null ? r() : child.once('exit', () => r())));
  return {
    port: ready.port,
    pid: child.pid!,
    adminPort: ready.adminPort,
    dir,
    configFile,
    stderr: () => stderr,
    waitForLog: (pattern, timeoutMs = 5000, from = 0) => waitForText(() => stderr, pattern, from, timeoutMs),
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
    memory() {
      const p = next<MemorySample>();
      child.send({ type: 'memory' });
      return p;
    },
    async close() {
      adminTokens.delete(ready.adminPort);
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.send({ type: 'close' });
        const t = setTimeout(() => child.kill('SIGKILL'), 3000);
        await exited;
        clearTimeout(t);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
