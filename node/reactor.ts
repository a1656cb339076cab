/**
 * The agent's decisions, synchronous: coordinator messages and local events (a task staged, started, exited;
 * the session up or down; drain, stop) change the agent's state, and every effect goes out through AgentComm.
 * No awaits, no timers, no clock: `now` comes with each event. node/agent.ts owns the I/O around it, and tests
 * drive it with a recording comm (test/unit/agent-reactor.test.ts).
 */
import type { AgentMessage, AgentResources, AgentStatus, Assignment, AttemptResult, CoordMessage, Failure, Suspension } from '../shared/protocol/messages.ts'
import type { TaskOutcome } from './backend/backend.ts'
import { classify, resultSkeleton, unranResult, type Fingerprint, type OutboxEntry, type StopReason } from './results.ts'
import { SlotBook } from './slot-book.ts'
import { PendingResults } from './pending-results.ts'
import { LIFECYCLE_NEXT, logRead, type AgentComm, type AgentLifecycle, type ReactorOptions } from './agent-comm.ts'

export type { AgentComm, AgentLifecycle, LogRequest, ReactorOptions } from './agent-comm.ts'

type Phase = 'staging' | 'ready' | 'running' | 'collecting'

export interface HeldAttempt { a: Assignment, phase: Phase, stopping: boolean, suspendedSince: number | null }

interface Held {
  a: Assignment
  phase: Phase
  slot: number | null
  stop: StopReason | null
  suspensions: Suspension[]
}

export class AgentReactor {
  private readonly comm: AgentComm
  private readonly opts: ReactorOptions
  private lifecycle: AgentLifecycle = 'starting'
  private session = false
  private resources: AgentResources
  private status: AgentStatus | undefined
  private readonly held = new Map<number, Held>()
  private readonly ready: number[] = []
  private readonly pending = new PendingResults()
  private readonly started: number[] = []
  private readonly slots = new SlotBook()
  private finishSignalled = false

  constructor (comm: AgentComm, opts: ReactorOptions) {
    this.comm = comm
    this.opts = opts
    this.resources = opts.resources
    this.status = opts.status
  }

  get state (): AgentLifecycle { return this.lifecycle }
  get connected (): boolean { return this.session }
  heldIds (): number[] { return [...this.held.keys()] }
  /** The attempts held now, as a policy that suspends and vacates them (harvesting) and `status --here` see them. */
  attempts (): HeldAttempt[] {
    return [...this.held.values()].map(h => {
      const open = h.suspensions.at(-1)
      return { a: h.a, phase: h.phase, stopping: h.stop != null, suspendedSince: open != null && open.to == null ? open.from : null }
    })
  }
  pendingIds (): number[] { return this.pending.ids() }

  private to (next: AgentLifecycle): void {
    if (next === this.lifecycle) return
    if (!LIFECYCLE_NEXT[this.lifecycle].includes(next)) throw new Error(`agent lifecycle: ${this.lifecycle} -> ${next} is not allowed`)
    this.lifecycle = next
  }

  // ---- lifecycle and session ----

  /**
   * Results and vacate notices kept from before a restart wait for delivery like new ones; `crashed` are the
   * attempts that were running when the agent died (launched, no result): the coordinator counts those, and
   * only those, as crashes.
   */
  start (recovered: OutboxEntry[], crashed: number[] = []): void {
    for (const entry of recovered) this.pending.add(entry)
    this.crashed = crashed
    this.to('connecting')
  }

  private crashed: number[] = []

  /**
   * Attempts a backend still runs from before this process (a batch system's jobs, found again after a restart):
   * held as running, each in a slot, and reported in hello's `running`, so the coordinator keeps them. Call after
   * start(), before the session is up; the backend re-attaches them when comm.run() reaches it.
   */
  adopt (assignments: Assignment[]): void {
    for (const a of assignments) {
      if (this.held.has(a.attemptId) || this.pending.has(a.attemptId)) continue
      const h: Held = { a, phase: 'ready', slot: null, stop: null, suspensions: [] }
      this.held.set(a.attemptId, h)
      this.place(h)
    }
  }

