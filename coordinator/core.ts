/**
 * The coordinator's state machine. Every handler is synchronous: it changes state, writes the change to the
 * store in one transaction, and talks to the outside only through `CoordinatorComm`. The service (service.ts)
 * owns the network and the timers and calls these handlers; tests call them directly with a recording comm.
 *
 * Task states: queued -> staging (placed on an agent, inputs being fetched or waiting in its local queue)
 * -> running -> done | failed | cancelled, and back to queued when an attempt is lost or retried.
 */
import type {
  AgentResources, AgentSummary, Assignment, AttemptResult, CoordMessage, Failure, JobHeader, JobState, JobSummary,
  TaskRecord, TaskSpec, TaskState
} from '../shared/protocol/messages.ts'
import { TERMINAL_STATES, taskId } from '../shared/protocol/messages.ts'
import { MeshfarmError } from '../shared/util/errors.ts'
import { schedule, type SchedAgent, type SchedTask } from './scheduler.ts'
import { constraintKey, parseConstraintKey, type Store, type StoredAttempt } from './store.ts'

export interface CoordinatorComm {
  send: (agentId: string, msg: CoordMessage) => void
  jobChanged: (jobId: number) => void
}

export interface CoreOptions {
  agentLostMs: number
  crashLimit: number
  /** How many tasks beyond its slots an agent may hold staged, so the next task starts without a round trip. */
  prefetch: number
}

const STATE_CODES: TaskState[] = ['queued', 'staging', 'running', 'done', 'failed', 'cancelled', 'held', 'suspended']
const CODE: Record<TaskState, number> = { queued: 0, staging: 1, running: 2, done: 3, failed: 4, cancelled: 5, held: 6, suspended: 7 }

interface Shape { cores: number, gpus: number, memoryMb: number, constraints: Record<string, string> }

interface JobRuntime {
  id: number
  owner: string
  header: JobHeader
  submittedAt: number
  total: number
  state: JobState
  counts: Record<TaskState, number>
  /** Per-task arrays (typed, so a million tasks cost a few MB). Absent for finished jobs. */
  tasks?: {
    states: Uint8Array
    attempts: Uint8Array
    crashes: Uint8Array
    shapeOf: Uint32Array
    shapes: Shape[]
    affinity: Map<number, string>
    /** FIFO of task indexes; entries are removed lazily, so a requeued task may appear twice. */
    queue: number[]
    head: number
    /** Entries dropped from the front of `queue` so far: absolute position = dropped + array index. */
    dropped: number
    /** Absolute queue position of each task's one valid entry. */
    queuedAt: Float64Array
  }
  cancelRequested: boolean
}

interface Attempt extends StoredAttempt {
  running: boolean
}

interface AgentRuntime {
  id: string
  resources: AgentResources
  addrs: string[]
  state: 'up' | 'draining' | 'lost'
  connected: boolean
  lastSeen: number
  attempts: Set<number>
  /** Recent task run time on this agent (moving average, ms); null until a task has finished there. */
  recentTaskMs: number | null
}

/**
 * How many tasks per slot an agent holds (running plus queued at the agent). Short tasks need a deeper queue,
 * or the agent idles while its results and the next assignments cross the network; long tasks keep it shallow,
 * so the queue stays here where any agent that frees up can take it.
 */
function queueDepth (recentTaskMs: number | null, prefetch: number): number {
  if (recentTaskMs == null || recentTaskMs >= 1000) return 1 + prefetch
  if (recentTaskMs >= 100) return Math.max(1 + prefetch, 3)
  return Math.max(1 + prefetch, 8)
}

function emptyCounts (): Record<TaskState, number> {
  return { queued: 0, held: 0, staging: 0, running: 0, suspended: 0, done: 0, failed: 0, cancelled: 0 }
}

export class CoordinatorCore {
  private readonly store: Store
  private readonly comm: CoordinatorComm
  private readonly opts: CoreOptions
  private readonly jobs = new Map<number, JobRuntime>()
  private readonly agents = new Map<string, AgentRuntime>()
  private readonly attempts = new Map<number, Attempt>()
  private readonly affinity = new Map<string, string>()
  private nextJobId: number

  constructor (store: Store, comm: CoordinatorComm, opts: CoreOptions, now: number) {
    this.store = store
    this.comm = comm
    this.opts = opts
    this.nextJobId = store.nextJobId()
    this.recover(now)
  }

