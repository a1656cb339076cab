/**
 * A small scripted mesh behind the DashboardSource interface, for the dashboard's tests: real maps and
 * arrays of agents, jobs, task records and events, a real login-code store, and an explicit clock.
 * Tests move it along (an agent joins, a task starts, finishes, fails) and watch what the dashboard shows.
 */
import type { AgentSummary, JobState, JobSummary, TaskRecord, TaskState } from '../../shared/protocol/messages.ts'
import type { MeshEvent, MeshEventType } from '../../shared/protocol/events.ts'
import { createLoginCodes, type LoginCodes } from '../../coordinator/dashboard/login-codes.ts'
import type { DashboardRole, DashboardSource, DashboardUser } from '../../coordinator/dashboard/source.ts'
import { MeshfarmError } from '../../shared/util/errors.ts'

interface Job {
  jobId: number
  name: string
  owner: string
  ownerName?: string
  submittedAt: number
  state: JobState
  tasks: TaskRecord[]
}

const EMPTY_COUNTS = (): Record<TaskState, number> => ({ queued: 0, held: 0, staging: 0, running: 0, suspended: 0, done: 0, failed: 0, cancelled: 0 })

export class MemoryMesh implements DashboardSource {
  readonly agents = new Map<string, AgentSummary>()
  readonly jobs = new Map<number, Job>()
  readonly events: MeshEvent[] = []
  readonly codes: LoginCodes = createLoginCodes()
  private readonly listeners = new Set<(e: MeshEvent) => void>()
  private nextJob = 1
  clock: number

  constructor (start = Date.parse('2026-11-22T10:00:00Z')) {
    this.clock = start
  }

  /** Moves the mesh's clock on; returns the new time. */
  tick (ms: number): number {
    this.clock += ms
    return this.clock
  }

  login (user: DashboardUser): string {
    return this.codes.issue(user, Date.now()).code
  }

  addAgent (hostname: string, o: Partial<AgentSummary> = {}): string {
    const peerId = o.peerId ?? `12D3KooW${hostname.replace(/[^A-Za-z0-9]/g, '').padEnd(44, 'x').slice(0, 44)}`
    this.agents.set(peerId, {
      peerId, hostname, addrs: [], state: 'up', cores: 4, memoryMb: 8192, gpus: [], slots: 4, running: 0, labels: {}, runsAsRoot: false, lastSeen: 0, ...o
    })
    this.emit('agent.joined', { agent: peerId, host: hostname })
    return peerId
  }

  submit (owner: { peerId: string, name?: string }, name: string, tasks: number): number {
    const jobId = this.nextJob++
    const records: TaskRecord[] = Array.from({ length: tasks }, (_, index) => ({
      jobId, index, id: `${jobId}.${index}`, name: `${name}-${index}`, commands: ['true'], state: 'queued', host: null, peerId: null,
      resources: { cores: 1, gpus: [], memoryMb: 0 }, start: null, end: null, durationMs: null, exitCode: null, signal: null, attempts: 0, outputs: []
    }))
    this.jobs.set(jobId, { jobId, name, owner: owner.peerId, ownerName: owner.name, submittedAt: this.clock, state: 'active', tasks: records })
    this.emit('job.submitted', { jobId, data: { tasks } })
    return jobId
  }

  start (jobId: number, index: number, peerId: string): void {
    const t = this.task(jobId, index)
    const a = this.agents.get(peerId)!
    Object.assign(t, { state: 'running', host: a.hostname, peerId, start: new Date(this.clock).toISOString(), end: null, attempts: t.attempts + 1 })
    a.running++
    this.emit('task.started', { jobId, index, agent: peerId, host: a.hostname })
  }

  finish (jobId: number, index: number, o: { exitCode?: number, stderr?: string } = {}): void {
    const t = this.task(jobId, index)
    const exitCode = o.exitCode ?? 0
    const ok = exitCode === 0
    const stderr = new TextEncoder().encode(o.stderr ?? '')
    Object.assign(t, {
      state: ok ? 'done' : 'failed',
      end: new Date(this.clock).toISOString(),
      durationMs: this.clock - Date.parse(t.start!),
      exitCode,
      stderr: { name: 'stderr', hash: 'e3b0c442', size: stderr.length, data: stderr },
      failure: ok ? undefined : { kind: 'exit', message: `exited with code ${exitCode}`, retryable: false }
    })
    const a = t.peerId != null ? this.agents.get(t.peerId) : undefined
    if (a != null) a.running = Math.max(0, a.running - 1)
    this.emit(ok ? 'task.finished' : 'task.failed', { jobId, index, agent: t.peerId ?? undefined, host: t.host ?? undefined, data: { exitCode } })
    this.settle(jobId)
  }

