/**
 * The real gateway in a child process of its own (test/helpers/gateway-child.mjs over the built
 * dist/), so its memory can be measured apart from the test runner: `memory()` runs full garbage
 * collections in the child and returns process.memoryUsage() with live stream counts.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import { prepareGatewayDir, type TestGatewayOptions } from './test-gateway.js';

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
  /** Everything the child logged (JSON lines). */
  readonly stderr: () => string;
  memory(): Promise<MemorySample>;
  close(): Promise<void>;
}

export async function startGatewayProcess(opts: TestGatewayOptions): Promise<GatewayProcess> {
  const { dir, configFile } = await prepareGatewayDir(opts);
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
  const ready = await next<{ port: number }>();
  return {
    port: ready.port,
    pid: child.pid!,
    stderr: () => stderr,
    memory() {
      const p = next<MemorySample>();
      child.send({ type: 'memory' });
      return p;
    },
    async close() {
      if (child.exitCode === null) {
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
