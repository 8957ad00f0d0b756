/**
 * The inbound negotiation state machine under random element sequences
 * (test/fuzz/negotiation.properties.ts), a bounded number of runs as part of `npm test`;
 * `npm run fuzz` runs the same property for as long as asked.
 */
import { negotiationSuite } from '../fuzz/negotiation.properties.js';

negotiationSuite('inbound negotiation (fast-check, bounded)', () => ({ numRuns: 30 }), 60_000);
