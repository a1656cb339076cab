/**
 * `meshfarm presence`: runs as the desktop user (a systemd user unit), asks the session how long it has been idle
 * and posts it to the agent's owner socket. Wayland gives idle time only to the compositor, so it is asked over
 * D-Bus: GNOME Mutter's IdleMonitor, KDE's org.freedesktop.ScreenSaver; on X11, xprintidle (XScreenSaver).
 * It polls every 2 s and posts when input is seen (idle time fell) or every 10 s, so the agent learns of the
 * owner's return within about 2 s and of a dead helper within 30 s.
 */
import { execFile } from 'node:child_process'
import { errorMessage } from '../../shared/util/errors.ts'
import { postPresence, type ClientTarget } from './owner-control.ts'
import type { PresenceReport } from './sources/helper.ts'

// ---- parsing (pure) ----

/** gdbus call output: "(uint64 12345,)" or "(uint32 12,)" -> 12345; anything else -> null. */
export function parseGdbusUint (text: string): number | null {
  const m = /^\(\s*(?:uint(?:16|32|64)|int(?:32|64))?\s*(\d+)\s*,?\s*\)$/.exec(text.trim())
  return m != null ? Number(m[1]) : null
}

/** busctl call output: "t 12345" / "u 12" -> number; anything else -> null. */
export function parseBusctlUint (text: string): number | null {
  const m = /^[tuqi]\s+(\d+)$/.exec(text.trim())
  return m != null ? Number(m[1]) : null
}

/** gdbus "(true,)" / busctl "b true" -> boolean; anything else -> null. */
export function parseDbusBool (text: string): boolean | null {
  const m = /^(?:\(\s*(true|false)\s*,?\s*\)|b\s+(true|false))$/.exec(text.trim())
  return m != null ? (m[1] ?? m[2]) === 'true' : null
}

/** xprintidle output: idle ms on one line. */
export function parseXprintidle (text: string): number | null {
  const t = text.trim()
  return /^\d+$/.test(t) ? Number(t) : null
}

// ---- asking the session ----

export type Exec = (file: string, args: string[]) => Promise<string>

const EXEC_TIMEOUT_MS = 1500

export const execText: Exec = (file, args) => new Promise((resolve, reject) => {
  execFile(file, args, { timeout: EXEC_TIMEOUT_MS, encoding: 'utf8' }, (err, stdout, stderr) => {
    if ((err as NodeJS.ErrnoException | null)?.code === 'ENOENT') reject(new Error(`no ${file} (ENOENT)`))
    else if (err != null) reject(new Error(`${file}: ${(stderr.trim().split('\n')[0] || err.message).slice(0, 200)}`))
    else resolve(stdout)
  })
})

export interface IdleProbe {
  via: string
  /** Idle ms and whether the screen is locked; throws when this interface is not there. */
  ask: (exec: Exec) => Promise<{ idleMs: number, locked: boolean }>
}

/** One D-Bus call on the session bus: gdbus (GLib), else busctl --user (systemd). Returns the raw answer. */
async function sessionCall (exec: Exec, dest: string, path: string, method: string): Promise<string> {
  try {
    return await exec('gdbus', ['call', '--session', '--dest', dest, '--object-path', path, '--method', method])
  } catch (err) {
    if (!/ENOENT|not found|no gdbus/i.test(String((err as Error).message))) throw err
    const dot = method.lastIndexOf('.')
    return await exec('busctl', ['--user', 'call', dest, path, method.slice(0, dot), method.slice(dot + 1)])
  }
}

const uint = (text: string): number | null => parseGdbusUint(text) ?? parseBusctlUint(text)

function need<T> (v: T | null, what: string): T {
  if (v == null) throw new Error(`${what}: unexpected answer`)
  return v
}