  // ---- recovery ----

  /** Rebuilds memory from the store: queues of active jobs, and attempts awaiting their agents' return. */
  private recover (now: number): void {
    for (const job of this.store.loadJobs()) {
      const rt: JobRuntime = { ...job, counts: emptyCounts(), cancelRequested: job.state === 'cancelled' }
      this.jobs.set(job.id, rt)
      const active = job.state === 'active'
      if (active) rt.tasks = this.newTaskArrays(job.total)
      const shapeIds = new Map<string, number>()
      for (const row of this.store.loadTasks(job.id)) {
        rt.counts[row.state]++
        if (rt.tasks == null) continue
        const t = rt.tasks
        t.states[row.index] = CODE[row.state]
        t.attempts[row.index] = Math.min(255, row.attempts)
        t.crashes[row.index] = Math.min(255, row.crashes)
        const key = `${row.cores}/${row.gpus}/${row.memoryMb}/${row.constraints}`
        let shape = shapeIds.get(key)
        if (shape == null) {
          shape = t.shapes.push({ cores: row.cores, gpus: row.gpus, memoryMb: row.memoryMb, constraints: parseConstraintKey(row.constraints) }) - 1
          shapeIds.set(key, shape)
        }
        t.shapeOf[row.index] = shape
        if (row.affinity != null) t.affinity.set(row.index, row.affinity)
        if (row.state === 'queued') enqueue(t, row.index)
      }
    }
    for (const a of this.store.loadActiveAttempts()) {
      const job = this.jobs.get(a.jobId)
      if (job?.tasks == null) {
        this.store.endAttempt(a.id)
        continue
      }
      this.attempts.set(a.id, { ...a, running: job.tasks.states[a.index] === CODE.running })
      // The agent has until agentLostMs from now to come back and claim it.
      const agent = this.agents.get(a.agent) ?? this.placeholderAgent(a.agent, a.host, now)
      agent.attempts.add(a.id)
    }
    // Tasks marked in flight without a live attempt (cannot happen with transactions, but never strand a task).
    for (const job of this.jobs.values()) {
      const t = job.tasks
      if (t == null) continue
      const inFlight = new Set<number>()
      for (const a of this.attempts.values()) if (a.jobId === job.id) inFlight.add(a.index)
      for (let i = 0; i < job.total; i++) {
        const s = t.states[i]
        if ((s === CODE.staging || s === CODE.running) && !inFlight.has(i)) this.requeue(job, i)
      }
    }
  }

  private placeholderAgent (id: string, host: string, now: number): AgentRuntime {
    const agent: AgentRuntime = {
      id,
      resources: { hostname: host, os: '', cores: 0, physicalCores: 0, memoryMb: 0, slots: 0, gpus: [], labels: {}, runsAsRoot: false },
      addrs: [],
      state: 'up',
      connected: false,
      lastSeen: now,
      attempts: new Set(),
      recentTaskMs: null
    }
    this.agents.set(id, agent)
    return agent
  }

  private newTaskArrays (total: number): NonNullable<JobRuntime['tasks']> {
    return {
      states: new Uint8Array(total),
      attempts: new Uint8Array(total),
      crashes: new Uint8Array(total),
      shapeOf: new Uint32Array(total),
      shapes: [],
      affinity: new Map(),
      queue: [],
      head: 0,
      dropped: 0,
      queuedAt: new Float64Array(total).fill(-1)
    }
  }

  // ---- submission ----

