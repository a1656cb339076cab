/**
 * What the coordinator's core holds in memory, shared by the core's handlers (core.ts), recovery
 * (recovery.ts) and the client queries (queries.ts). The store holds the truth; this is its working copy.
 */
import type { StoredAttempt } from './store.ts'
import type { JobRuntime } from './job-table.ts'
import { AgentRegistry } from './agent-registry.ts'
import { UsageBook } from './fair-share.ts'

export type Attempt = StoredAttempt

export interface CoreOptions {
  agentLostMs: number
  /** Attempts that died with their agent while running, before a task fails. */
  crashLimit: number
  /** How many tasks beyond its slots an agent may hold staged, so the next task starts without a round trip. */
  prefetch: number
  /** A member's name on the access list, for task records and summaries. */
  nameOf?: (peerId: string) => string | undefined
}

export interface CoreState {
  jobs: Map<number, JobRuntime>
  agents: AgentRegistry
  attempts: Map<number, Attempt>
  /** Live attempts of each task (usually one; more while an attempt of a lost agent may still deliver). */
  byTask: Map<number, number[]>
  /** Affinity key -> agent id, once a task with that key has been placed. */
  affinity: Map<string, string>
  /** Each member's recent usage, for fair share. */
  usage: UsageBook
  nextJobId: number
}

export function emptyState (nextJobId: number, usage = new UsageBook()): CoreState {
  return { jobs: new Map(), agents: new AgentRegistry(), attempts: new Map(), byTask: new Map(), affinity: new Map(), usage, nextJobId }
}

/** Cores each member's live attempts hold now. */
export function runningCores (s: CoreState): Map<string, number> {
  const out = new Map<string, number>()
  for (const a of s.attempts.values()) {
    if (a.orphan) continue
    const owner = s.jobs.get(a.jobId)?.owner
    if (owner != null) out.set(owner, (out.get(owner) ?? 0) + a.cores)
  }
  return out
}

/** One number per task, for maps keyed by task: job id in the high bits, index in the low 32. */
export function taskKey (jobId: number, index: number): number {
  return jobId * 2 ** 32 + index
}

export function attemptsOf (s: CoreState, jobId: number, index: number): Attempt[] {
  return (s.byTask.get(taskKey(jobId, index)) ?? []).map(id => s.attempts.get(id)!)
}

export function addAttempt (s: CoreState, a: Attempt): void {
  s.attempts.set(a.id, a)
  const key = taskKey(a.jobId, a.index)
  const list = s.byTask.get(key)
  if (list == null) s.byTask.set(key, [a.id])
  else list.push(a.id)
  s.agents.ensure(a.agent, a.host, a.startedAt).attempts.add(a.id)
}

export function removeAttempt (s: CoreState, a: Attempt): void {
  s.attempts.delete(a.id)
  const key = taskKey(a.jobId, a.index)
  const rest = (s.byTask.get(key) ?? []).filter(id => id !== a.id)
  if (rest.length === 0) s.byTask.delete(key)
  else s.byTask.set(key, rest)
  s.agents.get(a.agent)?.attempts.delete(a.id)
}

/** The name to show for a member: its name on the access list, else the end of its peer id. */
export function displayName (opts: Pick<CoreOptions, 'nameOf'>, peerId: string): string {
  return opts.nameOf?.(peerId) ?? peerId.slice(-8)
}
