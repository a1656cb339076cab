/**
 * The scheduler: a synchronous, pure function from (queue, agents, affinity bindings) to placements. No I/O, no
 * clock. It works on copies of the agents' free resources, so it can never over-commit an agent and never
 * mutates its input.
 *
 * Policy: each member's tasks in their queue order (their jobs by priority, then FIFO); between members, the one
 * with the least load (what they run now plus their recent usage, fair-share.ts) is served next, and each task
 * placed adds its cores to its member's load, so members take turns. A task goes to the fitting agent with the most free slots (spreads load,
 * so two agents of two slots take tasks alternately); GPU tasks prefer the fitting agent with the fewest free
 * GPUs (keeps big GPU boxes free for big tasks). Ties break on agent id. A task that fits nowhere is skipped, so
 * a blocked big task never holds up the small ones behind it. Affinity keys bind to the first agent chosen.
 * A job may cap how many of its tasks one agent holds at once (`limits`, by the tasks' `group`): an agent at its
 * cap is skipped for that job's tasks as if it were full, and other jobs' tasks still go there.
 * A batch-system bridge (`spill`) comes after every lab agent that fits and has an idle slot, and before a place
 * in a busy lab agent's queue: the cluster takes the overflow.
 */

export interface SchedAgent {
  id: string
  hostname: string
  labels: Record<string, string>
  accepting: boolean
  freeSlots: number
  freeCores: number
  freeMemoryMb: number
  /** Ids of GPUs not in use, ascending. */
  freeGpus: number[]
  /** The longest task time limit the agent can honour (an allocation that ends); absent: no limit. */
  maxTaskMs?: number
  /**
   * Slots with nothing on them at all. `freeSlots` counts an agent's queue too (tasks staged behind running ones,
   * so short tasks start without a round trip); an idle slot is taken before a place in a busy agent's queue.
   */
  idleSlots?: number
  /** A batch-system bridge: it gets a task only when no fitting lab agent has an idle slot for it. */
  spill?: boolean
}

export interface SchedTask {
  key: number
  cores: number
  gpus: number
  memoryMb: number
  constraints: Record<string, string>
  affinity?: string
  /** The task's time limit (0 or absent: none). */
  timeoutMs?: number
  /** The task's job, for per-agent limits (ScheduleInput.limits). */
  group?: number
}

/** At most `limit` tasks of one group (a job) at once on one agent; `held` is how many each agent holds now. */
export interface PerAgentLimit { limit: number, held: ReadonlyMap<string, number> }

export interface Placement { key: number, agentId: string, cores: number, gpuIds: number[], memoryMb: number }

/** One member's queued tasks, in their order, and their load (cores) before this pass. */
export interface OwnerQueue {
  owner: string
  load: number
  tasks: Iterable<SchedTask>
}

export interface ScheduleInput {
  /** A single queue (one member), or `queues`: one per member, served by fair share. */
  queue?: Iterable<SchedTask>
  queues?: OwnerQueue[]
  agents: SchedAgent[]
  affinity: ReadonlyMap<string, string>
  /** Per-agent limits by group; groups absent here have none. */
  limits?: ReadonlyMap<number, PerAgentLimit>
  maxScan?: number
}

export interface ScheduleOutput { placements: Placement[], newAffinity: Map<string, string> }

export function fits (agent: SchedAgent, task: SchedTask): boolean {
  if (!agent.accepting || agent.freeSlots < 1) return false
  if (agent.freeCores < task.cores) return false
  if (task.memoryMb > 0 && agent.freeMemoryMb < task.memoryMb) return false
  if (agent.freeGpus.length < task.gpus) return false
  if (agent.maxTaskMs != null && (task.timeoutMs ?? 0) > agent.maxTaskMs) return false
  for (const [k, v] of Object.entries(task.constraints)) if (agent.labels[k] !== v) return false
  return true
}

