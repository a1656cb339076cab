/**
 * "Why is my task not running?", in plain words: the requirement no agent meets, a hold, desktops whose owners
 * are present, a Slurm bridge's allocation still pending, or simply the tasks ahead of it. Read-only functions
 * over the core's state; the decisions themselves stay in the scheduler.
 */
import type { TaskState, TaskSpec } from '../shared/protocol/data.ts'
import { unschedulableReason, type SchedTask } from './scheduler.ts'
import type { CoordinatorCore } from './core.ts'
import type { AgentRuntime } from './agent-registry.ts'
import { attemptsOf } from './core-state.ts'

export interface WhyLine { index?: number, name?: string, state: string, reason: string }

/** Lines listed for a whole job: one per distinct reason, with how many tasks it concerns. */
const MAX_LINES = 20

function capacityOf (agents: AgentRuntime[]): Array<{ id: string, labels: Record<string, string>, totalCores: number, totalMemoryMb: number, gpuCount: number, maxTaskMs?: number }> {
  return agents.map(a => ({ id: a.id, labels: a.resources.labels, totalCores: a.resources.cores, totalMemoryMb: a.resources.memoryMb, gpuCount: a.resources.gpus.length, maxTaskMs: a.resources.maxTaskMs }))
}

/** Agents whose resources we know (placeholders of agents not yet seen since a restart have none). */
function knownAgents (core: CoordinatorCore): AgentRuntime[] {
  return [...core.state.agents.all()].filter(a => a.resources.os !== '' || a.connected)
}

/** Why none of these tasks could run on any agent of the mesh, or null when each could run somewhere. */
export function unplaceableReason (core: CoordinatorCore, tasks: TaskSpec[]): string | null {
  const agents = capacityOf(knownAgents(core))
  if (agents.length === 0) return null
  const seen = new Set<string>()
  for (const t of tasks) {
    const key = `${t.cores}/${t.gpus}/${t.memoryMb}/${t.timeoutMs}/${JSON.stringify(t.constraints)}`
    if (seen.has(key)) continue
    seen.add(key)
    const why = unschedulableReason(toSched(t), agents)
    if (why != null) return `task ${t.index} (${t.name}) ${why}`
  }
  return null
}

function toSched (t: Pick<TaskSpec, 'cores' | 'gpus' | 'memoryMb' | 'constraints' | 'timeoutMs'>): SchedTask {
  return { key: 0, cores: t.cores, gpus: t.gpus, memoryMb: t.memoryMb, constraints: t.constraints, timeoutMs: t.timeoutMs }
}

/** Why the job's waiting tasks (or one task) are not running. */
export function whyWaiting (core: CoordinatorCore, jobId: number, index: number | undefined, now: number): WhyLine[] {
  const job = core.getJob(jobId)
  const t = job.tasks
  if (t == null) return [{ state: job.state, reason: `the job has ended (${job.state})` }]
  const indexes = index != null ? [index] : Array.from({ length: job.total }, (_, i) => i)
  const grouped = new Map<string, { state: TaskState, count: number, first: number }>()
  for (const i of indexes) {
    if (i >= job.total) continue
    const state = t.state(i)
    const reason = reasonFor(core, jobId, i, state, now)
    if (reason == null) continue
    const key = `${state}\u0000${reason}`
    const g = grouped.get(key)
    if (g == null) grouped.set(key, { state, count: 1, first: i })
    else g.count++
  }
  return [...grouped.entries()].slice(0, MAX_LINES).map(([key, g]) => {
    const reason = key.split('\u0000')[1]
    return index != null || g.count === 1
      ? { index: g.first, state: g.state, reason }
      : { state: g.state, reason: `${g.count} tasks: ${reason}` }
  })
}

function reasonFor (core: CoordinatorCore, jobId: number, i: number, state: TaskState, now: number): string | null {
  const job = core.getJob(jobId)
  const a = attemptsOf(core.state, jobId, i).find(x => !x.orphan)
  switch (state) {
    case 'done': case 'failed': case 'cancelled': return null
    case 'held': return `held (meshfarm release ${jobId} ${i})`
    case 'staging': return `inputs being staged on ${a?.host ?? 'an agent'}`
    case 'running': return `running on ${a?.host ?? 'an agent'}`
    case 'suspended': {
      const why = a != null ? core.state.agents.get(a.agent)?.status?.harvest?.reason : undefined
      return `suspended on ${a?.host ?? 'an agent'}${why != null ? `: ${why}` : ''}`
    }
  }
  if (job.held) return `the job is held (meshfarm release ${jobId})`
  const shape = job.tasks!.shape(i)
  const task = toSched(shape)
  const agents = knownAgents(core)
  const never = unschedulableReason(task, capacityOf(agents))
  if (never != null) return never
  const able = agents.filter(a => unschedulableReason(task, capacityOf([a])) == null)
  const up = able.filter(a => a.connected && a.state === 'up')
  if (up.length === 0) return `no agent that can run it is connected (${able.length} known: ${able.map(a => `${a.resources.hostname} ${a.connected ? a.state : 'disconnected'}`).join(', ')})`
  const lending = up.filter(a => a.status?.harvest?.lending !== false)
  const notes = up.flatMap(a => (a.status?.notes ?? []).slice(0, 1).map(n => `${a.resources.hostname}: ${n}`))
  if (lending.length === 0) return `all matching desktops have their owners present (${up.map(a => `${a.resources.hostname}: ${a.status?.harvest?.reason ?? 'reclaimed'}`).join('; ')})`
  const ahead = queuedAhead(core, jobId, i)
  void now
  const cap = job.header.perAgent != null ? `; the job runs at most ${job.header.perAgent} at once per agent` : ''
  return `waits for a free slot on ${lending.length} matching agent(s)${ahead > 0 ? `: ${ahead} tasks ahead of it` : ''}${cap}${notes.length > 0 ? `; ${notes.join('; ')}` : ''}`
}

/** Queued tasks placed before this one (jobs submitted earlier, and this job's tasks ahead of it). */
function queuedAhead (core: CoordinatorCore, jobId: number, index: number): number {
  let n = 0
  for (const job of core.state.jobs.values()) {
    if (job.tasks == null || job.held) continue
    if (job.id < jobId) n += job.counts.queued
    else if (job.id === jobId) {
      for (const i of job.tasks.queued()) {
        if (i === index) break
        n++
      }
    }
  }
  return n
}