/** The interfaces tried, in order. */
export const IDLE_PROBES: IdleProbe[] = [
  {
    via: 'gnome',
    ask: async exec => {
      const idle = need(uint(await sessionCall(exec, 'org.gnome.Mutter.IdleMonitor', '/org/gnome/Mutter/IdleMonitor/Core', 'org.gnome.Mutter.IdleMonitor.GetIdletime')), 'Mutter GetIdletime')
      const locked = await sessionCall(exec, 'org.gnome.ScreenSaver', '/org/gnome/ScreenSaver', 'org.gnome.ScreenSaver.GetActive').then(parseDbusBool, () => null)
      return { idleMs: idle, locked: locked === true }
    }
  },
  {
    via: 'kde',
    // KDE answers in ms (the freedesktop draft says seconds; read as ms, a seconds answer only errs toward "present").
    ask: async exec => {
      const idle = need(uint(await sessionCall(exec, 'org.freedesktop.ScreenSaver', '/org/freedesktop/ScreenSaver', 'org.freedesktop.ScreenSaver.GetSessionIdleTime')), 'ScreenSaver GetSessionIdleTime')
      const locked = await sessionCall(exec, 'org.freedesktop.ScreenSaver', '/org/freedesktop/ScreenSaver', 'org.freedesktop.ScreenSaver.GetActive').then(parseDbusBool, () => null)
      return { idleMs: idle, locked: locked === true }
    }
  },
  {
    via: 'x11',
    ask: async exec => ({ idleMs: need(parseXprintidle(await exec('xprintidle', [])), 'xprintidle'), locked: false })
  }
]

/** The first probe that answers, or null with each one's reason. */
export async function pickIdleProbe (exec: Exec, probes: IdleProbe[] = IDLE_PROBES): Promise<{ probe: IdleProbe | null, tried: string[] }> {
  const tried: string[] = []
  for (const p of probes) {
    try {
      await p.ask(exec)
      return { probe: p, tried }
    } catch (err) {
      tried.push(`${p.via}: ${errorMessage(err)}`)
    }
  }
  return { probe: null, tried }
}

/** Post now? When input was seen since the last post (idle fell), or the heartbeat is due. Pure. */
export function shouldPost (last: { idleMs: number, at: number } | null, idleMs: number, now: number, heartbeatMs: number): boolean {
  return last == null || idleMs < last.idleMs + (now - last.at) - 1000 || now - last.at >= heartbeatMs
}

export interface PresenceHelperOptions extends ClientTarget {
  pollMs?: number
  heartbeatMs?: number
  /** XDG_SESSION_ID of this desktop session. */
  session?: string | null
  exec?: Exec
  probes?: IdleProbe[]
  signal?: AbortSignal
  log?: (line: string) => void
  /** Stop after this many posts (tests). */
  maxPosts?: number
}

/**
 * Runs until `signal` aborts. Agent absent or restarting: keeps polling and says so once; no interface answers:
 * retries every 30 s (the session may still be starting). Resolves with the number of posts made.
 */
export async function runPresenceHelper (opts: PresenceHelperOptions): Promise<number> {
  const exec = opts.exec ?? execText
  const pollMs = opts.pollMs ?? 2000
  const heartbeatMs = opts.heartbeatMs ?? 10_000
  const log = opts.log ?? (() => {})
  const uid = process.getuid?.() ?? 0
  const session = opts.session === undefined ? (process.env.XDG_SESSION_ID ?? null) : opts.session
  const sleep = (ms: number): Promise<void> => new Promise(resolve => {
    const t = setTimeout(resolve, ms)
    opts.signal?.addEventListener('abort', () => { clearTimeout(t); resolve() }, { once: true })
  })
  let probe: IdleProbe | null = null
  let last: { idleMs: number, at: number } | null = null
  let agentDown = false
  let posts = 0
  while (opts.signal?.aborted !== true && (opts.maxPosts == null || posts < opts.maxPosts)) {
    if (probe == null) {
      const picked = await pickIdleProbe(exec, opts.probes)
      probe = picked.probe
      if (probe == null) { log(`presence: no idle-time interface answers (${picked.tried.join('; ')}); trying again in 30 s`); await sleep(30_000); continue }
      log(`presence: asking ${probe.via} for idle time`)
    }
    let answer: { idleMs: number, locked: boolean }
    try {
      answer = await probe.ask(exec)
    } catch (err) {
      log(`presence: ${probe.via} stopped answering: ${errorMessage(err)}`)
      probe = null
      continue
    }
    const now = Date.now()
    if (shouldPost(last, answer.idleMs, now, heartbeatMs)) {
      const report: PresenceReport = { idleMs: answer.idleMs, via: probe.via, session: session != null && /^[A-Za-z0-9_-]{1,64}$/.test(session) ? session : null, uid, locked: answer.locked }
      try {
        await postPresence(opts, report)
        if (agentDown) log('presence: agent reached again')
        agentDown = false
        last = { idleMs: answer.idleMs, at: now }
        posts++
      } catch (err) {
        if (!agentDown) log(`presence: ${errorMessage(err)}`)
        agentDown = true
      }
    }
    if (opts.maxPosts == null || posts < opts.maxPosts) await sleep(pollMs)
  }
  return posts
}
