/**
 * The JSON API the panel uses and scripts may call (docs/design.md section 7):
 *
 *   GET    /api/partners[?filter=*.org]     records as `--json` prints them
 *   POST   /api/partners[?force=true]       a new partner (the record; omitted properties default)
 *   GET    /api/partners/{identity}         one record, with its ETag
 *   PUT    /api/partners/{identity}[?force=true]   the whole record; If-Match: the ETag it was read with
 *   DELETE /api/partners/{identity}         If-Match as for PUT
 *   POST   /api/whatif                      {"action":"new"|"set"|"remove","identity"?,"record"?}:
 *                                           warnings, field errors and the live streams the change
 *                                           would close (rule, text), nothing saved
 *   GET    /api/streams[?partner=ID]        live streams; with partner, its refusals and traffic too
 *   GET    /api/audit[?since=TIME&limit=N]  the audit trail, newest last
 *   GET    /api/session                     who is logged in, the CSRF token for writes
 *   GET    /api/roles                       Get-CsAdminRole
 *
 * Writes go through the same store and partner operations as the CLI (partners.yaml: lock,
 * atomic replace; in a pool the list in etcd: compare-and-swap, docs/design.md section 11;
 * comments and order kept, the negotiation matrix) and are audited where the store commits them. Errors are JSON {"error": "...", "field": "..."}: 400 bad input (the file is
 * unchanged), 404 no such partner, 409 warnings to confirm (`?force=true` confirms, as -Force),
 * 412 the record changed since it was read (a stale form is refused, never overwritten), 503 etcd
 * cannot be reached (a pool; nothing was written).
 */
import { createHash } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { ConfigError, GatewayError, UsageError } from '../../errors.js';
import type { PartnerDocument } from '../../policy/partner-file.js';
import { PartnerList } from '../../policy/partner-list.js';
import { createPartner, removePartners, selectPartners, updatePartners, type EditResult } from '../../policy/partner-ops.js';
import { CentralStoreUnavailable } from '../../cluster/central-store.js';
import type { CommitHook, PartnerListStore } from '../../policy/partner-store.js';
import { toJsonRecord } from '../../policy/record-json.js';
import { PROPERTY_NAMES, RECORD_DEFAULTS, type PartnerChanges, type PartnerRecord } from '../../policy/types.js';
import { FieldError, domainValue, recordFromObject, sameValue } from '../../policy/validate.js';
import type { ConnectionLimits } from '../../stream/connection-limits.js';
import type { S2SStream } from '../../stream/s2s-stream.js';
import type { StreamInfo } from '../../stream/stream-info.js';
import { planRecheck } from '../../stream/stream-supervisor.js';
import { actorOf, sendJson, type RequestContext, type Route } from '../admin-server.js';
import { cmdletLine, parseSince, type Actor, type AuditLog } from '../audit.js';
import { adminRoleRecords } from '../roles.js';
import type { PanelFeed } from './feed.js';

export interface PartnersApiDeps {
  /** A store on the partner list: partners.yaml, or the list in etcd (src/cluster/central-store.ts). */
  readonly openStore: () => PartnerListStore;
  /** The live stream objects (the what-if runs the reload rules over them). */
  readonly streams: () => Iterable<S2SStream>;
  readonly limits: Pick<ConnectionLimits, 'partnerStreams' | 'partnerLimit'>;
  readonly audit: AuditLog;
  readonly feed: PanelFeed;
}

/** The record changed since the client read it. */
class StaleError extends GatewayError {
  constructor(readonly current: PartnerRecord | undefined) {
    super('GW_ERR_STALE', current
      ? `${current.Identity} was changed since this form was opened (by someone else, or the CLI); reload it and make the change again`
      : 'this partner was removed since this form was opened');
  }
}

/** Warnings the client has not confirmed yet (nothing was written). */
class ConfirmError extends GatewayError {
  constructor(readonly warnings: string[]) {
    super('GW_ERR_CONFIRM', `confirm the warnings to save anyway (?force=true): ${warnings.join('; ')}`);
  }
}

/**
 * The store the CLI uses, with two checks inside its edit (under the file's lock, or inside each
 * compare-and-swap attempt): the record is still as read, and warnings were confirmed.
 */