function better (a: SchedAgent, b: SchedAgent, task: SchedTask): boolean {
  // A bridge comes after a lab agent with an idle slot, and before a place in a busy lab agent's queue.
  if ((a.spill === true) !== (b.spill === true)) {
    const lab = a.spill === true ? b : a
    return ((lab.idleSlots ?? lab.freeSlots) > 0) === (lab === a)
  }
  const aIdle = (a.idleSlots ?? a.freeSlots) > 0
  const bIdle = (b.idleSlots ?? b.freeSlots) > 0
  if (aIdle !== bIdle) return aIdle
  if (task.gpus > 0 && a.freeGpus.length !== b.freeGpus.length) return a.freeGpus.length < b.freeGpus.length
  if (a.freeSlots !== b.freeSlots) return a.freeSlots > b.freeSlots
  return a.id < b.id
}

/** What makes tasks interchangeable for placement: a task of a capped group is only like its group's tasks. */
function shapeKey (t: SchedTask, capped: boolean): string {
  const c = Object.keys(t.constraints).sort().map(k => `${k}=${t.constraints[k]}`).join(',')
  return `${t.cores}/${t.gpus}/${t.memoryMb}/${t.timeoutMs ?? 0}/${c}${capped ? `/${String(t.group)}` : ''}`
}

/** Room left under a group's per-agent limit (Infinity when it has none); `added` counts this pass's placements. */
export function limitRoom (limits: ReadonlyMap<number, PerAgentLimit> | undefined, group: number | undefined, agentId: string, added = 0): number {
  const l = group != null ? limits?.get(group) : undefined
  return l == null ? Infinity : l.limit - (l.held.get(agentId) ?? 0) - added
}

export function schedule (input: ScheduleInput): ScheduleOutput {
  const agents = input.agents.map(a => ({ ...a, labels: a.labels, freeGpus: [...a.freeGpus] }))
  const byId = new Map(agents.map(a => [a.id, a]))
  const placements: Placement[] = []
  const newAffinity = new Map<string, string>()
  const blockedShapes = new Set<string>()
  const maxScan = input.maxScan ?? 100_000
  // This pass's placements per group and agent, for the per-agent limits.
  const added = new Map<string, number>()
  const addedKey = (group: number | undefined, agentId: string): string => `${String(group)}\u0000${agentId}`
  const room = (a: SchedAgent, t: SchedTask): boolean => limitRoom(input.limits, t.group, a.id, added.get(addedKey(t.group, a.id)) ?? 0) > 0
  let openSlots = agents.reduce((n, a) => n + (a.accepting ? Math.max(0, a.freeSlots) : 0), 0)
  let scanned = 0
  const queue = fairOrder(input.queues ?? [{ owner: '', load: 0, tasks: input.queue ?? [] }])
  for (const task of queue) {
    if (openSlots <= 0 || scanned++ >= maxScan) break
    let target: (typeof agents)[number] | undefined
    if (task.affinity != null) {
      const bound = newAffinity.get(task.affinity) ?? input.affinity.get(task.affinity)
      const boundAgent = bound != null ? byId.get(bound) : undefined
      if (boundAgent != null) {
        if (!fits(boundAgent, task) || !room(boundAgent, task)) continue // waits for its host
        target = boundAgent
      }
    }
    if (target == null) {
      const capped = task.group != null && input.limits?.has(task.group) === true
      const shape = task.affinity == null ? shapeKey(task, capped) : null
      if (shape != null && blockedShapes.has(shape)) continue
      for (const a of agents) if (fits(a, task) && room(a, task) && (target == null || better(a, target, task))) target = a
      if (target == null) {
        if (shape != null) blockedShapes.add(shape)
        continue
      }
      if (task.affinity != null) newAffinity.set(task.affinity, target.id)
    }
    const gpuIds = target.freeGpus.splice(0, task.gpus)
    target.freeSlots--
    if (target.idleSlots != null) target.idleSlots--
    target.freeCores -= task.cores
    target.freeMemoryMb -= task.memoryMb
    openSlots--
    if (task.group != null && input.limits?.has(task.group) === true) added.set(addedKey(task.group, target.id), (added.get(addedKey(task.group, target.id)) ?? 0) + 1)
    placements.push({ key: task.key, agentId: target.id, cores: task.cores, gpuIds, memoryMb: task.memoryMb })
    queue.placed(task)
  }
  return { placements, newAffinity }
}

