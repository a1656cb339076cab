/**
 * The I/O side of the reactor's comm: staging, the backend, collecting outputs, the outbox, delivery and logs.
 * Each effect runs asynchronously and reports back to the reactor with an event; nothing here decides.
 */
import type { AgentMessage, Assignment, AttemptResult, Failure, FileRef } from '../shared/protocol/messages.ts'
import { errorMessage, isMeshfarmError } from '../shared/util/errors.ts'
import type { AgentReactor } from './reactor.ts'
import type { AgentComm, LogRequest } from './agent-comm.ts'
import type { TaskBackend, TaskOutcome } from './backend/backend.ts'
import type { Isolation } from './backend/launch-plan.ts'
import type { Outbox } from './outbox.ts'
import type { Stager } from './staging.ts'
import type { MemberGate } from './gate.ts'
import { STDERR_NAME, STDOUT_NAME, type OutboxEntry, type ResultEntry } from './results.ts'
import { captureRef, collectOutputs, withFiles } from './outputs.ts'
import { deliverResults } from './delivery.ts'
import { readLogPiece } from './logs.ts'
import { captureFiles, jobDir, taskDir, type AgentPaths } from './work-dir.ts'

/** The coordinator session, while there is one. */
export interface Session {
  /** Sends unless the frame would exceed the coordinator's limit (false: nothing was sent). */
  send: (msg: AgentMessage) => boolean
  upload: (ref: FileRef, path: string) => Promise<void>
}

export interface AgentIODeps {
  paths: AgentPaths
  isolation: Isolation
  stager: Stager
  backend: TaskBackend
  outbox: Outbox
  gate: MemberGate
  session: () => Session | null
  inlineMaxBytes: number
  inlineBudgetBytes: number
  onFinished: (why: 'drained' | 'stopped') => void
  log: (line: string) => void
}

export class AgentIO implements AgentComm {
  reactor!: AgentReactor
  private readonly deps: AgentIODeps
  private readonly staging = new Map<number, AbortController>()
  private readonly assignments = new Map<number, Assignment>()
  private readonly sizes = new Map<number, { stdout: number | null, stderr: number | null }>()
  private readonly slots = new Map<number, number>()
  private flushQueued = false

  constructor (deps: AgentIODeps) {
    this.deps = deps
  }

  send (msg: AgentMessage): void {
    const session = this.deps.session()
    if (session != null && !session.send(msg)) this.deps.log(`agent: ${msg.t} not sent: larger than the coordinator's frame limit`)
  }

  requestFlush (): void {
    if (this.flushQueued) return
    this.flushQueued = true
    setImmediate(() => {
      this.flushQueued = false
      this.reactor.flush()
    })
  }

  stage (a: Assignment): void {
    const id = a.attemptId
    const ac = new AbortController()
    this.staging.set(id, ac)
    this.assignments.set(id, a)
    this.deps.stager.stage(a, ac.signal).then(
      () => { this.reactor.staged(id, Date.now()) },
      err => {
        if (!ac.signal.aborted) this.deps.log(`agent: task ${a.jobId}.${a.index}: staging failed: ${errorMessage(err)}`)
        this.reactor.stageFailed(id, stagingFailure(err), Date.now())
      }
    ).finally(() => this.staging.delete(id))
  }

  abortStaging (attemptId: number): void {
    this.staging.get(attemptId)?.abort(new Error('staging stopped'))
  }

  run (a: Assignment, slot: number): void {
    const id = a.attemptId
    const { paths, isolation, stager, backend } = this.deps
    this.slots.set(id, slot)
    void (async (): Promise<TaskOutcome> => {
      const user = isolation.slotUsers?.[slot]
      if (user != null) await stager.grant(id, user)
      const cap = captureFiles(paths, id)
      backend.start({
        attemptId: id, jobId: a.jobId, index: a.index, commands: a.task.commands, env: a.task.env,
        taskDir: taskDir(paths, id), jobDir: jobDir(paths, a.jobId), stdoutPath: cap.stdout, stderrPath: cap.stderr,
        timeoutMs: a.task.timeoutMs, cores: a.cores, memoryMb: a.task.memoryMb, gpuIds: a.gpuIds, slot, assignment: a
      }, () => { this.reactor.taskStarted(id) })
      return await backend.wait(id)
    })().catch((err): TaskOutcome => {
      const now = Date.now()
      return { exitCode: null, signal: null, timedOut: false, error: `cannot start the task: ${errorMessage(err)}`, startedAt: now, endedAt: now, stdoutBytes: null, stderrBytes: null, peakMemoryBytes: null, overMemoryLimit: null }
    }).then(outcome => {
      this.sizes.set(id, { stdout: outcome.stdoutBytes, stderr: outcome.stderrBytes })
      this.reactor.taskExited(id, outcome, Date.now())
    })
  }

