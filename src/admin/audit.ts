/**
 * The audit trail (gateway.yaml `auditLog`, default audit.log beside partners.yaml): one JSON
 * line per change of the partner list, from the CLI or the panel, with the time, who made it
 * (the admin user, or the OS user for the CLI), the equivalent cmdlet line and the record before
 * and after; reloads and refused attempts too. Appended with O_APPEND in one write per line, so
 * concurrent writers (the gateway, CLI processes) never interleave within a line.
 *
 *   {"time":"...","who":"alice","via":"panel","action":"Set-CsXmppAllowedPartner",
 *    "cmdlet":"Set-CsXmppAllowedPartner -Identity \"a.example\" -EnableKeepAlive $False",
 *    "result":"ok","before":{...},"after":{...}}
 */
import { appendFile, mkdir, readFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { dirname } from 'node:path';
import { UsageError } from '../errors.js';
import { toJsonRecord } from '../policy/record-json.js';
import { PROPERTY_NAMES, RECORD_DEFAULTS, type PartnerRecord } from '../policy/types.js';
import { sameValue } from '../policy/validate.js';

/** Who acts: an admin user (panel, API) or an OS user (CLI). */
export interface Actor {
  readonly who: string;
  /** 'cli', 'panel' (session cookie), 'api' (bearer token), 'local' (the local credential), 'signal', 'watch'. */
  readonly via: string;
}

export interface AuditEntry {
  readonly time: string;
  readonly who: string;
  readonly via: string;
  /** The cmdlet (`New-CsXmppAllowedPartner`, ...), `reload`, or the operation that was refused. */
  readonly action: string;
  /** The equivalent cmdlet line; for a refused attempt, the attempt as given. */
  readonly cmdlet: string | null;
  readonly result: 'ok' | 'refused' | 'error';
  readonly error?: string;
  readonly before?: Record<string, unknown> | null;
  readonly after?: Record<string, unknown> | null;
  /** Free detail (e.g. partners in force after a reload). */
  readonly detail?: Record<string, unknown>;
}

/** The OS user running this process; `root (sudo by alice)` under sudo. */
export function osActor(via = 'cli'): Actor {
  let who: string;
  try {
    who = userInfo().username;
  } catch {
    who = process.env.USER ?? `uid ${process.getuid?.() ?? '?'}`;
  }
  const sudo = process.env.SUDO_USER;
  return { who: sudo && sudo !== who ? `${who} (sudo by ${sudo})` : who, via };
}

export class AuditLog {
  constructor(readonly file: string) {}

  async append(entry: Omit<AuditEntry, 'time'> & { time?: string }): Promise<void> {
    const line = `${JSON.stringify({ time: entry.time ?? new Date().toISOString(), ...entry })}\n`;
    await mkdir(dirname(this.file), { recursive: true });
    await appendFile(this.file, line, { encoding: 'utf8', mode: 0o640, flag: 'a' });
  }

  /** One line per partner added, changed or removed between `before` and `after`. */
  async recordChanges(actor: Actor, before: readonly PartnerRecord[], after: readonly PartnerRecord[]): Promise<void> {
    for (const change of diffRecords(before, after)) {
      await this.append({
        who: actor.who, via: actor.via, action: change.cmdlet.split(' ', 1)[0]!, cmdlet: change.cmdlet, result: 'ok',
        before: change.before ? toJsonRecord(change.before) : null,
        after: change.after ? toJsonRecord(change.after) : null,
      });
    }
  }

  async refused(actor: Actor, action: string, attempt: string | null, error: string): Promise<void> {
    await this.append({ who: actor.who, via: actor.via, action, cmdlet: attempt, result: 'refused', error });
  }

  /** Entries at or after `since` (all without), oldest first; lines that are not JSON are skipped. */
  async read(opts: { since?: Date; limit?: number } = {}): Promise<AuditEntry[]> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const out: AuditEntry[] = [];
    for (const line of text.split('\n')) {
      if (line.trim() === '') continue;
      let entry: AuditEntry;
      try {
        entry = JSON.parse(line) as AuditEntry;
      } catch {
        continue;
      }
      if (opts.since && !(Date.parse(entry.time) >= opts.since.getTime())) continue;
      out.push(entry);
    }
    return opts.limit !== undefined ? out.slice(-opts.limit) : out;
  }
}

