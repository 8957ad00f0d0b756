/**
 * The pool's partner list (issue 11; docs/design.md section 11), end to end: a real 3-member etcd
 * cluster on loopback and three real gateway nodes sharing one prefix, edited the way admins do
 * (the built CLI with one node's gateway.yaml, a node's panel API), probed the way partners connect
 * (a stream header from the partner's domain: stream features = accepted, policy-violation =
 * refused, the first gate of docs/design.md section 4).
 *
 * Addresses (test/interop/README.md, block 8x): etcd members 127.0.0.81-.83, client port 12379,
 * peer port 12380. The gateway nodes listen on 127.0.0.1, ports chosen by the OS.
 */
import { readFile, rm, writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Etcd3 } from 'etcd3';
import { readLocalCredential } from '../../src/admin/local-credential.js';
import { parseGatewayConfig } from '../../src/config/schema.js';
import { startGateway, type Gateway } from '../../src/gateway.js';
import { createLogger } from '../../src/log.js';
import { http } from '../helpers/admin-http.js';
import { runCli, type CliResult } from '../helpers/cli.js';
import { startEtcdCluster, type EtcdCluster } from '../helpers/etcd-cluster.js';
import { ScriptedPeer } from '../helpers/scripted-peer.js';
import { prepareGatewayDir, testPki, type LogLine, type TestPki } from '../helpers/test-gateway.js';

const PREFIX = `/xgw-pool-partners-${process.pid}/`;
const KEY = `${PREFIX}partners`;
const LOCATION = `etcd:${KEY}`;
/** What issue 11 asks of propagation: a partner added through one node is accepted by the others within 2 s. */
const PROPAGATION_MS = 2_000;

let etcd: EtcdCluster;
let pki: TestPki;

/** A gateway node with a directory of its own that outlives a restart. */
interface PoolNode {
  readonly name: string;
  readonly dir: string;
  readonly configFile: string;
  readonly partnersFile: string;
  readonly yaml: string;
  gateway: Gateway | null;
  logs: LogLine[];
  port: number;
  adminPort: number;
  token: string;
}
const nodes: PoolNode[] = [];

async function prepareNode(name: string, partners: string): Promise<PoolNode> {
  const prepared = await prepareGatewayDir({
    pki,
    partners,
    config: `cluster: { nodeName: ${name}, etcd: { endpoints: [${etcd.endpoints.map((e) => `"${e}"`).join(', ')}], prefix: ${PREFIX} }, leaseTtlSeconds: 5 }`,
  });
  return { name, ...prepared, gateway: null, logs: [], port: 0, adminPort: 0, token: '' };
}

/** Starts (or restarts) the node's gateway in-process, on the same directory (its local store included). */
async function startNode(node: PoolNode): Promise<void> {
  const config = parseGatewayConfig(node.yaml, node.configFile);
  node.logs = [];
  const log = createLogger('debug', (line) => {
    node.logs.push(JSON.parse(line) as LogLine);
    if (process.env.XGW_TEST_LOGS) process.stderr.write(`[${node.name}] ${line}`);
  });
  node.gateway = await startGateway(config, log);
  node.port = node.gateway.listeners[0]!.port;
  node.adminPort = node.gateway.admin!.port;
  node.token = readLocalCredential(config.admin!.localCredential) ?? '';
}

async function stopNode(node: PoolNode): Promise<void> {
  await node.gateway?.close();
  node.gateway = null;
}

/** The first gate, as a partner meets it: 'features' (accepted) or the stream error's condition. */
async function firstGate(node: PoolNode, from: string): Promise<string> {
  const peer = await ScriptedPeer.connect(node.port);
  try {
    peer.sendHeader({ from, to: 'gw.test' });
    await peer.header();
    const el = await peer.next();
    return el.name === 'stream:features' ? 'features' : (el.getChildElements()[0]?.name ?? el.name);
  } finally {
    peer.destroy();
  }
}

