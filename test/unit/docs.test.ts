/**
 * The repository's documentation stands on its own: every file that cites the design notes or
 * the peers how-to cites docs/ (and sections that exist there), nothing points outside the
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
