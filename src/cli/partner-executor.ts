/**
 * Runs a PartnerInvocation: selection, confirmation, WhatIf, the edit itself, warnings.
 * Returns the records the command emits to the pipeline (Get, -InMemory, -WhatIf) so the
 * cmdlet-line runner can feed them to the next stage; the caller prints what is left at the end.
 */
import { GatewayError, UsageError } from '../errors.js';
import { readLocalStore } from '../policy/local-store.js';
import { PartnerList } from '../policy/partner-list.js';
import { createPartner, removePartners, selectPartners, updatePartners, type EditResult } from '../policy/partner-ops.js';
import type { PartnerListStore } from '../policy/partner-store.js';
import type { PartnerRecord } from '../policy/types.js';
import { CMDLET_NAMES, type PartnerInvocation } from './partner-invocation.js';

export interface ExecutionContext {
  readonly store: PartnerListStore;
  readonly localStorePath: string;
  /** Records piped in on stdin, read only when a Set/Remove names no partner otherwise. */
  readonly readPipedRecords: () => Promise<PartnerRecord[] | null>;
  /** Asks a yes/no question on the terminal; undefined when there is no terminal. */
  readonly ask: ((question: string) => Promise<boolean>) | undefined;
  readonly warn: (message: string) => void;
  /** Where "What if:" lines go (stdout for people, stderr when stdout carries JSON). */
  readonly whatIfLine: (message: string) => void;
  /** Where -LocalStore says which revision it shows (as whatIfLine; absent: not said). */
  readonly infoLine?: (message: string) => void;
}

export async function executePartner(
  inv: PartnerInvocation,
  ctx: ExecutionContext,
  pipelineInput?: readonly PartnerRecord[],
): Promise<PartnerRecord[]> {
  const cmdlet = CMDLET_NAMES[inv.verb];
  switch (inv.verb) {
    case 'get': {
      if (inv.identity !== undefined && inv.filter !== undefined) throw new UsageError('use -Identity or -Filter, not both', 'Filter');
      const list = inv.localStore ? await localStoreList(ctx) : await ctx.store.read();
      return selectPartners(list, inv);
    }
    case 'new': {
      if (inv.identity === undefined) throw new UsageError(`${cmdlet} needs -Identity (or -Domain)`, 'Identity');
      const identity = inv.identity;
      if (!inv.inMemory) await confirm(inv, ctx, cmdlet, [identity]);
      const result = await createPartner(ctx.store, identity, inv.changes, { whatIf: inv.whatIf, inMemory: inv.inMemory });
      return finish(inv, ctx, cmdlet, result, inv.inMemory || inv.whatIf);
    }
    case 'set': {
      const targets = await setTargets(inv, ctx, pipelineInput);
      await confirm(inv, ctx, cmdlet, targets.map((t) => t.identity));
      const result = await updatePartners(ctx.store, targets, inv.changes, { whatIf: inv.whatIf });
      return finish(inv, ctx, cmdlet, result, inv.whatIf);
    }
    case 'remove': {
      const input = inv.identity !== undefined ? null : (inv.instances ?? pipelineInput ?? (await ctx.readPipedRecords()));
      if (input && input.length === 0) return []; // an empty pipeline removes nothing
      const identities = inv.identity !== undefined ? [inv.identity] : (input ?? []).map((r) => r.Identity);
      if (identities.length === 0) throw new UsageError(`${cmdlet} needs -Identity or piped partner records`, 'Identity');
      await confirm(inv, ctx, cmdlet, identities);
      const result = await removePartners(ctx.store, identities, { whatIf: inv.whatIf });
      return finish(inv, ctx, cmdlet, result, inv.whatIf);
    }
  }
}

async function setTargets(inv: PartnerInvocation, ctx: ExecutionContext, pipelineInput?: readonly PartnerRecord[]) {
  if (inv.identity !== undefined && inv.instances !== undefined) {
    throw new UsageError('use -Identity or -Instance, not both', 'Instance');
  }
  if (inv.identity !== undefined) return [{ identity: inv.identity }];
  const records = inv.instances ?? (pipelineInput ? [...pipelineInput] : await ctx.readPipedRecords());
  if (records === null) {
    throw new UsageError(`${CMDLET_NAMES.set} needs -Identity, -Instance or piped partner records`, 'Identity');
  }
  return records.map((r) => ({ identity: r.Identity, instance: r })); // an empty pipeline sets nothing
}

/** -Confirm asks before a change; with no terminal to ask on it refuses rather than guess. */
async function confirm(inv: PartnerInvocation, ctx: ExecutionContext, cmdlet: string, targets: readonly string[]): Promise<void> {
  if (!inv.confirm || inv.whatIf || targets.length === 0) return;
  if (!ctx.ask) {
    throw new UsageError('-Confirm needs a terminal to ask on, and none is attached (use -Confirm:$false in scripts)', 'Confirm');
  }
  for (const target of targets) {
    const yes = await ctx.ask(`Confirm\nAre you sure you want to perform this action?\nPerforming operation "${cmdlet}" on Target "${target}".\n[Y] Yes  [N] No  (default is "Y"): `);
    if (!yes) throw new GatewayError('GW_ERR_DECLINED', `${cmdlet} on "${target}" was not confirmed; nothing was changed`);
  }
}

function finish(inv: PartnerInvocation, ctx: ExecutionContext, cmdlet: string, result: EditResult, emit: boolean): PartnerRecord[] {
  if (!inv.force) for (const w of result.warnings) ctx.warn(w);
  if (inv.whatIf) {
    for (const r of result.records) ctx.whatIfLine(`What if: Performing operation "${cmdlet}" on Target "${r.Identity}".`);
  }
  return emit ? result.records : [];
}

/** -LocalStore: the list this node's gateway last applied (src/policy/local-store.ts), and which revision it is. */
async function localStoreList(ctx: ExecutionContext): Promise<PartnerList> {
  const stored = await readLocalStore(ctx.localStorePath);
  if (!stored) throw new UsageError(`no local store at ${ctx.localStorePath}: the gateway on this node has not applied a partner list yet`, 'LocalStore');
  const revision = stored.revision === null ? '' : ` at revision ${stored.revision}`;
  ctx.infoLine?.(`Local store ${ctx.localStorePath}: ${stored.source}${revision}, applied ${stored.appliedAt}`);
  return new PartnerList(stored.records);
}