  /** Stores a whole job in one transaction; returns its id once it is durable. */
  submit (owner: string, header: JobHeader, tasks: TaskSpec[], now: number): number {
    if (tasks.length === 0) throw new MeshfarmError('SPEC_INVALID', 'a job needs at least one task')
    const id = this.nextJobId
    const rt: JobRuntime = { id, owner, header, submittedAt: now, total: tasks.length, state: 'active', counts: emptyCounts(), cancelRequested: false, tasks: this.newTaskArrays(tasks.length) }
    const t = rt.tasks!
    const shapeIds = new Map<string, number>()
    this.store.transaction(() => {
      this.store.insertJob({ id, owner, header, state: 'active', submittedAt: now, total: tasks.length })
      tasks.forEach((spec, i) => {
        if (spec.index !== i) throw new MeshfarmError('PROTOCOL', `task ${i} arrived with index ${spec.index}`)
        this.store.insertTask(id, spec)
        const key = `${spec.cores}/${spec.gpus}/${spec.memoryMb}/${constraintKey(spec.constraints)}`
        let shape = shapeIds.get(key)
        if (shape == null) {
          shape = t.shapes.push({ cores: spec.cores, gpus: spec.gpus, memoryMb: spec.memoryMb, constraints: spec.constraints }) - 1
          shapeIds.set(key, shape)
        }
        t.shapeOf[i] = shape
        if (spec.affinity != null && spec.affinity !== '') t.affinity.set(i, spec.affinity)
        enqueue(t, i)
      })
    })
    rt.counts.queued = tasks.length
    this.jobs.set(id, rt)
    this.nextJobId++
    this.comm.jobChanged(id)
    return id
  }

  // ---- agents ----

  onAgentHello (agentId: string, resources: AgentResources, running: number[], pending: number[], draining: boolean, addrs: string[], now: number): void {
    const agent = this.agents.get(agentId) ?? this.placeholderAgent(agentId, resources.hostname, now)
    agent.resources = resources
    agent.addrs = addrs
    agent.connected = true
    agent.lastSeen = now
    agent.state = draining || agent.state === 'draining' ? 'draining' : 'up'
    const claimed = new Set([...running, ...pending])
    // Attempts we placed there that the agent no longer has: it restarted and lost them.
    const lost = [...agent.attempts].filter(id => !claimed.has(id))
    if (lost.length > 0) {
      this.store.transaction(() => {
        for (const id of lost) this.attemptLost(id, 'the agent restarted and no longer has this attempt', true, now)
      })
    }
    this.cancelStale(agent, running)
  }

  onHeartbeat (agentId: string, running: number[], now: number): void {
    const agent = this.agents.get(agentId)
    if (agent == null) return
    agent.lastSeen = now
    if (agent.state === 'lost') {
      // It was cut off and came back on the same session: everything it ran was requeued meanwhile.
      agent.state = 'up'
      agent.connected = true
    }
    this.cancelStale(agent, running)
  }

  /** Attempts the agent runs that are no longer ours (requeued while it was away, or cancelled): stop them. */
  private cancelStale (agent: AgentRuntime, running: number[]): void {
    const stale = running.filter(id => {
      const a = this.attempts.get(id)
      return a == null || a.agent !== agent.id
    })
    if (stale.length > 0) this.comm.send(agent.id, { t: 'coord.cancel', attemptIds: stale, reason: 'stale attempt: the task was given to another agent' })
  }

  /**
   * Attempts an agent handed back (it stopped or drained, or its machine was reclaimed): requeued without counting
   * against the task. Returns those to acknowledge (requeued) and those refused (not this agent's any more).
   */
  onVacated (agentId: string, attemptIds: number[], now: number): { acked: number[], refused: number[] } {
    const acked: number[] = []
    const refused: number[] = []
    this.store.transaction(() => {
      for (const id of attemptIds) {
        const a = this.attempts.get(id)
        if (a == null || a.agent !== agentId) {
          refused.push(id)
          continue
        }
        this.attemptLost(id, 'vacated by its agent', false, now)
        acked.push(id)
      }
    })
    return { acked, refused }
  }

  /** The agent's offer changed (a bridge's capacity, a desktop lent or reclaimed). */
  onAgentUpdate (agentId: string, resources: AgentResources): void {
    const agent = this.agents.get(agentId)
    if (agent != null) agent.resources = resources
  }

  onAgentDisconnected (agentId: string): void {
    const agent = this.agents.get(agentId)
    if (agent != null) agent.connected = false
  }

  onStarted (agentId: string, attemptIds: number[]): void {
    const started: Attempt[] = []
    for (const id of attemptIds) {
      const a = this.attempts.get(id)
      if (a == null || a.agent !== agentId || a.running) continue
      a.running = true
      started.push(a)
    }
    if (started.length === 0) return
    this.store.transaction(() => {
      for (const a of started) {
        const job = this.jobs.get(a.jobId)
        if (job?.tasks == null || job.tasks.states[a.index] !== CODE.staging) continue
        this.setState(job, a.index, 'running')
      }
    })
  }

