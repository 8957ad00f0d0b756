/**
 * Run parameters for the open-ended fuzz run: FUZZ_SECONDS (set by run.mjs from `--seconds`) is
 * shared out between the files (half each: they may run one after the other) and between the
 * properties of a file;
 * FUZZ_SEED replays a reported failure.
 */
import type { Parameters } from 'fast-check';

/** fast-check parameters giving each of `count` properties its share of `share` of the time. */
export function timeBudget(count: number, share: number): Parameters<unknown> {
  const seconds = Number(process.env.FUZZ_SECONDS ?? 60);
  const seed = process.env.FUZZ_SEED === undefined ? undefined : Number(process.env.FUZZ_SEED);
  return {
    numRuns: Number.MAX_SAFE_INTEGER,
    interruptAfterTimeLimit: Math.max(1000, (seconds * 1000 * share) / count),
    markInterruptAsFailure: false,
    ...(seed === undefined ? {} : { seed }),
  };
}
