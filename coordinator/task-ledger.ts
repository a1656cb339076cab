/**
 * Every change to a task's state, its counters and its attempts, in one place: each goes through the
 * transition table (task-states.ts), is written to the store and announced on the event stream. The core's
 * handlers (core.ts) decide WHICH change a message means; this module says what that change does.
 *
 * What counts against a task: `retry` uses one of the job's retries (the task exited non-zero, timed out, ran
 * out of memory); a crash is an attempt that died with its agent WHILE RUNNING (the agent came back without it,
 * or never came back before the task started elsewhere); vacates and preemptions never count, and neither do
 * staging problems, coordinator restarts, drains or agent stops.
 */
import type { AttemptResult, Failure, TaskRecord, TaskState } from '../shared/protocol/data.ts'
import { TERMINAL_STATES, taskId } from '../shared/protocol/data.ts'
import type { MeshEvent } from '../shared/protocol/events.ts'
import { MeshfarmError } from '../shared/util/errors.ts'
import type { Store } from './store.ts'
import { SUMMARY_NOTES, type JobRuntime } from './job-table.ts'
import { transition, IN_FLIGHT, type TaskEvent } from './task-states.ts'
import { attemptsOf, displayName, removeAttempt, setOrphan, type Attempt, type CoreOptions, type CoreState } from './core-state.ts'
import type { CoordinatorComm } from './core.ts'

type Requeue = Extract<TaskEvent, 'retry' | 'vacate' | 'preempt' | 'lose'>

export class TaskLedger {
  private readonly store: Store
  private readonly comm: CoordinatorComm
  private readonly opts: CoreOptions
  private readonly state: () => CoreState

  constructor (store: Store, comm: CoordinatorComm, opts: CoreOptions, state: () => CoreState) {
    this.store = store
    this.comm = comm
    this.opts = opts
    this.state = state
  }

  private get s (): CoreState { return this.state() }

  emit (e: Omit<MeshEvent, 'seq'>): void {
    this.comm.event(this.store.appendEvent(e))
  }

  name (peerId: string): string {
    return displayName(this.opts, peerId)
  }

  // ---- the one way a task's state changes ----

  /**
   * Applies `event` to a non-terminal task and writes its new state with its counters; except a placement and a
   * start, which the attempt's own row records (recovery.ts derives the task's state from it), and an ending,
   * which commit() writes with the result.
   */
  private apply (job: JobRuntime, index: number, event: TaskEvent): TaskState {
    const t = job.tasks!
    const from = t.state(index)
    const to = transition(from, event)
    job.counts[from]--
    job.counts[to]++
    t.setState(index, to)
    if (!TERMINAL_STATES.has(to) && event !== 'place' && event !== 'start') this.store.setTaskState(job.id, index, to, t.counts(index))
    return to
  }

  /** Back to the front of the queue; a task already waiting there (its agent was lost) just keeps its counters. */
  requeue (job: JobRuntime, index: number, event: Requeue, why: string, now: number, a?: Attempt): void {
    const t = job.tasks!
    if (!IN_FLIGHT.has(t.state(index))) {
      this.store.setTaskState(job.id, index, t.state(index), t.counts(index))
      return
    }
    this.apply(job, index, event)
    t.enqueueFront(index)
    // The attempt that ended goes with the event (where it ran, since when), so a timeline can draw it.
    this.emit({
      time: now, type: event === 'vacate' || event === 'preempt' ? 'task.vacated' : 'task.requeued', jobId: job.id, index,
      ...(a != null ? { agent: a.agent, host: a.host } : {}),
      data: { why, kind: event, ...(a != null ? { startedAt: a.startedAt } : {}) }
    })
  }

  placed (job: JobRuntime, index: number): void {
    job.tasks!.bump(index, 'attempts')
    this.apply(job, index, 'place')
  }

