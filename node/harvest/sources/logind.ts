/**
 * systemd-logind sessions through `loginctl` (one call per read, with a timeout). GNOME sets IdleHint only after
 * its idle delay and KDE often never does, so a graphical session without the hint is a blind channel
 * ("unknown"), never "idle": the helper, input devices or the tty source may see into it.
 */
import { execFile } from 'node:child_process'
import type { Channel, PresenceSource, Probe, ReadContext, Reading } from '../types.ts'
import { formatDuration } from '../format.ts'

export interface LogindSession {
  id: string
  uid: number | null
  name: string
  /** user, greeter, lock-screen, background, manager, ... */
  class: string
  /** online, active, closing */
  state: string
  active: boolean
  /** x11, wayland, mir, tty, unspecified */
  type: string
  remote: boolean
  tty: string
  seat: string
  idleHint: boolean
  /** µs since epoch; 0 when unset. */
  idleSinceUs: number
  /** µs of CLOCK_MONOTONIC; 0 when unset. */
  idleSinceMonoUs: number
  locked: boolean
}

export const LOGIND_PROPERTIES = ['Id', 'User', 'Name', 'Class', 'State', 'Active', 'Type', 'Remote', 'TTY', 'Seat', 'IdleHint', 'IdleSinceHint', 'IdleSinceHintMonotonic', 'LockedHint']
const GRAPHICAL = new Set(['x11', 'wayland', 'mir'])
const LOGINCTL_TIMEOUT_MS = 2000
/** Blocks per call: a machine with hundreds of ssh sessions still answers in one bounded call. */
const MAX_SESSIONS = 256

// ---- parsing (pure) ----

/** First column of `loginctl list-sessions --no-legend` (old and new column sets alike). */
export function parseSessionIds (text: string): string[] {
  const ids: string[] = []
  for (const line of text.split('\n')) {
    const id = line.trim().split(/\s+/)[0]
    if (id != null && /^[A-Za-z0-9_-]{1,64}$/.test(id) && /\d/.test(id)) ids.push(id) // ids are "2" or "c1": never a bare word
  }
  return ids.slice(0, MAX_SESSIONS)
}

const yes = (v: string | undefined): boolean => v === 'yes'
const num = (v: string | undefined): number => (v != null && /^\d+$/.test(v) ? Number(v) : 0)

/**
 * `loginctl show-session ID... -p ...` output: key=value lines, sessions separated by a blank line (a key seen
 * twice also starts a new session, whatever order systemd prints them in).
 */
export function parseShowSession (text: string): LogindSession[] {
  const blocks: Array<Record<string, string>> = [{}]
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=')
    if (line.trim() === '') { if (Object.keys(blocks[blocks.length - 1]).length > 0) blocks.push({}); continue }
    if (eq <= 0) continue
    const key = line.slice(0, eq)
    if (key in blocks[blocks.length - 1]) blocks.push({})
    blocks[blocks.length - 1][key] = line.slice(eq + 1).trim()
  }
  return blocks.filter(b => b.Id != null && b.Id !== '').map(b => ({
    id: b.Id,
    uid: b.User != null && /^\d+$/.test(b.User) ? Number(b.User) : null,
    name: b.Name ?? '',
    class: b.Class ?? '',
    state: b.State ?? '',
    active: yes(b.Active),
    type: b.Type ?? '',
    remote: yes(b.Remote),
    tty: (b.TTY ?? '').replace(/^\/dev\//, ''),
    seat: b.Seat ?? '',
    idleHint: yes(b.IdleHint),
    idleSinceUs: num(b.IdleSinceHint),
    idleSinceMonoUs: num(b.IdleSinceHintMonotonic),
    locked: yes(b.LockedHint)
  }))
}

export interface LogindView {
  reading: Reading
  /** When each session was first seen locked: a locked screen without an idle hint is idle since then. */
  lockedSeen: Map<string, number>
}

/**
 * Sessions -> channels. Only user sessions that can take input count: not greeters or background sessions, not
 * closing ones, not graphical sessions switched away from on their seat, not ssh commands without a terminal.
 */
