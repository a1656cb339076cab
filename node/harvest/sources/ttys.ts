/**
 * Terminal activity, as `w` computes IDLE: the access time of each terminal device, which the kernel moves when
 * something reads input from it (at 8-second granularity). No utmp needed: pseudo-terminals exist only while
 * open, and a console tty logged into belongs to its user. Terminals of meshfarm's own tasks are left out.
 */
import { readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { Channel, PresenceSource, Probe, ReadContext, Reading } from '../types.ts'
import { formatDuration } from '../format.ts'

export interface TtyEntry {
  /** "pts/3", "tty2" */
  name: string
  uid: number
  atimeMs: number
  /** Device number (st_rdev), to match tasks' controlling terminals. */
  rdev: number
}

const CONSOLE = /^tty([1-9]\d?)$/

/**
 * Entries -> channels (ptys, and consoles someone logged into) and signals (root-owned consoles: a getty or a
 * root login being typed at). Pure.
 */
export function ttyReading (entries: TtyEntry[], now: number, oursTtys: ReadonlySet<number>, viewOnly = false): Reading {
  const channels: Channel[] = []
  const signals: Channel[] = []
  let ours = 0
  for (const e of entries) {
    if (oursTtys.has(e.rdev)) { ours++; continue }
    const ch: Channel = { key: `tty:${e.name}`, label: e.name, idleMs: Math.max(0, Math.round(now - e.atimeMs)), uid: e.uid, how: 'tty atime', kind: 'tty', tty: e.name }
    if (e.name.startsWith('pts/') || e.uid !== 0) channels.push(ch)
    else if (CONSOLE.test(e.name)) signals.push(ch)
  }
  const newest = [...channels].sort((a, b) => a.idleMs! - b.idleMs!)[0]
  const parts = [`${channels.length} in use`]
  if (newest != null) parts.push(`last input ${formatDuration(newest.idleMs!)} ago on ${newest.label}`)
  if (ours > 0) parts.push(`${ours} of meshfarm's tasks left out`)
  // Without logind the terminals in use are the sessions this machine can see; with it, logind counts them.
  return { source: 'ttys', ...(viewOnly ? { signals: [...channels, ...signals] } : { channels, signals, sessions: channels.length }), detail: `ttys: ${parts.join(', ')}` }
}

export interface TtySourceOptions {
  /** Where to look (a test may point this at a folder of its own); default /dev. */
  devDir?: string
  /**
   * True when logind defines the sessions: terminals then only feed the tty sessions' idle times and serve as
   * evidence of input, instead of being sessions themselves.
   */
  signalsOnly?: boolean
}

export class TtySource implements PresenceSource {
  readonly name = 'ttys'
  private readonly dev: string
  signalsOnly: boolean

  constructor (opts: TtySourceOptions = {}) {
    this.dev = opts.devDir ?? '/dev'
    this.signalsOnly = opts.signalsOnly ?? false
  }

  private async entries (): Promise<TtyEntry[]> {
    const names: string[] = []
    try {
      for (const n of await readdir(join(this.dev, 'pts'))) if (/^\d+$/.test(n)) names.push(`pts/${n}`)
    } catch {}
    for (const n of await readdir(this.dev).catch(() => [] as string[])) if (CONSOLE.test(n)) names.push(n)
    const out: TtyEntry[] = []
    await Promise.all(names.map(async name => {
      try {
        const st = await stat(join(this.dev, name))
        out.push({ name, uid: st.uid, atimeMs: st.atimeMs, rdev: st.rdev })
      } catch {} // closed between readdir and stat
    }))
    return out.sort((a, b) => a.name.localeCompare(b.name, 'en', { numeric: true }))
  }

  async probe (): Promise<Probe> {
    const entries = await this.entries()
    const inUse = ttyReading(entries, Date.now(), new Set()).channels?.length ?? 0
    const consoles = entries.filter(e => CONSOLE.test(e.name)).length
    if (entries.length === 0) return { available: false, why: `no terminals under ${this.dev}` }
    return { available: true, why: `${inUse} in use, ${consoles} console${consoles === 1 ? '' : 's'}` }
  }

  async read (ctx: ReadContext): Promise<Reading> {
    return ttyReading(await this.entries(), ctx.now, ctx.ours.ttys, this.signalsOnly)
  }
}
