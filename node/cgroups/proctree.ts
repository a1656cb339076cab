/**
 * A task's processes without cgroups: its process tree by parent pid, plus every process whose environment
 * carries the task's marker (MESHFARM_ATTEMPT_ID and MESHFARM_AGENT_PID, set by the launcher), which finds
 * double-forked children that were reparented away from the task. A process that clears its environment and
 * double-forks escapes this; a cgroup does not let it. Parsing is pure; the /proc scan and signals are the edges.
 */
import { readdir, readFile } from 'node:fs/promises'

/** USER_HZ: /proc reports CPU times in these ticks on every Linux architecture meshfarm runs on. */
export const USER_HZ = 100

export interface ProcStat {
  pid: number
  comm: string
  /** R, S, D, T (stopped), t (traced), Z, X, I */
  state: string
  ppid: number
  pgrp: number
  session: number
  /** Controlling terminal, encoded as st_rdev; 0 for none. */
  ttyNr: number
  /** Own CPU time in ticks (utime + stime). */
  cpuTicks: number
  /** Ticks since boot when it started. */
  startTicks: number
}

/** /proc/<pid>/stat. The name may hold spaces and parentheses, so fields are counted from the last ')'. */
export function parseProcStat (text: string): ProcStat | null {
  const open = text.indexOf('(')
  const close = text.lastIndexOf(')')
  if (open < 0 || close < open) return null
  const pid = Number(text.slice(0, open).trim())
  const f = text.slice(close + 2).trim().split(/\s+/)
  // f[0] is field 3 (state); utime is field 14, stime 15, starttime 22.
  if (!Number.isInteger(pid) || f.length < 20) return null
  const n = (i: number): number => Number(f[i - 3])
  return { pid, comm: text.slice(open + 1, close), state: f[0], ppid: n(4), pgrp: n(5), session: n(6), ttyNr: n(7), cpuTicks: n(14) + n(15), startTicks: n(22) }
}

export interface TaskMarker {
  attemptId: string
  /** The agent that started it: several agents may share a machine. */
  agentPid: number
}

/** The two environment entries that mark a task's processes. */
export function markerEntries (m: TaskMarker): [string, string] {
  return [`MESHFARM_ATTEMPT_ID=${m.attemptId}`, `MESHFARM_AGENT_PID=${m.agentPid}`]
}

/** The marker values in a NUL-separated environment block, if both are there. Pure. */
export function markerOf (environ: Buffer): TaskMarker | null {
  let attemptId: string | null = null
  let agentPid: number | null = null
  for (const entry of environ.toString('utf8').split('\0')) {
    if (entry.startsWith('MESHFARM_ATTEMPT_ID=')) attemptId = entry.slice(20)
    else if (entry.startsWith('MESHFARM_AGENT_PID=') && /^\d+$/.test(entry.slice(19))) agentPid = Number(entry.slice(19))
  }
  return attemptId != null && attemptId !== '' && agentPid != null ? { attemptId, agentPid } : null
}

export interface ProcEntry { stat: ProcStat, marker: TaskMarker | null }

/**
 * The pids of each task: processes carrying its marker, plus all their descendants and the descendants of the
 * given root pids (a child that dropped its environment before exec is still a child). Pure.
 */
export function groupTasks (entries: ProcEntry[], agentPid: number, roots: ReadonlyMap<string, number> = new Map()): Map<string, number[]> {
  const children = new Map<number, number[]>()
  for (const e of entries) children.set(e.stat.ppid, [...(children.get(e.stat.ppid) ?? []), e.stat.pid])
  const owner = new Map<number, string>()
  const claim = (pid: number, id: string): void => {
    const stack = [pid]
    while (stack.length > 0) {
      const p = stack.pop()!
      if (owner.has(p)) continue
      owner.set(p, id)
      stack.push(...(children.get(p) ?? []))
    }
  }
  const alive = new Set(entries.map(e => e.stat.pid))
  for (const e of entries) if (e.marker?.agentPid === agentPid) claim(e.stat.pid, e.marker.attemptId)
  for (const [id, pid] of roots) if (alive.has(pid)) claim(pid, id)
  const out = new Map<string, number[]>()
  for (const [pid, id] of owner) out.set(id, [...(out.get(id) ?? []), pid])
  for (const pids of out.values()) pids.sort((a, b) => a - b)
  return out
}

/** Every process this user can see, with its marker when its environment is readable. */
export async function scanProcesses (procDir = '/proc'): Promise<ProcEntry[]> {
  const names = (await readdir(procDir)).filter(n => /^\d+$/.test(n))
  const out: ProcEntry[] = []
  await Promise.all(names.map(async n => {
    try {
      const stat = parseProcStat(await readFile(`${procDir}/${n}/stat`, 'utf8'))
      if (stat == null || stat.ppid === 2 || stat.pid === 2) return // kernel threads
      const env = await readFile(`${procDir}/${n}/environ`).catch(() => Buffer.alloc(0))
      out.push({ stat, marker: markerOf(env) })
    } catch {} // gone, or not ours to read
  }))
  return out
}

export async function readStat (pid: number): Promise<ProcStat | null> {
  try { return parseProcStat(await readFile(`/proc/${pid}/stat`, 'utf8')) } catch { return null }
}

function signal (pid: number, sig: NodeJS.Signals): boolean {
  try { process.kill(pid, sig); return true } catch { return false }
}

export type FindPids = () => Promise<number[]>

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

/**
 * SIGSTOPs a task's processes until a fresh scan finds none left running (a child forked between scan and stop
 * is caught by the next round), then waits until each reads state T. Resolves with the stopped pids; throws
 * if some are still not stopped after `timeoutMs`.
 */
export async function stopTree (find: FindPids, timeoutMs = 1000): Promise<number[]> {
  const deadline = Date.now() + timeoutMs
  const stopped = new Set<number>()
  for (let round = 0; ; round++) {
    const pids = await find()
    const fresh = pids.filter(p => !stopped.has(p))
    for (const p of fresh) if (signal(p, 'SIGSTOP')) stopped.add(p)
    const states = await Promise.all(pids.map(readStat))
    const running = states.filter(s => s != null && s.state !== 'T' && s.state !== 't' && s.state !== 'Z' && s.state !== 'X')
    if (fresh.length === 0 && running.length === 0) return [...stopped].filter(p => pids.includes(p))
    if (Date.now() > deadline) throw new Error(`stop: ${running.map(s => `${s!.pid} (${s!.comm}) is ${s!.state}`).join(', ')} after ${timeoutMs} ms`)
    if (fresh.length === 0) await sleep(Math.min(10 * (round + 1), 50))
  }
}

/** SIGCONTs every process of the task. */
export async function continueTree (find: FindPids): Promise<number[]> {
  const pids = await find()
  for (const p of pids) signal(p, 'SIGCONT')
  return pids
}

/** Stops the whole tree first (no fork escapes between rounds), then SIGKILLs until nothing is found. */
export async function killTree (find: FindPids, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  await stopTree(find, timeoutMs).catch(() => {})
  for (;;) {
    const pids = await find()
    const live = (await Promise.all(pids.map(readStat))).filter(s => s != null && s.state !== 'Z' && s.state !== 'X')
    if (live.length === 0) return
    for (const s of live) signal(s!.pid, 'SIGKILL')
    if (Date.now() > deadline) throw new Error(`kill: ${live.length} processes still alive after ${timeoutMs} ms`)
    await sleep(20)
  }
}
