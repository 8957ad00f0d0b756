/**
 * The local credential: a random admin token the gateway writes at start (after its admin
 * listener is bound, so a second instance that fails to start never overwrites it), mode 0600,
 * at gateway.yaml `admin.localCredential` (default state/admin.credential beside gateway.yaml).
 * The CLI on the same host (`status`, `reload`, `stop`, `approvals`) reads it, so it keeps working
 * with no flags; whoever can read the file can administer the gateway, like prosodyctl's and
 * ejabberdctl's access to their daemons. The gateway removes it when it stops.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { writeFileAtomic } from '../policy/atomic-write.js';

/** Writes a fresh local credential; resolves with the token. */
export async function writeLocalCredential(file: string): Promise<string> {
  const token = `xgw1-local.${randomBytes(32).toString('base64url')}`;
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  await writeFileAtomic(file, `${token}\n`, 0o600);
  return token;
}

/** The token in the file, or undefined when there is none (not running here, or no access). */
export function readLocalCredential(file: string): string | undefined {
  try {
    const token = readFileSync(file, 'utf8').trim();
    return token === '' ? undefined : token;
  } catch {
    return undefined;
  }
}

/** Removes the file if it still holds `token` (a newer gateway may have replaced it). */
export async function removeLocalCredential(file: string, token: string): Promise<void> {
  const text = await readFile(file, 'utf8').catch(() => '');
  if (text.trim() === token) await rm(file, { force: true });
}
