/**
 * Entry point of `npm run bench` (bench/run.mjs runs vitest with bench/vitest.config.ts; vitest is
 * only the TypeScript runner here): one test that runs every benchmark (bench/suite.ts) and prints
 * the table and the ratio lines. Not part of `npm test` (that config includes test/**\/*.test.ts).
 *
 * BENCH_QUICK=1 (`npm run bench -- --quick`): the reduced version, under five minutes.
 * Knobs (environment, both modes): BENCH_RUNS, BENCH_AUTH (dialback,external), BENCH_REPLIES=0
 * (skip the reply workloads), BENCH_SECTIONS (e.g. '1,7': only those sections; 1-3 run together),
 * BENCH_TARGETS (section 1-3 floods to run: relay,prosody,ejabberd,pipe), BENCH_IDLE_STREAMS, BENCH_JSON (write the report there),
 * BENCH_GATEWAY_CPU_PROF (directory: run the relay gateway under `node --cpu-prof`).
 */
import { writeFileSync } from 'node:fs';
import { it } from 'vitest';
import type { Auth } from './s2s-replies.js';
import { formatSuite, runSuite, type SuiteOptions } from './suite.js';

const quick = process.env['BENCH_QUICK'] === '1';
const int = (name: string, dflt: number): number => {
  const raw = process.env[name];
  const v = raw === undefined || raw === '' ? dflt : Number(raw);
  if (!Number.isInteger(v) || v < 1) throw new Error(`${name} must be a positive integer, got '${raw}'`);
  return v;
};
const auths = (process.env['BENCH_AUTH'] ?? 'dialback,external').split(',').map((s) => s.trim()) as Auth[];
for (const a of auths) if (a !== 'dialback' && a !== 'external') throw new Error(`BENCH_AUTH: '${a}' is not dialback or external`);

const options: SuiteOptions = quick
  ? {
    quick, runs: int('BENCH_RUNS', 2), auths,
    n: { relay: 100_000, prosody: 10_000, ejabberd: 30_000, replyGateway: 100_000, replyPeer: 10_000 },
    sessions: 300, concurrency: 8, idleStreams: int('BENCH_IDLE_STREAMS', 2_000),
    reloadPartners: 100_000, reloadRuns: 1, latencySeconds: 3, replies: process.env['BENCH_REPLIES'] !== '0',
  }
  : {
    quick, runs: int('BENCH_RUNS', 5), auths,
    n: { relay: 300_000, prosody: 20_000, ejabberd: 100_000, replyGateway: 200_000, replyPeer: 30_000 },
    sessions: 2_000, concurrency: 8, idleStreams: int('BENCH_IDLE_STREAMS', 10_000),
    reloadPartners: 100_000, reloadRuns: 3, latencySeconds: 10, replies: process.env['BENCH_REPLIES'] !== '0',
  };
if (process.env['BENCH_SECTIONS']) options.sections = new Set(process.env['BENCH_SECTIONS'].split(',').map((x) => x.trim()));
if (process.env['BENCH_GATEWAY_CPU_PROF']) options.gatewayCpuProfDir = process.env['BENCH_GATEWAY_CPU_PROF'];

it(`benchmark suite${quick ? ' (--quick)' : ''}`, async () => {
  const report = await runSuite(options);
  console.log(`\n${formatSuite(report)}\n`);
  if (process.env['BENCH_JSON']) writeFileSync(process.env['BENCH_JSON'], `${JSON.stringify(report, null, 2)}\n`);
}, 3_600_000);