  /** The first message of a session: what this agent offers, holds and has finished. */
  hello (): AgentMessage {
    return {
      t: 'agent.hello', resources: this.resources, running: this.heldIds(), pending: this.pendingIds(), draining: this.lifecycle === 'draining',
      ...(this.status != null ? { status: this.status } : {}),
      ...(this.crashed.length > 0 ? { crashed: this.crashed } : {})
    }
  }

  sessionUp (): void {
    this.session = true
    if (this.lifecycle === 'connecting') this.to('running')
    this.comm.requestFlush()
  }

  sessionDown (): void {
    this.session = false
    this.pending.sessionLost()
    if (this.lifecycle === 'running') this.to('connecting')
    this.comm.persistPending()
    this.checkFinished()
  }

  /** Finish the running tasks, take no new ones, deliver everything, then stop. */
  drain (): void {
    if (this.lifecycle !== 'running' && this.lifecycle !== 'connecting') return
    this.to('draining')
    this.checkFinished()
  }

  /** Stop: unfinished attempts are vacated (handed back without counting against them). */
  stop (now: number): void {
    if (this.lifecycle === 'stopping' || this.lifecycle === 'stopped') return
    this.to('stopping')
    // First, offer nothing more: the coordinator must not hand the vacated attempts straight back.
    if (this.session) this.comm.send({ t: 'agent.update', resources: { ...this.resources, slots: 0 } })
    this.vacate(this.heldIds(), 'vacate', 'agent stopped', now)
    this.checkFinished()
  }

  /** The stop's grace is over: whatever still runs is killed with the backend and reported vacated. */
  stopDeadline (now: number): void {
    if (this.lifecycle !== 'stopping') return
    for (const h of [...this.held.values()]) this.dropUnran(h, { kind: 'vacate', vacateKind: 'vacate', reason: 'agent stopped' }, now)
    this.signalFinished('stopped')
  }

  /** The loop has shut everything down. */
  closed (): void { this.to('stopped') }

  // ---- the coordinator ----

  message (msg: CoordMessage, now: number): void {
    switch (msg.t) {
      case 'coord.assign':
        for (const a of msg.assignments) this.assign(a)
        break
      case 'coord.cancel':
        this.cancel(msg.attemptIds, msg.reason, now)
        break
      case 'coord.ack':
        this.acked([...msg.attemptIds, ...msg.refused])
        break
      case 'coord.drain':
        this.drain()
        break
      case 'coord.members':
        this.comm.setMembers(msg.peerIds)
        break
      case 'coord.logs':
        this.logs(msg)
        break
      case 'coord.welcome':
      case 'coord.backlog': // for a bridge's auto-allocation, which node/agent.ts hands it to
        break
    }
  }

  private assign (a: Assignment): void {
    const id = a.attemptId
    if (this.held.has(id) || this.pending.has(id)) return
    if (this.lifecycle !== 'running' && this.lifecycle !== 'connecting') {
      this.keepVacate(id, 'vacate', `agent is ${this.lifecycle}`)
      return
    }
    this.held.set(id, { a, phase: 'staging', slot: null, stop: null, suspensions: [] })
    this.comm.stage(a)
  }

  private cancel (ids: number[], reason: string, now: number): void {
    for (const id of ids) this.stopAttempt(id, { kind: 'cancel', reason }, now)
  }

  private acked (ids: number[]): void {
    const gone = this.pending.settle(ids)
    if (gone.length > 0) this.comm.settle(gone)
    this.checkFinished()
    this.comm.requestFlush()
  }

  private logs (req: Extract<CoordMessage, { t: 'coord.logs' }>): void {
    const h = this.held.get(req.attemptId)
    const ran = h != null ? h.phase === 'running' || h.phase === 'collecting' : this.pending.entry(req.attemptId)?.kind === 'result'
    const read = logRead(req, ran, h == null, this.opts.logPieceBytes)
    if (read != null) this.comm.readLogs(read)
    else if (this.session) this.comm.send({ t: 'agent.logs', requestId: req.requestId, data: new Uint8Array(0), offset: req.offset, eof: true, error: `attempt ${req.attemptId} has no logs on this agent` })
  }

