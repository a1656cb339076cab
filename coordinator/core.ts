/**
 * The coordinator's core: every handler is synchronous, checks what it was given before it changes anything,
 * applies task changes through the transition table (task-states.ts), writes them to the store, and talks to
 * the outside only through `CoordinatorComm`. The commit loop (commit-loop.ts) runs handlers inside one
 * transaction and releases their messages and events only after it commits; tests call handlers directly with
 * a recording comm and an explicit `now`.
 *
 * Nothing lost, nothing counted twice: a task holds one attempt at a time, except that an attempt of an agent
 * declared lost stays valid ("orphan") until the task starts running elsewhere, so a partition that heals in
 * time throws no finished work away. The first valid result commits; the task's other attempts are fenced.
 */
import type { AgentResources, AgentStatus, AttemptResult, CoordMessage, Failure, JobHeader, TaskSpec } from '../shared/protocol/messages.ts'
import type { MeshEvent } from '../shared/protocol/events.ts'
import { MeshfarmError } from '../shared/util/errors.ts'
import { schedule } from './scheduler.ts'
import type { Store } from './store.ts'
import { TaskTable, addBlock, emptyCounts, type JobRuntime } from './job-table.ts'
import { toBlocks, type TaskBlock } from '../shared/protocol/task-blocks.ts'
import { schedView, type AgentRuntime } from './agent-registry.ts'
import { addAttempt, attemptsOf, type Attempt, type CoreOptions, type CoreState } from './core-state.ts'
import { recoverState } from './recovery.ts'
import { perAgentLimits } from './job-limits.ts'
import { backlogFor, isBridge } from './backlog.ts'
import { TaskLedger } from './task-ledger.ts'
import * as queries from './queries.ts'
import { hasQueued, memberQueues, queuedTasks } from './member-queues.ts'
import { InputWait } from './input-wait.ts'

export type { CoreOptions } from './core-state.ts'

/** How often a bridge's backlog is worked out again while the queue keeps changing. */
const BACKLOG_EVERY_MS = 1000

export interface CoordinatorComm {
  send: (agentId: string, msg: CoordMessage) => void
  /** An event already appended to the store in the current transaction: publish it once that commits. */
  event: (e: MeshEvent) => void
}

export class CoordinatorCore {
  private readonly store: Store
  private readonly comm: CoordinatorComm
  private readonly opts: CoreOptions
  private s: CoreState
  private readonly ledger: TaskLedger
  /** The last coord.backlog sent to each bridge (sent again only when it changes, and on a new session). */
  private readonly backlogSent = new Map<string, string>()
  /** When each bridge's backlog was last worked out: at most once a second, or at once for a new offer. */
  private readonly backlogAt = new Map<string, number>()

  constructor (store: Store, comm: CoordinatorComm, opts: CoreOptions, now: number) {
    this.store = store
    this.comm = comm
    this.opts = opts
    const { state, stranded } = recoverState(store, now, opts.hasBlob)
    this.s = state
    this.ledger = new TaskLedger(store, comm, opts, () => this.s)
    for (const { jobId, index } of stranded) this.ledger.requeue(this.s.jobs.get(jobId)!, index, 'lose', 'no attempt was in flight', now)
  }

  /** Rebuilds memory from the store: after a handler failed half-way, memory must not drift from disk. */
  resync (now: number): void {
    const agents = this.s.agents
    this.s = recoverState(this.store, now, this.opts.hasBlob).state
    for (const a of agents.all()) {
      const fresh = this.s.agents.ensure(a.id, a.resources.hostname, now)
      Object.assign(fresh, { ...a, attempts: fresh.attempts, held: fresh.held })
    }
  }

  // ---- submission ----

  /** Stores a whole job given task by task (tests, and older clients' client.submit.tasks). */
  submit (owner: string, header: JobHeader, tasks: TaskSpec[], now: number): number {
    tasks.forEach((spec, i) => { if (spec.index !== i) throw new MeshfarmError('PROTOCOL', `task ${i} arrived with index ${spec.index}`) })
    return this.submitBlocks(owner, header, toBlocks(tasks), now)
  }

