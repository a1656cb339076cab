/**
 * Server-side dashboard sessions: a random 256-bit id in an HttpOnly cookie names an entry here; nothing
 * about the person is in the cookie. Sessions end after idle time or an absolute lifetime, whichever first.
 */
import { randomBytes } from 'node:crypto'
import type { DashboardUser } from './source.ts'

export interface Session {
  user: DashboardUser
  createdAt: number
  lastSeen: number
}

export interface SessionOptions {
  /** Ends a session not used for this long (default 1 h). */
  idleMs?: number
  /** Ends any session this long after login (default 12 h). */
  maxAgeMs?: number
  /** Sessions kept at most; a new one evicts the least recently used (default 200). */
  max?: number
  random?: (n: number) => Buffer
}

export interface Sessions {
  create (user: DashboardUser, now: number): string
  /** The session for an id, refreshed; null when unknown or expired. */
  get (id: string | undefined, now: number): Session | null
  end (id: string): void
  size (): number
}

const ID_SHAPE = /^[A-Za-z0-9_-]{43}$/

export function createSessions (opts: SessionOptions = {}): Sessions {
  const idleMs = opts.idleMs ?? 60 * 60_000
  const maxAgeMs = opts.maxAgeMs ?? 12 * 60 * 60_000
  const max = opts.max ?? 200
  const random = opts.random ?? randomBytes
  // A Map keeps insertion order: re-inserting on use makes the first entry the least recently used.
  const byId = new Map<string, Session>()

  const expired = (s: Session, now: number): boolean => now - s.lastSeen >= idleMs || now - s.createdAt >= maxAgeMs

  return {
    create (user, now) {
      for (const [id, s] of byId) if (expired(s, now)) byId.delete(id)
      while (byId.size >= max) byId.delete(byId.keys().next().value!)
      const id = random(32).toString('base64url')
      byId.set(id, { user: { ...user }, createdAt: now, lastSeen: now })
      return id
    },
    get (id, now) {
      if (id == null || !ID_SHAPE.test(id)) return null
      const s = byId.get(id)
      if (s == null) return null
      byId.delete(id)
      if (expired(s, now)) return null
      s.lastSeen = now
      byId.set(id, s)
      return s
    },
    end (id) { byId.delete(id) },
    size () { return byId.size }
  }
}