  // ---- attempts ----

  staged (attemptId: number, now: number): void {
    const h = this.held.get(attemptId)
    if (h == null || h.phase !== 'staging') return
    if (h.stop != null) return this.dropUnran(h, h.stop, now)
    h.phase = 'ready'
    this.ready.push(attemptId)
    this.startReady()
  }

  stageFailed (attemptId: number, failure: Failure, now: number): void {
    const h = this.held.get(attemptId)
    if (h == null || h.phase !== 'staging') return
    if (h.stop != null) return this.dropUnran(h, h.stop, now)
    this.held.delete(attemptId)
    this.comm.discard(attemptId)
    this.keepResult(unranResult(h.a, failure, now))
    this.checkFinished()
  }

  taskStarted (attemptId: number): void {
    if (this.held.get(attemptId)?.phase !== 'running') return
    this.started.push(attemptId)
    this.comm.requestFlush()
  }

  taskExited (attemptId: number, outcome: TaskOutcome, now: number): void {
    const h = this.held.get(attemptId)
    if (h == null || h.phase !== 'running') return
    this.release(h)
    const open = h.suspensions.at(-1)
    if (open != null && open.to == null) open.to = now
    const succeeded = outcome.exitCode === 0 && outcome.error == null && !outcome.timedOut && outcome.failure == null
    if (h.stop?.kind === 'vacate' && !succeeded) {
      this.dropUnran(h, h.stop, now)
    } else {
      h.phase = 'collecting'
      const failure = classify(outcome, h.stop, h.a.task.timeoutMs)
      this.comm.collect(resultSkeleton(h.a, outcome, failure, h.suspensions), failure?.kind === 'cancelled')
    }
    this.startReady()
  }

  resultReady (result: AttemptResult, fingerprints?: Record<string, Fingerprint>): void {
    const h = this.held.get(result.attemptId)
    if (h == null || h.phase !== 'collecting') return
    this.held.delete(result.attemptId)
    this.keepResult(result, fingerprints)
    this.checkFinished()
  }

  /** A harvest policy or a batch system takes attempts back: they go back to the queue, not counted as failures. */
  vacate (ids: number[], vacateKind: 'vacate' | 'preempt', reason: string, now: number): void {
    for (const id of ids) this.stopAttempt(id, { kind: 'vacate', vacateKind, reason }, now)
  }

  suspend (ids: number[], now: number): void {
    const done = ids.filter(id => {
      const h = this.held.get(id)
      if (h == null || h.phase !== 'running' || h.stop != null || h.suspensions.at(-1)?.to === null) return false
      h.suspensions.push({ from: now, to: null })
      this.comm.suspend(id)
      return true
    })
    if (done.length > 0 && this.session) this.comm.send({ t: 'agent.suspended', attemptIds: done })
  }

  resume (ids: number[], now: number): void {
    const done = ids.filter(id => {
      const h = this.held.get(id)
      const open = h?.suspensions.at(-1)
      if (h == null || h.phase !== 'running' || open == null || open.to != null) return false
      open.to = now
      this.comm.resume(id)
      return true
    })
    if (done.length > 0 && this.session) this.comm.send({ t: 'agent.continued', attemptIds: done })
  }

  /** The agent's offer changed (a bridge's capacity, a desktop lent or reclaimed). */
  updateResources (resources: AgentResources, status?: AgentStatus): void {
    this.resources = resources
    if (status != null) this.status = status
    if (this.session) this.comm.send({ t: 'agent.update', resources, ...(status != null ? { status } : {}) })
    this.startReady()
  }

  private stopAttempt (id: number, stop: StopReason, now: number): void {
    const h = this.held.get(id)
    if (h == null || h.stop != null) return
    switch (h.phase) {
      case 'staging':
        h.stop = stop
        this.comm.abortStaging(id)
        break
      case 'ready':
        this.ready.splice(this.ready.indexOf(id), 1)
        this.dropUnran(h, stop, now)
        break
      case 'running':
        h.stop = stop
        this.comm.stop(id)
        break
      case 'collecting':
        break // its result is on its way
    }
  }