  started (a: Attempt, now: number): void {
    const job = this.activeJob(a)
    a.running = true
    this.store.setAttemptFlags(a)
    if (job == null) return
    if (job.tasks!.state(a.index) === 'staging') this.apply(job, a.index, 'start')
    this.emit({ time: now, type: 'task.started', jobId: a.jobId, index: a.index, agent: a.agent, host: a.host })
    this.fenceOthers(a)
  }

  suspendOrContinue (a: Attempt, event: 'suspend' | 'continue', now: number): void {
    const job = this.activeJob(a)
    if (job == null) return
    const state = job.tasks!.state(a.index)
    if ((event === 'suspend' && state !== 'running') || (event === 'continue' && state !== 'suspended')) return
    this.apply(job, a.index, event)
    this.emit({ time: now, type: event === 'suspend' ? 'task.suspended' : 'task.continued', jobId: a.jobId, index: a.index, agent: a.agent, host: a.host })
  }

  vacated (a: Attempt, kind: 'vacate' | 'preempt', reason: string, now: number): void {
    this.endAttempt(a, now)
    const job = this.activeJob(a)
    if (job == null || this.othersActive(a)) return
    job.tasks!.bump(a.index, 'vacates')
    this.requeue(job, a.index, kind, reason, now, a)
  }

  /** An attempt's result: commit it, retry the task, or fail it. */
  finished (a: Attempt, r: AttemptResult, now: number): void {
    const job = this.activeJob(a)
    if (r.state === 'done' && job != null) {
      // Its row is marked inactive in bulk later: the committed task says it has ended.
      this.endAttempt(a, now, r.endedAt - r.startedAt, true)
      this.commit(job, a.index, 'done', now, a, r)
      return
    }
    this.endAttempt(a, now, r.endedAt - r.startedAt)
    if (job == null) return
    const t = job.tasks!
    const i = a.index
    // Another attempt of this task is out (this one belonged to an agent thought lost): that one decides.
    if (this.othersActive(a)) return
    const failure: Failure = r.failure ?? { kind: 'internal', message: 'attempt ended without a result', retryable: false }
    if (r.state === 'cancelled' || failure.kind === 'cancelled') {
      // The agent stopped the task by itself (it was stopping); not the task's fault.
      t.bump(i, 'vacates')
      this.requeue(job, i, 'vacate', failure.message, now, a)
      return
    }
    if (failure.kind === 'preempted') {
      t.bump(i, 'vacates')
      this.requeue(job, i, 'preempt', failure.message, now, a)
      return
    }
    if (failure.kind === 'staging') {
      if (t.bump(i, 'stagingFails') >= this.opts.crashLimit) this.commit(job, i, 'failed', now, a, r, { ...failure, message: `inputs could not be staged ${t.counts(i).stagingFails} times (last: ${failure.message})` })
      else this.requeue(job, i, 'retry', failure.message, now, a)
      return
    }
    if (failure.kind === 'node-fail' || failure.kind === 'agent-lost') {
      this.crashed(job, i, failure.message, now, a, r)
      return
    }
    if (failure.retryable && t.counts(i).retriesUsed < job.header.retries) {
      t.bump(i, 'retriesUsed')
      this.requeue(job, i, 'retry', failure.message, now, a)
      return
    }
    this.commit(job, i, 'failed', now, a, r, failure)
  }

  /** A crash of a running attempt: counted, and the task fails at the crash limit, else goes back to the queue. */
  private crashed (job: JobRuntime, i: number, why: string, now: number, a?: Attempt, r?: AttemptResult): void {
    this.atCrashLimit(job, i, job.tasks!.bump(i, 'crashes'), why, now, a, r)
  }

  private atCrashLimit (job: JobRuntime, i: number, crashes: number, why: string, now: number, a?: Attempt, r?: AttemptResult): void {
    if (crashes >= this.opts.crashLimit) {
      this.commit(job, i, 'failed', now, a, r, { kind: 'crash-limit', message: `gave up after ${crashes} attempts died with their agent (last: ${why})`, retryable: false })
    } else {
      this.requeue(job, i, 'lose', why, now, a)
    }
  }

