/**
 * The partner file under concurrent writers and hand edits: 20 CLI processes at once lose
 * nothing, and an edit keeps the comments and order of a hand-written file.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { tempConfig, type TempConfig } from '../helpers/cli.js';

let t: TempConfig;
afterEach(async () => {
  await t?.cleanup();
});

describe('partner store', () => {
  it('20 concurrent writers lose nothing', async () => {
    t = await tempConfig('# concurrent test\n- Identity: base.example\n  ConnectionLimit: 1\n');
    const adds = Array.from({ length: 20 }, (_, i) =>
      i % 2 === 0
        ? t.cli(['partner', 'new', '--identity', `p${i}.example`, '--force'])
        : t.cli(['partner', 'set', '--identity', 'base.example', '--add-domain', `d${i}.base.example`]),
    );
    const results = await Promise.all(adds);
    for (const r of results) expect(r.stderr).toBe('');
    expect(results.map((r) => r.code)).toEqual(Array(20).fill(0));
    const all = JSON.parse((await t.cli(['--json', 'partner', 'get'])).stdout) as { Identity: string; AdditionalDomains: string[] }[];
    expect(all.map((r) => r.Identity).sort()).toEqual(
      ['base.example', ...Array.from({ length: 10 }, (_, i) => `p${i * 2}.example`)].sort(),
    );
    expect(all.find((r) => r.Identity === 'base.example')?.AdditionalDomains.sort()).toEqual(
      Array.from({ length: 10 }, (_, i) => `d${i * 2 + 1}.base.example`).sort(),
    );
    expect(await t.readPartners()).toMatch(/^# concurrent test\n/);
  }, 60_000);

  it('keeps the comments and order of a hand-edited file', async () => {
    const hand = `# Allowed XMPP partners, maintained by the messaging team.
# Ticket refs next to each entry.

- Identity: zeta.example        # OPS-12
  # zeta insists on certificates
  TlsNegotiation: Required
  SaslNegotiation: Required
  SupportDialbackNegotiation: false
  Description: "Zeta Corp: contact ops@zeta.example"

# legacy partner, dialback only
- Identity: alpha.example
  TlsNegotiation: Optional      # they are migrating
  SaslNegotiation: NotSupported
  AdditionalDomains: [muc.alpha.example]
`;
    t = await tempConfig(hand);
    const r = await t.cli(['partner', 'set', '--identity', 'alpha.example', '--tls-negotiation', 'Required', '--add-domain', 'pubsub.alpha.example']);
    expect(r.stderr).toBe('');
    const after = await t.readPartners();
    expect(after).toBe(
      hand
        .replace('TlsNegotiation: Optional      # they are migrating', 'TlsNegotiation: Required      # they are migrating')
        .replace('[muc.alpha.example]', '[muc.alpha.example, pubsub.alpha.example]'),
    );
    const add = await t.cli(['partner', 'new', '--identity', 'beta.example', '--force']);
    expect(add.code).toBe(0);
    const withNew = await t.readPartners();
    expect(withNew.startsWith(after.trimEnd())).toBe(true);
    expect(withNew.slice(after.trimEnd().length)).toBe('\n- Identity: beta.example\n  EnableKeepAlive: true\n  PartnerType: PublicUnverified\n  SaslNegotiation: Required\n  SupportDialbackNegotiation: true\n  TlsNegotiation: Required\n');
    const rm = await t.cli(['partner', 'remove', '--identity', 'zeta.example']);
    expect(rm.code).toBe(0);
    const removed = await t.readPartners();
    expect(removed).toMatch(/^# Allowed XMPP partners, maintained by the messaging team\.\n# Ticket refs next to each entry\.\n/);
    expect(removed).toContain('# legacy partner, dialback only');
    expect(removed).not.toContain('zeta');
  });
});
