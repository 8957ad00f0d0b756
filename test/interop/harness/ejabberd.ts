/**
 * A real ejabberd 23.01 as an interop peer: one Erlang node per call, on its own loopback address,
 * with its own config dir (ejabberd.yml, ejabberdctl.cfg, inetrc), logs, Mnesia spool and pid file
 * under a private temp directory.
 *
 * Started with `ejabberdctl --config-dir DIR/etc --logs DIR/log --spool DIR/spool --node NODE start`
 * (docs/peers.md). As root, ejabberdctl always switches to the `ejabberd` user, so the instance directory
 * is chowned to it. Erlang distribution runs without epmd (ERL_DIST_PORT, see
 * templates/ejabberdctl.cfg.tmpl): nothing machine-wide is started or shared, and stopping an
 * instance leaves no epmd behind. The node is `ej_<label>@<ip>` and listens for distribution only
 * on its own IP, so instances never collide on node names or ports.
 *
 * Stop: SIGTERM to the recorded beam.smp PID (Erlang runs init:stop(), ejabberd shuts down
 * cleanly), SIGKILL after a grace period. The PID is read from EJABBERD_PID_PATH right after start
 * (ejabberd deletes that file while stopping).
 */
import { randomBytes } from 'node:crypto';
import { chown, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  KEEP_DIRS, assertLoopback, ejabberdUser, assertPort, assertPortsFree, fillTemplate, isAlive, readTemplate, requireBinary, runOk, sleep,
  tailFile, terminate, trackPid, untrackPid, waitForListener, type PeerMode, type PeerOptions, type PeerServer,
} from './common.js';

export interface EjabberdOptions extends PeerOptions {
  /** Erlang distribution port on `ip` (default s2sPort + 1). */
  distPort?: number;
}

/** docs/peers.md mode table, ejabberd column. */
function modeSettings(mode: PeerMode, o: EjabberdOptions): { starttls: string; dialback: boolean; caFile: string } {
  switch (mode) {
    case 'external':
      return { starttls: 'required', dialback: false, caFile: o.certs.caFile };
    case 'tls-dialback':
      return { starttls: 'required', dialback: true, caFile: o.certs.unrelatedCaFile };
    case 'dialback':
      return { starttls: 'false', dialback: true, caFile: o.certs.caFile };
    case 'any':
      return { starttls: 'optional', dialback: true, caFile: o.certs.caFile };
  }
}

async function chownTree(path: string, uid: number, gid: number): Promise<void> {
  await chown(path, uid, gid);
  for (const entry of await readdir(path, { withFileTypes: true })) {
    const p = join(path, entry.name);
    if (entry.isDirectory()) await chownTree(p, uid, gid);
    else await chown(p, uid, gid);
  }
}

