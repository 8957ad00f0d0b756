/**
 * What ships besides the code: the systemd unit in contrib/ (checked by systemd's own verifier,
 * which `.ci/run` installs) and the licence file that package.json names.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');
const UNIT = resolve(ROOT, 'contrib/xmpp-gateway.service');

/** The [Service] section's settings, repeated keys in order. */
function serviceSettings(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let section = '';
  for (const line of text.split('\n')) {
    const header = /^\[(\w+)\]$/.exec(line.trim());
    if (header) section = header[1]!;
    const m = /^(\w+)=(.*)$/.exec(line);
    if (section === 'Service' && m) out.set(m[1]!, [...(out.get(m[1]!) ?? []), m[2]!]);
  }
  return out;
}

describe('contrib/xmpp-gateway.service', () => {
  it('passes systemd-analyze verify with no complaint at all', async () => {
    // verify exits 0 on unknown keys (it only prints them), so its output must be empty too.
    const { stdout, stderr } = await promisify(execFile)('systemd-analyze', ['verify', UNIT]).catch(
      (err: { stdout: string; stderr: string; code: number }) => {
        throw new Error(`systemd-analyze verify failed (${err.code}): ${err.stdout}${err.stderr}`);
      },
    );
    expect(`${stdout}${stderr}`).toBe('');
  });

  it('is hardened: its own user, no capabilities, no new privileges, read-only system', async () => {
    const s = serviceSettings(await readFile(UNIT, 'utf8'));
    expect(s.get('User')?.[0]).toBe('xmpp-gateway');
    expect(s.get('NoNewPrivileges')).toEqual(['yes']);
    expect(s.get('CapabilityBoundingSet')).toEqual(['']); // empty: no capability, 5269 needs none
    expect(s.get('AmbientCapabilities')).toEqual(['']);
    expect(s.get('ProtectSystem')).toEqual(['strict']);
    expect(s.get('ExecStart')?.[0]).toMatch(/bin\/xmpp-gateway serve --config \S+\.yaml$/);
    expect(s.get('ExecReload')?.[0]).toMatch(/kill -HUP \$MAINPID/);
  });
});

describe('LICENSE', () => {
  it('exists and is the licence package.json declares', async () => {
    const pkg = JSON.parse(await readFile(resolve(ROOT, 'package.json'), 'utf8')) as { license: string };
    const text = await readFile(resolve(ROOT, 'LICENSE'), 'utf8');
    expect(pkg.license).toBe('MIT');
    expect(text.split('\n')[0]).toBe('MIT License');
    expect(text).toContain('Permission is hereby granted, free of charge');
  });
});
