/**
 * What the harvest parts say to each other: presence sources produce readings, `composeObservation` folds them
 * into one Observation, and the policy decides from Observations alone. No I/O here.
 */

/** Whether a source can work on this machine, and why (or why not), in words for the agent's start log. */
export interface Probe {
  available: boolean
  why: string
}

/**
 * One place the owner can give input: a logind session, a terminal, a desktop the helper reports on.
 * `idleMs` is the time since the last input there, or a lower bound of it; null when nothing can tell.
 */
export interface Channel {
  /** Stable key, e.g. `session:3`, `tty:pts/2`, `helper:1000`, `input`. */
  key: string
  /** Words for a person: "session 3 (wayland, alice)", "pts/2". */
  label: string
  idleMs: number | null
  /** Whose channel (uid), when known; lets a helper report cover that user's graphical sessions. */
  uid?: number
  /** Where the idle time comes from, e.g. "tty atime", "GNOME idle hint", "locked". */
  how?: string
  /** True for channels that see all local input (input devices): they cover every local session. */
  coversLocal?: boolean
  /** logind session id a report belongs to (helper reports carry XDG_SESSION_ID). */
  sessionId?: string
  /** Graphical, remote or console session: only graphical ones can be covered by a helper or input devices. */
  kind?: 'graphical' | 'tty' | 'other'
  remote?: boolean
  /** tty name without /dev/ ("pts/2", "tty3") for tty sessions. */
  tty?: string
}

/** What one source saw at one moment. Every field is optional: a source tells only what it knows. */
export interface Reading {
  source: string
  /** Sessions (logind) or terminals (ttys) that exist: channels the owner may be using. */
  channels?: Channel[]
  /** Extra evidence of input that does not define a channel: a busy pty outside any session, a helper report. */
  signals?: Channel[]
  /** The number of user sessions, when the source can count them (logind): 0 means nobody is logged in. */
  sessions?: number
  /** Owner CPU load in cores: all CPU time less meshfarm's tasks', over the last sampling interval. */
  loadNotOurs?: number | null
  /** GPU processes that are not meshfarm's tasks. */
  foreignGpu?: { processes: number, memoryMb: number, pids: number[] } | null
  /** One line for `status --here`: "logind: 2 sessions, 1 idle 20 min". */
  detail: string
  /** Set when this read failed (timeout, bad output); the source then tells nothing this time. */
  error?: string
}

/** What the harvest policy decides from. Produced by `composeObservation`, or scripted in tests. */
export interface Observation {
  /** ms since epoch when the readings were taken. */
  at: number
  input: {
    /**
     * Time since the owner's last input on the channels that can tell, a lower bound (min over them);
     * null when no channel can tell.
     */
    idleMs: number | null
    /** Where idleMs came from: "pts/3 (tty atime)". */
    from: string | null
    /** Channels nothing can see into: presence is unknown while any remains, unless input is recent. */
    blind: string[]
    /** User sessions counted by logind (0: nobody is logged in); null when no source can count them. */
    sessions: number | null
  }
  /** Owner CPU load in cores; null when unknown (first sample, no /proc). */
  loadNotOurs: number | null
  /** null when no source can tell (no nvidia-smi). */
  foreignGpu: { processes: number, memoryMb: number } | null
  /** One line per source for `status --here`. */
  details: string[]
}

/** meshfarm's own task processes, so sources can leave them out: their CPU, their terminals, their GPU use. */
export interface OursSnapshot {
  pids: ReadonlySet<number>
  /** Controlling terminals of task processes (tty_nr as in /proc/<pid>/stat, same encoding as st_rdev). */
  ttys: ReadonlySet<number>
  /** Cumulative CPU seconds of all task processes (cgroup counter, or the sum over the live process trees). */
  cpuSec: number
}

export interface ReadContext {
  /** Wall clock (ms since epoch) of this read. */
  now: number
  /** CLOCK_MONOTONIC in ms (process.hrtime), for logind's monotonic timestamps. */
  monotonicMs: number
  ours: OursSnapshot
}

/** A source of owner presence. `probe` once at start; `read` on every harvest tick. */
export interface PresenceSource {
  readonly name: string
  probe: () => Promise<Probe>
  read: (ctx: ReadContext) => Promise<Reading>
  close?: () => Promise<void> | void
}

export const NO_OURS: OursSnapshot = Object.freeze({ pids: new Set<number>(), ttys: new Set<number>(), cpuSec: 0 })