  /** Stores a whole job; its blocks of tasks arrive checked and in order (submission.ts). Returns the job's id. */
  submitBlocks (owner: string, header: JobHeader, blocks: TaskBlock[], now: number): number {
    let total = 0
    for (const b of blocks) {
      if (b.first !== total) throw new MeshfarmError('PROTOCOL', `tasks ${b.first}-${b.first + b.count - 1} arrived where task ${total} was expected`)
      total += b.count
    }
    if (total === 0) throw new MeshfarmError('SPEC_INVALID', 'a job needs at least one task')
    const id = this.s.nextJobId
    const t = new TaskTable(total)
    this.store.insertJob({ id, owner, header, state: 'active', submittedAt: now, total })
    for (const b of blocks) {
      this.store.insertBlock(id, b)
      addBlock(t, b)
    }
    const counts = emptyCounts()
    counts.queued = total
    const inputs = header.inputsToFollow === true && this.opts.hasBlob != null ? InputWait.of(header, blocks, this.opts.hasBlob) : null
    this.s.jobs.set(id, { id, owner, header, submittedAt: now, total, state: 'active', held: false, counts, tasks: t, cancelRequested: false, notes: { failures: [], missingOutputs: [] }, ...(inputs != null ? { inputs } : {}) })
    this.s.nextJobId++
    this.ledger.emit({ time: now, type: 'job.submitted', jobId: id, data: { name: header.name, total, owner: this.ledger.name(owner) } })
    return id
  }

  /** A file reached the store: tasks that waited only for it can be placed (the pass after this handler). */
  inputArrived (hash: string): number {
    let freed = 0
    for (const job of this.s.jobs.values()) {
      if (job.inputs == null) continue
      freed += job.inputs.arrived(hash)
      if (job.inputs.done) delete job.inputs
    }
    return freed
  }

  // ---- agents ----

  onAgentHello (agentId: string, resources: AgentResources, running: number[], pending: number[], draining: boolean, addrs: string[], now: number, status?: AgentStatus, crashed: number[] = []): void {
    const agent = this.s.agents.ensure(agentId, resources.hostname, now)
    agent.resources = resources
    this.backlogSent.delete(agentId)
    this.backlogAt.delete(agentId)
    agent.addrs = addrs
    agent.status = status
    agent.connected = true
    agent.lastSeen = now
    agent.state = draining || agent.state === 'draining' ? 'draining' : 'up'
    const runningSet = new Set(running)
    const claimed = new Set([...running, ...pending])
    // The agent's own record says which tasks were running when it died (their started notices may never have
    // reached us): those, and only those, died with it.
    const died = new Set(crashed)
    for (const id of [...agent.attempts]) {
      const a = this.s.attempts.get(id)!
      if (!claimed.has(id)) this.ledger.attemptGone(a, died.has(id), died.has(id) ? 'the task was running when its agent died' : 'the agent restarted without this attempt', now)
      else if (a.orphan) this.ledger.reclaim(a, runningSet.has(id), now)
    }
    this.ledger.settleSuspects(agentId, died)
    this.cancelStale(agent, [...claimed])
    this.ledger.emit({ time: now, type: 'agent.joined', agent: agentId, host: resources.hostname, data: { slots: resources.slots, cores: resources.cores } })
  }

  onAgentUpdate (agentId: string, resources: AgentResources | undefined, status: AgentStatus | undefined, now: number): void {
    const agent = this.s.agents.get(agentId)
    if (agent == null) return
    if (resources != null) {
      agent.resources = resources
      this.backlogAt.delete(agentId)
    }
    if (status != null) {
      const was = agent.status?.harvest?.ownerPresent
      agent.status = status
      const present = status.harvest?.ownerPresent
      if (present !== undefined && present !== was) {
        this.ledger.emit({ time: now, type: 'agent.owner', agent: agentId, host: agent.resources.hostname, data: { present, reason: status.harvest?.reason ?? '' } })
      }
    }
    agent.lastSeen = now
  }

