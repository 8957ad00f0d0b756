import { timeBudget } from './budget.js';
import { negotiationSuite } from './negotiation.properties.js';

negotiationSuite('inbound negotiation (fast-check, time-boxed)', () => timeBudget(1, 0.5));
