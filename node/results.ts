/**
 * Results as data: how an attempt's outcome becomes an AttemptResult, and what the agent keeps until the
 * coordinator confirms it. Pure.
 */
import type { Assignment, AttemptResult, Failure, FileRef, Suspension } from '../shared/protocol/messages.ts'
import type { TaskOutcome } from './backend/backend.ts'
import { formatBytes } from '../shared/util/units.ts'

/** What an output looked like when it was hashed, to tell at delivery whether it changed since. */
export interface Fingerprint { size: number, mtimeMs: number, ino: number }

export const EMPTY_HASH = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
/** Names stdout and stderr take in a result (and in the results folder). */
export const STDOUT_NAME = '.meshfarm/stdout'
export const STDERR_NAME = '.meshfarm/stderr'

/** Why the agent itself stopped an attempt. */
export interface StopReason {
  kind: 'cancel' | 'vacate'
  reason: string
  /** For vacate: the machine was reclaimed ('vacate') or a batch system took it back ('preempt'). */
  vacateKind?: 'vacate' | 'preempt'
}

/** What the outbox keeps until the coordinator acknowledges it. */
export type OutboxEntry =
  | { kind: 'result', result: AttemptResult, fingerprints?: Record<string, Fingerprint> }
  | { kind: 'vacate', attemptId: number, vacateKind: 'vacate' | 'preempt', reason: string }

export type ResultEntry = Extract<OutboxEntry, { kind: 'result' }>

export function entryId (e: OutboxEntry): number {
  return e.kind === 'result' ? e.result.attemptId : e.attemptId
}

/** The failure an outcome stands for, or undefined for a success. */
export function classify (o: TaskOutcome, stop: StopReason | null, timeoutMs: number): Failure | undefined {
  if (stop?.kind === 'cancel') return { kind: 'cancelled', message: stop.reason, retryable: false }
  if (o.failure != null) return o.failure
  if (o.error != null && o.exitCode == null) return { kind: 'spawn', message: o.error, retryable: false }
  // Not retryable: the same request gets the same limit anywhere.
  if (o.overMemoryLimit === true) return { kind: 'memory', message: memoryMessage(o.peakMemoryBytes, o.memoryLimitBytes ?? null), retryable: false }
  if (o.timedOut) return { kind: 'timeout', message: `timed out after ${timeoutMs} ms`, retryable: true }
  if (o.signal != null) return { kind: 'signal', message: `killed by ${o.signal}`, retryable: true }
  if (o.exitCode !== 0) return { kind: 'exit', message: `exited with code ${String(o.exitCode)}`, retryable: true }
  return undefined
}

/**
 * A task over its memory, in words that are true of what was measured: under a hard limit the peak is the limit
 * itself ("needed more than its 512 MiB"); where nothing capped it, what it used ("used 2.1 GiB of its 512 MiB").
 */
export function memoryMessage (peakBytes: number | null, limitBytes: number | null): string {
  if (limitBytes == null) return `ran out of memory${peakBytes != null ? ` (peak ${formatBytes(peakBytes)})` : ''}: killed by the kernel`
  if (peakBytes != null && peakBytes > limitBytes * 1.05) return `used ${formatBytes(peakBytes)} of its ${formatBytes(limitBytes)}: stopped`
  return `needed more than its ${formatBytes(limitBytes)} of memory${peakBytes != null ? ` (peak ${formatBytes(peakBytes)}, at the limit)` : ''}: killed by the kernel; ask for more memory`
}

export function emptyRef (name: string): FileRef {
  return { name, hash: EMPTY_HASH, size: 0 }
}

/** The result of a finished run before its files are read (collect fills stdout, stderr and outputs). */
export function resultSkeleton (a: Assignment, o: TaskOutcome, failure: Failure | undefined, suspensions: Suspension[]): AttemptResult {
  return {
    attemptId: a.attemptId,
    jobId: a.jobId,
    index: a.index,
    state: failure == null ? 'done' : failure.kind === 'cancelled' ? 'cancelled' : 'failed',
    exitCode: o.exitCode,
    signal: o.signal,
    ...(failure != null ? { failure } : {}),
    startedAt: o.startedAt,
    endedAt: o.endedAt,
    stdout: emptyRef(STDOUT_NAME),
    stderr: emptyRef(STDERR_NAME),
    outputs: [],
    ...(o.peakMemoryBytes != null ? { peakMemoryBytes: o.peakMemoryBytes } : {}),
    ...(suspensions.length > 0 ? { suspensions } : {}),
    ...(o.backend != null ? { backend: o.backend } : {})
  }
}

/** A result for an attempt that never ran (cancelled while staged, or its staging failed). */
export function unranResult (a: Assignment, failure: Failure, now: number): AttemptResult {
  return {
    attemptId: a.attemptId, jobId: a.jobId, index: a.index, state: failure.kind === 'cancelled' ? 'cancelled' : 'failed',
    exitCode: null, signal: null, failure, startedAt: now, endedAt: now, stdout: emptyRef(STDOUT_NAME), stderr: emptyRef(STDERR_NAME), outputs: []
  }
}

/** Bytes a result would carry inline: its files up to the inline size. */
export function inlineBytes (r: AttemptResult, inlineMax: number): number {
  let n = 0
  for (const f of [r.stdout, r.stderr, ...r.outputs]) if (f.size <= inlineMax) n += f.size
  return n
}

/**
 * What a flush sends (pure): every waiting vacate notice, grouped by kind and reason, and, when no delivery is
 * under way, the next batch of waiting results: at most `resultBatch`, and inline bytes within the budget
 * (a result larger than the budget still goes, alone).
 */
export function pickDeliveries (
  pending: ReadonlyMap<number, { entry: OutboxEntry, phase: string }>,
  takeResults: boolean,
  limits: { resultBatch: number, inlineBudgetBytes: number, inlineMaxBytes: number }
): { vacated: Array<{ attemptIds: number[], kind: 'vacate' | 'preempt', reason: string }>, batch: ResultEntry[] } {
  const groups = new Map<string, { attemptIds: number[], kind: 'vacate' | 'preempt', reason: string }>()
  const batch: ResultEntry[] = []
  let inline = 0
  let full = !takeResults
  for (const [id, p] of pending) {
    if (p.phase !== 'waiting') continue
    if (p.entry.kind === 'vacate') {
      const key = `${p.entry.vacateKind}\u0000${p.entry.reason}`
      let g = groups.get(key)
      if (g == null) groups.set(key, g = { attemptIds: [], kind: p.entry.vacateKind, reason: p.entry.reason })
      g.attemptIds.push(id)
      continue
    }
    if (full) continue
    const bytes = inlineBytes(p.entry.result, limits.inlineMaxBytes)
    if (batch.length > 0 && (batch.length >= limits.resultBatch || inline + bytes > limits.inlineBudgetBytes)) {
      full = true
      continue
    }
    batch.push(p.entry)
    inline += bytes
  }
  return { vacated: [...groups.values()], batch }
}