  /**
   * A heartbeat that changes nothing but when the agent was last heard from (it is up, and runs only attempts that
   * are its own): taken here, outside the commit loop, with no transaction and no scheduling pass. Returns false
   * when it needs onHeartbeat (the agent was thought lost, or runs something it should not).
   */
  heartbeatOnly (agentId: string, running: number[], now: number): boolean {
    const agent = this.s.agents.get(agentId)
    if (agent == null || (agent.state !== 'up' && agent.state !== 'draining')) return false
    for (const id of running) if (this.s.attempts.get(id)?.agent !== agentId) return false
    agent.lastSeen = now
    return true
  }

  onHeartbeat (agentId: string, running: number[], now: number): void {
    const agent = this.s.agents.get(agentId)
    if (agent == null) return
    agent.lastSeen = now
    if (agent.state === 'lost') {
      // Cut off past the timeout and back on the same session: what it still runs is its own again, unless the
      // task started elsewhere meanwhile (then it was fenced and cancelStale stops it).
      agent.state = 'up'
      agent.connected = true
      const runningSet = new Set(running)
      this.ledger.cameBack(agentId)
      for (const id of [...agent.attempts]) {
        const a = this.s.attempts.get(id)!
        if (a.orphan && runningSet.has(id)) this.ledger.reclaim(a, true, now)
      }
      this.ledger.emit({ time: now, type: 'agent.joined', agent: agentId, host: agent.resources.hostname, data: { returned: true } })
    }
    this.cancelStale(agent, running)
  }

  /** Attempts the agent runs that are no longer ours (fenced, requeued while it was away, or cancelled): stop them. */
  private cancelStale (agent: AgentRuntime, running: number[]): void {
    const stale = running.filter(id => this.s.attempts.get(id)?.agent !== agent.id)
    if (stale.length > 0) this.comm.send(agent.id, { t: 'coord.cancel', attemptIds: stale, reason: 'stale attempt: the task was given to another agent or ended' })
  }

  onAgentDisconnected (agentId: string): void {
    const agent = this.s.agents.get(agentId)
    if (agent != null) agent.connected = false
  }

  onStarted (agentId: string, attemptIds: number[], now: number): void {
    for (const a of this.mine(agentId, attemptIds)) if (!a.running) this.ledger.started(a, now)
  }

  onSuspended (agentId: string, attemptIds: number[], now: number): void {
    for (const a of this.mine(agentId, attemptIds)) this.ledger.suspendOrContinue(a, 'suspend', now)
  }

  onContinued (agentId: string, attemptIds: number[], now: number): void {
    for (const a of this.mine(agentId, attemptIds)) this.ledger.suspendOrContinue(a, 'continue', now)
  }

  /**
   * Attempts the agent stopped and handed back: not the task's fault, nothing counted against it. Returns what to
   * acknowledge (the agent keeps a notice until then) and what is not ours (already ended: also settled).
   */
  onVacated (agentId: string, attemptIds: number[], kind: 'vacate' | 'preempt', reason: string, now: number): { acked: number[], refused: number[] } {
    const mine = this.mine(agentId, attemptIds)
    for (const a of mine) this.ledger.vacated(a, kind, reason, now)
    const acked = new Set(mine.map(a => a.id))
    return { acked: [...acked], refused: attemptIds.filter(id => !acked.has(id)) }
  }

  /** Commits results; returns the attempt ids to acknowledge and those refused as stale. */
  onResults (agentId: string, results: AttemptResult[], now: number): { acked: number[], refused: number[] } {
    const acked: number[] = []
    const refused: number[] = []
    for (const r of results) {
      const a = this.s.attempts.get(r.attemptId)
      if (a == null || a.agent !== agentId || a.jobId !== r.jobId || a.index !== r.index) {
        refused.push(r.attemptId)
        continue
      }
      this.ledger.finished(a, r, now)
      acked.push(r.attemptId)
      const agent = this.s.agents.get(agentId)
      const ran = r.endedAt - r.startedAt
      if (agent != null && ran >= 0) agent.recentTaskMs = agent.recentTaskMs == null ? ran : 0.8 * agent.recentTaskMs + 0.2 * ran
    }
    return { acked, refused }
  }

