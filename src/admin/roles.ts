/**
 * Role-based access control for the admin listener and the panel, with Lync's built-in role
 * names (`Get-CsAdminRole`): CsAdministrator may do everything, CsViewOnlyAdministrator may
 * only read. A role is a list of cmdlets (what `Get-CsAdminRole` shows, so
 * `Get-CsAdminRole | Where-Object {$_.Cmdlets -match "Set-CsXmppAllowedPartner"}` answers as
 * in Lync) and the gateway operations it allows.
 */
import { CMDLET_NAMES } from '../cli/partner-invocation.js';

/** What a request needs: `read` (Get-*, status, metrics, audit) or `write` (every change, reload, stop). */
export type Permission = 'read' | 'write';

export const ROLE_NAMES = ['CsAdministrator', 'CsViewOnlyAdministrator'] as const;
export type RoleName = (typeof ROLE_NAMES)[number];

export interface AdminRole {
  readonly Identity: RoleName;
  readonly Description: string;
  readonly Cmdlets: readonly string[];
  /** The gateway's own operations (admin HTTP and the commands that use it). */
  readonly Operations: readonly string[];
  readonly permissions: ReadonlySet<Permission>;
}

const READ_OPERATIONS = ['status', 'metrics', 'audit', 'approvals list', 'streams'];

export const ROLES: Readonly<Record<RoleName, AdminRole>> = {
  CsAdministrator: {
    Identity: 'CsAdministrator',
    Description: 'Every cmdlet and operation: partner changes, reload, stop, approvals, admin users.',
    Cmdlets: [CMDLET_NAMES.get, CMDLET_NAMES.new, CMDLET_NAMES.set, CMDLET_NAMES.remove, 'Get-CsAdminRole'],
    Operations: [...READ_OPERATIONS, 'reload', 'stop', 'approvals revoke', 'admin-user'],
    permissions: new Set<Permission>(['read', 'write']),
  },
  CsViewOnlyAdministrator: {
    Identity: 'CsViewOnlyAdministrator',
    Description: 'Read only: Get-* cmdlets, status, metrics and the audit trail.',
    Cmdlets: [CMDLET_NAMES.get, 'Get-CsAdminRole'],
    Operations: READ_OPERATIONS,
    permissions: new Set<Permission>(['read']),
  },
};

/** The role by name, ignoring case (`csadministrator`); undefined if there is none. */
export function roleNamed(name: string): AdminRole | undefined {
  const found = ROLE_NAMES.find((r) => r.toLowerCase() === name.toLowerCase());
  return found === undefined ? undefined : ROLES[found];
}

export function allows(role: RoleName, permission: Permission): boolean {
  return ROLES[role].permissions.has(permission);
}

/** `Get-CsAdminRole` output records (the properties a pipeline and --json see). */
export function adminRoleRecords(): Record<string, unknown>[] {
  return ROLE_NAMES.map((n) => {
    const r = ROLES[n];
    return { Identity: r.Identity, Description: r.Description, Cmdlets: [...r.Cmdlets], Operations: [...r.Operations] };
  });
}