  /** Many events at once (tests of slow pages): each with a payload of `bytes`. */
  flood (count: number, bytes: number): void {
    for (let i = 0; i < count; i++) this.emit('agent.owner', { data: { present: i % 2 === 0, note: 'x'.repeat(bytes) } })
  }

  // ---- DashboardSource ----

  overview (now: number): { agents: AgentSummary[], jobs: JobSummary[] } {
    void now
    return { agents: [...this.agents.values()].map(a => ({ ...a })), jobs: [...this.jobs.values()].map(j => this.summary(j)) }
  }

  tasks (jobId: number, after: number, limit: number): { tasks: TaskRecord[], next: number | null } {
    const job = this.jobs.get(jobId)
    if (job == null) throw new MeshfarmError('NOT_FOUND', `job ${jobId}: no such job`)
    const from = Math.max(0, after)
    const tasks = job.tasks.slice(from, from + limit).map(t => structuredClone(t))
    return { tasks, next: from + tasks.length < job.tasks.length ? from + tasks.length : null }
  }

  eventsSince (seq: number, limit: number): MeshEvent[] {
    // seq is 1-based and dense here, so the slice starts right after it.
    return this.events.slice(Math.max(0, seq), Math.max(0, seq) + limit)
  }

  jobEvents (jobId: number, seq: number, limit: number): MeshEvent[] {
    return this.events.filter(e => e.jobId === jobId && e.seq > seq).slice(0, limit)
  }

  subscribe (listener: (e: MeshEvent) => void): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  async cancelJob (jobId: number, who: { peerId: string, role: DashboardRole }): Promise<number> {
    const job = this.jobs.get(jobId)
    if (job == null) throw new MeshfarmError('NOT_FOUND', `job ${jobId}: no such job`)
    void who
    let n = 0
    for (const t of job.tasks) {
      if (t.state === 'queued' || t.state === 'running' || t.state === 'staging') {
        if (t.state === 'running' && t.peerId != null) this.agents.get(t.peerId)!.running--
        t.state = 'cancelled'
        if (t.start != null) t.end = new Date(this.clock).toISOString()
        n++
        this.emit('task.cancelled', { jobId, index: t.index })
      }
    }
    this.settle(jobId)
    return n
  }

  redeemLoginCode (code: string, now: number): DashboardUser | null {
    return this.codes.redeem(code, now)
  }

  lastSeq (): number {
    return this.events.length
  }

  // ---- internals ----

  private task (jobId: number, index: number): TaskRecord {
    const t = this.jobs.get(jobId)?.tasks[index]
    if (t == null) throw new Error(`memory mesh: no task ${jobId}.${index}`)
    return t
  }

  private summary (j: Job): JobSummary {
    const counts = EMPTY_COUNTS()
    for (const t of j.tasks) counts[t.state]++
    const s: JobSummary = { jobId: j.jobId, name: j.name, owner: j.owner, state: j.state, submittedAt: j.submittedAt, counts, total: j.tasks.length }
    if (j.ownerName != null) s.ownerName = j.ownerName
    return s
  }

  private settle (jobId: number): void {
    const job = this.jobs.get(jobId)!
    if (job.state !== 'active' || job.tasks.some(t => t.state === 'queued' || t.state === 'running' || t.state === 'staging')) return
    job.state = job.tasks.some(t => t.state === 'cancelled') ? 'cancelled' : job.tasks.some(t => t.state === 'failed') ? 'failed' : 'done'
    this.emit('job.done', { jobId, data: { state: job.state } })
  }

  private emit (type: MeshEventType, e: Omit<MeshEvent, 'seq' | 'time' | 'type'>): void {
    const event: MeshEvent = { seq: this.events.length + 1, time: this.clock, type, ...e }
    this.events.push(event)
    for (const l of this.listeners) l(event)
  }
}