export function logindView (sessions: LogindSession[], now: number, monotonicMs: number, lockedSeen: ReadonlyMap<string, number>): LogindView {
  const channels: Channel[] = []
  const seenLocked = new Map<string, number>()
  let skipped = 0
  for (const s of sessions) {
    const kind = GRAPHICAL.has(s.type) ? 'graphical' : s.type === 'tty' || s.tty !== '' ? 'tty' : 'other'
    const inputless = kind === 'other' || (kind === 'graphical' && !s.active && s.seat !== '')
    if (!s.class.startsWith('user') || s.state === 'closing' || inputless) { skipped++; continue }
    const label = `session ${s.id} (${s.type || 'unspecified'}${s.remote ? ', remote' : ''}, ${s.name || s.uid})`
    const ch: Channel = { key: `session:${s.id}`, label, idleMs: null, uid: s.uid ?? undefined, sessionId: s.id, kind, remote: s.remote, tty: s.tty || undefined }
    if (s.idleHint && (s.idleSinceMonoUs > 0 || s.idleSinceUs > 0)) {
      const idle = s.idleSinceMonoUs > 0 ? monotonicMs - s.idleSinceMonoUs / 1000 : now - s.idleSinceUs / 1000
      ch.idleMs = Math.max(0, Math.round(idle))
      ch.how = 'idle hint'
    } else if (s.locked) {
      const since = lockedSeen.get(s.id) ?? now
      seenLocked.set(s.id, since)
      ch.idleMs = now - since
      ch.how = 'screen locked'
    }
    channels.push(ch)
  }
  const idle = channels.filter(c => c.idleMs != null)
  const parts = [`${channels.length} session${channels.length === 1 ? '' : 's'}`]
  if (idle.length > 0) parts.push(idle.map(c => `${c.label} ${c.how} ${formatDuration(c.idleMs!)}`).join(', '))
  if (skipped > 0) parts.push(`${skipped} without input (greeter, background, closing or switched away)`)
  return { reading: { source: 'logind', channels, sessions: channels.length, detail: `logind: ${parts.join('; ')}` }, lockedSeen: seenLocked }
}

// ---- reading ----

type Exec = (file: string, args: string[]) => Promise<string>

function execText (file: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: LOGINCTL_TIMEOUT_MS, encoding: 'utf8', maxBuffer: 4 << 20, env: { ...process.env, SYSTEMD_PAGER: '', LC_ALL: 'C' } }, (err, stdout, stderr) => {
      if ((err as NodeJS.ErrnoException | null)?.code === 'ENOENT') reject(Object.assign(new Error(`no ${file}`), { code: 'ENOENT' }))
      else if (err != null) reject(new Error(`${file} ${args[0]}: ${(stderr.trim().split('\n')[0] || err.message).slice(0, 200)}`))
      else resolve(stdout)
    })
  })
}

export class LogindSource implements PresenceSource {
  readonly name = 'logind'
  private lockedSeen = new Map<string, number>()

  private readonly exec: Exec

  constructor (exec: Exec = execText) {
    this.exec = exec
  }

  async probe (): Promise<Probe> {
    try {
      const ids = parseSessionIds(await this.exec('loginctl', ['list-sessions', '--no-legend', '--no-pager']))
      return { available: true, why: `${ids.length} session${ids.length === 1 ? '' : 's'}` }
    } catch (err) {
      const msg = (err as Error).message
      const why = /booted with systemd/.test(msg) ? 'not booted with systemd' : /connect to bus/i.test(msg) ? 'no system bus' : msg
      return { available: false, why }
    }
  }

  async read (ctx: ReadContext): Promise<Reading> {
    try {
      let text = ''
      for (let attempt = 1; ; attempt++) {
        const ids = parseSessionIds(await this.exec('loginctl', ['list-sessions', '--no-legend', '--no-pager']))
        try {
          text = ids.length === 0 ? '' : await this.exec('loginctl', ['show-session', '--no-pager', ...ids, ...LOGIND_PROPERTIES.flatMap(p => ['-p', p])])
          break
        } catch (err) {
          if (attempt >= 2) throw err // a session that ended between the two calls fails the second: list again once
        }
      }
      const view = logindView(parseShowSession(text), ctx.now, ctx.monotonicMs, this.lockedSeen)
      this.lockedSeen = view.lockedSeen
      return view.reading
    } catch (err) {
      return { source: this.name, detail: `logind: ${(err as Error).message}`, error: (err as Error).message }
    }
  }
}