  /** An attempt that leaves no run behind: a cancelled result, or a vacate notice. */
  private dropUnran (h: Held, stop: StopReason, now: number): void {
    const id = h.a.attemptId
    if (h.phase === 'running') this.release(h)
    this.held.delete(id)
    this.comm.discard(id)
    if (stop.kind === 'cancel') this.keepResult(unranResult(h.a, { kind: 'cancelled', message: stop.reason, retryable: false }, now))
    else this.keepVacate(id, stop.vacateKind ?? 'vacate', stop.reason)
    this.checkFinished()
  }

  private release (h: Held): void {
    if (h.slot == null) return
    this.slots.give(h.slot, h.a)
    h.slot = null
  }

  private startReady (): void {
    if (this.lifecycle === 'stopping' || this.lifecycle === 'stopped') return
    while (this.ready.length > 0) {
      const h = this.held.get(this.ready[0])!
      if (!this.slots.fits(h.a, this.resources)) return
      this.ready.shift()
      this.place(h)
    }
  }

  private place (h: Held): void {
    h.slot = this.slots.take(h.a)
    h.phase = 'running'
    this.comm.run(h.a, h.slot)
  }

  // ---- the outbox ----

  private keepResult (result: AttemptResult, fingerprints?: Record<string, Fingerprint>): void {
    const entry: OutboxEntry = { kind: 'result', result, ...(fingerprints != null ? { fingerprints } : {}) }
    this.pending.add(entry)
    // A short task's result may wait in memory for its ack; see outbox.ts for why that is sound.
    const persistNow = result.endedAt - result.startedAt >= this.opts.longTaskMs || !this.session || this.lifecycle !== 'running'
    this.comm.keep(entry, persistNow)
    this.comm.requestFlush()
  }

  private keepVacate (attemptId: number, vacateKind: 'vacate' | 'preempt', reason: string): void {
    const entry: OutboxEntry = { kind: 'vacate', attemptId, vacateKind, reason }
    this.pending.add(entry)
    this.comm.keep(entry, true)
    this.comm.requestFlush()
  }

  /** A result rewritten while it was being delivered (its files were lost or changed): keep the new one. */
  resultReplaced (result: AttemptResult): void {
    const entry = this.pending.replace(result)
    if (entry != null) this.comm.keep(entry, true)
  }

  /** Started notices, vacate notices and the next batch of results, if a session is up. */
  flush (): void {
    if (!this.session) return
    const started = this.started.splice(0).filter(id => !this.pending.has(id) && this.held.has(id))
    if (started.length > 0) this.comm.send({ t: 'agent.started', attemptIds: started })
    const { vacated, batch, token } = this.pending.next(this.opts)
    for (const v of vacated) this.comm.send({ t: 'agent.vacated', ...v })
    if (batch.length > 0) this.comm.deliver(batch, token)
  }

  delivered (token: number, ids: number[]): void {
    if (this.pending.delivered(token, ids)) this.comm.requestFlush()
  }

  /** Delivery failed (an upload broke): those results wait for the next flush (the heartbeat's, at the latest). */
  deliveryFailed (token: number, ids: number[]): void {
    this.pending.deliveryFailed(token, ids)
  }

  heartbeat (): void {
    if (!this.session) return
    this.comm.send({ t: 'agent.heartbeat', running: this.heldIds() })
    this.flush()
  }

  private checkFinished (): void {
    if (this.lifecycle === 'draining' && this.held.size === 0 && this.pending.size === 0) {
      this.to('stopping')
      this.signalFinished('drained')
    } else if (this.lifecycle === 'stopping' && this.held.size === 0 && (this.pending.size === 0 || !this.session)) {
      this.signalFinished('stopped')
    }
  }

  private signalFinished (why: 'drained' | 'stopped'): void {
    if (this.finishSignalled) return
    this.finishSignalled = true
    this.comm.finished(why)
  }
}
