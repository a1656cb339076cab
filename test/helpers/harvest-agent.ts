/**
 * For the harvest tests with real agents: the injected presence file (written whole, by rename, so the agent
 * never reads half of it), task scripts that run until the test releases them, and the task processes of an
 * agent found in /proc by their marker (double-forked ones included), with their state and their freezer's.
 */
import { closeSync, constants, openSync, readFileSync, renameSync, writeFileSync, writeSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
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
 * A task of three processes that stay put until the test releases it: the shell, a background sleep and a
 * double-forked shell that left the task's session, both shells blocked opening `<releaseDir>/<job>.<index>`,
 * a FIFO the test makes (`makeRelease`) and writes once (`release`); then every process of it ends.
 */
export function heldTask (releaseDir: string): string {
  const r = `${releaseDir}/$MESHFARM_TASK_ID`
  return `sleep 300 & S=$!; (setsid sh -c "read x < ${r}" </dev/null >/dev/null 2>&1 &); read x < ${r}; kill $S; echo released`
}

export function makeRelease (releaseDir: string, taskId: string): void {
  execFileSync('mkfifo', ['-m', '0666', join(releaseDir, taskId)])
}

/** Opens the FIFO without blocking (its readers are there, or it is tried again) and lets both shells go. */
export async function release (releaseDir: string, taskId: string): Promise<void> {
  const fd = await waitFor(() => { try { return openSync(join(releaseDir, taskId), constants.O_WRONLY | constants.O_NONBLOCK) } catch { return null } }, `a reader of ${taskId}'s release`)
  writeSync(fd, 'go\n')
  closeSync(fd)
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