class PanelStore implements PartnerListStore {
  before: ((doc: PartnerDocument) => void) | undefined;
  after: ((result: unknown) => void) | undefined;
  captured: PartnerDocument | undefined;

  constructor(private readonly inner: PartnerListStore) {}

  get location(): string {
    return this.inner.location;
  }

  get localDomains(): ReadonlySet<string> {
    return this.inner.localDomains;
  }

  get onCommit(): CommitHook | undefined {
    return this.inner.onCommit;
  }

  set onCommit(hook: CommitHook | undefined) {
    this.inner.onCommit = hook;
  }

  parse(text: string): PartnerDocument {
    return this.inner.parse(text);
  }

  readDocument(): Promise<PartnerDocument> {
    return this.inner.readDocument();
  }

  read(): Promise<PartnerList> {
    return this.inner.read();
  }

  edit<T>(fn: (doc: PartnerDocument) => T, opts: { dryRun?: boolean } = {}): Promise<T> {
    return this.inner.edit((doc) => {
      this.before?.(doc);
      const result = fn(doc);
      this.after?.(result);
      this.captured = doc;
      return result;
    }, opts);
  }
}

/** ETag of a record: its --json form, hashed. */
export function etagOf(record: PartnerRecord): string {
  return `"${createHash('sha256').update(JSON.stringify(toJsonRecord(record))).digest('base64url').slice(0, 22)}"`;
}

/** The changes that make `record` out of a default record (what New is given). */
function changesFor(record: PartnerRecord): PartnerChanges {
  const changes: Record<string, unknown> = {};
  for (const name of PROPERTY_NAMES) {
    if (name === 'Identity') continue;
    const def = (RECORD_DEFAULTS as Record<string, unknown>)[name];
    if (sameValue(record[name], def)) continue;
    changes[name] = name === 'AdditionalDomains' ? { replace: [...record.AdditionalDomains] } : record[name];
  }
  return changes as PartnerChanges;
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new UsageError(`body: not JSON (${(err as Error).message.split('\n')[0]})`, 'body');
  }
}

function parseRecord(value: unknown, identity?: string): PartnerRecord {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new UsageError('body: must be one partner record (a JSON object)', 'body');
  const obj = { ...(value as Record<string, unknown>) };
  if (identity !== undefined) {
    if (obj.Identity === undefined) obj.Identity = identity;
    else if (typeof obj.Identity !== 'string' || domainValue('Identity', obj.Identity) !== identity) {
      throw new UsageError(`Identity cannot be changed (the URL names ${identity}); remove the partner and create a new one`, 'Identity');
    }
  }
  return recordFromObject(obj);
}

