/**
 * Entry point of `npx vitest run --config bench/vitest.config.ts` (vitest only runs TypeScript
 * here): one test that runs the whole side-by-side benchmark and prints the table. Not part of
 * `npm test` (the default config includes test/**\/*.test.ts only).
 *
 * Knobs (environment): BENCH_N_PROSODY (stanzas per Prosody run, default 30000),
 * BENCH_N_GATEWAY (per gateway run, default 200000; the gateway is much faster and a run should
 * last long enough to be steady), BENCH_N (sets both), BENCH_RUNS (default 5),
 * BENCH_AUTH (dialback,external), BENCH_WORKLOADS (ping,message), BENCH_JSON (write the raw
 * results there), BENCH_GATEWAY_CPU_PROF (directory: run the gateway under `node --cpu-prof`).
 */
import { writeFileSync } from 'node:fs';
import { it } from 'vitest';
import { formatReport, runS2sBenchmark, type Auth, type Workload } from './s2s-replies.js';

const list = <T extends string>(name: string, allowed: readonly T[], dflt: readonly T[]): T[] => {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return [...dflt];
  const items = raw.split(',').map((s) => s.trim()) as T[];
  for (const i of items) if (!allowed.includes(i)) throw new Error(`${name}: '${i}' is not one of ${allowed.join(', ')}`);
  return items;
};
const int = (name: string, dflt: number): number => {
  const raw = process.env[name];
  const v = raw === undefined || raw === '' ? dflt : Number(raw);
  if (!Number.isInteger(v) || v < 1) throw new Error(`${name} must be a positive integer, got '${raw}'`);
  return v;
};

it('s2s replies: gateway vs Prosody 0.12, side by side', async () => {
  const report = await runS2sBenchmark({
    n: {
      gateway: int('BENCH_N_GATEWAY', int('BENCH_N', 200_000)),
      prosody: int('BENCH_N_PROSODY', int('BENCH_N', 30_000)),
    },
    runs: int('BENCH_RUNS', 5),
    auths: list<Auth>('BENCH_AUTH', ['dialback', 'external'], ['dialback', 'external']),
    workloads: list<Workload>('BENCH_WORKLOADS', ['ping', 'message'], ['ping', 'message']),
    ...(process.env['BENCH_GATEWAY_CPU_PROF'] ? { gatewayCpuProfDir: process.env['BENCH_GATEWAY_CPU_PROF'] } : {}),
  });
  const text = formatReport(report);
  console.log(`\n${text}\n`);
  if (process.env['BENCH_JSON']) writeFileSync(process.env['BENCH_JSON'], `${JSON.stringify(report, null, 2)}\n`);
}, 900_000);
