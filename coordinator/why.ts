/**
 * "Why is my task not running?", in plain words: the requirement no agent meets, a hold, desktops whose owners
 * are present, a Slurm bridge's notes, fair share between members, or simply the tasks ahead of it. Read-only
 * functions over the core's state; the decisions themselves stay in the scheduler. A whole job is explained in a
 * few lines (one per state, one per distinct kind of waiting task), in time linear in its size.
 */
import type { TaskState, TaskSpec } from '../shared/protocol/data.ts'
import { unschedulableReason, type SchedTask } from './scheduler.ts'
import type { CoordinatorCore } from './core.ts'
import type { AgentRuntime } from './agent-registry.ts'
import type { JobRuntime, Shape } from './job-table.ts'
import { attemptsOf, displayName, runningCores } from './core-state.ts'

export interface WhyLine { index?: number, name?: string, state: string, reason: string }

type Capacity = { id: string, labels: Record<string, string>, totalCores: number, totalMemoryMb: number, gpuCount: number, maxTaskMs?: number }

function capacityOf (agents: AgentRuntime[]): Capacity[] {
  return agents.map(a => ({ id: a.id, labels: a.resources.labels, totalCores: a.resources.cores, totalMemoryMb: a.resources.memoryMb, gpuCount: a.resources.gpus.length, maxTaskMs: a.resources.maxTaskMs }))
}

/** Agents whose resources we know (placeholders of agents not yet seen since a restart have none). */
function knownAgents (core: CoordinatorCore): AgentRuntime[] {
  return [...core.state.agents.all()].filter(a => a.resources.os !== '' || a.connected)
}

function toSched (t: Pick<TaskSpec, 'cores' | 'gpus' | 'memoryMb' | 'constraints' | 'timeoutMs'>): SchedTask {
  return { key: 0, cores: t.cores, gpus: t.gpus, memoryMb: t.memoryMb, constraints: t.constraints, timeoutMs: t.timeoutMs }
}

/** What a task asks for, and which task it is. */
export type Demand = Pick<TaskSpec, 'index' | 'name' | 'cores' | 'gpus' | 'memoryMb' | 'constraints' | 'timeoutMs'>

