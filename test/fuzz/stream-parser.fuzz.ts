import fc from 'fast-check';
import { describe, it } from 'vitest';
import { timeBudget } from './budget.js';
import { parserProperties } from './stream-parser.properties.js';

const props = parserProperties();

describe('StreamParser properties (fast-check, time-boxed)', () => {
  for (const p of props) {
    it(p.name, () => {
      fc.assert(p.property, timeBudget(props.length, 0.5));
    });
  }
});
