/**
 * Who is asking the admin listener, and may they. Every request (but the panel's static files
 * and its login) carries either
 *  - `Authorization: Bearer <token>`: an admin user's token (admin-users.ts) or the gateway's
 *    local credential (written at start for the CLI on this host, local-credential.ts); or
 *  - the panel's session cookie (`xgw_session`, HttpOnly, SameSite=Strict, Secure over HTTPS),
 *    made by `POST /login` with a token; every write with it must also carry the session's
 *    CSRF token in `X-CSRF-Token`.
 * Repeated bad credentials from one address lock that address out for a while (429 with
 * Retry-After), doubling per failure: guessing is slowed down without slowing anyone else.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { AdminUserFile, tokenId, verifyToken, type AdminUser } from './admin-users.js';
import type { RoleName } from './roles.js';

export interface Principal {
  /** The admin user's name; `local` for the gateway's local credential. */
  readonly name: string;
  readonly role: RoleName;
  /** How this request authenticated: 'api' (bearer token), 'panel' (session cookie), 'local' (local credential). */
  readonly via: 'api' | 'panel' | 'local';
  /** Set for session requests: the CSRF token writes must carry. */
  readonly csrf?: string;
}

export type AuthOutcome =
  | { readonly ok: true; readonly principal: Principal }
  | { readonly ok: false; readonly status: 401 | 429; readonly error: string; readonly retryAfter?: number };

export const SESSION_COOKIE = 'xgw_session';
const SESSION_TTL_MS = 8 * 3600_000;
const MAX_SESSIONS = 1000;
/** Failures from one address tolerated before it is locked out; then 1 s, 2 s, 4 s ... up to 5 min. */
const FREE_FAILURES = 5;
const MAX_LOCK_MS = 300_000;
/** Failures are forgotten after this long without another. */
const FAILURE_MEMORY_MS = 15 * 60_000;
/** A verified token is trusted this long before scrypt runs again for it. */
const VERIFIED_TTL_MS = 60_000;

interface Session {
  readonly principal: Principal;
  /** The user's id and hash when the session was made: a removed or reset user's sessions end. */
  readonly userId: string | null;
  readonly tokenHash: string | null;
  expires: number;
}

export interface AdminAuthOptions {
  /** The admin users (re-read when the file changes). */
  readonly users: Pick<AdminUserFile, 'read' | 'version'>;
  /** The gateway's local credential, if it wrote one. */
  localToken?: string | undefined;
  /** Mark the session cookie Secure (the listener speaks HTTPS). */
  readonly secureCookies?: boolean;
  readonly now?: () => number;
}

export class AdminAuth {
  private readonly sessions = new Map<string, Session>();
  private readonly failures = new Map<string, { count: number; last: number; lockedUntil: number }>();
  private readonly verified = new Map<string, { id: string; tokenHash: string; until: number }>();
  private usersVersion = '';
  private users: AdminUser[] = [];
  private readonly now: () => number;

  constructor(private readonly opts: AdminAuthOptions) {
    this.now = opts.now ?? Date.now;
  }

  set localToken(token: string | undefined) {
    this.opts.localToken = token;
  }

  get secureCookies(): boolean {
    return this.opts.secureCookies ?? false;
  }

  /** Authenticates a request from its Authorization header or session cookie. */
  async authenticate(req: IncomingMessage): Promise<AuthOutcome> {
    const address = req.socket.remoteAddress ?? '?';
    const header = req.headers.authorization;
    const sid = readCookie(req.headers.cookie, SESSION_COOKIE);
    if (header === undefined && sid === undefined) {
      return { ok: false, status: 401, error: 'authentication required: send Authorization: Bearer <token> (xmpp-gateway admin-user add) or log in to the panel' };
    }
    const locked = this.lockedFor(address);
    if (locked > 0) return this.tooMany(locked);
    if (header !== undefined) {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
      const principal = m ? await this.checkToken(m[1]!, 'api') : undefined;
      return principal ? this.success(address, principal) : this.failure(address, m ? 'invalid token' : 'the Authorization header must be "Bearer <token>"');
    }
    const session = await this.session(sid!);
    return session ? this.success(address, session.principal) : this.failure(address, 'the session has expired or was ended; log in again');
  }