  // ---- attempts of agents that went away ----

  /**
   * The agent went silent: its attempt stays valid until the task starts elsewhere, and the task is queued again.
   * A running attempt is counted as a suspected crash at once (a task that kills its agents must meet the crash
   * limit even if they never come back); the count is withdrawn if the agent returns still holding it.
   */
  orphan (a: Attempt, why: string, now: number): void {
    setOrphan(this.s, a, true)
    const job = this.activeJob(a)
    const counts = job != null && a.running && !a.suspect
    if (counts) a.suspect = true
    this.store.setAttemptFlags(a)
    if (job == null) return
    const crashes = counts ? job.tasks!.bump(a.index, 'crashes') : job.tasks!.counts(a.index).crashes
    if (this.othersActive(a) || !IN_FLIGHT.has(job.tasks!.state(a.index))) {
      if (counts) this.store.setTaskState(job.id, a.index, job.tasks!.state(a.index), job.tasks!.counts(a.index))
      return
    }
    if (crashes >= this.opts.crashLimit) this.endAttempt(a)
    this.atCrashLimit(job, a.index, crashes, why, now, a)
  }

  /** A suspected crash turned out not to be one: the agent is back and still holds the attempt. */
  private withdraw (a: Pick<Attempt, 'jobId' | 'index'>): void {
    const job = this.activeJob({ jobId: a.jobId, index: a.index } as Attempt)
    if (job == null) {
      this.store.withdrawCrash(a.jobId, a.index)
      return
    }
    const t = job.tasks!
    t.setCounts(a.index, { ...t.counts(a.index), crashes: Math.max(0, t.counts(a.index).crashes - 1) })
    this.store.setTaskState(job.id, a.index, t.state(a.index), t.counts(a.index))
  }



  /** An orphan's agent came back still holding it: the task is its own again; unstarted copies elsewhere go. */
  reclaim (a: Attempt, running: boolean, now: number): void {
    setOrphan(this.s, a, false)
    if (running) a.running = true
    if (a.suspect) {
      a.suspect = false
      this.withdraw(a)
    }
    this.store.setAttemptFlags(a)
    const job = this.activeJob(a)
    if (job == null) return
    for (const other of attemptsOf(this.s, a.jobId, a.index)) if (other.id !== a.id) this.cancelAttempt(other, 'the task\'s first agent came back with it')
    if (job.tasks!.state(a.index) === 'queued') this.apply(job, a.index, 'reclaim')
    this.emit({ time: now, type: 'task.started', jobId: a.jobId, index: a.index, agent: a.agent, host: a.host, data: { reclaimed: true } })
  }

  /**
   * The agent came back without this attempt (it restarted): gone for good. A crash only if the agent's own record
   * says the task was running when it died, counted once (a suspected crash is confirmed, not counted again); a
   * suspicion without that evidence is withdrawn (the task ended, or never started, and only its result was lost).
   */
  attemptGone (a: Attempt, died: boolean, why: string, now: number): void {
    this.endAttempt(a, now)
    if (a.suspect && !died) this.withdraw(a)
    const job = this.activeJob(a)
    if (job == null) return
    if (died && !a.suspect) {
      this.crashed(job, a.index, why, now, a)
      return
    }
    if (!this.othersActive(a)) this.requeue(job, a.index, 'lose', why, now, a)
  }

  /**
   * An agent is back: its attempts that were already ended here (fenced after it went silent) and still counted as
   * suspected crashes are settled: confirmed when its record says they died with it, withdrawn otherwise.
   */
  settleSuspects (agentId: string, died: ReadonlySet<number>): void {
    for (const a of this.store.endedSuspectsOf(agentId)) {
      if (!died.has(a.id)) this.withdraw(a)
      this.store.setAttemptFlags({ id: a.id, running: true, orphan: true, suspect: false })
    }
  }