/** Why none of these tasks could run on any agent of the mesh, or null when each could run somewhere. */
export function unplaceableReason (core: CoordinatorCore, tasks: Iterable<Demand>): string | null {
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

/** Why the job's waiting tasks (or one task) are not running. */
export function whyWaiting (core: CoordinatorCore, jobId: number, index: number | undefined, now: number): WhyLine[] {
  const job = core.getJob(jobId)
  const t = job.tasks
  if (t == null) return [{ state: job.state, reason: `the job has ended (${job.state})` }]
  if (index != null) {
    if (index >= job.total) return []
    const state = t.state(index)
    const awaited = state === 'queued' ? job.inputs?.waits(index) === true ? job.inputs.waitingFor(index) : null : null
    const reason = awaited != null
      ? inputReason(awaited)
      : state === 'queued' ? queuedReason(core, job, t.shape(index), positionOf(job, index), now) : reasonInState(core, job, index, state)
    return reason == null ? [] : [{ index, state, reason }]
  }
  const lines: WhyLine[] = []
  const inStates = new Map<TaskState, number>()
  const firstOfShape = new Map<Shape, { index: number, position: number, count: number }>()
  let position = 0
  let awaiting: { index: number, count: number } | null = null
  for (const i of t.queued()) {
    if (job.inputs?.waits(i) === true) {
      if (awaiting == null) awaiting = { index: i, count: 0 }
      awaiting.count++
      continue
    }
    const shape = t.shape(i)
    const g = firstOfShape.get(shape)
    if (g == null) firstOfShape.set(shape, { index: i, position, count: 1 })
    else g.count++
    position++
  }
  for (let i = 0; i < job.total; i++) {
    const s = t.state(i)
    if (s !== 'queued') inStates.set(s, (inStates.get(s) ?? 0) + 1)
  }
  if (awaiting != null) {
    const name = job.inputs?.waitingFor(awaiting.index) ?? 'a file'
    lines.push({ index: awaiting.index, state: 'queued', reason: `${awaiting.count === 1 ? '' : `${awaiting.count} tasks: `}${inputReason(name)}` })
  }
  for (const [shape, g] of firstOfShape) {
    lines.push({ index: g.index, state: 'queued', reason: `${g.count === 1 ? '' : `${g.count} tasks like this one: `}${queuedReason(core, job, shape, g.position, now)}` })
  }
  for (const s of ['held', 'staging', 'running', 'suspended'] as const) {
    const n = inStates.get(s) ?? 0
    if (n > 0) lines.push({ state: s, reason: `${n} task(s) ${s === 'held' ? `held (meshfarm release ${jobId} TASK)` : s === 'suspended' ? 'suspended: their desktops\' owners came back' : s}` })
  }
  return lines
}

/** A task whose files are still being uploaded by the submitter. */
function inputReason (name: string): string {
  return `waiting for its input ${name} to arrive from the submitter (still uploading; if that stopped, cancel the job and submit again)`
}

/** A task's place in its job's queue. */
function positionOf (job: JobRuntime, index: number): number {
  let n = 0
  for (const i of job.tasks!.queued()) {
    if (i === index) return n
    n++
  }
  return n
}

function reasonInState (core: CoordinatorCore, job: JobRuntime, i: number, state: TaskState): string | null {
  const a = attemptsOf(core.state, job.id, i).find(x => !x.orphan)
  switch (state) {
    case 'held': return `held (meshfarm release ${job.id} ${i})`
    case 'staging': return `inputs being staged on ${a?.host ?? 'an agent'}`
    case 'running': return `running on ${a?.host ?? 'an agent'}`
    case 'suspended': {
      const why = a != null ? core.state.agents.get(a.agent)?.status?.harvest?.reason : undefined
      return `suspended on ${a?.host ?? 'an agent'}${why != null ? `: ${why}` : ''}`
    }
    default: return null
  }
}

/** Why a queued task of this shape, at this place in its job's queue, waits. */
function queuedReason (core: CoordinatorCore, job: JobRuntime, shape: Shape, position: number, now: number): string {
  if (job.held) return `the job is held (meshfarm release ${job.id})`
  const task = toSched(shape)
  const agents = knownAgents(core)
  const never = unschedulableReason(task, capacityOf(agents))
  if (never != null) return never
  const able = agents.filter(a => unschedulableReason(task, capacityOf([a])) == null)
  const up = able.filter(a => a.connected && a.state === 'up')
  if (up.length === 0) return `no agent that can run it is connected (${able.length} known: ${able.map(a => `${a.resources.hostname} ${a.connected ? a.state : 'disconnected'}`).join(', ')})`
  const lending = up.filter(a => a.status?.harvest?.lending !== false)
  if (lending.length === 0) return `all matching desktops have their owners present (${up.map(a => `${a.resources.hostname}: ${a.status?.harvest?.reason ?? 'reclaimed'}`).join('; ')})`
  const notes = up.flatMap(a => (a.status?.notes ?? []).slice(0, 1).map(n => `${a.resources.hostname}: ${n}`))
  const parts = [`waits for a free slot on ${lending.length} matching agent(s)`]
  const others = fairShareAhead(core, job.owner, now)
  if (others.tasks > 0) parts.push(`fair share: ${others.tasks} tasks of ${others.names.join(', ')} go first (they have used less lately)`)
  const ahead = position + samePersonAhead(core, job)
  if (ahead > 0) parts.push(`${ahead} of ${displayName({ nameOf: core.nameOf }, job.owner)}'s tasks are ahead of it`)
  if (job.header.perAgent != null) parts.push(`the job runs at most ${job.header.perAgent} at once per agent`)
  return [...parts, ...notes].join('; ')
}

/** Queued tasks of other members whose load is lower than this member's: the scheduler serves them first. */
function fairShareAhead (core: CoordinatorCore, owner: string, now: number): { tasks: number, names: string[] } {
  const running = runningCores(core.state)
  const load = (o: string): number => core.state.usage.load(o, running.get(o) ?? 0, now)
  const mine = load(owner)
  const queued = new Map<string, number>()
  for (const j of core.state.jobs.values()) {
    if (j.tasks == null || j.held || j.owner === owner || j.counts.queued === 0) continue
    queued.set(j.owner, (queued.get(j.owner) ?? 0) + j.counts.queued)
  }
  const ahead = [...queued].filter(([o]) => load(o) < mine)
  return { tasks: ahead.reduce((n, [, q]) => n + q, 0), names: ahead.map(([o]) => displayName({ nameOf: core.nameOf }, o)) }
}

/** Queued tasks of the same member's jobs that come before this job (higher priority, or earlier). */
function samePersonAhead (core: CoordinatorCore, job: JobRuntime): number {
  let n = 0
  const p = job.header.priority ?? 0
  for (const j of core.state.jobs.values()) {
    if (j === job || j.tasks == null || j.held || j.owner !== job.owner) continue
    const jp = j.header.priority ?? 0
    if (jp > p || (jp === p && j.id < job.id)) n += j.counts.queued
  }
  return n
}
