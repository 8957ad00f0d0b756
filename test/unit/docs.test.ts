/**
 * The repository's documentation stands on its own: every file that cites the design notes, the
 * protocol digest or the peers how-to cites docs/ (and sections that exist there), nothing points outside the
 * repository, and the README's "Connect a real server" excerpts are the settings the interop
 * tests run real Prosody and ejabberd with.
 */
import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { parseGatewayConfig } from '../../src/config/schema.js';

const ROOT = resolve(import.meta.dirname, '../..');
/** Reshaped by another change at the same time; their comments still cite design.md by bare name. */
const ELSEWHERE = /^src\/(stream|routing|negotiation|xml)\//;

const read = (path: string) => readFile(resolve(ROOT, path), 'utf8');

async function trackedTexts(): Promise<[string, string][]> {
  const files = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard'], { cwd: ROOT, encoding: 'utf8' })
    .split('\n')
    .filter((f) => f !== '' && !f.endsWith('package-lock.json') && !/\.(pem|crt|key)$/.test(f));
  return Promise.all(files.map(async (f) => [f, await read(f).catch(() => '')] as [string, string]));
}

/** The section's heading text in a markdown file (`## N. Title`). */
function sections(markdown: string): Set<number> {
  return new Set([...markdown.matchAll(/^## (\d+)\. /gm)].map((m) => Number(m[1])));
}

function section(markdown: string, title: string): string {
  const start = markdown.indexOf(`\n## ${title}\n`);
  expect(start, `README section "${title}"`).toBeGreaterThan(0);
  const end = markdown.indexOf('\n## ', start + 4);
  return markdown.slice(start, end < 0 ? undefined : end);
}

function fenced(text: string, lang: string): string[] {
  return [...text.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))].map((m) => m[1]!.replace(/^ {3}/gm, ''));
}

describe('docs/', () => {
  it('nothing points outside the repository', async () => {
    const offenders: string[] = [];
    for (const [file, text] of await trackedTexts()) {
      if (file === 'test/unit/docs.test.ts') continue;
      for (const m of text.matchAll(/(\/work\/shared|shared\/(peers|seeds|design|protocol|style)|\.\.\/seeds)/g)) offenders.push(`${file}: ${m[0]}`);
    }
    expect(offenders).toEqual([]);
  });

  it('every citation of design.md or peers.md is docs/..., of a section that exists', async () => {
    const design = sections(await read('docs/design.md'));
    const peers = await read('docs/peers.md');
    const problems: string[] = [];
    for (const [file, text] of await trackedTexts()) {
      if (file === 'test/unit/docs.test.ts') continue;
      for (const m of text.matchAll(/([\w./-]*)(design|peers)\.md(?: (section|sections) (\d+)(?: (?:to|and) (\d+))?| "([^"]+)")?/g)) {
        const [, prefix, name, , first, last, heading] = m;
        if (prefix !== 'docs/' && !ELSEWHERE.test(file) && !(file.startsWith('docs/') && prefix === '')) problems.push(`${file}: '${m[0]}' should cite docs/${name}.md`);
        for (const n of first ? [Number(first), Number(last ?? first)] : []) {
          if (!design.has(n)) problems.push(`${file}: '${m[0]}': docs/design.md has no section ${n}`);
        }
        if (heading && !peers.includes(`## ${heading}\n`)) problems.push(`${file}: '${m[0]}': docs/peers.md has no such section`);
      }
    }
    expect(problems).toEqual([]);
  });
});

/**
 * docs/protocol.md's outline: `## N. Title` sections with their text, `### N.M Title` subsections,
 * and the numbered list items (`K. `) of each section.
 */
function protocolOutline(markdown: string): { sections: Map<number, string>; subsections: Set<string> } {
  const sections = new Map<number, string>();
  for (const part of markdown.split(/^(?=## \d+\. )/m)) {
    const m = /^## (\d+)\. /.exec(part);
    if (m) sections.set(Number(m[1]), part);
  }
  return { sections, subsections: new Set([...markdown.matchAll(/^### (\d+\.\d+) /gm)].map((m) => m[1]!)) };
}

/** One reference after `docs/protocol.md`: `7`, `1.5`, `9.2`, `1-6`, `7 step 5`. */
const PROTOCOL_REF = String.raw`(\d+)(?:\.(\d+))?(?:-(\d+))?(?: (?:step|item) (\d+))?`;
const FIRST_REF = new RegExp(String.raw`^ (?:§ ?|sections? )?` + PROTOCOL_REF);
const NEXT_REF = new RegExp(String.raw`^(?: \([^)]*\))?(?:,| and| to) (?:§ ?|sections? )?` + PROTOCOL_REF);

/**
 * The citations of docs/protocol.md in `text`: each `protocol.md` with the prefix written before it and
 * the references that follow it (`docs/protocol.md §1.5 (restarts), §8 (hazards), §10` gives three).
 */
function protocolCitations(text: string): { cited: string; prefix: string; refs: RegExpExecArray[] }[] {
  const out: { cited: string; prefix: string; refs: RegExpExecArray[] }[] = [];
  for (const m of text.matchAll(/([\w./-]*)protocol\.md/g)) {
    let rest = text.slice(m.index! + m[0].length);
    const refs: RegExpExecArray[] = [];
    let r = FIRST_REF.exec(rest);
    let cited = m[0];
    while (r) {
      refs.push(r);
      cited += r[0];
      rest = rest.slice(r[0].length);
      r = NEXT_REF.exec(rest);
    }
    out.push({ cited, prefix: m[1]!, refs });
  }
  return out;
}

/** What is wrong with one reference into docs/protocol.md, or null when it names something that exists. */
function protocolRefProblem(outline: ReturnType<typeof protocolOutline>, ref: RegExpExecArray): string | null {
  const [, n, sub, last, item] = ref;
  const section = outline.sections.get(Number(n));
  if (section === undefined) return `no section ${n}`;
  if (last !== undefined && !outline.sections.has(Number(last))) return `no section ${last}`;
  const hasItem = (k: string) => new RegExp(`^${k}\\. `, 'm').test(section);
  if (sub !== undefined && !outline.subsections.has(`${n}.${sub}`) && !hasItem(sub)) return `no subsection ${n}.${sub} and no item ${sub} in section ${n}`;
  if (item !== undefined && !hasItem(item)) return `no step ${item} in section ${n}`;
  return null;
}

describe('docs/protocol.md citations', () => {
  it('every citation of protocol.md is docs/protocol.md, of a section, subsection or step that exists', async () => {
    const outline = protocolOutline(await read('docs/protocol.md'));
    const problems: string[] = [];
    let count = 0;
    for (const [file, text] of await trackedTexts()) {
      if (file === 'test/unit/docs.test.ts') continue;
      for (const { cited, prefix, refs } of protocolCitations(text)) {
        count++;
        if (prefix !== 'docs/' && !(file.startsWith('docs/') && prefix === '')) problems.push(`${file}: '${cited}' should cite docs/protocol.md`);
        for (const ref of refs) {
          const problem = protocolRefProblem(outline, ref);
          if (problem) problems.push(`${file}: '${cited}': docs/protocol.md has ${problem}`);
        }
      }
    }
    expect(problems).toEqual([]);
    expect(count).toBeGreaterThan(10);
  });

  it('the citations in src point at the content their comments talk about', async () => {
    const { sections } = protocolOutline(await read('docs/protocol.md'));
    const item = (n: number, k: number) => new RegExp(`^${k}\\. ([\\s\\S]*?)(?=^\\d+\\. |^## |^The internal DNS view|$(?![\\s\\S]))`, 'm').exec(sections.get(n)!)?.[1] ?? '';
    const sub = (id: string) => {
      const text = sections.get(Number(id.split('.')[0]))!;
      const start = text.indexOf(`\n### ${id} `);
      const end = text.indexOf('\n### ', start + 5);
      return start < 0 ? '' : text.slice(start, end < 0 ? undefined : end);
    };
    expect(item(7, 1)).toMatch(/ProxyFqdn/);
    expect(item(7, 5)).toMatch(/NODATA/);
    expect(item(7, 6)).toMatch(/ENOTFOUND[\s\S]*domainToASCII/);
    expect(item(9, 2)).toMatch(/No `version`/);
    expect(sub('1.2')).toMatch(/Receiving side/);
    expect(sub('1.3')).toMatch(/Initiating side[\s\S]*remote-server-not-found[\s\S]*remote-server-timeout/);
    expect(sub('1.4')).toMatch(/per partner record/);
    expect(sub('1.5')).toMatch(/Restarts[\s\S]*injection/);
    expect(sub('2.1')).toMatch(/rejectUnauthorized: false/);
    for (const fact of ['disableRenegotiation', 'SNICallback', 'ALPN `xmpp-server`']) expect(sub('2.2')).toContain(fact);
    expect(sub('4.2')).toMatch(/37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643/);
    expect(sections.get(8)).toMatch(/^## 8\. Security hazards/);
    expect(sections.get(10)).toMatch(/^## 10\. ltx facts/);
  });
});

describe('README "Connect a real server"', () => {
  it('its Prosody, ejabberd, gateway.yaml and partner excerpts are what the interop tests run', async () => {
    const text = section(await read('README.md'), 'Connect a real server');
    const prosodyHarness = (await read('test/interop/harness/prosody.ts')) + (await read('test/interop/templates/prosody.cfg.lua.tmpl'));
    const ejabberdTemplate = await read('test/interop/templates/ejabberd.yml.tmpl');
    const ejabberdHarness = await read('test/interop/harness/ejabberd.ts');
    const interop = await read('test/interop/gateway-interop.test.ts');

    // Prosody: the external mode's policy lines, the dialback module disabled, the CA for the gateway.
    const [lua] = fenced(text, 'lua');
    const external = /case 'external':\n\s+return \{ modeConfig: '([^']+)', disabled: \['dialback'\]/.exec(prosodyHarness);
    expect(external).not.toBeNull();
    for (const line of external![1]!.split('\\n')) expect(lua).toContain(`${line}\n`);
    expect(lua).toContain('modules_disabled = { "dialback" }');
    expect(prosodyHarness).toContain('modules_disabled = { @DISABLED_MODULES@ }');
    expect(lua).toMatch(/cafile = "[^"]+";/);
    expect(prosodyHarness).toContain('SSL_EXTRA: `cafile = ');

    // ejabberd: every key is one the template sets, s2s_use_starttls as in the external mode.
    const ej = parse(fenced(text, 'yaml').find((b) => b.includes('s2s_use_starttls'))!) as Record<string, unknown>;
    for (const key of Object.keys(ej)) expect(ejabberdTemplate).toMatch(new RegExp(`^${key}:`, 'm'));
    expect(ej.s2s_use_starttls).toBe(/case 'external':\n\s+return \{ starttls: '(\w+)', dialback: false/.exec(ejabberdHarness)?.[1]);

    // gateway.yaml: the excerpt is valid configuration.
    const gw = fenced(text, 'yaml').find((b) => b.includes('routes'))!;
    const config = parseGatewayConfig(`localDomains: [{ domain: gw.example }]\nlisten: [{ host: 127.0.0.1, port: 5269 }]\n${gw}`, resolve(ROOT, 'config/gateway.yaml'));
    expect(config.dns.routes).toEqual({ 'partner.example': '192.0.2.10:5269' });

    // The partner record: the interop tests' record for the external mode.
    const [sh] = fenced(text, 'sh');
    expect(sh).toContain('--tls-negotiation Required --sasl-negotiation Required --support-dialback-negotiation false');
    expect(interop).toContain("external: 'TlsNegotiation: Required\\n  SaslNegotiation: Required\\n  SupportDialbackNegotiation: false'");
  });
});

describe('README "Relay to an internal XMPP server"', () => {
  it('its gateway.yaml, Prosody and ejabberd excerpts are what the relay interop tests run', async () => {
    const text = section(await read('README.md'), 'Relay to an internal XMPP server');
    const prosodyHarness = await read('test/interop/harness/prosody.ts');
    const prosodyTemplate = await read('test/interop/templates/prosody.cfg.lua.tmpl');
    const inetrcTemplate = await read('test/interop/templates/inetrc.tmpl');
    const ejabberdHarness = await read('test/interop/harness/ejabberd.ts');
    const relay = await read('test/interop/harness/relay-gateway.ts');
    const relayTest = await read('test/interop/relay-interop.test.ts');

    // gateway.yaml: valid configuration, with exactly the keys the relay tests set under `internal`.
    const gw = fenced(text, 'yaml').find((b) => b.includes('internal:'))!;
    const config = parseGatewayConfig(gw, resolve(ROOT, 'config/gateway.yaml'));
    expect(Object.keys((parse(gw) as { internal: object }).internal)).toEqual(['server', 'listen', 'dns', 'requireTls']);
    for (const key of ['server', 'listen', 'dns']) expect(relay).toContain(`  ${key}: { host: `);
    const dns = config.internal!.dns!;

    // Prosody: the template's unbound block, forwarding to the DNS view.
    const [unbound, s2s] = fenced(text, 'lua');
    for (const line of ['resolvconf = false;', 'hoststxt = false;']) {
      expect(unbound).toContain(line);
      expect(prosodyTemplate).toContain(line);
    }
    expect(unbound).toContain(`forward = { "${dns.host}@${dns.port}" };`);
    expect(prosodyTemplate).toContain('forward = { "@DNS_IP@@@DNS_PORT@" };');

    // ejabberd: the harness's inetrc, with the DNS view's address.
    const [inetrc] = fenced(text, 'erlang');
    const expected = inetrcTemplate
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => l.replace('@DNS_IP_TUPLE@', dns.host.split('.').join(',')).replace('@DNS_PORT@', String(dns.port)));
    expect(inetrc!.trim().split('\n')).toEqual(expected);

    // s2s settings: the 'any' mode the relay tests run the internal server in.
    expect(relayTest).toContain("mode: 'any' as const");
    const any = /case 'any':\n\s+return \{ modeConfig: '([^']+)', disabled: \[\]/.exec(prosodyHarness);
    for (const line of any![1]!.split('\\n')) expect(s2s).toContain(`${line}\n`);
    expect(prosodyTemplate).toMatch(/modules_enabled = \{\n\s+.*"tls"; "dialback";/);
    const ej = parse(fenced(text, 'yaml').find((b) => b.includes('s2s_use_starttls'))!) as { s2s_use_starttls: string; modules: Record<string, unknown> };
    expect(ej.s2s_use_starttls).toBe(/case 'any':\n\s+return \{ starttls: '(\w+)', dialback: true/.exec(ejabberdHarness)?.[1]);
    expect(Object.keys(ej.modules)).toContain('mod_s2s_dialback');
  });
});
