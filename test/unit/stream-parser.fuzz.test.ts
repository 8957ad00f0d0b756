/**
 * The stream parser's properties (test/fuzz/stream-parser.properties.ts) with a bounded number
 * of runs, part of `npm test`; `npm run fuzz` runs the same properties for as long as asked.
 */
import fc from 'fast-check';
import { describe, it } from 'vitest';
import { parserProperties } from '../fuzz/stream-parser.properties.js';

describe('StreamParser properties (fast-check, bounded)', () => {
  for (const p of parserProperties()) {
    it(p.name, () => {
      fc.assert(p.property, { numRuns: 300 });
    });
  }
});
