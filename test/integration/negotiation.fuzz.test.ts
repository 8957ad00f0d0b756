/**
 * The inbound negotiation state machine under random element sequences
 * (test/fuzz/negotiation.properties.ts), a bounded number of runs as part of `npm test`;
 * `npm run fuzz` runs the same property for as long as asked.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { negotiationFixture, type NegotiationFixture } from '../fuzz/negotiation.properties.js';

let fixture: NegotiationFixture;

beforeAll(async () => {
  fixture = await negotiationFixture();
});

afterAll(async () => {
  await fixture?.close();
});

describe('inbound negotiation (fast-check, bounded)', () => {
  it('random negotiation sequences never crash the gateway and end in a stream error, an established stream or a clean close', async () => {
    await fc.assert(fixture.property, { numRuns: 30 });
  }, 60_000);
});