  /** Live attempts among `ids` that belong to this agent. */
  private mine (agentId: string, ids: number[]): Attempt[] {
    const out: Attempt[] = []
    for (const id of ids) {
      const a = this.s.attempts.get(id)
      if (a != null && a.agent === agentId) out.push(a)
    }
    return out
  }

  /** Declares agents lost that have been silent too long; their tasks go back to the front of the queue. */
  tick (now: number): string[] {
    const lost: string[] = []
    for (const agent of this.s.agents.silent(now, this.opts.agentLostMs)) {
      const drained = agent.state === 'draining' && agent.attempts.size === 0
      agent.state = drained ? 'left' : 'lost'
      agent.connected = false
      lost.push(agent.id)
      for (const id of [...agent.attempts]) this.ledger.orphan(this.s.attempts.get(id)!, `agent ${agent.resources.hostname} stopped answering`, now)
      this.ledger.emit({ time: now, type: drained ? 'agent.left' : 'agent.lost', agent: agent.id, host: agent.resources.hostname })
    }
    this.s.agents.forgetGone()
    this.store.flushEndedAttempts()
    const usage = this.s.usage.takeDirty()
    if (usage != null) this.store.saveUsage(usage)
    return lost
  }

  drain (agentQuery: string, now: number): string {
    const agent = this.s.agents.find(agentQuery)
    agent.state = 'draining'
    this.comm.send(agent.id, { t: 'coord.drain' })
    this.ledger.emit({ time: now, type: 'agent.draining', agent: agent.id, host: agent.resources.hostname })
    return agent.id
  }

  /** The peer id of a known agent given by id, unique prefix or host name; null when none matches. */
  peerIdOf (query: string): string | null {
    try {
      return this.s.agents.find(query).id
    } catch {
      return null
    }
  }

  // ---- scheduling ----

  /** One scheduling pass: places queued tasks on agents and sends the assignments. Returns how many were placed. */
  schedulePass (now: number): number {
    const queues = memberQueues(this.s, now)
    if (queues.length === 0) {
      this.sendBacklogs(now)
      return 0
    }
    const agents = []
    for (const agent of this.s.agents.accepting()) {
      if (agent.status?.harvest?.lending === false) continue
      agents.push(schedView(agent, this.opts.prefetch))
    }
    if (agents.length === 0) return 0
    const { placements, newAffinity } = schedule({ queues, agents, affinity: this.s.affinity, limits: perAgentLimits(this.s) })
    for (const [k, v] of newAffinity) this.s.affinity.set(k, v)
    const byAgent = new Map<string, Array<Extract<CoordMessage, { t: 'coord.assign' }>['assignments'][number]>>()
    const names = new Map<string, string>()
    for (const p of placements) {
      const jobId = Math.floor(p.key / 2 ** 32)
      const index = p.key % 2 ** 32
      const job = this.s.jobs.get(jobId)!
      const agent = this.s.agents.get(p.agentId)!
      const a: Attempt = {
        id: this.store.allocateAttemptId(), jobId, index, agent: agent.id, host: agent.resources.hostname,
        cores: p.cores, gpuIds: p.gpuIds, memoryMb: p.memoryMb, startedAt: now, running: false, orphan: false, suspect: false
      }
      // The task goes with its attempt while it is out: its result is committed without reading it back.
      a.spec = this.store.taskSpec(jobId, index)
      this.store.insertAttempt(a)
      addAttempt(this.s, a)
      this.ledger.placed(job, index)
      let list = byAgent.get(agent.id)
      if (list == null) byAgent.set(agent.id, list = [])
      let owner = names.get(job.owner)
      if (owner == null) names.set(job.owner, owner = this.ledger.name(job.owner))
      list.push({ attemptId: a.id, jobId, index, task: a.spec, shared: job.header.shared, gpuIds: p.gpuIds, cores: p.cores, owner })
    }
    for (const [agentId, assignments] of byAgent) this.comm.send(agentId, { t: 'coord.assign', assignments })
    this.sendBacklogs(now)
    return placements.length
  }