  /** Commits results; returns the attempt ids to acknowledge and those refused as stale. */
  onResults (agentId: string, results: AttemptResult[], now: number): { acked: number[], refused: number[] } {
    const acked: number[] = []
    const refused: number[] = []
    this.store.transaction(() => {
      for (const r of results) {
        const a = this.attempts.get(r.attemptId)
        if (a == null || a.agent !== agentId || a.jobId !== r.jobId || a.index !== r.index) {
          refused.push(r.attemptId)
          continue
        }
        this.finishAttempt(a, r, now)
        acked.push(r.attemptId)
        const agent = this.agents.get(agentId)
        const ran = r.endedAt - r.startedAt
        if (agent != null && Number.isFinite(ran) && ran >= 0) agent.recentTaskMs = agent.recentTaskMs == null ? ran : 0.8 * agent.recentTaskMs + 0.2 * ran
      }
    })
    return { acked, refused }
  }

  private finishAttempt (a: Attempt, r: AttemptResult, now: number): void {
    this.endAttempt(a)
    const job = this.jobs.get(a.jobId)
    if (job?.tasks == null) return
    const t = job.tasks
    const state = STATE_CODES[t.states[a.index]]
    if (TERMINAL_STATES.has(state)) return // cancelled meanwhile: the result is not wanted
    if (r.state === 'done') {
      this.commit(job, a.index, 'done', a, r)
      return
    }
    const failure: Failure = r.failure ?? { kind: 'internal', message: 'attempt ended without a result', retryable: false }
    if (r.state === 'cancelled') {
      // The agent stopped or drained before the task finished; not the task's fault, and not a crash.
      this.requeue(job, a.index)
      return
    }
    if (failure.kind === 'staging' || failure.kind === 'agent-lost') {
      // Not the task's fault (the agent stopped, or could not stage): try again elsewhere, bounded by the crash limit.
      this.retryOrFail(job, a.index, failure, now, a, r)
      return
    }
    const failures = t.attempts[a.index] - t.crashes[a.index]
    if (failure.retryable && failures <= job.header.retries) {
      this.requeue(job, a.index)
      return
    }
    this.commit(job, a.index, 'failed', a, r, failure)
  }

  private retryOrFail (job: JobRuntime, index: number, failure: Failure, _now: number, a?: Attempt, r?: AttemptResult): void {
    const t = job.tasks!
    t.crashes[index] = Math.min(255, t.crashes[index] + 1)
    if (t.crashes[index] >= this.opts.crashLimit) {
      const f: Failure = { kind: 'crash-limit', message: `gave up after ${t.crashes[index]} attempts lost with their agent (last: ${failure.message})`, retryable: false }
      this.commit(job, index, 'failed', a, r, f)
      return
    }
    this.requeue(job, index)
  }

  /** An attempt whose agent is gone or restarted: requeue it; a crash counts against the task unless excused. */
  private attemptLost (attemptId: number, why: string, countsAsCrash: boolean, now: number): void {
    const a = this.attempts.get(attemptId)
    if (a == null) return
    this.endAttempt(a)
    const job = this.jobs.get(a.jobId)
    if (job?.tasks == null) return
    if (TERMINAL_STATES.has(STATE_CODES[job.tasks.states[a.index]])) return
    if (countsAsCrash) {
      this.retryOrFail(job, a.index, { kind: 'agent-lost', message: why, retryable: true }, now, a)
    } else {
      this.requeue(job, a.index)
    }
  }

  private endAttempt (a: Attempt): void {
    this.attempts.delete(a.id)
    this.agents.get(a.agent)?.attempts.delete(a.id)
    this.store.endAttempt(a.id)
  }

  /** Declares agents lost that have been silent too long; their attempts go back to the queue. */
  tick (now: number): string[] {
    const lost: string[] = []
    for (const agent of this.agents.values()) {
      if (agent.state === 'lost' || now - agent.lastSeen <= this.opts.agentLostMs) continue
      const excused = agent.state === 'draining' && agent.attempts.size === 0
      agent.state = 'lost'
      agent.connected = false
      lost.push(agent.id)
      const ids = [...agent.attempts]
      if (ids.length === 0) continue
      this.store.transaction(() => {
        for (const id of ids) this.attemptLost(id, `agent ${agent.resources.hostname} stopped answering`, !excused, now)
      })
    }
    return lost
  }

