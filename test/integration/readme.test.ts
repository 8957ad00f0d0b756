/**
 * The README's command examples, run as written by a shell that followed the README's own PATH
 * instruction, in order, against a fresh config: each must succeed and print no warning.
 */
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');

function shBlocks(markdown: string, title: string): string[] {
  const start = markdown.indexOf(`\n## ${title}\n`);
  expect(start, `README section "${title}"`).toBeGreaterThanOrEqual(0);
  const end = markdown.indexOf('\n## ', start + 4);
  const text = markdown.slice(start, end < 0 ? undefined : end);
  return [...text.matchAll(/```sh\n([\s\S]*?)```/g)].flatMap((m) =>
    m[1]!.replace(/^ {3}/gm, '').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#')),
  );
}

describe('README', () => {
  it('the PATH instruction and the partner examples work from the clone, in order, without warnings', async () => {
    const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
    const pathLine = readme.split('\n').find((l) => l.startsWith('export PATH='));
    expect(pathLine, 'README says how to put xmpp-gateway on the PATH').toBeDefined();
    for (const title of ['The allowed-partner list', 'Connect a real server']) {
      const examples = shBlocks(readme, title);
      expect(examples.length, title).toBeGreaterThanOrEqual(title === 'Connect a real server' ? 1 : 10);
      const dir = await mkdtemp(join(tmpdir(), 'xgw-readme-'));
      try {
        await mkdir(join(dir, 'config'));
        await writeFile(join(dir, 'config', 'gateway.yaml'), 'localDomains:\n  - domain: gw.example\nlisten:\n  - { host: 127.0.0.1, port: 0 }\npartners: partners.yaml\n');
        for (const example of examples) {
          // The README's line as typed: PATH set in the clone (its $PWD), the command run where the config is.
          const script = `cd '${ROOT}' && ${pathLine!.replace(/\s+#.*$/, '')} && cd '${dir}' && ${example}`;
          const r = spawnSync('sh', ['-c', script], { encoding: 'utf8', env: { ...process.env, PATH: '/usr/local/bin:/usr/bin:/bin' } });
          expect([r.status, r.stderr], example).toEqual([0, '']);
        }
        const partners = await readFile(join(dir, 'config', 'partners.yaml'), 'utf8');
        expect(partners).toContain(title === 'Connect a real server' ? '- Identity: partner.example' : '- Identity: x.org');
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    }
  });
});
