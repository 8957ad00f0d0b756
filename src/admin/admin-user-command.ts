/**
 * `xmpp-gateway admin-user add NAME --role ROLE | list | remove NAME | reset NAME`: the admin
 * users of the admin listener and the panel, in gateway.yaml `admin.usersFile`. `add` and `reset`
 * print the new token once, as the last line of stdout; only its hash is stored. The running
 * gateway notices the change at the next request. Changes are recorded in the audit trail.
 */
import type { GatewayConfig } from '../config/schema.js';
import { GatewayError, UsageError } from '../errors.js';
import { formatTable } from '../cli/output.js';
import { AdminUserFile, checkUserName, newToken, type AdminUser } from './admin-users.js';
import { AuditLog, osActor } from './audit.js';
import { ROLE_NAMES, roleNamed, type RoleName } from './roles.js';

export async function adminUser(config: GatewayConfig, json: boolean, args: readonly string[]): Promise<number> {
  if (config.admin === null) throw new GatewayError('GW_ERR_USAGE', `${config.file} configures no admin listener (admin: {listen: ...}), so there are no admin users`);
  const file = new AdminUserFile(config.admin.usersFile);
  const audit = new AuditLog(config.auditLog);
  const actor = osActor();
  const [verb, ...rest] = args;
  const out = (t: string) => process.stdout.write(t);
  switch (verb) {
    case 'list': {
      if (rest.length > 0) throw new UsageError(`admin-user list takes no arguments (got '${rest[0]}')`);
      const users = await file.read();
      if (json) out(`${JSON.stringify(users.map(({ name, role, created }) => ({ name, role, created })), null, 2)}\n`);
      else if (users.length === 0) out(`no admin users in ${file.file} (add one: xmpp-gateway admin-user add NAME --role CsAdministrator)\n`);
      else out(formatTable(['NAME', 'ROLE', 'CREATED'], users.map((u) => [u.name, u.role, u.created])));
      return 0;
    }
    case 'add':
    case 'reset': {
      const { name, role } = parseArgs(verb, rest);
      const made = await file.edit(async (users) => {
        const existing = users.find((u) => u.name === name);
        if (verb === 'add' && existing) throw new UsageError(`admin user '${name}' already exists (admin-user reset ${name} gives a new token)`, 'name');
        if (verb === 'reset' && !existing) throw new UsageError(`no admin user '${name}'`, 'name');
        const token = await newToken();
        const user: AdminUser = {
          name, role: role ?? existing!.role, id: token.id, tokenHash: token.tokenHash, created: existing?.created ?? new Date().toISOString(),
        };
        return { users: existing ? users.map((u) => (u === existing ? user : u)) : [...users, user], result: { token: token.token, user } };
      });
      await audit.append({ who: actor.who, via: actor.via, action: `admin-user ${verb}`, cmdlet: null, result: 'ok', detail: { name, role: made.user.role } });
      process.stderr.write(`${verb === 'add' ? 'added' : 'new token for'} admin user ${name} (${made.user.role}); the token is shown once:\n`);
      out(`${made.token}\n`);
      return 0;
    }
    case 'remove': {
      if (rest.length !== 1) throw new UsageError('usage: xmpp-gateway admin-user remove NAME');
      const name = checkUserName(rest[0]!);
      await file.edit(async (users) => {
        if (!users.some((u) => u.name === name)) throw new UsageError(`no admin user '${name}'`, 'name');
        return { users: users.filter((u) => u.name !== name), result: undefined };
      });
      await audit.append({ who: actor.who, via: actor.via, action: 'admin-user remove', cmdlet: null, result: 'ok', detail: { name } });
      out(`removed admin user ${name}\n`);
      return 0;
    }
    default:
      throw new UsageError(`admin-user takes add, list, remove or reset (got '${verb ?? ''}')`);
  }
}

function parseArgs(verb: string, args: readonly string[]): { name: string; role: RoleName | undefined } {
  let name: string | undefined;
  let role: RoleName | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--role' || a.startsWith('--role=')) {
      const value = a === '--role' ? args[++i] : a.slice('--role='.length);
      const found = value === undefined ? undefined : roleNamed(value);
      if (!found) throw new UsageError(`--role must be one of ${ROLE_NAMES.join(', ')}${value ? ` (got '${value}')` : ''}`, 'role');
      role = found.Identity;
    } else if (a.startsWith('-')) throw new UsageError(`admin-user ${verb}: unknown option ${a}`);
    else if (name === undefined) name = checkUserName(a);
    else throw new UsageError(`admin-user ${verb} takes one NAME (got '${a}' too)`);
  }
  if (name === undefined) throw new UsageError(`usage: xmpp-gateway admin-user ${verb} NAME${verb === 'add' ? ' --role ROLE' : ' [--role ROLE]'}`, 'name');
  if (verb === 'add' && role === undefined) throw new UsageError(`admin-user add needs --role (${ROLE_NAMES.join(' or ')})`, 'role');
  return { name, role };
}