  /**
   * Bridges hear of the tasks this pass left waiting that they could take, when that changed (backlog.ts). Worked
   * out at most once a second per bridge (a scan of up to 100,000 queued tasks), and at once for a new session or
   * a changed offer; bridges with the same labels share one scan.
   */
  private sendBacklogs (now: number): void {
    let scans: Map<string, ReturnType<typeof backlogFor>> | null = null
    for (const agent of this.s.agents.accepting()) {
      if (!isBridge(agent.resources)) continue
      const at = this.backlogAt.get(agent.id)
      if (at != null && now - at < BACKLOG_EVERY_MS) continue
      this.backlogAt.set(agent.id, now)
      scans ??= new Map()
      const labels = JSON.stringify(agent.resources.labels)
      let backlog = scans.get(labels)
      if (backlog == null) scans.set(labels, backlog = backlogFor(queuedTasks([...this.s.jobs.values()].filter(j => !j.held).sort((x, y) => x.id - y.id)), agent.resources.labels))
      const key = JSON.stringify(backlog)
      if (this.backlogSent.get(agent.id) === key) continue
      this.backlogSent.set(agent.id, key)
      this.comm.send(agent.id, { t: 'coord.backlog', ...backlog })
    }
  }

  hasQueued (): boolean { return hasQueued(this.s) }

  // ---- client actions ----

  cancelJob (jobId: number, requester: string, isAdmin: boolean, now: number): number {
    const job = this.ownJob(jobId, requester, isAdmin, 'cancelling it')
    return this.ledger.cancelJob(job, now)
  }

  /** Holds (or releases) a job, or one of its waiting tasks. Returns how many tasks it changed. */
  hold (jobId: number, index: number | undefined, release: boolean, requester: string, isAdmin: boolean, now: number): number {
    const job = this.ownJob(jobId, requester, isAdmin, release ? 'releasing it' : 'holding it')
    return this.ledger.hold(job, index, release, now)
  }

  private ownJob (jobId: number, requester: string, isAdmin: boolean, action: string): JobRuntime {
    const job = queries.getJob(this.s, jobId)
    if (job.owner !== requester && !isAdmin) throw new MeshfarmError('FORBIDDEN', `job ${jobId} belongs to ${this.ledger.name(job.owner)}: ${action} needs the admin role`)
    return job
  }

  // ---- queries (queries.ts) ----

  getJob (jobId: number): JobRuntime { return queries.getJob(this.s, jobId) }
  jobHeader (jobId: number): JobHeader { return queries.getJob(this.s, jobId).header }
  jobSummary (jobId: number): ReturnType<typeof queries.jobSummary> { return queries.jobSummary(this.s, this.store, this.opts, jobId) }
  jobSummaries (): ReturnType<typeof queries.jobSummary>[] { return [...this.s.jobs.keys()].map(id => this.jobSummary(id)) }
  results (jobId: number, after: number, limit: number): ReturnType<typeof queries.results> { return queries.results(this.s, this.store, jobId, after, limit) }
  tasks (jobId: number, after: number, limit: number, states?: import('../shared/protocol/data.ts').TaskState[]): ReturnType<typeof queries.tasks> {
    return queries.tasks(this.s, this.store, this.opts, jobId, after, limit, states)
  }

  peers (now: number): ReturnType<typeof queries.peers> { return queries.peers(this.s, this.opts, now) }
  /** The live attempt running a task, if any (logs). */
  attemptOf (jobId: number, index: number): Attempt | undefined { return attemptsOf(this.s, jobId, index).find(a => !a.orphan) ?? attemptsOf(this.s, jobId, index)[0] }
  get state (): Readonly<CoreState> { return this.s }
  /** A member's name on the access list, if it has one. */
  nameOf = (peerId: string): string | undefined => this.opts.nameOf?.(peerId)
  /** For tests and the benchmark: how many attempts are in flight. */
  get inFlight (): number { return this.s.attempts.size }
}

export type { Failure }