  drain (agentId: string): void {
    const agent = this.findAgent(agentId)
    agent.state = 'draining'
    this.comm.send(agent.id, { t: 'coord.drain' })
  }

  /** The peer id of a known agent given by id, unique prefix or host name; null when none matches. */
  peerIdOf (query: string): string | null {
    try {
      return this.findAgent(query).id
    } catch {
      return null
    }
  }

  /** Finds an agent by peer id, a unique prefix of it, or its host name. */
  findAgent (query: string): AgentRuntime {
    const exact = this.agents.get(query)
    if (exact != null) return exact
    const matches = [...this.agents.values()].filter(a => a.id.startsWith(query) || a.resources.hostname === query)
    if (matches.length === 1) return matches[0]
    if (matches.length === 0) throw new MeshfarmError('NOT_FOUND', `no agent ${query} on this mesh`)
    throw new MeshfarmError('BAD_ARGUMENT', `${query} matches ${matches.length} agents: give more of the peer id`)
  }

  // ---- scheduling ----

  /** One scheduling pass: places queued tasks on agents and sends the assignments. Returns how many were placed. */
  schedulePass (now: number): number {
    const agents: SchedAgent[] = []
    for (const agent of this.agents.values()) {
      if (!agent.connected || agent.state !== 'up') continue
      agents.push(this.schedView(agent))
    }
    if (agents.length === 0) return 0
    const { placements, newAffinity } = schedule({ queue: this.queuedTasks(), agents, affinity: this.affinity })
    for (const [k, v] of newAffinity) this.affinity.set(k, v)
    if (placements.length === 0) return 0
    const byAgent = new Map<string, Assignment[]>()
    this.store.transaction(() => {
      for (const p of placements) {
        const jobId = Math.floor(p.key / 2 ** 32)
        const index = p.key % 2 ** 32
        const job = this.jobs.get(jobId)!
        const agent = this.agents.get(p.agentId)!
        const attempt: Attempt = {
          id: this.store.allocateAttemptId(), jobId, index, agent: agent.id, host: agent.resources.hostname,
          cores: p.cores, gpuIds: p.gpuIds, memoryMb: p.memoryMb, startedAt: now, running: false
        }
        this.store.insertAttempt(attempt)
        this.attempts.set(attempt.id, attempt)
        agent.attempts.add(attempt.id)
        const t = job.tasks!
        t.attempts[index] = Math.min(255, t.attempts[index] + 1)
        this.setState(job, index, 'staging')
        const task = this.store.taskSpec(jobId, index)
        let list = byAgent.get(agent.id)
        if (list == null) byAgent.set(agent.id, list = [])
        list.push({ attemptId: attempt.id, jobId, index, task, shared: job.header.shared, gpuIds: p.gpuIds, cores: p.cores })
      }
    })
    for (const [agentId, assignments] of byAgent) this.comm.send(agentId, { t: 'coord.assign', assignments })
    return placements.length
  }

  private schedView (agent: AgentRuntime): SchedAgent {
    const r = agent.resources
    const depth = queueDepth(agent.recentTaskMs, this.opts.prefetch)
    let cores = r.cores * depth
    let memory = r.memoryMb * depth
    const gpus = new Set(r.gpus.map(g => g.index))
    for (const id of agent.attempts) {
      const a = this.attempts.get(id)!
      cores -= a.cores
      memory -= a.memoryMb
      for (const g of a.gpuIds) gpus.delete(g)
    }
    return {
      id: agent.id,
      hostname: r.hostname,
      labels: r.labels,
      accepting: true,
      freeSlots: r.slots * depth - agent.attempts.size,
      freeCores: cores,
      freeMemoryMb: memory,
      freeGpus: [...gpus].sort((x, y) => x - y)
    }
  }

