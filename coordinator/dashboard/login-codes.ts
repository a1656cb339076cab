/**
 * One-time login codes for the dashboard. The coordinator issues one to a CLI user it has already
 * authenticated over the mesh (`meshfarm dashboard`); the person pastes it into the login form, and the
 * dashboard exchanges it, once, for a session. Codes are kept only as SHA-256 digests and compared in
 * constant time against every live one, so neither memory nor timing gives a code away.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import type { DashboardUser } from './source.ts'

export interface LoginCodesOptions {
  /** How long a code may be redeemed after it is issued (default 5 minutes). */
  ttlMs?: number
  /** Live codes at most; issuing more drops the oldest (default 100). */
  maxLive?: number
  /** Random bytes source, for tests. */
  random?: (n: number) => Buffer
}

export interface LoginCodes {
  /** A new code for `who`, valid until `expiresAt`. */
  issue (who: DashboardUser, now: number): { code: string, expiresAt: number }
  /** Who the code was issued to, once; null when unknown, already used or expired. */
  redeem (code: string, now: number): DashboardUser | null
  /** Codes that could still be redeemed. */
  live (now: number): number
}

interface Entry { digest: Buffer, who: DashboardUser, expiresAt: number }

// Crockford's base32: no I, L, O, U, so a code read aloud or retyped is not mistaken.
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'
const CODE_BYTES = 20 // 160 bits

/** A code as people read it: 32 characters in groups of four, e.g. `7KQ2-...`. */
export function formatCode (bytes: Buffer): string {
  let bits = 0
  let value = 0
  let out = ''
  for (const b of bytes) {
    value = (value << 8) | b
    bits += 8
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31]
      bits -= 5
    }
    value &= (1 << bits) - 1
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31]
  return out.match(/.{1,4}/g)!.join('-')
}

/** What a person typed, as the code it means: case, spaces and dashes do not matter. */
export function normalizeCode (typed: string): string | null {
  const s = typed.toUpperCase().replace(/[\s-]/g, '')
  if (s.length !== 32 || ![...s].every(ch => ALPHABET.includes(ch))) return null
  return s.match(/.{1,4}/g)!.join('-')
}

function digest (code: string): Buffer {
  return createHash('sha256').update(code).digest()
}

export function createLoginCodes (opts: LoginCodesOptions = {}): LoginCodes {
  const ttlMs = opts.ttlMs ?? 5 * 60_000
  const maxLive = opts.maxLive ?? 100
  const random = opts.random ?? randomBytes
  let entries: Entry[] = []

  const prune = (now: number): void => { entries = entries.filter(e => e.expiresAt > now) }

  return {
    issue (who, now) {
      prune(now)
      const code = formatCode(random(CODE_BYTES))
      entries.push({ digest: digest(code), who: { ...who }, expiresAt: now + ttlMs })
      if (entries.length > maxLive) entries = entries.slice(entries.length - maxLive)
      return { code, expiresAt: now + ttlMs }
    },
    redeem (typed, now) {
      prune(now)
      const code = normalizeCode(typed.slice(0, 256))
      // An impossible code is still hashed and compared, so its answer takes as long as a near miss.
      const d = digest(code ?? typed.slice(0, 256))
      let found = -1
      for (let i = 0; i < entries.length; i++) {
        if (timingSafeEqual(entries[i].digest, d) && code != null) found = i
      }
      if (found < 0) return null
      const [entry] = entries.splice(found, 1)
      return { ...entry.who }
    },
    live (now) {
      prune(now)
      return entries.length
    }
  }
}