/** Starts ejabberd and resolves once its c2s and s2s ports accept connections. */
export async function startEjabberd(o: EjabberdOptions): Promise<PeerServer> {
  const ejabberdctl = await requireBinary('ejabberdctl', 'ejabberd');
  await requireBinary('erl', 'ejabberd');
  assertLoopback(o.ip, 'ejabberd ip');
  assertLoopback(o.dns.ip, 'DNS ip');
  assertPort(o.s2sPort, 's2sPort');
  assertPort(o.c2sPort, 'c2sPort');
  assertPort(o.dns.port, 'dns.port');
  const distPort = o.distPort ?? o.s2sPort + 1;
  assertPort(distPort, 'distPort');
  if (distPort === o.c2sPort || distPort === o.s2sPort) throw new Error('interop harness: ejabberd distPort collides with its c2s/s2s port');

  const isRoot = process.getuid?.() === 0;
  const owner = isRoot ? await ejabberdUser() : null;
  if (isRoot && owner === null) {
    throw new Error('interop harness: running as root but there is no `ejabberd` user; is the ejabberd package installed? (.ci/run installs it)');
  }

  await assertPortsFree(o.ip, [o.c2sPort, o.s2sPort, distPort], `ejabberd (${o.domain})`);

  const dir = await mkdtemp(join(tmpdir(), `xmpp-interop-ejabberd-${o.domain}-`));
  const etc = join(dir, 'etc');
  const logDir = join(dir, 'log');
  const spool = join(dir, 'spool');
  for (const d of [etc, logDir, spool, join(dir, 'run'), join(dir, 'contrib')]) await mkdir(d);
  const logFile = join(logDir, 'ejabberd.log');
  const pidFile = join(dir, 'run', 'ejabberd.pid');
  const label = o.domain.replace(/[^a-z0-9]+/gi, '_');
  const node = `ej_${label}@${o.ip}`;
  const m = modeSettings(o.mode, o);

  const yml = fillTemplate(
    await readTemplate('ejabberd.yml.tmpl'),
    {
      DOMAIN: o.domain,
      MODE: o.mode,
      IP: o.ip,
      S2S_PORT: String(o.s2sPort),
      C2S_PORT: String(o.c2sPort),
      EJ_LOGLEVEL: o.logLevel === 'warn' ? 'warning' : (o.logLevel ?? 'info'),
      CERTS: o.certs.dir,
      CERT_VARIANT: o.certVariant ?? '',
      CA_FILE: m.caFile,
      EJ_EXTRA_CONFIG: o.extraConfig ?? '',
      S2S_USE_STARTTLS: m.starttls,
      DIALBACK_MODULE: m.dialback ? '  mod_s2s_dialback: {}' : '',
      EJ_EXTRA_MODULES: (o.extraModules ?? []).map((x) => `  ${x}: {}`).join('\n'),
    },
    'ejabberd.yml.tmpl',
  );
  await writeFile(join(etc, 'ejabberd.yml'), yml);
  await writeFile(
    join(etc, 'ejabberdctl.cfg'),
    fillTemplate(
      await readTemplate('ejabberdctl.cfg.tmpl'),
      { ERLANG_NODE: node, DIST_PORT: String(distPort), IP: o.ip, DIR: dir, COOKIE: randomBytes(12).toString('hex') },
      'ejabberdctl.cfg.tmpl',
    ),
  );
  await writeFile(
    join(etc, 'inetrc'),
    fillTemplate(
      await readTemplate('inetrc.tmpl'),
      { DNS_IP_TUPLE: o.dns.ip.split('.').join(','), DNS_PORT: String(o.dns.port) },
      'inetrc.tmpl',
    ),
  );
  if (owner) await chownTree(dir, owner.uid, owner.gid);

  const ctlArgs = ['--config-dir', etc, '--logs', logDir, '--spool', spool, '--node', node];
  const ctl = (args: string[], timeoutMs = 30_000) => runOk(ejabberdctl, [...ctlArgs, ...args], { timeoutMs });

  let pid = 0;
  let stopping: Promise<void> | null = null;
  const server: PeerServer = {
    kind: 'ejabberd',
    domain: o.domain,
    ip: o.ip,
    s2sPort: o.s2sPort,
    c2sPort: o.c2sPort,
    mode: o.mode,
    dir,
    logFile,
    get pid() {
      return pid;
    },
    async register(user, password) {
      await ctl(['register', user, o.domain, password]);
    },
    logTail: (lines = 60) => tailFile(logFile, lines),
    stop() {
      stopping ??= (async () => {
        if (pid > 0) {
          await terminate(pid, 10_000);
          untrackPid(pid);
        }
        if (!KEEP_DIRS) await rm(dir, { recursive: true, force: true });
      })();
      return stopping;
    },
  };

  const startTimeoutMs = o.startTimeoutMs ?? 30_000;
  const deadline = Date.now() + startTimeoutMs;
  try {
    // `start` returns once the detached VM is launched; the node then writes its pid file early in boot.
    await ctl(['start']);
    const failure = async (what: string): Promise<Error> => {
      const log = await tailFile(logFile, 40);
      const crash = (await readdir(logDir).catch(() => [] as string[])).filter((f) => f.startsWith('erl_crash'));
      return new Error(
        `interop harness: ejabberd (${o.domain}, node ${node}) ${what}` +
          `${crash.length > 0 ? `\ncrash dump: ${join(logDir, crash[0]!)}` : ''}\nlog (${logFile}):\n${log}`,
      );
    };
    const checkLog = async (): Promise<void> => {
      // Config validation is strict; a bad option aborts start with a [critical] line.
      const log = await tailFile(logFile, 200);
      if (log.includes('[critical]')) throw await failure('failed to start');
    };
    while (pid === 0) {
      const text = await readFile(pidFile, 'utf8').catch(() => '');
      const n = Number.parseInt(text.trim(), 10);
      if (Number.isInteger(n) && n > 0) {
        pid = n;
        trackPid(pid);
        break;
      }
      await checkLog();
      if (Date.now() > deadline) throw await failure(`wrote no pid file (${pidFile}) within ${startTimeoutMs} ms`);
      await sleep(50);
    }
    const check = async (): Promise<void> => {
      if (!isAlive(pid)) throw await failure(`(beam PID ${pid}) died during startup`);
      await checkLog();
    };
    await waitForListener(o.ip, o.c2sPort, Math.max(1_000, deadline - Date.now()), check, `ejabberd (${o.domain}) c2s`);
    await waitForListener(o.ip, o.s2sPort, 5_000, check, `ejabberd (${o.domain}) s2s`);
  } catch (err) {
    await server.stop();
    throw err;
  }
  return server;
}

/** One successful s2s authentication as ejabberd logs it (at loglevel info or debug). */
export interface EjabberdS2sAuth {
  direction: 'inbound' | 'outbound';
  /** 'EXTERNAL' or 'dialback'. */
  mechanism: string;
  /** Initiating domain (the authenticated one for inbound). */
  from: string;
  to: string;
  /** TLS was up on that stream ('tls|' in the log line). */
  tls: boolean;
}

/**
 * The s2s authentications in an ejabberd peer's log, e.g. to check which method a mode produced:
 * `(tls|<0.500.0>) Accepted inbound s2s EXTERNAL authentication a.test -> b.test (127.0.0.1)`.
 */
export async function ejabberdS2sAuthentications(server: Pick<PeerServer, 'logFile'>): Promise<EjabberdS2sAuth[]> {
  const log = await readFile(server.logFile, 'utf8').catch(() => '');
  const out: EjabberdS2sAuth[] = [];
  const re = /\((tls|tcp)\|[^)]*\) Accepted (inbound|outbound) s2s (\S+) authentication (\S+) -> (\S+)/g;
  for (const m of log.matchAll(re)) {
    out.push({ direction: m[2] as 'inbound' | 'outbound', mechanism: m[3]!, from: m[4]!, to: m[5]!, tls: m[1] === 'tls' });
  }
  return out;
}
