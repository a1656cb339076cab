/** What a member may do: agent (receives tasks), submitter (submits, watches, controls its own jobs), admin. No schemas here: the CLI checks a --role flag without loading the wire protocol. */
export type Role = 'agent' | 'submitter' | 'admin'
export const ROLES: readonly Role[] = ['agent', 'submitter', 'admin']

export function isRole (v: unknown): v is Role {
  return typeof v === 'string' && (ROLES as readonly string[]).includes(v)
}