  /** The same session came back after it was declared lost: the agent never died, so nothing died with it. */
  cameBack (agentId: string): void {
    for (const id of this.s.agents.get(agentId)?.attempts ?? []) {
      const a = this.s.attempts.get(id)!
      if (!a.suspect) continue
      a.suspect = false
      this.withdraw(a)
      this.store.setAttemptFlags(a)
    }
    this.settleSuspects(agentId, new Set())
  }

  /** The task runs now on `a`: its other attempts are stale (a suspected crash among them stays counted for now). */
  private fenceOthers (a: Attempt): void {
    for (const other of attemptsOf(this.s, a.jobId, a.index)) if (other.id !== a.id) this.cancelAttempt(other, 'the task started on another agent')
  }

  /** Takes back an attempt that has not started (the agent is told to drop it); the task waits in the queue again. */
  private unplace (job: JobRuntime, a: Attempt, why: string, now: number): void {
    this.cancelAttempt(a, why)
    if (!this.othersActive(a)) this.requeue(job, a.index, 'vacate', why, now, a)
  }

  private cancelAttempt (a: Attempt, reason: string): void {
    this.endAttempt(a)
    if (this.s.agents.get(a.agent)?.connected === true) this.comm.send(a.agent, { t: 'coord.cancel', attemptIds: [a.id], reason })
  }

  /** Whether another attempt of a's task is out on an agent that is still with us (not an orphan). */
  private othersActive (a: Attempt): boolean {
    return attemptsOf(this.s, a.jobId, a.index).some(o => o.id !== a.id && !o.orphan)
  }

  /** Ends an attempt; the cores it held count towards its member's usage (fair share) for as long as it held them. */
  private endAttempt (a: Attempt, now?: number, ranMs?: number, later = false): void {
    if (!this.s.attempts.has(a.id)) return
    removeAttempt(this.s, a)
    if (later && !a.suspect && !a.orphan) this.store.endAttemptLater(a.id)
    else this.store.endAttempt(a.id)
    const owner = this.s.jobs.get(a.jobId)?.owner
    const ms = ranMs ?? (now != null ? now - a.startedAt : 0)
    if (owner != null && now != null && ms > 0) this.s.usage.charge(owner, a.cores * ms / 1000, now)
  }

  /** The attempt's job, if it is still active and the task not yet ended. */
  private activeJob (a: Attempt): JobRuntime | null {
    const job = this.s.jobs.get(a.jobId)
    if (job?.tasks == null || TERMINAL_STATES.has(job.tasks.state(a.index))) return null
    return job
  }

  // ---- ends ----

