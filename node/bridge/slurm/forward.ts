/**
 * The forward backend: the agent's tasks as elements of Slurm job arrays. `start` buffers a task for a short tick;
 * the buffered tasks of one mesh job and one resource shape go out as chunks (one sbatch each, the intent logged
 * first: chunk-files.ts submitChunk). One `squeue --me` per poll follows every chunk; the wrappers' status files
 * say how each element ended, and its stdout and stderr are copied to the agent's capture files. `stop` is an
 * scancel of that element. Nothing here decides what a Slurm state means (outcome.ts, forward-plan.ts).
 */
import { appendFileSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { settleAttempt, type BackendTask, type TaskBackend, type TaskOutcome } from '../../backend/backend.ts'
import { errorMessage } from '../../../shared/util/errors.ts'
import type { BatchSystem, QueueEntry, SlurmError } from './batch-system.ts'
import type { IntentLog } from './intent-log.ts'
import { chunkLabel, planChunks, type ChunkSpec, type SlurmPlacement, type WrapperStatus } from './script.ts'
import { copyOrEmpty, outputFiles, readStatus, statusIndexes, submitChunk } from './chunk-files.ts'
import { chunkOutcomes } from './follow.ts'
import { chunkShape, meshOutcome, neverFits, resourcesOf, slurmTaskEnv, taskScript, unranOutcome, type PartitionLimits } from './forward-plan.ts'

export interface ForwardOptions {
  batch: BatchSystem
  intents: IntentLog
  bridgeId: string
  /** Chunk folders go under `<workDir>/slurm`, on a file system the cluster's nodes see. */
  workDir: string
  partition: PartitionLimits
  placement: SlurmPlacement
  /** Largest chunk (chunkLimit of the cluster's config). */
  chunkLimit: number
  /** `%N`: elements of one chunk running at once. */
  throttle?: number
  pollMs: number
  /** How long `start` waits for more tasks before submitting (default 300 ms). */
  tickMs?: number
  say: (line: string) => void
  now?: () => number
}

/** What chunk.json keeps: enough to submit the chunk again and for a restarted bridge to adopt its tasks. */
export interface ChunkRecord { spec: ChunkSpec, tasks: BackendTask[] }

export interface Member {
  task: BackendTask
  onStarted: ((startedAt: number) => void) | null
  chunk: Chunk | null
  index: number
  started: boolean
  /** A stop asked for; `sent` once Slurm took the scancel. */
  stop: 'none' | 'asked' | 'sent'
  /** When Slurm first showed it over without a status file (a file system may show the file late). */
  overSince: number | null
  resolved: boolean
  resolve: (o: TaskOutcome) => void
  done: Promise<TaskOutcome>
}

export interface Chunk {
  key: string
  dir: string
  arrayJobId: string | null
  /** When sbatch answered: a squeue asked before that may not show the job yet. */
  submittedAt: number | null
  members: Member[]
  /** Status files already read. */
  statuses: Map<number, WrapperStatus>
  open: number
}

/** Elements over in Slurm without a status file are decided after this long (NFS shows new files late). */
const STATUS_GRACE_MS = 5000
const MAX_BACKOFF_MS = 60_000

export class ForwardBackend implements TaskBackend {
  readonly name = 'slurm'
  private readonly o: ForwardOptions
  private readonly now: () => number
  private readonly members = new Map<number, Member>()
  private readonly chunks = new Map<string, Chunk>()
  private buffer: Member[] = []
  private tick: NodeJS.Timeout | undefined
  private submitting: Promise<void> = Promise.resolve()
  private readonly closing = new AbortController()
  private loop: Promise<void> | null = null
  private wake: (() => void) | null = null
  private lastError = ''
  private suspendSaid = false
  /** Elements by Slurm state (and reason, while pending) in the last poll, for the status notes. */
  private tally = new Map<string, number>()
  private submitTrouble: string | null = null
  private closedSinceCompaction = 0

  constructor (o: ForwardOptions) {
    this.o = { ...o }
    this.now = o.now ?? Date.now
  }

  /** The partition's limits changed (a node went down or came back). */
  setPartition (p: PartitionLimits): void {
    this.o.partition = p
  }

  /** Chunks a restarted bridge follows again (recovery.ts), their members waiting for `start` to re-attach. */
  follow (record: ChunkRecord, key: string, arrayJobId: string | null, resolved: ReadonlySet<number>): void {
    const chunk: Chunk = { key, dir: record.spec.chunkDir, arrayJobId, submittedAt: arrayJobId != null ? 0 : null, members: [], statuses: new Map(), open: 0 }
    record.tasks.forEach((task, index) => {
      const m = this.member(task, null)
      m.chunk = chunk
      m.index = index
      chunk.members.push(m)
      if (resolved.has(index)) {
        m.resolved = true
        this.members.delete(task.attemptId)
      } else {
        chunk.open++
      }
    })
    this.chunks.set(key, chunk)
    if (chunk.open === 0) this.closeChunk(chunk)
  }

  /**
   * A chunk whose sbatch outcome is unknown (an sbatch of the dead bridge still runs for it): once `before` has
   * waited that out, submitChunk adopts the job it made or, if it made none, submits the chunk.
   */
  resume (record: ChunkRecord, key: string, resolved: ReadonlySet<number>, before: () => Promise<void>): void {
    this.follow(record, key, null, resolved)
    const chunk = this.chunks.get(key)
    if (chunk != null) this.submitting = this.submitting.then(async () => { await before(); await this.submit(chunk, record.spec) })
  }

  start (task: BackendTask, onStarted: (startedAt: number) => void): void {
    const known = this.members.get(task.attemptId)
    if (known != null) {
      // Re-attached after a restart: Slurm still has it.
      known.task = task
      known.onStarted = onStarted
      if (known.started) onStarted(this.now())
      this.ensureLoop()
      return
    }
    const m = this.member(task, onStarted)
    const never = neverFits(task, this.o.partition)
    if (never != null) {
      this.finish(m, unranOutcome(this.now(), { kind: 'batch', message: `refused: ${never}`, retryable: false, detail: never.slice(0, 256) }))
      return
    }
    this.buffer.push(m)
    if (this.buffer.length >= this.o.chunkLimit) this.flush()
    else this.tick ??= setTimeout(() => { this.flush() }, this.o.tickMs ?? 300)
    this.ensureLoop()
  }

  private member (task: BackendTask, onStarted: Member['onStarted']): Member {
    let resolve!: (o: TaskOutcome) => void
    const done = new Promise<TaskOutcome>(r => { resolve = r })
    const m: Member = { task, onStarted, chunk: null, index: -1, started: false, stop: 'none', overSince: null, resolved: false, resolve, done }
    this.members.set(task.attemptId, m)
    return m
  }

  /** The buffered tasks as chunks: by job and shape, at most chunkLimit each; submitted one sbatch at a time. */
  private flush (): void {
    clearTimeout(this.tick)
    this.tick = undefined
    const ready = this.buffer.filter(m => m.stop === 'none')
    this.buffer = []
    for (const group of planChunks(ready, this.o.chunkLimit, m => chunkShape(m.task))) {
      const first = group[0].task
      const key = chunkLabel(this.o.bridgeId, String(first.jobId), first.attemptId)
      const dir = join(this.o.workDir, 'slurm', `${first.jobId}-${first.attemptId}`)
      const chunk: Chunk = { key, dir, arrayJobId: null, submittedAt: null, members: group, statuses: new Map(), open: group.length }
      group.forEach((m, index) => { m.chunk = chunk; m.index = index })
      this.chunks.set(key, chunk)
      const spec: ChunkSpec = {
        ...this.o.placement,
        bridgeId: this.o.bridgeId,
        meshJobId: String(first.jobId),
        chunk: first.attemptId,
        chunkDir: dir,
        tasks: group.map(m => ({ taskId: String(m.task.attemptId), folder: m.task.taskDir, command: taskScript(m.task.commands, slurmTaskEnv(m.task)) })),
        resources: resourcesOf(first),
        ...(this.o.throttle != null ? { throttle: this.o.throttle } : {})
      }
      this.submitting = this.submitting.then(async () => { await this.submit(chunk, spec) })
    }
  }

  /** One chunk to Slurm: transient failures back off and try again (submitChunk never doubles a job). */
  private async submit (chunk: Chunk, spec: ChunkSpec): Promise<void> {
    let backoff = 1000
    try {
      mkdirSync(chunk.dir, { recursive: true })
      const record: ChunkRecord = { spec, tasks: chunk.members.map(m => m.task) }
      writeFileSync(join(chunk.dir, 'chunk.json'), JSON.stringify(record))
    } catch (err) {
      return this.refuseChunk(chunk, { kind: 'permanent', message: `work folder: ${errorMessage(err)}` })
    }
    while (!this.closing.signal.aborted) {
      let r
      try {
        r = await submitChunk(this.o.batch, this.o.intents, spec, this.now)
      } catch (err) {
        r = { ok: false as const, error: { kind: 'permanent' as const, message: `sbatch: ${errorMessage(err)}` } }
      }
      if (r.ok) {
        this.submitTrouble = null
        chunk.arrayJobId = r.value
        chunk.submittedAt = this.now()
        this.o.say(`slurm: ${chunk.key}: ${chunk.members.length} task(s) submitted as array ${r.value}`)
        if (chunk.members.some(m => m.stop === 'asked')) this.wake?.()
        return
      }
      if (r.error.kind === 'permanent') return this.refuseChunk(chunk, r.error)
      this.submitTrouble = `${r.error.message} (trying again)`
      this.o.say(`slurm: ${chunk.key}: ${r.error.message}; trying again in ${backoff / 1000} s`)
      await sleep(backoff, undefined, { signal: this.closing.signal }).catch(() => {})
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS)
    }
  }

  /** A permanent sbatch error: one line, and the chunk's tasks fail with Slurm's words (no retry storm). */
  private refuseChunk (chunk: Chunk, e: SlurmError): void {
    this.o.say(`slurm: ${chunk.key}: ${e.message}: its ${chunk.members.length} task(s) fail`)
    const failure = { kind: 'batch' as const, message: `not submitted: ${e.message}`, retryable: false, detail: e.message.slice(0, 256) }
    for (const m of chunk.members) if (!m.resolved) this.finish(m, unranOutcome(this.now(), failure))
  }

  private ensureLoop (): void {
    this.loop ??= this.pollLoop()
  }

  /** One squeue per round, `pollMs` apart; a stop asked for wakes it early. */
  private async pollLoop (): Promise<void> {
    while (!this.closing.signal.aborted) {
      const askedAt = this.now()
      const q = await this.o.batch.queue()
      if (this.closing.signal.aborted) break
      if (q.ok) {
        this.lastError = ''
        this.observe(q.value, askedAt)
      } else if (q.error.message !== this.lastError) {
        this.lastError = q.error.message
        this.o.say(`slurm: ${q.error.message} (${q.error.kind}); following again at the next poll`)
      }
      await this.sendStops()
      await new Promise<void>(resolve => {
        const t = setTimeout(resolve, this.o.pollMs)
        this.wake = () => { clearTimeout(t); resolve() }
        this.closing.signal.addEventListener('abort', this.wake, { once: true })
      })
      this.wake = null
    }
  }

  /** One squeue answer: who started, who ended, with what. */
  private observe (queue: ReadonlyMap<string, QueueEntry>, askedAt: number): void {
    const now = this.now()
    const tally = new Map<string, number>()
    for (const chunk of [...this.chunks.values()]) {
      if (chunk.arrayJobId == null || chunk.submittedAt == null || chunk.submittedAt > askedAt) continue
      // One readdir per chunk, then only the status files that are new (a pending element has none).
      for (const index of statusIndexes(chunk.dir)) {
        const m = chunk.members[index]
        if (m == null || m.resolved || chunk.statuses.has(index)) continue
        const s = readStatus(chunk.dir, index)
        if (s != null && s.taskId === String(m.task.attemptId)) chunk.statuses.set(index, s)
      }
      const views = chunkOutcomes(chunk.arrayJobId, chunk.members.length, queue, chunk.statuses)
      for (const v of views) {
        const m = chunk.members[v.index]
        if (m.resolved) continue
        if (v.outcome == null && v.slurmState != null) {
          const k = v.slurmState === 'PENDING' ? `pending in Slurm (${v.reason})` : v.slurmState.toLowerCase()
          tally.set(k, (tally.get(k) ?? 0) + 1)
        }
        if (!m.started && (v.slurmState === 'RUNNING' || v.outcome != null)) {
          m.started = true
          m.onStarted?.(chunk.statuses.get(v.index)?.startedAt ?? now)
          // `meshfarm logs -f` reads the capture files: while it runs they lead to Slurm's own output files.
          const live = outputFiles(chunk.dir, chunk.arrayJobId, v.index)
          try { symlinkSync(live.stdout, m.task.stdoutPath); symlinkSync(live.stderr, m.task.stderrPath) } catch {}
        }
        if (v.outcome == null) continue
        const status = chunk.statuses.get(v.index)
        if (status == null && (v.slurmState == null || v.slurmState === 'COMPLETED' || v.slurmState === 'FAILED')) {
          m.overSince ??= now
          if (now - m.overSince < Math.max(STATUS_GRACE_MS, 2 * this.o.pollMs)) continue
        }
        const files = outputFiles(chunk.dir, chunk.arrayJobId, v.index)
        copyOrEmpty(files.stdout, m.task.stdoutPath)
        copyOrEmpty(files.stderr, m.task.stderrPath)
        const node = status?.host ?? queue.get(v.jobId)?.nodes ?? null
        this.finish(m, meshOutcome(v.outcome, { arrayJobId: chunk.arrayJobId, index: v.index, node, startedAt: status?.startedAt ?? now, endedAt: status?.endedAt ?? now }))
      }
    }
    this.tally = tally
  }

  /** scancel for every element a stop was asked for, in one call; those not yet submitted wait for their id. */
  private async sendStops (): Promise<void> {
    const asked = [...this.members.values()].filter(m => m.stop === 'asked' && !m.resolved && m.chunk?.arrayJobId != null)
    if (asked.length === 0) return
    const r = await this.o.batch.cancel(asked.map(m => `${m.chunk!.arrayJobId!}_${m.index}`))
    if (!r.ok) {
      this.o.say(`slurm: ${r.error.message}; cancelling again at the next poll`)
      return
    }
    const now = this.now()
    // Stopped by us: how it ended in Slurm no longer matters (the agent knows why it stopped it).
    for (const m of asked) { m.stop = 'sent'; this.finish(m, unranOutcome(now)) }
  }

  private finish (m: Member, outcome: TaskOutcome): void {
    if (m.resolved) return
    m.resolved = true
    m.resolve(outcome)
    const chunk = m.chunk
    if (chunk == null) return
    // What a restarted bridge must not adopt again.
    try { appendFileSync(join(chunk.dir, 'resolved.txt'), `${m.index}\n`) } catch {}
    if (--chunk.open === 0) this.closeChunk(chunk)
  }

  /** Every element reported: the intent is closed and the chunk's folder goes (outputs were copied). */
  private closeChunk (chunk: Chunk): void {
    this.chunks.delete(chunk.key)
    try {
      this.o.intents.closed(chunk.key, this.now())
      if (++this.closedSinceCompaction >= 64) {
        this.closedSinceCompaction = 0
        this.o.intents.compact(this.now())
      }
      rmSync(chunk.dir, { recursive: true, force: true })
    } catch (err) {
      this.o.say(`slurm: closing ${chunk.key}: ${errorMessage(err)}`)
    }
  }

  suspend (_attemptId: number): void {
    if (this.suspendSaid) return
    this.suspendSaid = true
    this.o.say('slurm: tasks in Slurm cannot be suspended by their user; they keep running')
  }

  continue (_attemptId: number): void {}

  stop (attemptId: number): void {
    const m = this.members.get(attemptId)
    if (m == null || m.resolved || m.stop !== 'none') return
    m.stop = 'asked'
    if (m.chunk == null) {
      // Still in the buffer: it never reaches Slurm.
      this.buffer = this.buffer.filter(x => x !== m)
      this.finish(m, unranOutcome(this.now()))
      return
    }
    this.wake?.()
  }

  async wait (attemptId: number): Promise<TaskOutcome> {
    return await settleAttempt(this.members, attemptId)
  }

  /** Stops following; what runs in Slurm runs on (a restarted bridge adopts it). */
  async close (): Promise<void> {
    clearTimeout(this.tick)
    this.closing.abort()
    await this.loop
    await this.submitting
  }

  /** Status lines for peers and why: what waits in Slurm and why, what could not be submitted. */
  notes (): string[] {
    const lines: string[] = []
    if (this.submitTrouble != null) lines.push(this.submitTrouble)
    let submitting = this.buffer.length
    for (const c of this.chunks.values()) if (c.arrayJobId == null) submitting += c.open
    if (submitting > 0) lines.push(`${submitting} task(s) being submitted to partition ${this.o.partition.name}`)
    for (const [k, n] of [...this.tally].sort((a, b) => b[1] - a[1])) lines.push(`${n} task(s) ${k}`)
    if (lines.length === 0) lines.push(`forwarding to partition ${this.o.partition.name}: nothing in Slurm now`)
    return lines.slice(0, 20)
  }
}
