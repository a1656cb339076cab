/**
 * What the coordinator's core holds in memory, shared by the core's handlers (core.ts), recovery
 * (recovery.ts) and the client queries (queries.ts). The store holds the truth; this is its working copy.
 */
import type { StoredAttempt } from './store.ts'
import type { TaskSpec } from '../shared/protocol/data.ts'
import type { JobRuntime } from './job-table.ts'
import { AgentRegistry, holdOn } from './agent-registry.ts'
import { UsageBook } from './fair-share.ts'

/** An attempt, with the task it runs while it is in memory (a result then needs no read of the store). */
export type Attempt = StoredAttempt & { spec?: TaskSpec }

export interface CoreOptions {
  agentLostMs: number
  /** Attempts that died with their agent while running, before a task fails. */
  crashLimit: number
  /** How many tasks beyond its slots an agent may hold staged, so the next task starts without a round trip. */
  prefetch: number
  /** A member's name on the access list, for task records and summaries. */
  nameOf?: (peerId: string) => string | undefined
  /** Whether the coordinator's store holds a file: jobs whose files are still being uploaded wait for them. */
  hasBlob?: (hash: string) => boolean
}

export interface CoreState {
  jobs: Map<number, JobRuntime>
  agents: AgentRegistry
  attempts: Map<number, Attempt>
  /** Live attempts of each task (usually one; more while an attempt of a lost agent may still deliver). */
  byTask: Map<number, number[]>
  /** Affinity key -> agent id, once a task with that key has been placed. */
  affinity: Map<string, string>
  /** Cores each member's live (not orphaned) attempts hold, kept as attempts come and go. */
  ownerCores: Map<string, number>
  /** Each member's recent usage, for fair share. */
  usage: UsageBook
  nextJobId: number
}

export function emptyState (nextJobId: number, usage = new UsageBook()): CoreState {
  return { jobs: new Map(), agents: new AgentRegistry(), attempts: new Map(), byTask: new Map(), affinity: new Map(), ownerCores: new Map(), usage, nextJobId }
}

/** Cores each member's live attempts hold now. */
export function runningCores (s: CoreState): ReadonlyMap<string, number> {
  return s.ownerCores
}

function countCores (s: CoreState, a: Attempt, sign: 1 | -1): void {
  const owner = s.jobs.get(a.jobId)?.owner
  if (owner == null) return
  const n = (s.ownerCores.get(owner) ?? 0) + sign * a.cores
  if (n > 0) s.ownerCores.set(owner, n)
  else s.ownerCores.delete(owner)
}

/** An attempt's agent was declared lost (true), or came back with it (false). */
export function setOrphan (s: CoreState, a: Attempt, orphan: boolean): void {
  if (a.orphan === orphan) return
  if (s.attempts.get(a.id) === a) countCores(s, a, orphan ? -1 : 1)
  a.orphan = orphan
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
  const agent = s.agents.ensure(a.agent, a.host, a.startedAt)
  agent.attempts.add(a.id)
  holdOn(agent.held, a, 1)
  if (!a.orphan) countCores(s, a, 1)
}

export function removeAttempt (s: CoreState, a: Attempt): void {
  if (!s.attempts.delete(a.id)) return
  const key = taskKey(a.jobId, a.index)
  const list = s.byTask.get(key)
  if (list == null || (list.length === 1 && list[0] === a.id)) s.byTask.delete(key)
  else {
    const rest = list.filter(id => id !== a.id)
    if (rest.length === 0) s.byTask.delete(key)
    else s.byTask.set(key, rest)
  }
  const agent = s.agents.get(a.agent)
  if (agent?.attempts.delete(a.id) === true) holdOn(agent.held, a, -1)
  if (!a.orphan) countCores(s, a, -1)
}

/** The name to show for a member: its name on the access list, else the end of its peer id. */
export function displayName (opts: Pick<CoreOptions, 'nameOf'>, peerId: string): string {
  return opts.nameOf?.(peerId) ?? peerId.slice(-8)
}
