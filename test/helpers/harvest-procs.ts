/** Real task processes for the harvest integration tests: started the way the launcher would, inspected in /proc. */
import { spawn, type ChildProcess } from 'node:child_process'
import { readStat, type ProcStat } from '../../node/cgroups/proctree.ts'
import { wrapShellCommand, type LaunchSettings } from '../../node/cgroups/index.ts'

export const NO_SETTINGS: LaunchSettings = { procFiles: [], nice: 0, ioIdle: false, rlimitDataBytes: null }

export interface RunningTask {
  child: ChildProcess
  /** SIGKILL to the task's process group (not double-forked children: they left it). */
  killGroup: () => void
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  output: () => string
}

/** Starts `script` as task `attemptId` of this process (the "agent"), through the launch settings' shell form. */
export function startTask (attemptId: string, script: string, settings: LaunchSettings = NO_SETTINGS): RunningTask {
  const child = spawn('/bin/sh', ['-c', wrapShellCommand(settings, script)], {
    env: { ...process.env, MESHFARM_ATTEMPT_ID: attemptId, MESHFARM_AGENT_PID: String(process.pid) },
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let out = ''
  child.stdout!.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr!.on('data', (d: Buffer) => { out += d.toString() })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>(resolve => child.on('exit', (code, signal) => resolve({ code, signal })))
  return { child, exited, output: () => out, killGroup: () => { try { process.kill(-child.pid!, 'SIGKILL') } catch {} } }
}

/** Polls `cond` (an event we wait for, not a timer we race) until it holds, or fails naming `what`. */
export async function waitUntil<T> (cond: () => Promise<T | null | false> | T | null | false, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await cond()
    if (v !== null && v !== false) return v
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

export async function stats (pids: number[]): Promise<ProcStat[]> {
  return (await Promise.all(pids.map(readStat))).filter((s): s is ProcStat => s != null)
}

/** A shell task with a sleeping child, a double-forked busy child (reparented away) and the shell itself. */
export const TREE_SCRIPT = "sleep 300 & (setsid sh -c 'while :; do :; done' </dev/null >/dev/null 2>&1 &); echo started; wait"

export const isRoot = process.getuid?.() === 0

/**
 * Waits until the tree of TREE_SCRIPT is complete: the shell, its sleep, and the double-forked busy child whose
 * parent is no longer in the tree (the intermediate subshell has exited). Returns all pids and the busy one.
 */
export async function waitForTree (pidsOf: () => Promise<number[]>, shellPid: number): Promise<{ pids: number[], busy: number }> {
  return await waitUntil(async () => {
    const pids = await pidsOf()
    const st = await stats(pids)
    const busy = st.find(s => s.comm === 'sh' && s.pid !== shellPid && !pids.includes(s.ppid))
    return st.length === 3 && busy != null && st.some(s => s.pid === shellPid) ? { pids, busy: busy.pid } : null
  }, 'the task tree: shell, sleep and a double-forked child')
}