  /** Queued tasks of active jobs in submission order, lazily; compacts each job's queue as it goes. */
  private * queuedTasks (): Generator<SchedTask> {
    for (const job of this.jobs.values()) {
      const t = job.tasks
      if (t == null || job.counts.queued === 0) continue
      const valid = (i: number): boolean => t.states[t.queue[i]] === CODE.queued && t.queuedAt[t.queue[i]] === t.dropped + i
      while (t.head < t.queue.length && !valid(t.head)) t.head++
      if (t.head > 4096 && t.head * 2 > t.queue.length) {
        t.queue = t.queue.slice(t.head)
        t.dropped += t.head
        t.head = 0
      }
      for (let i = t.head; i < t.queue.length; i++) {
        if (!valid(i)) continue
        const index = t.queue[i]
        const shape = t.shapes[t.shapeOf[index]]
        const affinity = t.affinity.get(index)
        yield {
          key: job.id * 2 ** 32 + index,
          cores: shape.cores,
          gpus: shape.gpus,
          memoryMb: shape.memoryMb,
          constraints: shape.constraints,
          affinity: affinity != null ? `${job.id}\u0000${affinity}` : undefined
        }
      }
    }
  }

  hasQueued (): boolean {
    for (const job of this.jobs.values()) if (job.counts.queued > 0) return true
    return false
  }

  // ---- task state ----

  private setState (job: JobRuntime, index: number, state: TaskState): void {
    const t = job.tasks!
    const old = STATE_CODES[t.states[index]]
    job.counts[old]--
    job.counts[state]++
    t.states[index] = CODE[state]
    if (!TERMINAL_STATES.has(state)) this.store.setTaskState(job.id, index, state, t.attempts[index], t.crashes[index])
    this.comm.jobChanged(job.id)
  }

  private requeue (job: JobRuntime, index: number): void {
    this.setState(job, index, 'queued')
    enqueue(job.tasks!, index)
  }

  private commit (job: JobRuntime, index: number, state: 'done' | 'failed' | 'cancelled', a?: Attempt, r?: AttemptResult, failure?: Failure): void {
    const t = job.tasks!
    const spec = this.store.taskSpec(job.id, index)
    const agent = a != null ? this.agents.get(a.agent) : undefined
    const record: TaskRecord = {
      jobId: job.id,
      index,
      id: taskId(job.id, index),
      name: spec.name,
      commands: spec.commands,
      params: spec.params,
      state,
      host: a?.host ?? null,
      peerId: a?.agent ?? null,
      resources: { cores: a?.cores ?? spec.cores, gpus: a?.gpuIds ?? [], memoryMb: a?.memoryMb ?? spec.memoryMb },
      start: r != null ? new Date(r.startedAt).toISOString() : null,
      end: r != null ? new Date(r.endedAt).toISOString() : null,
      durationMs: r != null ? r.endedAt - r.startedAt : null,
      exitCode: r?.exitCode ?? null,
      signal: r?.signal ?? null,
      attempts: t.attempts[index],
      failure: failure ?? r?.failure,
      stdout: r?.stdout != null ? stripData(r.stdout) : undefined,
      stderr: r?.stderr != null ? stripData(r.stderr) : undefined,
      outputs: (r?.outputs ?? []).map(stripData),
      ...(r?.missingOutputs != null && r.missingOutputs.length > 0 ? { missingOutputs: r.missingOutputs } : {}),
      ...(r?.peakMemoryBytes != null ? { peakMemoryBytes: r.peakMemoryBytes } : {}),
      ...(r?.suspensions != null && r.suspensions.length > 0 ? { suspensions: r.suspensions } : {})
    }
    if (agent == null && a != null) record.host = a.host
    this.store.commitTask(record, t.crashes[index])
    this.setState(job, index, state)
    this.maybeFinishJob(job)
  }

  private maybeFinishJob (job: JobRuntime): void {
    const c = job.counts
    if (c.queued + c.staging + c.running > 0) return
    job.state = job.cancelRequested ? 'cancelled' : c.failed > 0 ? 'failed' : 'done'
    this.store.setJobState(job.id, job.state)
    delete job.tasks
    this.comm.jobChanged(job.id)
  }

  // ---- client requests ----

  cancelJob (jobId: number, requester: string, isAdmin: boolean): number {
    const job = this.getJob(jobId)
    if (job.owner !== requester && !isAdmin) throw new MeshfarmError('FORBIDDEN', `job ${jobId} belongs to ${job.owner.slice(-8)}: cancelling it needs the admin role`)
    if (job.tasks == null) return 0
    const t = job.tasks
    job.cancelRequested = true
    const toStop = new Map<string, number[]>()
    let count = 0
    this.store.transaction(() => {
      for (const a of [...this.attempts.values()]) {
        if (a.jobId !== jobId) continue
        let list = toStop.get(a.agent)
        if (list == null) toStop.set(a.agent, list = [])
        list.push(a.id)
      }
      for (let i = 0; i < job.total && job.tasks != null; i++) {
        if (TERMINAL_STATES.has(STATE_CODES[t.states[i]])) continue
        count++
        this.commit(job, i, 'cancelled', undefined, undefined, { kind: 'cancelled', message: 'cancelled by the user', retryable: false })
      }
    })
    for (const [agentId, ids] of toStop) this.comm.send(agentId, { t: 'coord.cancel', attemptIds: ids, reason: 'job cancelled' })
    return count
  }

