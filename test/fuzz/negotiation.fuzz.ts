import fc from 'fast-check';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { timeBudget } from './budget.js';
import { negotiationFixture, type NegotiationFixture } from './negotiation.properties.js';

let fixture: NegotiationFixture;

beforeAll(async () => {
  fixture = await negotiationFixture();
});

afterAll(async () => {
  await fixture?.close();
});

describe('inbound negotiation (fast-check, time-boxed)', () => {
  it('random negotiation sequences never crash the gateway and end in a stream error, an established stream or a clean close', async () => {
    await fc.assert(fixture.property, timeBudget(1, 0.5));
  });
});