  commit (job: JobRuntime, index: number, state: 'done' | 'failed' | 'cancelled', now: number, a?: Attempt, r?: AttemptResult, failure?: Failure): void {
    const t = job.tasks!
    const spec = a?.spec ?? this.store.taskSpec(job.id, index)
    const counters = t.counts(index)
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
      attempts: counters.attempts,
      failure: failure ?? r?.failure,
      stdout: r?.stdout != null ? stripData(r.stdout) : undefined,
      stderr: r?.stderr != null ? stripData(r.stderr) : undefined,
      outputs: (r?.outputs ?? []).map(stripData),
      owner: this.name(job.owner),
      ...(r?.missingOutputs != null && r.missingOutputs.length > 0 ? { missingOutputs: r.missingOutputs } : {}),
      ...(r?.peakMemoryBytes != null ? { peakMemoryBytes: r.peakMemoryBytes } : {}),
      ...(r?.suspensions != null && r.suspensions.length > 0 ? { suspensions: r.suspensions } : {}),
      ...(counters.vacates > 0 ? { vacates: counters.vacates } : {}),
      ...(r?.backend != null ? { backend: r.backend } : {})
    }
    this.apply(job, index, state === 'done' ? 'finish' : state === 'failed' ? 'fail' : 'cancel')
    this.store.commitTask(record, counters)
    const notes = job.notes
    if (notes != null && state === 'failed' && notes.failures.length < SUMMARY_NOTES) notes.failures.push({ index, name: record.name, exitCode: record.exitCode, message: record.failure?.message ?? 'failed' })
    if (notes != null && (record.missingOutputs?.length ?? 0) > 0 && notes.missingOutputs.length < SUMMARY_NOTES) notes.missingOutputs.push({ index, name: record.name, missing: record.missingOutputs!.slice(0, 10) })
    for (const other of attemptsOf(this.s, job.id, index)) this.cancelAttempt(other, state === 'cancelled' ? 'job cancelled' : 'the task ended')
    const type = state === 'done' ? 'task.finished' : state === 'failed' ? 'task.failed' : 'task.cancelled'
    this.emit({
      time: now, type, jobId: job.id, index, agent: a?.agent, host: a?.host,
      data: { exitCode: record.exitCode, ...(record.failure != null ? { kind: record.failure.kind, message: record.failure.message.slice(0, 200) } : {}), durationMs: record.durationMs }
    })
    this.maybeFinishJob(job, now)
  }

  private maybeFinishJob (job: JobRuntime, now: number): void {
    const c = job.counts
    if (c.queued + c.held + c.staging + c.running + c.suspended > 0) return
    job.state = job.cancelRequested ? 'cancelled' : c.failed > 0 ? 'failed' : 'done'
    this.store.setJobState(job.id, job.state)
    delete job.tasks
    delete job.inputs
    this.emit({ time: now, type: 'job.done', jobId: job.id, data: { state: job.state, done: c.done, failed: c.failed, cancelled: c.cancelled } })
  }

  cancelJob (job: JobRuntime, now: number): number {
    if (job.tasks == null) return 0
    job.cancelRequested = true
    let count = 0
    const cancelled: Failure = { kind: 'cancelled', message: 'cancelled by the user', retryable: false }
    for (let i = 0; i < job.total && job.tasks != null; i++) {
      if (TERMINAL_STATES.has(job.tasks.state(i))) continue
      count++
      this.commit(job, i, 'cancelled', now, undefined, undefined, cancelled)
    }
    return count
  }

  hold (job: JobRuntime, index: number | undefined, release: boolean, now: number): number {
    const t = job.tasks
    if (t == null) throw new MeshfarmError('BAD_ARGUMENT', `job ${job.id} has ended: nothing to ${release ? 'release' : 'hold'}`)
    if (index == null) {
      job.held = !release
      this.store.setJobHeld(job.id, job.held)
      this.emit({ time: now, type: release ? 'job.released' : 'job.held', jobId: job.id })
      // Tasks already placed but not started (waiting in an agent's queue) come back: a hold means not now.
      if (!release) for (const a of [...this.s.attempts.values()]) if (a.jobId === job.id && !a.running) this.unplace(job, a, 'the job is held', now)
      return job.counts.queued + job.counts.held
    }
    if (index >= job.total) throw new MeshfarmError('NOT_FOUND', `job ${job.id} has no task ${index}`)
    const state = t.state(index)
    if (!release && state === 'staging') {
      for (const a of attemptsOf(this.s, job.id, index)) if (!a.running) this.unplace(job, a, 'the task is held', now)
    }
    if (release ? t.state(index) !== 'held' : t.state(index) !== 'queued') return 0
    this.apply(job, index, release ? 'release' : 'hold')
    if (release) t.enqueueFront(index)
    this.emit({ time: now, type: release ? 'job.released' : 'job.held', jobId: job.id, index })
    return 1
  }
}

function stripData<T extends { data?: Uint8Array }> (ref: T): Omit<T, 'data'> {
  const { data: _data, ...rest } = ref
  return rest
}
