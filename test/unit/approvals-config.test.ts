/** gateway.yaml `approvals`: defaults, paths relative to the file, validation, unknown keys. */
import { describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { DEFAULTS, parseGatewayConfig } from '../../src/config/schema.js';
import { ConfigError } from '../../src/errors.js';

const BASE = 'localDomains:\n  - domain: gw.example\nlisten:\n  - host: 127.0.0.1\n    port: 0\n';
const FILE = '/etc/xgw/gateway.yaml';

function parse(extra: string, warnings: string[] = []) {
  return parseGatewayConfig(`${BASE}${extra}`, FILE, (m) => warnings.push(m));
}

describe('gateway.yaml approvals', () => {
  it('defaults to state/approvals.json next to gateway.yaml and 100000 entries', () => {
    expect(DEFAULTS.approvals).toEqual({ file: 'state/approvals.json', maxEntries: 100_000 });
    expect(parse('').approvals).toEqual({ file: '/etc/xgw/state/approvals.json', maxEntries: 100_000 });
    expect(parse('approvals:\n').approvals).toEqual({ file: '/etc/xgw/state/approvals.json', maxEntries: 100_000 });
    expect(parse('approvals: { maxEntries: 5 }\n').approvals).toEqual({ file: '/etc/xgw/state/approvals.json', maxEntries: 5 });
  });

  it('resolves a relative file against the config file, keeps an absolute one', () => {
    expect(parse('approvals: { file: ../var/a.json }\n').approvals.file).toBe('/etc/var/a.json');
    expect(parse('approvals: { file: /var/lib/xgw/a.json }\n').approvals.file).toBe('/var/lib/xgw/a.json');
  });

  it('is known, and so are its keys; unknown keys under it are warned about', () => {
    const warnings: string[] = [];
    parse('approvals:\n  file: a.json\n  maxEntrys: 3\n', warnings);
    expect(warnings).toEqual([`${FILE}:8: approvals.maxEntrys: unknown setting, ignored`]);
  });

  it.each([
    ['approvals: 3\n', 'approvals: must be a mapping'],
    ['approvals: { maxEntries: 0 }\n', 'approvals.maxEntries: 0 is not a whole number >= 1'],
    ['approvals: { maxEntries: 1.5 }\n', 'approvals.maxEntries: 1.5 is not a whole number >= 1'],
    ['approvals: { file: "" }\n', 'approvals.file: must be a non-empty string'],
  ])('refuses %j', (extra, message) => {
    expect(() => parse(extra)).toThrow(ConfigError);
    expect(() => parse(extra)).toThrow(`${FILE}:6: ${message}`);
  });

  it('the example config/gateway.yaml parses, and mentions approvals', async () => {
    const example = resolve(import.meta.dirname, '../../config/gateway.yaml');
    const text = await readFile(example, 'utf8');
    expect(text).toMatch(/^# approvals: \{ file: state\/approvals\.json, maxEntries: 100000 \}/m);
    const uncommented = text.replace(/^# (approvals:.*?)\s+#.*$/m, '$1');
    expect(parseGatewayConfig(uncommented, example).approvals).toEqual({ file: resolve(example, '../state/approvals.json'), maxEntries: 100_000 });
  });
});