/** A member's tasks skipped in a row (none fit anywhere) after which the member sits out the rest of the pass. */
const OWNER_SKIP_LIMIT = 256

/**
 * The members' queues merged by fair share: always the next task of the member with the least load; `placed`
 * adds a placed task's cores to its member's load. A member whose tasks keep not fitting sits out the pass, so
 * one person's blocked million tasks cannot use up the pass's scan budget.
 */
export function fairOrder (queues: OwnerQueue[]): Iterable<SchedTask> & { placed: (t: SchedTask) => void } {
  const live = queues.map(q => ({ owner: q.owner, load: q.load, it: q.tasks[Symbol.iterator](), skipped: 0 }))
  const ownerOf = new Map<number, (typeof live)[number]>()
  return {
    placed: (t: SchedTask) => {
      const o = ownerOf.get(t.key)
      if (o == null) return
      o.load += t.cores
      o.skipped = 0
    },
    * [Symbol.iterator] () {
      while (live.length > 0) {
        let best = 0
        for (let i = 1; i < live.length; i++) {
          const a = live[i]
          const b = live[best]
          if (a.load < b.load || (a.load === b.load && a.owner < b.owner)) best = i
        }
        const o = live[best]
        const next = o.it.next()
        if (next.done === true || o.skipped >= OWNER_SKIP_LIMIT) {
          live.splice(best, 1)
          continue
        }
        ownerOf.set(next.value.key, o)
        // Counted as skipped until `placed` says otherwise.
        o.skipped++
        yield next.value
      }
    }
  }
}

/** A one-line reason when no agent could ever run the task, whatever is free; null when some agent could. */
export function unschedulableReason (task: SchedTask, agents: Array<{ id: string, labels: Record<string, string>, totalCores: number, totalMemoryMb: number, gpuCount: number, maxTaskMs?: number }>): string | null {
  if (agents.length === 0) return 'no agents on the mesh'
  const labelled = agents.filter(a => Object.entries(task.constraints).every(([k, v]) => a.labels[k] === v))
  if (labelled.length === 0) {
    const want = Object.entries(task.constraints).map(([k, v]) => `${k}=${v}`).join(' ')
    return `needs label ${want}, no agent has it`
  }
  const maxGpus = Math.max(...labelled.map(a => a.gpuCount))
  if (task.gpus > maxGpus) return `needs ${task.gpus} GPUs; the largest agent has ${maxGpus}`
  const maxCores = Math.max(...labelled.map(a => a.totalCores))
  if (task.cores > maxCores) return `needs ${task.cores} cores; the largest agent has ${maxCores}`
  const maxMem = Math.max(...labelled.map(a => a.totalMemoryMb))
  if (task.memoryMb > maxMem) return `needs ${task.memoryMb} MB of memory; the largest agent has ${maxMem}`
  const timeout = task.timeoutMs ?? 0
  const inTime = labelled.filter(a => a.maxTaskMs == null || timeout <= a.maxTaskMs)
  if (inTime.length === 0) return `needs up to ${formatMs(timeout)}, the longest any agent offers is ${formatMs(Math.max(...labelled.map(a => a.maxTaskMs ?? 0)))}`
  const all = inTime.some(a => a.gpuCount >= task.gpus && a.totalCores >= task.cores && a.totalMemoryMb >= task.memoryMb)
  return all ? null : 'no single agent has enough cores, memory and GPUs together'
}

function formatMs (ms: number): string {
  const s = Math.round(ms / 1000)
  return `${Math.floor(s / 3600)}:${String(Math.floor(s / 60) % 60).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`
}