  stop (attemptId: number): void { this.deps.backend.stop(attemptId) }
  suspend (attemptId: number): void { this.deps.backend.suspend(attemptId) }
  resume (attemptId: number): void { this.deps.backend.continue(attemptId) }

  collect (skeleton: AttemptResult, skipOutputs: boolean): void {
    const id = skeleton.attemptId
    const a = this.assignments.get(id)
    const sizes = this.sizes.get(id)
    const slot = this.slots.get(id)
    this.sizes.delete(id)
    this.slots.delete(id)
    const { paths, isolation } = this.deps
    void (async () => {
      const cap = captureFiles(paths, id)
      const stdout = await captureRef(cap.stdout, STDOUT_NAME, sizes?.stdout ?? null)
      const stderr = await captureRef(cap.stderr, STDERR_NAME, sizes?.stderr ?? null)
      // Slot users own their outputs; a file with several links that the task does not own is refused.
      const owner = slot != null ? isolation.slotUsers?.[slot]?.uid ?? null : null
      const c = skipOutputs || a == null ? null : await collectOutputs(taskDir(paths, id), a.task.outputs, owner)
      this.reactor.resultReady(withFiles(skeleton, stdout, stderr, c), c?.fingerprints)
    })().catch(err => {
      const failure: Failure = { kind: 'internal', message: `collecting the results failed: ${errorMessage(err)}`, retryable: true }
      this.reactor.resultReady({ ...skeleton, state: 'failed', failure })
    }).finally(() => this.assignments.delete(id))
  }

  discard (attemptId: number): void {
    this.assignments.delete(attemptId)
    this.sizes.delete(attemptId)
    this.slots.delete(attemptId)
    void this.deps.stager.discard(attemptId).catch(err => { this.deps.log(`agent: removing attempt ${attemptId}'s files failed: ${errorMessage(err)}`) })
  }

  keep (entry: OutboxEntry, persistNow: boolean): void {
    this.deps.outbox.keep(entry, persistNow).catch(err => { this.deps.log(`agent: cannot keep the result of attempt ${entry.kind === 'result' ? entry.result.attemptId : entry.attemptId}: ${errorMessage(err)}`) })
  }

  persistPending (): void {
    this.deps.outbox.persistAll().catch(err => { this.deps.log(`agent: cannot keep results on disk: ${errorMessage(err)}`) })
  }

  deliver (entries: ResultEntry[], token: number): void {
    const ids = entries.map(e => e.result.attemptId)
    const session = this.deps.session()
    if (session == null) {
      this.reactor.deliveryFailed(token, ids)
      return
    }
    const { paths, inlineMaxBytes, inlineBudgetBytes } = this.deps
    deliverResults(entries, { paths, upload: session.upload, send: session.send, inlineMaxBytes, inlineBudgetBytes }).then(replaced => {
      for (const r of replaced) this.reactor.resultReplaced(r)
      this.reactor.delivered(token, ids)
    }, err => {
      this.deps.log(`agent: delivering results failed: ${errorMessage(err)}`)
      this.reactor.deliveryFailed(token, ids)
    })
  }

  settle (attemptIds: number[]): void {
    this.deps.outbox.remove(attemptIds)
      .then(async () => { await Promise.all(attemptIds.map(async id => { await this.deps.stager.discard(id) })) })
      .catch(err => { this.deps.log(`agent: removing delivered results failed: ${errorMessage(err)}`) })
  }

  readLogs (req: LogRequest): void {
    const cap = captureFiles(this.deps.paths, req.attemptId)
    readLogPiece(req.stream === 'stderr' ? cap.stderr : cap.stdout, req).then(msg => { this.send(msg) }, err => {
      this.send({ t: 'agent.logs', requestId: req.requestId, data: new Uint8Array(0), offset: req.offset, eof: true, error: errorMessage(err) })
    })
  }

  setMembers (peerIds: string[]): void {
    try {
      this.deps.gate.setMembers(peerIds)
    } catch (err) {
      this.deps.log(`agent: cannot keep the member list: ${errorMessage(err)}`)
    }
  }

  finished (why: 'drained' | 'stopped'): void {
    this.deps.onFinished(why)
  }
}

/** A staging error as a failure: files the coordinator does not have, unsafe names, a full disk. */
function stagingFailure (err: unknown): Failure {
  const message = `staging failed: ${errorMessage(err)}`
  const retryable = !(isMeshfarmError(err) && err.code === 'UNSAFE_PATH')
  return { kind: 'staging', message, retryable }
}