/** Polls until `check` holds; resolves with the milliseconds it took. */
async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (await check()) return Date.now() - started;
    if (Date.now() - started > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Resolves when `domain` is accepted by every one of `on`; the milliseconds until the last one was. */
function acceptedBy(on: readonly PoolNode[], domain: string, timeoutMs = 10_000): Promise<number> {
  return until(`${domain} accepted by ${on.map((n) => n.name).join(', ')}`, async () => {
    for (const node of on) if ((await firstGate(node, domain)) !== 'features') return false;
    return true;
  }, timeoutMs);
}

const cli = (node: PoolNode, args: readonly string[]): Promise<CliResult> => runCli(['--config', node.configFile, ...args]);
const identities = (node: PoolNode) => node.gateway!.reloader.current.records.map((r) => r.Identity);

let client: Etcd3;
async function etcdList(): Promise<{ text: string; revision: number }> {
  const res = await client.get(KEY).exec();
  return { text: res.kvs[0]?.value.toString('utf8') ?? '', revision: Number(res.kvs[0]?.mod_revision ?? 0) };
}

/** The index of the member that leads the raft group now. */
async function leaderIndex(): Promise<number> {
  for (const [i, endpoint] of etcd.endpoints.entries()) {
    const one = new Etcd3({ hosts: [endpoint], dialTimeout: 1000 });
    try {
      const status = await one.maintenance.status();
      if (status.leader === status.header.member_id) return i;
    } catch {
      // a stopped member: not the leader
    } finally {
      one.close();
    }
  }
  throw new Error('no etcd member says it leads');
}

beforeAll(async () => {
  pki = testPki();
  etcd = await startEtcdCluster({ ips: ['127.0.0.81', '127.0.0.82', '127.0.0.83'], clientPort: 12379, peerPort: 12380 });
  client = etcd.client();
  // Node 1's partners.yaml is what `cluster import` loads; the others' files are never read.
  nodes.push(await prepareNode('gw1', '# the partners every node of the pool allows\n- Identity: a.example\n- Identity: b.example\n  Description: imported\n'));
  nodes.push(await prepareNode('gw2', ''), await prepareNode('gw3', ''));
  for (const node of nodes) await startNode(node);
}, 90_000);

afterAll(async () => {
  for (const node of nodes) {
    await stopNode(node).catch(() => undefined);
    await rm(node.dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  }
  await etcd?.close();
});

describe('the partner list of a pool lives in etcd', () => {
  it('nodes that find no list in etcd start with 0 partners and say how to load one', () => {
    for (const node of nodes) {
      expect(node.gateway!.reloader.current.size).toBe(0);
      const empty = node.logs.find((l) => l.event === 'partners.empty');
      expect(empty).toMatchObject({ level: 'warn', file: LOCATION, message: '0 partners: all federation refused' });
      expect(empty!.hint).toContain("'xmpp-gateway cluster import'");
    }
  });

  it('`cluster import` loads partners.yaml once, a second import is refused, and all three nodes apply it', async () => {
    const first = await cli(nodes[0]!, ['cluster', 'import']);
    expect([first.code, first.stderr]).toEqual([0, '']);
    const { text, revision } = await etcdList();
    expect(text).toBe(await readFile(nodes[0]!.partnersFile, 'utf8'));
    expect(first.stdout).toBe(`imported 2 partners from ${nodes[0]!.partnersFile} into ${LOCATION} (revision ${revision})\n`);

    const again = await cli(nodes[1]!, ['cluster', 'import']);
    expect(again.code).toBe(1);
    expect(again.stdout).toBe('');
    expect(again.stderr).toBe(
      `error: cluster import: etcd already holds a partner list (${LOCATION}, revision ${revision}, 2 partners); ` +
      "edit it with 'xmpp-gateway partner ...', or replace it with this file: 'xmpp-gateway cluster import --force'\n",
    );
    expect((await etcdList()).revision).toBe(revision);

    await acceptedBy(nodes, 'b.example');
    for (const node of nodes) {
      expect(identities(node)).toEqual(['a.example', 'b.example']);
      expect(node.gateway!.reloader.revision).toBe(revision);
      expect(await firstGate(node, 'c.example')).toBe('policy-violation');
    }
  });

  it('a partner added through node 1 with the CLI is accepted by nodes 2 and 3 within 2 s', async () => {
    const started = Date.now();
    const r = await cli(nodes[0]!, ['partner', 'new', '--identity', 'cli.example', '--force']);
    expect([r.code, r.stderr]).toEqual([0, '']);
    const committed = Date.now();
    const ms = await acceptedBy([nodes[1]!, nodes[2]!], 'cli.example', PROPAGATION_MS);
    console.log(`CLI edit through gw1: accepted by gw2 and gw3 ${ms} ms after the CLI returned (${committed - started + ms} ms after it was started)`);
    expect(ms).toBeLessThan(PROPAGATION_MS);
  });

  it("a partner added through node 1's panel API is accepted by nodes 2 and 3 within 2 s", async () => {
    const n1 = nodes[0]!;
    const res = await http(n1.adminPort, 'POST', '/api/partners', {
      headers: { authorization: `Bearer ${n1.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ Identity: 'panel.example', Description: 'added in the panel of gw1' }),
    });
    expect([res.status, JSON.parse(res.body).record?.Identity]).toEqual([201, 'panel.example']);
    const ms = await acceptedBy([nodes[1]!, nodes[2]!], 'panel.example', PROPAGATION_MS);
    console.log(`panel edit through gw1: accepted by gw2 and gw3 ${ms} ms after the API answered`);
    expect(ms).toBeLessThan(PROPAGATION_MS);
    expect((await etcdList()).text).toContain('Description: added in the panel of gw1');
  });

  it('the panel refuses a stale form against the list in etcd (412), and the list is unchanged', async () => {
    const n2 = nodes[1]!;
    const auth = { authorization: `Bearer ${n2.token}`, 'content-type': 'application/json' };
    const read = await http(n2.adminPort, 'GET', '/api/partners/panel.example', { headers: auth });
    const etag = read.headers.etag as string;
    // Someone else changes the partner through another node in the meantime.
    expect((await cli(nodes[2]!, ['partner', 'set', '--identity', 'panel.example', '--description', 'changed on gw3'])).code).toBe(0);
    const before = await etcdList();
    const stale = await http(n2.adminPort, 'PUT', '/api/partners/panel.example', {
      headers: { ...auth, 'if-match': etag },
      body: JSON.stringify({ Identity: 'panel.example', Description: 'from a stale form' }),
    });
    expect(stale.status).toBe(412);
    expect(await etcdList()).toEqual(before);
  });

  it('20 concurrent CLI edits split across the three nodes lose nothing', async () => {
    const names = Array.from({ length: 20 }, (_, i) => `c${i}.example`);
    const results = await Promise.all(names.map((name, i) => cli(nodes[i % 3]!, ['partner', 'new', '--identity', name])));
    for (const [i, r] of results.entries()) expect([names[i], r.code, r.stderr]).toEqual([names[i], 0, '']);
    const inEtcd = (await etcdList()).text;
    for (const name of names) expect(inEtcd).toContain(`- Identity: ${name}\n`);
    const expected = ['a.example', 'b.example', 'cli.example', 'panel.example', ...names].sort();
    await until('every node applied all 20', () => nodes.every((n) => identities(n).length === expected.length));
    for (const node of nodes) expect([...identities(node)].sort()).toEqual(expected);
  }, 60_000);

  it('killing one etcd member (the leader) changes nothing: edits and propagation still work', async () => {
    const leader = await leaderIndex();
    await etcd.kill(leader);
    try {
      const through = nodes[(leader + 1) % 3]!;
      const r = await cli(through, ['partner', 'new', '--identity', 'after-kill.example']);
      expect([r.code, r.stderr]).toEqual([0, '']);
      const ms = await acceptedBy(nodes, 'after-kill.example', PROPAGATION_MS);
      console.log(`etcd leader m${leader + 1} SIGKILLed: edit through ${through.name} accepted by every node ${ms} ms after the CLI returned`);
      expect(ms).toBeLessThan(PROPAGATION_MS);
      expect(await firstGate(nodes[2]!, 'a.example')).toBe('features');
    } finally {
      await etcd.startAll();
    }
  }, 60_000);

  it("a hand edit of a node's partners.yaml is refused with one line, shown in status, and not applied", async () => {
    const n2 = nodes[1]!;
    const mark = n2.logs.length;
    await writeFile(n2.partnersFile, '- Identity: a.example\n- Identity: hand.example\n');
    await until('the refusal is logged', () => n2.logs.slice(mark).some((l) => l.event === 'partners.reload-failed'), 5000);
    // One line per change: the one-second content poll sees the same text again and says nothing more.
    await new Promise((r) => setTimeout(r, 1500));
    const lines = n2.logs.slice(mark).filter((l) => l.level === 'error' || l.level === 'warn');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      level: 'error',
      event: 'partners.reload-failed',
      error: `${n2.partnersFile} was changed, but partners.yaml is not used in cluster mode: the list lives in etcd (${LOCATION}); ` +
        "edit it with 'xmpp-gateway partner ...' or the panel, or replace it with this file: 'xmpp-gateway cluster import --force'. Nothing was applied",
    });
    expect(await firstGate(n2, 'hand.example')).toBe('policy-violation');
    expect(await firstGate(n2, 'cli.example')).toBe('features');
    const status = await http(n2.adminPort, 'GET', '/status', { headers: { authorization: `Bearer ${n2.token}` } });
    expect(JSON.parse(status.body).partners).toMatchObject({ file: LOCATION, lastReloadError: lines[0]!.error });
  });

  it('-LocalStore shows the list this node applied, with its etcd revision', async () => {
    const n3 = nodes[2]!;
    const { revision } = await etcdList();
    await until('gw3 applied the newest revision', () => n3.gateway!.reloader.revision === revision);
    const json = await cli(n3, ['--json', 'Get-CsXmppAllowedPartner', '-LocalStore']);
    expect(json.code).toBe(0);
    expect((JSON.parse(json.stdout) as { Identity: string }[]).map((p) => p.Identity)).toEqual(identities(n3));
    expect(json.stderr).toMatch(new RegExp(`^Local store ${n3.dir}/state/partners\\.local\\.json: ${LOCATION} at revision ${revision}, applied \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z\\n$`));
    const text = await cli(n3, ['partner', 'get', '--local-store', '--identity', 'panel.example']);
    expect(text.stdout.split('\n')[0]).toContain(`${LOCATION} at revision ${revision}`);
    expect(text.stdout).toContain('Description                : changed on gw3');
    const stored = JSON.parse(await readFile(`${n3.dir}/state/partners.local.json`, 'utf8'));
    expect(stored).toMatchObject({ source: LOCATION, revision, text: (await etcdList()).text });
  });

  it('with all of etcd stopped every node serves its partners from its local store; a node restarted meanwhile comes up from it; edits fail with one line, then propagate again once etcd is back', async () => {
    const before = nodes.map(identities);
    await etcd.stopAll();
    try {
      for (const node of nodes) {
        expect(await firstGate(node, 'a.example')).toBe('features');
        expect(await firstGate(node, 'c19.example')).toBe('features');
        expect(await firstGate(node, 'nobody.example')).toBe('policy-violation');
      }

      const refused = await cli(nodes[0]!, ['partner', 'new', '--identity', 'while-down.example']);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/^error: cannot read the partner list: etcd \(http:\/\/127\.0\.0\.81:12379, http:\/\/127\.0\.0\.82:12379, http:\/\/127\.0\.0\.83:12379\) did not answer: [^\n]+; nothing was changed\n$/);
      const n1 = nodes[0]!;
      const panel = await http(n1.adminPort, 'POST', '/api/partners', {
        headers: { authorization: `Bearer ${n1.token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ Identity: 'while-down.example' }),
      });
      expect(panel.status).toBe(503);
      expect(JSON.parse(panel.body).error).toMatch(/^cannot read the partner list: etcd \(.*\) did not answer: [^\n]+; nothing was changed$/);

      const n3 = nodes[2]!;
      await stopNode(n3);
      await startNode(n3);
      const fromLocal = n3.logs.find((l) => l.event === 'partners.from-local-store');
      expect(fromLocal).toMatchObject({ level: 'warn', file: `${n3.dir}/state/partners.local.json`, partners: before[2]!.length });
      expect(identities(n3)).toEqual(before[2]);
      expect(await firstGate(n3, 'panel.example')).toBe('features');
      expect(await firstGate(n3, 'while-down.example')).toBe('policy-violation');
    } finally {
      await etcd.startAll();
    }
    const back = Date.now();
    const r = await cli(nodes[2]!, ['partner', 'new', '--identity', 'after-restart.example']);
    expect([r.code, r.stderr]).toEqual([0, '']);
    const ms = await acceptedBy(nodes, 'after-restart.example', 10_000);
    console.log(`etcd back: an edit through the restarted gw3 was accepted by every node ${ms} ms after the CLI returned (${Date.now() - back} ms after etcd was healthy)`);
    for (const node of nodes) expect(node.gateway!.reloader.lastError).toBeUndefined();
  }, 90_000);
});
