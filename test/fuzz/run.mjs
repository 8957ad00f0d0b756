#!/usr/bin/env node
// npm run fuzz [-- --seconds N] [--seed S]: runs the property-based fuzzers (test/fuzz/*.fuzz.ts)
// for about N seconds in total (default: FUZZ_SECONDS, else 60). A failure prints fast-check's
// seed and path; FUZZ_SEED=S (or --seed S) replays it. Every failure found belongs in a
// regression test in test/unit or test/integration.
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';

const args = process.argv.slice(2);
const env = { ...process.env };
for (let i = 0; i < args.length; i++) {
  const [flag, inline] = args[i].split('=', 2);
  const value = inline ?? args[++i];
  if (flag === '--seconds' && /^\d+$/.test(value ?? '')) env.FUZZ_SECONDS = value;
  else if (flag === '--seed' && /^-?\d+$/.test(value ?? '')) env.FUZZ_SEED = value;
  else {
    process.stderr.write(`usage: npm run fuzz [-- --seconds N] [--seed S]\n`);
    process.exit(2);
  }
}
env.FUZZ_SECONDS ??= '60';
const root = resolve(import.meta.dirname, '../..');
const vitest = resolve(root, 'node_modules/vitest/vitest.mjs');
const r = spawnSync(process.execPath, [vitest, 'run', '--config', 'test/fuzz/vitest.config.ts'], { cwd: root, env, stdio: 'inherit' });
process.exit(r.status ?? 1);
