/**
 * Admin users (gateway.yaml `admin.usersFile`, default admin-users.yaml beside gateway.yaml): a
 * YAML list of {name, role, id, tokenHash, created}. A token is shown once, when it is made
 * (`xmpp-gateway admin-user add|reset`), and stored only as a slow salted hash (scrypt), so the
 * file does not let anyone in. The file is written atomically, mode 0600, under a lock, like
 * partners.yaml.
 *
 * Token format: `xgw1.<id>.<secret>`. The id names the user's hash without revealing anything, so
 * checking a token costs one scrypt, not one per user, and an unknown id costs nothing.
 */
import { randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { mkdir, open, readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import lockfile from 'proper-lockfile';
import { parse, stringify } from 'yaml';
import { ConfigError, UsageError } from '../errors.js';
import { writeFileAtomic } from '../policy/atomic-write.js';
import { roleNamed, type RoleName } from './roles.js';

export interface AdminUser {
  readonly name: string;
  readonly role: RoleName;
  /** Public part of the token; names the hash to check. */
  readonly id: string;
  /** `scrypt$N$r$p$salt$hash` (base64url). */
  readonly tokenHash: string;
  readonly created: string;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;
const TOKEN = /^xgw1\.([0-9a-f]{16})\.([A-Za-z0-9_-]{43})$/;
/** scrypt cost: N=2^15, r=8 (about 50-100 ms and 32 MiB per check); the hash records them. */
const SCRYPT = { N: 32_768, r: 8, p: 1 } as const;

function scrypt(secret: string, salt: Buffer, len: number, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => scryptCb(secret, salt, len, opts, (err, key) => (err ? reject(err) : resolve(key))));
}

export function checkUserName(name: string): string {
  if (!NAME.test(name)) throw new UsageError(`'${name}' is not a valid admin user name (letters, digits and . _ @ -, up to 64)`, 'name');
  return name;
}

/** A fresh token and the hash to store for it. */
export async function newToken(id = randomBytes(8).toString('hex')): Promise<{ token: string; id: string; tokenHash: string }> {
  const secret = randomBytes(32).toString('base64url');
  return { token: `xgw1.${id}.${secret}`, id, tokenHash: await hashSecret(secret) };
}

async function hashSecret(secret: string): Promise<string> {
  const salt = randomBytes(16);
  const hash = await scrypt(secret, salt, 32, { ...SCRYPT, maxmem: 64 * 1024 * 1024 });
  return `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${salt.toString('base64url')}$${hash.toString('base64url')}`;
}

/** The id of a well-formed token (undefined otherwise); says nothing about whether it is valid. */
export function tokenId(token: string): string | undefined {
  return TOKEN.exec(token)?.[1];
}

/** Whether `token` matches `user`'s stored hash (constant time in the secret). */
export async function verifyToken(user: AdminUser, token: string): Promise<boolean> {
  const m = TOKEN.exec(token);
  if (!m || m[1] !== user.id) return false;
  const parts = user.tokenHash.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [N, r, p] = parts.slice(1, 4).map(Number) as [number, number, number];
  const salt = Buffer.from(parts[4]!, 'base64url');
  const want = Buffer.from(parts[5]!, 'base64url');
  const got = await scrypt(m[2]!, salt, want.length, { N, r, p, maxmem: 256 * N * r + 1024 * 1024 });
  return got.length === want.length && timingSafeEqual(got, want);
}

const LOCK_OPTIONS = { realpath: false, stale: 10_000, update: 2_000, retries: { retries: 200, factor: 1.2, minTimeout: 5, maxTimeout: 100 } };

const HEADER = '# xmpp-gateway admin users (xmpp-gateway admin-user add|list|remove|reset).\n# Tokens are stored only as scrypt hashes; keep this file mode 0600.\n';

export class AdminUserFile {
  constructor(readonly file: string) {}

  async read(): Promise<AdminUser[]> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw new ConfigError(`cannot read admin users: ${(err as Error).message}`, this.file);
    }
    return parseUsers(text, this.file);
  }

  /** mtime and size, to notice changes cheaply (the running gateway re-reads on change). */
  async version(): Promise<string> {
    return stat(this.file).then((s) => `${s.mtimeMs}:${s.size}:${s.ino}`, () => 'missing');
  }

  /** Read-modify-write under a lock; the file is replaced atomically with mode 0600. */
  async edit<T>(fn: (users: AdminUser[]) => Promise<{ users: AdminUser[]; result: T }>): Promise<T> {
    // proper-lockfile locks a path that must exist.
    await mkdir(dirname(this.file), { recursive: true });
    await open(this.file, 'wx', 0o600).then((h) => h.close(), (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw new ConfigError(`cannot create admin users file: ${err.message}`, this.file);
    });
    let release: () => Promise<void>;
    try {
      release = await lockfile.lock(this.file, LOCK_OPTIONS);
    } catch (err) {
      throw new ConfigError(`cannot lock admin users file: ${(err as Error).message}`, this.file);
    }
    try {
      const { users, result } = await fn(await this.read());
      const body = users.length === 0 ? '' : stringify(users.map((u) => ({ ...u })), { lineWidth: 0 });
      await writeFileAtomic(this.file, `${HEADER}${body}`, 0o600);
      return result;
    } finally {
      await release();
    }
  }
}

export function parseUsers(text: string, file: string): AdminUser[] {
  let data: unknown;
  try {
    data = parse(text);
  } catch (err) {
    throw new ConfigError(`invalid YAML: ${(err as Error).message.split('\n')[0]}`, file);
  }
  if (data === null || data === undefined) return [];
  if (!Array.isArray(data)) throw new ConfigError('must be a YAML list of admin users', file);
  return data.map((u: unknown, i) => {
    const o = (u ?? {}) as Record<string, unknown>;
    const role = typeof o.role === 'string' ? roleNamed(o.role) : undefined;
    if (typeof o.name !== 'string' || !NAME.test(o.name)) throw new ConfigError(`user #${i + 1}: name missing or invalid`, file, undefined, 'name');
    if (!role) throw new ConfigError(`user ${o.name}: role must be CsAdministrator or CsViewOnlyAdministrator`, file, undefined, 'role');
    if (typeof o.id !== 'string' || typeof o.tokenHash !== 'string') throw new ConfigError(`user ${o.name}: id and tokenHash are required`, file, undefined, 'tokenHash');
    return { name: o.name, role: role.Identity, id: o.id, tokenHash: o.tokenHash, created: String(o.created ?? '') };
  });
}
