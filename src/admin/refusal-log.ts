/**
 * The last refusals per partner, kept for `status --json` and `xmpp-gateway explain` ("why was
 * this partner refused five minutes ago"). Refusals of domains that are not partners share one
 * list under NON_PARTNERS ('-'), with the domain they claimed. Bounded: `perPartner` entries per
 * partner, `maxPartners` partners (the least recently refused is forgotten first).
 */
/** The key under which refusals of domains that are not partners are kept. */
export const NON_PARTNERS = '-';

export interface RefusalEntry {
  /** ISO 8601. */
  readonly time: string;
  readonly direction: 'inbound' | 'outbound';
  /** The domain the stream was from (inbound) or to (outbound), when known. */
  readonly domain: string | null;
  /** The record property or gateway rule that refused (`SaslNegotiation`, `AllowedPartner`, ...). */
  readonly rule: string;
  readonly condition: string;
  readonly text: string;
}

export class RefusalLog {
  private readonly byPartner = new Map<string, RefusalEntry[]>();

  constructor(private readonly perPartner = 10, private readonly maxPartners = 1000) {}

  add(partner: string | null, entry: RefusalEntry): void {
    const key = partner ?? NON_PARTNERS;
    const list = this.byPartner.get(key) ?? [];
    this.byPartner.delete(key); // re-inserted last: the map's order is least recently refused first
    list.push(entry);
    if (list.length > this.perPartner) list.splice(0, list.length - this.perPartner);
    this.byPartner.set(key, list);
    if (this.byPartner.size > this.maxPartners) this.byPartner.delete(this.byPartner.keys().next().value!);
  }

  /** `{ partner: [oldest ... newest] }`, for /status. */
  toJSON(): Record<string, readonly RefusalEntry[]> {
    return Object.fromEntries(this.byPartner);
  }
}
