/**
 * The access list: which peer ids may do what. Kept by the coordinator in `access.json` in its state folder
 * (like ssh's authorized_keys: readable, editable, mode 600), re-read when it changes on disk.
 *
 * Roles: agent (may receive tasks), submitter (may submit and control its own jobs), admin (may control anyone's
 * jobs, drain agents, invite and remove peers). The coordinator's own identity is always admin. An invite is a
 * one-time identity listed with the role `joiner` until it expires or is used: it may only redeem itself.
 */
import { existsSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs'
import { MeshfarmError } from '../shared/util/errors.ts'
import { assertPrivateFile } from '../shared/local/home.ts'
import { ROLES, isRole, type Role } from '../shared/protocol/data.ts'

export { ROLES, type Role }

export interface PeerEntry {
  roles: Role[]
  name?: string
  addedAt: number
}

export interface InviteEntry {
  role: Role
  expiresAt: number
  createdAt: number
  /** The member's name, when the admin gave one (`invite --name`); else the name the joiner gives. */
  name?: string
}

interface AccessFile {
  version: 1
  peers: Record<string, PeerEntry>
  /** Keyed by the invite's one-time peer id. */
  invites: Record<string, InviteEntry>
}

export function parseRole (v: string): Role {
  if (isRole(v)) return v
  throw new MeshfarmError('BAD_ARGUMENT', `unknown role ${JSON.stringify(v)}: use agent, submitter or admin`)
}

/** How stale a member's display name may be. */
const NAME_STALE_MS = 1000

export class AccessList {
  private readonly path: string
  private readonly self: string
  private data: AccessFile = { version: 1, peers: {}, invites: {} }
  private loadedMtime = -1
  /** When the file was last looked at (performance.now()), for what may be a moment stale: a name to display. */
  private checkedAt = -Infinity

  constructor (path: string, selfPeerId: string) {
    this.path = path
    this.self = selfPeerId
    if (!existsSync(path)) this.save()
    this.reload()
  }

  /** Picks up edits made by hand (or by `meshfarm access` on this machine). */
  private reload (): void {
    this.checkedAt = performance.now()
    const mtime = statSync(this.path).mtimeMs
    if (mtime === this.loadedMtime) return
    assertPrivateFile(this.path)
    try {
      const raw = JSON.parse(readFileSync(this.path, 'utf8')) as Partial<AccessFile>
      this.data = { version: 1, peers: raw.peers ?? {}, invites: raw.invites ?? {} }
    } catch (err) {
      throw new MeshfarmError('BAD_ARGUMENT', `${this.path}: not valid JSON: ${(err as Error).message}`)
    }
    this.loadedMtime = mtime
  }

  private save (): void {
    const tmp = `${this.path}.tmp`
    writeFileSync(tmp, JSON.stringify(this.data, null, 2) + '\n', { mode: 0o600 })
    renameSync(tmp, this.path)
    this.loadedMtime = existsSync(this.path) ? statSync(this.path).mtimeMs : -1
  }

  roles (peer: string): Role[] {
    if (peer === this.self) return [...ROLES]
    this.reload()
    return this.data.peers[peer]?.roles ?? []
  }

  has (peer: string, role: Role): boolean {
    const roles = this.roles(peer)
    return roles.includes(role) || roles.includes('admin')
  }

  /** May this peer connect at all? Listed peers, and unexpired invites. */
  admits (peer: string, now: number): boolean {
    if (peer === this.self) return true
    this.reload()
    if (this.data.peers[peer] != null) return true
    const invite = this.data.invites[peer]
    return invite != null && invite.expiresAt > now
  }

  isInvite (peer: string): boolean {
    this.reload()
    return this.data.invites[peer] != null
  }

  /** Throws FORBIDDEN with the role the action needs. */
  require (peer: string, role: Role, action: string): void {
    if (this.has(peer, role)) return
    const has = this.roles(peer)
    throw new MeshfarmError('FORBIDDEN', `${action} needs the ${role} role; peer ${peer.slice(-8)} has ${has.length > 0 ? has.join(', ') : 'no role'}`)
  }

  add (peer: string, roles: Role[], name?: string, now = Date.now()): void {
    this.reload()
    const old = this.data.peers[peer]
    this.data.peers[peer] = { roles: [...new Set([...(old?.roles ?? []), ...roles])], name: name ?? old?.name, addedAt: old?.addedAt ?? now }
    this.save()
  }

  remove (peer: string): boolean {
    this.reload()
    const had = this.data.peers[peer] != null || this.data.invites[peer] != null
    delete this.data.peers[peer]
    delete this.data.invites[peer]
    this.save()
    return had
  }

  addInvite (invitePeer: string, role: Role, ttlMs: number, now: number, name?: string): void {
    this.reload()
    this.data.invites[invitePeer] = { role, expiresAt: now + ttlMs, createdAt: now, ...(name != null ? { name } : {}) }
    this.save()
  }

  /** Redeems an invite once: the new peer gets its role, the invite is gone. */
  redeem (invitePeer: string, newPeer: string, name: string | undefined, now: number): Role {
    this.reload()
    const invite = this.data.invites[invitePeer]
    if (invite == null) throw new MeshfarmError('FORBIDDEN', 'this invite was already used or withdrawn')
    delete this.data.invites[invitePeer]
    if (invite.expiresAt <= now) {
      this.save()
      throw new MeshfarmError('FORBIDDEN', 'this invite has expired: ask for a new one')
    }
    // An invite creates a member; it never changes one (redeeming with an admin's id must not demote it).
    if (newPeer === this.self || this.data.peers[newPeer] != null) {
      this.save()
      throw new MeshfarmError('FORBIDDEN', `peer ${newPeer.slice(-8)} is already a member of this mesh: an invite only adds new members`)
    }
    this.data.peers[newPeer] = { roles: [invite.role], name: invite.name ?? name, addedAt: now }
    this.save()
    return invite.role
  }

  /** Peer ids of the mesh's members (not invites): whom agents accept connections from. */
  memberIds (): string[] {
    this.reload()
    return [this.self, ...Object.keys(this.data.peers)]
  }

  /**
   * A member's name, if it has one. Asked for every committed result (a task record names its owner): the file is
   * looked at again at most once a second here, a stat per task being a tenth of the coordinator's time per task.
   * Who may do what (roles, members) is always read fresh.
   */
  nameOf (peer: string): string | undefined {
    if (peer === this.self) return 'coordinator'
    if (performance.now() - this.checkedAt >= NAME_STALE_MS) this.reload()
    return this.data.peers[peer]?.name
  }

  list (): Array<{ peerId: string } & PeerEntry> {
    this.reload()
    return [
      { peerId: this.self, roles: [...ROLES], name: 'coordinator', addedAt: 0 },
      ...Object.entries(this.data.peers).map(([peerId, e]) => ({ peerId, ...e }))
    ]
  }
}
