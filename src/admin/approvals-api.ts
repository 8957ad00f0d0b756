/**
 * The request body of the admin endpoint `POST /approvals/revoke`:
 *
 *   {"local": "alice@corp.example", "remote": "bob@partner.example"}   one approval
 *   {"local": "alice@corp.example"}                                    every approval of alice
 *
 * Strict on purpose: an unknown field (a misspelt "remote") is refused rather than ignored, since
 * ignoring it would revoke all of the local user's approvals instead of one.
 */
import { UsageError } from '../errors.js';
import { checkBareJid } from '../policy/bare-jid.js';

export interface RevokeRequest {
  /** Local user's bare JID, comparison form. */
  local: string;
  /** Remote user's bare JID, comparison form; undefined revokes all of `local`'s approvals. */
  remote?: string;
}

const FIELDS = new Set(['local', 'remote']);

/** Parses and checks the body; throws a UsageError whose message names the field at fault. */
export function parseRevokeRequest(text: string): RevokeRequest {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`body: not JSON (${(err as Error).message.split('\n')[0]}); send {"local":"user@domain","remote":"user@domain"}`, 'body');
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new UsageError('body: must be a JSON object {"local":"user@domain","remote":"user@domain"} (remote optional)', 'body');
  }
  for (const key of Object.keys(body)) {
    if (!FIELDS.has(key)) throw new UsageError(`${JSON.stringify(key)}: unknown field (the fields are local and remote)`, key);
  }
  const { local, remote } = body as { local?: unknown; remote?: unknown };
  return remote === undefined
    ? { local: checkBareJid(local, 'local') }
    : { local: checkBareJid(local, 'local'), remote: checkBareJid(remote, 'remote') };
}
