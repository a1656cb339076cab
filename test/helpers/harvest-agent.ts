/**
 * For the harvest tests with real agents: the injected presence file (written whole, by rename, so the agent
 * never reads half of it), task scripts that run until the test releases them, and the task processes of an
 * agent found in /proc by their marker (double-forked ones included), with their state and their freezer's.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs'
import { groupTasks, scanProcesses, type ProcStat } from '../../node/cgroups/proctree.ts'
import type { InjectedState } from '../../node/harvest/sources/injected.ts'
import type { MeshClient } from '../../shared/client/client.ts'
import type { TaskRecord } from '../../shared/protocol/messages.ts'

export const PRESENT: InjectedState = { idleMs: 0, loadNotOurs: 0, sessions: 1 }
export const AWAY: InjectedState = { idleMs: 3_600_000, loadNotOurs: 0, sessions: 1 }

export function setPresence (file: string, s: InjectedState): void {
  writeFileSync(`${file}.tmp`, JSON.stringify(s))
  renameSync(`${file}.tmp`, file)
}

/**
 * A task of three processes (the shell, a background sleep, a double-forked loop that left the shell's session)
 * that runs until `<releaseDir>/<job>.<index>` exists; then every process of it ends.
 */
export function heldTask (releaseDir: string): string {
  const r = `${releaseDir}/$MESHFARM_JOB_ID.$MESHFARM_TASK_INDEX`
  return `sleep 300 & S=$!; (setsid sh -c "while [ ! -e ${r} ]; do sleep 0.05; done" </dev/null >/dev/null 2>&1 &); while [ ! -e ${r} ]; do sleep 0.05; done; kill $S; echo released`
}

export interface Proc { stat: ProcStat, nice: number, freezer: string | null }

function nice (pid: number): number {
  try {
    const t = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return Number(t.slice(t.lastIndexOf(')') + 2).split(' ')[16]) // field 19
  } catch { return NaN }
}

/** The v1 freezer state of a process's cgroup, or null where it has none. */
function freezerOf (pid: number): string | null {
  try {
    const line = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').find(l => /^\d+:freezer:/.test(l))
    if (line == null) return null
    const path = line.slice(line.indexOf(':freezer:') + 9)
    return readFileSync(`/sys/fs/cgroup/freezer${path}/freezer.state`, 'utf8').trim()
  } catch { return null }
}

/** An agent's task processes by attempt id (MESHFARM_ATTEMPT_ID), zombies left out. */
export async function taskProcs (agentPid: number): Promise<Map<string, Proc[]>> {
  const entries = await scanProcesses()
  const byPid = new Map(entries.map(e => [e.stat.pid, e.stat]))
  const out = new Map<string, Proc[]>()
  for (const [id, pids] of groupTasks(entries, agentPid)) {
    const procs = pids.map(p => byPid.get(p)!).filter(s => s.state !== 'Z' && s.state !== 'X').map(stat => ({ stat, nice: nice(stat.pid), freezer: freezerOf(stat.pid) }))
    if (procs.length > 0) out.set(id, procs)
  }
  return out
}

/** Stopped for good: SIGSTOPped (state T), or in a frozen cgroup (v1 shows D, the freezer says FROZEN). */
export const isStopped = (p: Proc): boolean => p.stat.state === 'T' || p.freezer === 'FROZEN'

export async function records (client: MeshClient, jobId: number): Promise<TaskRecord[]> {
  return (await client.tasks(jobId, { limit: 1000 })).tasks
}

/** Polls an event we wait for (never a timer we race), at 10 ms. */
export async function waitFor<T> (cond: () => Promise<T | null | false> | T | null | false, what: string, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await cond()
    if (v !== null && v !== false) return v
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}
