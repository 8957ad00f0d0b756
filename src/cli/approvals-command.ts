/**
 * `xmpp-gateway [--config FILE] [--json] approvals list` and
 * `xmpp-gateway [--config FILE] [--json] approvals revoke --local JID [--remote JID]`:
 * PublicUnverified approvals (src/policy/approvals.ts), read and revoked through the running
 * gateway's admin listener (GET /approvals, POST /approvals/revoke), so that the gateway's memory
 * and its file stay one. When nothing listens there (connection refused), the gateway is not
 * running and the command works on gateway.yaml's `approvals.file` itself (revoke rewrites it
 * atomically), saying so in one line on stderr. Arguments are checked before anything is read.
 */
import { adminJson, adminTarget, GatewayNotRunningError } from '../admin/admin-client.js';
import { loadGatewayConfig } from '../config/load.js';
import type { GatewayConfig } from '../config/schema.js';
import { GatewayError, UsageError } from '../errors.js';
import { createLogger } from '../log.js';
import { connectEtcd } from '../cluster/etcd.js';
import { PoolApprovalStore } from '../cluster/pool-approvals.js';
import { FileApprovalStore, type Approval, type ApprovalStore } from '../policy/approvals.js';
import { checkBareJid } from '../policy/bare-jid.js';
import { formatTable } from './output.js';

/** What `approvals ...` asks for; JIDs in comparison form. */
export type ApprovalsInvocation = { verb: 'list' } | { verb: 'revoke'; local: string; remote?: string };

const VERBS = 'list, or revoke --local JID [--remote JID]';

/** Parses the words after `approvals`; throws a UsageError (one line) for anything else. */
export function parseApprovalsArgs(args: readonly string[]): ApprovalsInvocation {
  const [verb, ...rest] = args;
  if (verb === 'list') {
    if (rest.length > 0) throw new UsageError(`approvals list takes no arguments besides --config and --json (got '${rest[0]}')`);
    return { verb: 'list' };
  }
  if (verb !== 'revoke') {
    throw new UsageError(verb === undefined ? `approvals needs a verb: ${VERBS}` : `approvals: unknown verb '${verb}' (use ${VERBS})`);
  }
  const values: Partial<Record<'--local' | '--remote', string>> = {};
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]!;
    const eq = arg.indexOf('=');
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    if (name !== '--local' && name !== '--remote') throw new UsageError(`approvals revoke: unknown argument '${arg}' (use --local JID [--remote JID])`);
    if (values[name] !== undefined) throw new UsageError(`approvals revoke: ${name} given twice`, name);
    const value = eq > 0 ? arg.slice(eq + 1) : rest[++i];
    if (value === undefined) throw new UsageError(`${name} needs a bare JID (user@domain)`, name);
    values[name] = value;
  }
  if (values['--local'] === undefined) throw new UsageError('approvals revoke needs --local JID (and --remote JID for one approval only)', '--local');
  const local = checkBareJid(values['--local'], '--local');
  return values['--remote'] === undefined ? { verb: 'revoke', local } : { verb: 'revoke', local, remote: checkBareJid(values['--remote'], '--remote') };
}

/** Runs `approvals ...`; returns the exit status. */
export async function approvals(configPath: string, json: boolean, args: readonly string[]): Promise<number> {
  const inv = parseApprovalsArgs(args);
  const config = await loadGatewayConfig(configPath, (msg) => process.stderr.write(`WARNING: ${msg}\n`));
  const target = adminTarget(config);
  if (inv.verb === 'list') {
    let list: Approval[];
    try {
      list = approvalList(await adminJson(target, 'GET', '/approvals'), `${target.url}/approvals`);
    } catch (err) {
      if (!(err instanceof GatewayNotRunningError)) throw err;
      process.stderr.write(`${err.message}; reading ${offlineSource(config)} directly\n`);
      list = await withOfflineStore(config, (store) => store.list());
    }
    process.stdout.write(json ? `${JSON.stringify({ approvals: list }, null, 2)}\n` : formatApprovals(list));
    return 0;
  }
  let revoked: number;
  try {
    revoked = revokedCount(await adminJson(target, 'POST', '/approvals/revoke', { local: inv.local, remote: inv.remote }), `${target.url}/approvals/revoke`);
  } catch (err) {
    if (!(err instanceof GatewayNotRunningError)) throw err;
    process.stderr.write(`${err.message}; editing ${offlineSource(config)} directly\n`);
    revoked = await withOfflineStore(config, async (store) => {
      const n = store.revoke(inv.local, inv.remote);
      await store.flush();
      return n;
    });
  }
  process.stdout.write(json ? `${JSON.stringify({ revoked })}\n` : `revoked ${revoked} approval${revoked === 1 ? '' : 's'}\n`);
  return 0;
}

function offlineSource(config: GatewayConfig): string {
  return config.cluster ? `the pool's approvals in etcd (${config.cluster.etcd.endpoints.join(', ')})` : config.approvals.file;
}

/**
 * Opens the approvals as the gateway would (without its bound: nothing is dropped), runs `fn`,
 * saves: the file, or in a pool etcd (the node's cache file follows).
 */
async function withOfflineStore<T>(config: GatewayConfig, fn: (store: ApprovalStore) => T | Promise<T>): Promise<T> {
  const etcd = config.cluster ? connectEtcd(config.cluster) : null;
  // etcd being away is said in one line below, not in log lines as well.
  const log = createLogger(etcd ? 'error' : 'warn');
  try {
    const store = etcd
      ? await PoolApprovalStore.open({ etcd, nodeName: config.cluster!.nodeName, file: config.approvals.file, maxEntries: Number.MAX_SAFE_INTEGER, log })
      : await FileApprovalStore.open({ file: config.approvals.file, maxEntries: Number.MAX_SAFE_INTEGER, log });
    try {
      if (store instanceof PoolApprovalStore && !store.inSync) {
        throw new GatewayError('GW_ERR_ETCD', `cannot reach etcd at ${config.cluster!.etcd.endpoints.join(', ')}: the pool's approvals are there (start a node, or bring etcd back)`);
      }
      return await fn(store);
    } finally {
      await store.close();
    }
  } finally {
    etcd?.close();
  }
}

function approvalList(body: unknown, where: string): Approval[] {
  const list = (body as { approvals?: unknown } | null)?.approvals;
  if (!Array.isArray(list)) throw new GatewayError('GW_ERR_ADMIN', `${where} answered without an "approvals" list`);
  return list as Approval[];
}

function revokedCount(body: unknown, where: string): number {
  const revoked = (body as { revoked?: unknown } | null)?.revoked;
  if (typeof revoked !== 'number') throw new GatewayError('GW_ERR_ADMIN', `${where} answered without a "revoked" count`);
  return revoked;
}

/** The human view: LOCAL, REMOTE, SINCE, LAST SEEN, most recently seen first. */
export function formatApprovals(list: readonly Approval[]): string {
  if (list.length === 0) return 'no approvals\n';
  return formatTable(['LOCAL', 'REMOTE', 'SINCE', 'LAST SEEN'], list.map((a) => [a.local, a.remote, a.since, a.lastSeen]));
}
