/**
 * Runs the real, built command line (bin/xmpp-gateway ⇒ dist/) in a child process against a
 * throw-away config directory, the way an admin would.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

export const BIN = resolve(import.meta.dirname, '../../bin/xmpp-gateway');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runCli(args: readonly string[], opts: { cwd?: string; stdin?: string; env?: Record<string, string> } = {}): Promise<CliResult> {
  return run(process.execPath, [BIN, ...args], opts);
}

/** A command line run by sh with the built bin/ first on the PATH, as an admin who followed the README. */
export function runShell(command: string, opts: { cwd?: string; stdin?: string } = {}): Promise<CliResult> {
  return run('sh', ['-c', command], { ...opts, env: { PATH: `${dirname(BIN)}:${process.env.PATH}` } });
}

function run(file: string, args: readonly string[], opts: { cwd?: string; stdin?: string; env?: Record<string, string> }): Promise<CliResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(file, args, {
      cwd: opts.cwd,
      env: { ...process.env, ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolvePromise({ code, stdout, stderr }));
    child.stdin.end(opts.stdin ?? '');
  });
}

export interface TempConfig {
  dir: string;
  config: string;
  partners: string;
  cli(args: readonly string[], opts?: { stdin?: string }): Promise<CliResult>;
  readPartners(): Promise<string>;
  writePartners(text: string): Promise<void>;
  cleanup(): Promise<void>;
}

/** A config dir with a minimal gateway.yaml (no listeners started) and an optional partners.yaml. */
export async function tempConfig(partnersYaml?: string, extraConfig = ''): Promise<TempConfig> {
  const dir = await mkdtemp(join(tmpdir(), 'xgw-cli-'));
  const config = join(dir, 'gateway.yaml');
  const partners = join(dir, 'partners.yaml');
  await writeFile(
    config,
    `localDomains:\n  - domain: gw.example\n    certificate: certs/gw.example.crt\n    privateKey: certs/gw.example.key\nlisten:\n  - host: 127.0.0.1\n    port: 0\npartners: partners.yaml\n${extraConfig}`,
  );
  if (partnersYaml !== undefined) await writeFile(partners, partnersYaml);
  return {
    dir,
    config,
    partners,
    cli: (args, o) => runCli(['--config', config, ...args], o),
    readPartners: () => readFile(partners, 'utf8'),
    writePartners: (text) => writeFile(partners, text),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

/** A loopback port that was free a moment ago (for configs that need a fixed admin port). */
export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(p));
    });
  });
}

/**
 * Resolves with the first match of `pattern` in the text `read()` returns (from offset `from`),
 * polling: for the log lines a `serve` child process writes on stderr.
 */
export function waitForText(read: () => string, pattern: RegExp, from = 0, timeoutMs = 5000): Promise<RegExpMatchArray> {
  return new Promise((resolvePromise, reject) => {
    const started = Date.now();
    const check = () => {
      const m = read().slice(from).match(pattern);
      if (m) return resolvePromise(m);
      if (Date.now() - started > timeoutMs) return reject(new Error(`no ${pattern} on stderr within ${timeoutMs} ms:\n${read().slice(from)}`));
      setTimeout(check, 25);
    };
    check();
  });
}
