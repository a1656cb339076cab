/**
 * The agent's side of the per-user presence helper (`meshfarm presence`): reports arrive over the owner socket,
 * are checked field by field, and are kept with their arrival time. A report covers the graphical session it
 * names (or, without a session id, that user's graphical sessions) while it is fresh; a helper that falls
 * silent makes those sessions blind again, never idle.
 */
import { MeshfarmError } from '../../../shared/util/errors.ts'
import type { Channel, PresenceSource, Probe, ReadContext, Reading } from '../types.ts'
import { formatDuration } from '../format.ts'

export interface PresenceReport {
  /** ms since the session's last input, as the session itself says. */
  idleMs: number
  /** Which interface answered: "gnome", "kde", "x11". */
  via: string
  /** XDG_SESSION_ID of the helper's session, when it has one. */
  session: string | null
  uid: number
  locked: boolean
}

const MAX_IDLE_MS = 366 * 86_400_000
const MAX_USERS = 64

function bad (field: string, what: string): MeshfarmError {
  return new MeshfarmError('PROTOCOL', `presence report: ${field}: ${what}`)
}

/** Checks a report from the socket. Pure; one PROTOCOL line naming the field for anything malformed. */
export function checkPresenceReport (v: unknown): PresenceReport {
  if (v == null || typeof v !== 'object' || Array.isArray(v)) throw bad('report', 'expected an object')
  const r = v as Record<string, unknown>
  if (typeof r.idleMs !== 'number' || !Number.isInteger(r.idleMs) || r.idleMs < 0 || r.idleMs > MAX_IDLE_MS) throw bad('idleMs', 'expected whole ms from 0 to a year')
  if (typeof r.via !== 'string' || !/^[a-z0-9-]{1,32}$/.test(r.via)) throw bad('via', 'expected a short name like gnome, kde or x11')
  if (r.session != null && (typeof r.session !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(r.session))) throw bad('session', 'expected a session id like 3 or c2')
  if (typeof r.uid !== 'number' || !Number.isInteger(r.uid) || r.uid < 0 || r.uid > 0xfffffffe) throw bad('uid', 'expected a user id')
  if (r.locked != null && typeof r.locked !== 'boolean') throw bad('locked', 'expected true or false')
  return { idleMs: r.idleMs, via: r.via, session: (r.session as string | null) ?? null, uid: r.uid, locked: r.locked === true }
}

interface Held { report: PresenceReport, at: number }

/** Fresh reports -> signals, with their idle time grown by their age; stale ones named in the detail. Pure. */
export function helperReading (held: Iterable<Held>, now: number, staleMs: number): Reading {
  const signals: Channel[] = []
  const silent: string[] = []
  for (const { report: r, at } of held) {
    const who = `uid ${r.uid}${r.session != null ? ` session ${r.session}` : ''}`
    if (now - at > staleMs) { silent.push(`${who} silent ${formatDuration(now - at)}`); continue }
    signals.push({ key: `helper:${r.uid}:${r.session ?? '*'}`, label: `${r.via} desktop of ${who}`, idleMs: r.idleMs + Math.max(0, now - at), uid: r.uid, sessionId: r.session ?? undefined, kind: 'graphical', how: r.locked ? `${r.via}, locked` : r.via })
  }
  const parts = [`${signals.length} desktop${signals.length === 1 ? '' : 's'} reporting`]
  for (const s of signals) parts.push(`${s.label} idle ${formatDuration(s.idleMs!)}`)
  if (silent.length > 0) parts.push(silent.join(', '))
  return { source: 'helper', signals, detail: `helper: ${parts.join(', ')}` }
}

/** Holds the latest report per (uid, session). Fed by the owner socket (`onPresence`), read by the harvest loop. */
export class HelperSource implements PresenceSource {
  readonly name = 'helper'
  private readonly held = new Map<string, Held>()

  /** A report is stale after this long without another: the helper posts at least every 10 s. */
  private readonly staleMs: number
  private readonly socketPath: string

  constructor (staleMs: number = 30_000, socketPath: string = '') {
    this.staleMs = staleMs
    this.socketPath = socketPath
  }

  report (r: PresenceReport, now: number): void {
    const key = `${r.uid}:${r.session ?? '*'}`
    if (!this.held.has(key) && this.held.size >= MAX_USERS) {
      const oldest = [...this.held.entries()].sort((a, b) => a[1].at - b[1].at)[0]
      this.held.delete(oldest[0])
    }
    this.held.set(key, { report: r, at: now })
  }

  async probe (): Promise<Probe> {
    return { available: true, why: this.socketPath !== '' ? `socket ready at ${this.socketPath}` : 'socket ready' }
  }

  async read (ctx: ReadContext): Promise<Reading> {
    for (const [k, h] of this.held) if (ctx.now - h.at > 10 * this.staleMs) this.held.delete(k)
    return helperReading(this.held.values(), ctx.now, this.staleMs)
  }
}
