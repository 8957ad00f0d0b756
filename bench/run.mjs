#!/usr/bin/env node
// `npm run bench [-- --quick]`: runs bench/suite.bench.ts through vitest (the TypeScript runner)
// with bench/vitest.config.ts. `--quick` sets BENCH_QUICK=1 (the reduced run, under five
// minutes); other arguments go to vitest.
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
const args = process.argv.slice(2);
const env = { ...process.env };
if (args.includes('--quick')) env.BENCH_QUICK = '1';
const vitest = resolve(root, 'node_modules/vitest/vitest.mjs');
const child = spawn(process.execPath, [vitest, 'run', '--config', 'bench/vitest.config.ts', ...args.filter((a) => a !== '--quick')], { cwd: root, env, stdio: 'inherit' });
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
child.on('exit', (code, sig) => process.exit(code ?? (sig ? 1 : 0)));