export function partnersApi(deps: PartnersApiDeps): (path: string) => Route[] | undefined {
  const storeFor = (actor: Actor): PanelStore => {
    const store = new PanelStore(deps.openStore());
    store.onCommit = (before, after) => deps.audit.recordChanges(actor, before, after);
    return store;
  };
  const readList = async () => deps.openStore().read();

  /** Runs a write; maps its errors to JSON answers and audits refused attempts. */
  const write = async (res: ServerResponse, ctx: RequestContext, action: string, attempt: () => Promise<string | null>, run: () => Promise<void>) => {
    try {
      await run();
    } catch (err) {
      const answer = errorAnswer(err);
      if (answer.status === 500) throw err;
      const line = await attempt().catch(() => null);
      await deps.audit.refused(actorOf(ctx.principal), action, line, answer.body.error as string).catch(() => undefined);
      sendJson(res, answer.status, answer.body);
    }
  };
  const force = (ctx: RequestContext) => /^(1|true|yes)$/i.test(ctx.url.searchParams.get('force') ?? '');
  const ifMatch = (ctx: RequestContext) => {
    const h = ctx.req.headers['if-match'];
    return typeof h === 'string' && h !== '*' ? h : undefined;
  };
  const guard = (store: PanelStore, identity: string, etag: string | undefined, confirmed: boolean) => {
    store.before = (doc) => {
      const current = doc.records[doc.indexOf(identity)];
      if (etag !== undefined && (!current || etagOf(current) !== etag)) throw new StaleError(current);
    };
    store.after = (result) => {
      const warnings = (result as EditResult).warnings;
      if (!confirmed && warnings.length > 0) throw new ConfirmError(warnings);
    };
  };

  const collection: Route[] = [
    {
      method: 'GET',
      permission: 'read',
      handle: async (res, _body, ctx) => {
        const filter = ctx.url.searchParams.get('filter') ?? undefined;
        let list: PartnerList;
        try {
          list = await readList();
        } catch (err) {
          const answer = errorAnswer(err); // etcd away (a pool): 503, one line
          if (answer.status === 500) throw err;
          sendJson(res, answer.status, answer.body);
          return;
        }
        sendJson(res, 200, selectPartners(list, filter ? { filter } : {}).map(toJsonRecord));
      },
    },
    {
      method: 'POST',
      permission: 'write',
      handle: (res, body, ctx) => {
        let record: PartnerRecord | undefined;
        return write(res, ctx, 'New-CsXmppAllowedPartner', async () => (record ? cmdletLine(null, record) : body.toString('utf8').slice(0, 500)), async () => {
          record = parseRecord(parseJson(body));
          const store = storeFor(actorOf(ctx.principal));
          guard(store, record.Identity, undefined, force(ctx));
          const result = await createPartner(store, record.Identity, changesFor(record), {});
          const saved = result.records[0]!;
          res.setHeader('ETag', etagOf(saved));
          sendJson(res, 201, { record: toJsonRecord(saved), warnings: result.warnings });
        });
      },
    },
  ];

  const item = (identity: string): Route[] => [
    {
      method: 'GET',
      permission: 'read',
      handle: async (res) => {
        try {
          const record = selectPartners(await readList(), { identity })[0]!;
          res.setHeader('ETag', etagOf(record));
          sendJson(res, 200, toJsonRecord(record));
        } catch (err) {
          const answer = errorAnswer(err); // reads are not audited
          if (answer.status === 500) throw err;
          sendJson(res, answer.status, answer.body);
        }
      },
    },
    {
      method: 'PUT',
      permission: 'write',
      handle: (res, body, ctx) => {
        let record: PartnerRecord | undefined;
        return write(res, ctx, 'Set-CsXmppAllowedPartner', async () => {
          if (!record) return body.toString('utf8').slice(0, 500);
          const current = (await readList()).byIdentity(identity);
          return cmdletLine(current ?? null, record);
        }, async () => {
          record = parseRecord(parseJson(body), identity);
          const store = storeFor(actorOf(ctx.principal));
          guard(store, identity, ifMatch(ctx), force(ctx));
          const result = await updatePartners(store, [{ identity, instance: record }], {}, {});
          const saved = result.records[0]!;
          res.setHeader('ETag', etagOf(saved));
          sendJson(res, 200, { record: toJsonRecord(saved), warnings: result.warnings });
        });
      },
    },
    {
      method: 'DELETE',
      permission: 'write',
      handle: (res, _body, ctx) =>
        write(res, ctx, 'Remove-CsXmppAllowedPartner', async () => `Remove-CsXmppAllowedPartner -Identity "${identity}"`, async () => {
          const store = storeFor(actorOf(ctx.principal));
          guard(store, identity, ifMatch(ctx), true);
          const result = await removePartners(store, [identity], {});
          sendJson(res, 200, { removed: toJsonRecord(result.records[0]!) });
        }),
    },
  ];

  const whatIf: Route = {
    method: 'POST',
    permission: 'read',
    handle: async (res, body) => {
      try {
        const req = parseJson(body) as { action?: unknown; identity?: unknown; record?: unknown };
        if (req === null || typeof req !== 'object') throw new UsageError('body: must be {"action": "new"|"set"|"remove", ...}', 'body');
        const store = new PanelStore(deps.openStore());
        let result: EditResult;
        if (req.action === 'new') {
          const record = parseRecord(req.record);
          result = await createPartner(store, record.Identity, changesFor(record), { whatIf: true });
        } else if (req.action === 'set') {
          const identity = domainValue('Identity', req.identity);
          result = await updatePartners(store, [{ identity, instance: parseRecord(req.record, identity) }], {}, { whatIf: true });
        } else if (req.action === 'remove') {
          result = await removePartners(store, [domainValue('Identity', req.identity)], { whatIf: true });
        } else {
          throw new UsageError('action: must be "new", "set" or "remove"', 'action');
        }
        const list = new PartnerList(store.captured!.records);
        const plan = planRecheck(deps.streams(), list, deps.limits);
        sendJson(res, 200, {
          ok: true,
          warnings: result.warnings,
          close: plan.close.map((c) => ({ stream: c.stream.info(), partner: c.partner, rule: c.rule, text: c.text })),
        });
      } catch (err) {
        const answer = errorAnswer(err);
        if (answer.status === 500) throw err;
        sendJson(res, 200, { ok: false, ...answer.body, warnings: [], close: [] });
      }
    },
  };

  const streams: Route = {
    method: 'GET',
    permission: 'read',
    handle: (res, _body, ctx) => {
      const partner = ctx.url.searchParams.get('partner');
      const all: StreamInfo[] = [...deps.streams()].filter((s) => !s.closed).map((s) => s.info());
      if (partner === null) {
        sendJson(res, 200, { streams: all, refusals: deps.feed.recentRefusals() });
        return;
      }
      sendJson(res, 200, {
        streams: all.filter((s) => s.partner === partner),
        refusals: deps.feed.recentRefusals(partner),
        traffic: deps.feed.trafficOf(partner),
      });
    },
  };

  const audit: Route = {
    method: 'GET',
    permission: 'read',
    handle: async (res, _body, ctx) => {
      const sinceText = ctx.url.searchParams.get('since');
      const limit = Number(ctx.url.searchParams.get('limit') ?? 500);
      try {
        const since = sinceText ? parseSince(sinceText) : undefined;
        sendJson(res, 200, { entries: await deps.audit.read({ ...(since ? { since } : {}), limit: Number.isInteger(limit) && limit > 0 ? limit : 500 }) });
      } catch (err) {
        if (!(err instanceof UsageError)) throw err;
        sendJson(res, 400, { error: err.message, field: 'since' });
      }
    },
  };

  const session: Route = {
    method: 'GET',
    permission: 'read',
    handle: (res, _body, ctx) => sendJson(res, 200, { user: ctx.principal?.name, role: ctx.principal?.role, via: ctx.principal?.via, csrf: ctx.principal?.csrf ?? null }),
  };

  const roles: Route = { method: 'GET', permission: 'read', handle: (res) => sendJson(res, 200, adminRoleRecords()) };

  return (path) => {
    if (path === '/api/partners') return collection;
    if (path === '/api/whatif') return [whatIf];
    if (path === '/api/streams') return [streams];
    if (path === '/api/audit') return [audit];
    if (path === '/api/session') return [session];
    if (path === '/api/roles') return [roles];
    const m = /^\/api\/partners\/([^/]+)$/.exec(path);
    if (m) {
      let raw: string;
      try {
        raw = decodeURIComponent(m[1]!);
      } catch {
        return undefined; // malformed %-escape: 404
      }
      let identity: string;
      try {
        identity = domainValue('Identity', raw);
      } catch {
        identity = raw.toLowerCase(); // not a domain: the operations answer "no partner with Identity ..."
      }
      return item(identity);
    }
    return undefined;
  };
}

function errorAnswer(err: unknown): { status: number; body: Record<string, unknown> } {
  if (err instanceof StaleError) return { status: 412, body: { error: err.message, field: null, current: err.current ? toJsonRecord(err.current) : null } };
  if (err instanceof ConfirmError) return { status: 409, body: { error: err.message, field: null, warnings: err.warnings } };
  if (err instanceof FieldError) return { status: 400, body: { error: `${err.field}: ${err.message}`, field: err.field } };
  if (err instanceof UsageError) {
    const missing = /^no partner with Identity/.test(err.message);
    return { status: missing ? 404 : 400, body: { error: err.message, field: err.field ?? null } };
  }
  if (err instanceof CentralStoreUnavailable) return { status: 503, body: { error: err.message, field: null } };
  if (err instanceof ConfigError) return { status: 409, body: { error: `the partner file cannot be edited: ${err.message}`, field: null } };
  return { status: 500, body: { error: err instanceof Error ? err.message : String(err) } };
}