  getJob (jobId: number): JobRuntime {
    const job = this.jobs.get(jobId)
    if (job == null) throw new MeshfarmError('NOT_FOUND', `no job ${jobId}`)
    return job
  }

  jobHeader (jobId: number): JobHeader {
    return this.getJob(jobId).header
  }

  jobSummary (jobId: number): JobSummary {
    const j = this.getJob(jobId)
    return { jobId: j.id, name: j.header.name, label: j.header.label, owner: j.owner, state: j.state, submittedAt: j.submittedAt, counts: { ...j.counts }, total: j.total }
  }

  jobSummaries (): JobSummary[] {
    return [...this.jobs.keys()].map(id => this.jobSummary(id))
  }

  results (jobId: number, after: number, limit: number): { records: TaskRecord[], next: number, more: boolean, jobState: JobState } {
    const job = this.getJob(jobId)
    // The job's state is read first: if it has ended, the page below holds everything it committed.
    const jobState = job.state
    return { ...this.store.committedRecords(jobId, after, Math.max(1, Math.min(limit, 5000))), jobState }
  }

  /** Task records of a job, committed ones from the store, live ones from memory. */
  tasks (jobId: number, after: number, limit: number, states?: TaskState[]): { tasks: TaskRecord[], next: number | null } {
    const job = this.getJob(jobId)
    const want = states != null && states.length > 0 ? new Set(states) : null
    const out: TaskRecord[] = []
    let i = Math.max(0, after)
    for (; i < job.total && out.length < limit; i++) {
      const state = job.tasks != null ? STATE_CODES[job.tasks.states[i]] : null
      if (state != null && want != null && !want.has(state)) continue
      const committed = state == null || TERMINAL_STATES.has(state) ? this.store.taskRecord(jobId, i) : null
      if (committed != null) {
        if (want == null || want.has(committed.state)) out.push(committed)
        continue
      }
      const spec = this.store.taskSpec(jobId, i)
      const a = [...this.attempts.values()].find(x => x.jobId === jobId && x.index === i)
      out.push({
        jobId, index: i, id: taskId(jobId, i), name: spec.name, commands: spec.commands, params: spec.params,
        state: state ?? 'queued', host: a?.host ?? null, peerId: a?.agent ?? null,
        resources: { cores: a?.cores ?? spec.cores, gpus: a?.gpuIds ?? [], memoryMb: a?.memoryMb ?? spec.memoryMb },
        start: a != null ? new Date(a.startedAt).toISOString() : null, end: null, durationMs: null, exitCode: null, signal: null,
        attempts: job.tasks?.attempts[i] ?? 0, outputs: []
      })
    }
    return { tasks: out, next: i < job.total ? i : null }
  }

  peers (now: number): AgentSummary[] {
    return [...this.agents.values()].map(a => ({
      peerId: a.id,
      hostname: a.resources.hostname,
      addrs: a.addrs,
      state: a.state,
      cores: a.resources.cores,
      memoryMb: a.resources.memoryMb,
      gpus: a.resources.gpus,
      slots: a.resources.slots,
      running: [...a.attempts].filter(id => this.attempts.get(id)?.running === true).length,
      labels: a.resources.labels,
      runsAsRoot: a.resources.runsAsRoot,
      lastSeen: now - a.lastSeen
    }))
  }

  /** For tests and the benchmark: how many attempts are in flight. */
  get inFlight (): number {
    return this.attempts.size
  }
}

function enqueue (t: NonNullable<JobRuntime['tasks']>, index: number): void {
  t.queuedAt[index] = t.dropped + t.queue.length
  t.queue.push(index)
}

function stripData<T extends { data?: Uint8Array }> (ref: T): Omit<T, 'data'> {
  const { data: _data, ...rest } = ref
  return rest
}