export interface RecordChange {
  readonly before: PartnerRecord | null;
  readonly after: PartnerRecord | null;
  readonly cmdlet: string;
}

/** Added, changed and removed partners (in file order), each with its equivalent cmdlet line. */
export function diffRecords(before: readonly PartnerRecord[], after: readonly PartnerRecord[]): RecordChange[] {
  const old = new Map(before.map((r) => [r.Identity, r]));
  const now = new Map(after.map((r) => [r.Identity, r]));
  const out: RecordChange[] = [];
  for (const r of after) {
    const was = old.get(r.Identity);
    if (!was) out.push({ before: null, after: r, cmdlet: cmdletLine(null, r) });
    else if (PROPERTY_NAMES.some((n) => !sameValue(was[n], r[n]))) out.push({ before: was, after: r, cmdlet: cmdletLine(was, r) });
  }
  for (const r of before) if (!now.has(r.Identity)) out.push({ before: r, after: null, cmdlet: cmdletLine(r, null) });
  return out;
}

/**
 * The cmdlet line that makes `after` out of `before`: New (non-default properties), Set (changed
 * properties; AdditionalDomains as @{Add=...; Remove=...}) or Remove.
 */
export function cmdletLine(before: PartnerRecord | null, after: PartnerRecord | null): string {
  if (after === null) return `Remove-CsXmppAllowedPartner -Identity ${psString(before!.Identity)}`;
  const base = before ?? { Identity: after.Identity, ...RECORD_DEFAULTS };
  const parts = [before === null ? 'New-CsXmppAllowedPartner' : 'Set-CsXmppAllowedPartner', `-Identity ${psString(after.Identity)}`];
  for (const name of PROPERTY_NAMES) {
    if (name === 'Identity' || sameValue(base[name], after[name])) continue;
    if (name === 'AdditionalDomains') {
      const add = after.AdditionalDomains.filter((d) => !base.AdditionalDomains.includes(d));
      const remove = base.AdditionalDomains.filter((d) => !after.AdditionalDomains.includes(d));
      if (before === null || after.AdditionalDomains.length === 0) {
        parts.push(`-AdditionalDomains ${after.AdditionalDomains.length === 0 ? '$Null' : after.AdditionalDomains.map(psString).join(',')}`);
      } else {
        const mods = [add.length ? `Add=${add.map(psString).join(',')}` : '', remove.length ? `Remove=${remove.map(psString).join(',')}` : ''].filter(Boolean);
        parts.push(`-AdditionalDomains @{${mods.join('; ')}}`);
      }
      continue;
    }
    parts.push(`-${name} ${psValue(after[name])}`);
  }
  return parts.join(' ');
}

function psValue(v: unknown): string {
  if (v === null || v === undefined) return '$Null';
  if (typeof v === 'boolean') return v ? '$True' : '$False';
  if (typeof v === 'number') return String(v);
  return psString(String(v));
}

/** A double-quoted PowerShell string: backtick escapes for ` " and $, and for line breaks. */
export function psString(s: string): string {
  return `"${s.replace(/[`"$]/g, (c) => `\`${c}`).replace(/\n/g, '`n').replace(/\r/g, '`r')}"`;
}

/** `--since`: an ISO time, a date, or an age such as 30m, 2h, 7d. */
export function parseSince(text: string, now = Date.now()): Date {
  const age = /^(\d+)\s*([smhd])$/i.exec(text.trim());
  if (age) {
    const unit = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[age[2]!.toLowerCase() as 's' | 'm' | 'h' | 'd'];
    return new Date(now - Number(age[1]) * unit);
  }
  const t = Date.parse(text);
  if (Number.isNaN(t)) throw new UsageError(`--since: '${text}' is not a time (e.g. 2024-05-01T12:00Z, 2024-05-01, 30m, 2h, 7d)`, 'since');
  return new Date(t);
}