  /** `POST /login`: a new session for a valid token; the cookie value and CSRF token. */
  async login(req: IncomingMessage, token: string): Promise<AuthOutcome & { sid?: string }> {
    const address = req.socket.remoteAddress ?? '?';
    const locked = this.lockedFor(address);
    if (locked > 0) return this.tooMany(locked);
    const checked = await this.checkToken(token, 'panel');
    if (!checked) return this.failure(address, 'invalid token');
    const sid = randomBytes(32).toString('base64url');
    const principal: Principal = { ...checked, via: 'panel', csrf: randomBytes(24).toString('base64url') };
    const user = this.users.find((u) => u.name === checked.name && checked.via !== 'local');
    if (this.sessions.size >= MAX_SESSIONS) this.sessions.delete(this.sessions.keys().next().value!);
    this.sessions.set(sid, { principal, userId: user?.id ?? null, tokenHash: user?.tokenHash ?? null, expires: this.now() + SESSION_TTL_MS });
    this.success(address, principal);
    return { ok: true, principal, sid };
  }

  logout(req: IncomingMessage): void {
    const sid = readCookie(req.headers.cookie, SESSION_COOKIE);
    if (sid !== undefined) this.sessions.delete(sid);
  }

  /** Whether a session request's X-CSRF-Token matches its session (bearer requests need none). */
  csrfOk(req: IncomingMessage, principal: Principal): boolean {
    if (principal.csrf === undefined) return true;
    const sent = req.headers['x-csrf-token'];
    return typeof sent === 'string' && safeEqual(sent, principal.csrf);
  }

  private async session(sid: string): Promise<Session | undefined> {
    const s = this.sessions.get(sid);
    if (!s) return undefined;
    if (s.expires < this.now()) {
      this.sessions.delete(sid);
      return undefined;
    }
    if (s.userId !== null) {
      await this.refreshUsers();
      if (!this.users.some((u) => u.id === s.userId && u.tokenHash === s.tokenHash && u.role === s.principal.role)) {
        this.sessions.delete(sid);
        return undefined;
      }
    }
    return s;
  }

  private async checkToken(token: string, via: 'api' | 'panel'): Promise<Principal | undefined> {
    const local = this.opts.localToken;
    if (local !== undefined && safeEqual(token, local)) return { name: 'local', role: 'CsAdministrator', via: 'local' };
    const id = tokenId(token);
    if (id === undefined) return undefined;
    await this.refreshUsers();
    const user = this.users.find((u) => u.id === id);
    if (!user) return undefined;
    const key = createHash('sha256').update(token).digest('base64url');
    const cached = this.verified.get(key);
    const t = this.now();
    if (!(cached && cached.id === user.id && cached.tokenHash === user.tokenHash && cached.until > t)) {
      if (!(await verifyToken(user, token))) return undefined;
      if (this.verified.size > 10_000) this.verified.clear();
      this.verified.set(key, { id: user.id, tokenHash: user.tokenHash, until: t + VERIFIED_TTL_MS });
    }
    return { name: user.name, role: user.role, via };
  }

  private async refreshUsers(): Promise<void> {
    const version = await this.opts.users.version();
    if (version === this.usersVersion) return;
    this.users = await this.opts.users.read();
    this.usersVersion = version;
  }

  private lockedFor(address: string): number {
    const f = this.failures.get(address);
    if (!f) return 0;
    const t = this.now();
    if (t - f.last > FAILURE_MEMORY_MS) {
      this.failures.delete(address);
      return 0;
    }
    return Math.max(0, f.lockedUntil - t);
  }

  private failure(address: string, error: string): AuthOutcome {
    const t = this.now();
    const f = this.failures.get(address) ?? { count: 0, last: t, lockedUntil: 0 };
    f.count += 1;
    f.last = t;
    if (f.count > FREE_FAILURES) f.lockedUntil = t + Math.min(MAX_LOCK_MS, 1000 * 2 ** (f.count - FREE_FAILURES - 1));
    this.failures.set(address, f);
    if (this.failures.size > 10_000) this.failures.delete(this.failures.keys().next().value!);
    return { ok: false, status: 401, error };
  }

  private success(address: string, principal: Principal): AuthOutcome {
    this.failures.delete(address);
    return { ok: true, principal };
  }

  private tooMany(ms: number): AuthOutcome {
    const retryAfter = Math.ceil(ms / 1000);
    return { ok: false, status: 429, error: `too many failed logins from this address; try again in ${retryAfter} s`, retryAfter };
  }
}

function safeEqual(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}

export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

export function sessionCookie(sid: string, secure: boolean, maxAgeSeconds = SESSION_TTL_MS / 1000): string {
  return `${SESSION_COOKIE}=${sid}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSeconds}${secure ? '; Secure' : ''}`;
}
