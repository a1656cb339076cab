/**
 * Automatic allocation (HyperQueue's autoalloc, dask-jobqueue's adapt) as pure functions: what to submit, what to
 * release and why, from (state, observations, limits, now). No clock, no Slurm: the bridge's loop observes, calls
 * `decideAutoAlloc`, carries out the actions, and feeds the results back through `onSubmitted`/`onAllocationEnded`.
 * Every decision carries its reason in plain words, for the log and for `meshfarm why`.
 */
import { MeshfarmError, errorMessage } from '../../../shared/util/errors.ts'
import { parseDuration } from '../../../shared/client/spec.ts'
import type { SlurmError } from './batch-system.ts'
import { shortDuration, slurmClock } from './hostlist.ts'

export interface AutoAllocLimits {
  /** Allocations alive at once (pending + running). */
  maxAllocations: number
  /** Allocations waiting in Slurm's queue at once. */
  maxPending: number
  /** Nodes over all allocations. */
  maxWorkers: number
  nodesPerAllocation: number
  /** The allocation's --time. */
  timeLimitMs: number
  /** A running allocation with no task this long is released. */
  idleTimeoutMs: number
  /** Wait after the n-th consecutive failure: backoffMs[min(n, len) - 1]. */
  backoffMs: number[]
  /** Consecutive failures that pause auto-allocation until `resume`. */
  pauseAfterFailures: number
  /** Consecutive permanent failures (a bad account, an unknown partition) that pause it sooner. */
  pauseAfterPermanent: number
}

export const DEFAULT_BACKOFF_MS = [0, 60_000, 15 * 60_000, 30 * 60_000, 60 * 60_000]

export const DEFAULT_LIMITS: AutoAllocLimits = {
  maxAllocations: 4, maxPending: 4, maxWorkers: 4, nodesPerAllocation: 1, timeLimitMs: 3_600_000, idleTimeoutMs: 300_000,
  backoffMs: DEFAULT_BACKOFF_MS, pauseAfterFailures: 5, pauseAfterPermanent: 2
}

/** Durable between decisions: failures and the pause. */
export interface AutoAllocState {
  consecutiveFailures: number
  consecutivePermanent: number
  lastFailureAt: number | null
  lastFailure: string | null
  paused: string | null
}

export const INITIAL_STATE: AutoAllocState = { consecutiveFailures: 0, consecutivePermanent: 0, lastFailureAt: null, lastFailure: null, paused: null }

/** Tasks the mesh holds that no lab agent can take now, grouped by what they need. */
export interface BacklogGroup { tasks: number, cores: number, memoryMb: number, gpus: number, timeoutMs: number | null }

export interface AllocationView {
  id: string
  state: 'pending' | 'running'
  /** Tasks it can run at once (for a pending one: what it will offer). */
  slots: number
  runningTasks: number
  /** Since when it has run no task (null while busy). */
  idleSince: number | null
}

export interface PartitionView {
  name: string
  state: string
  maxTimeMs: number | null
  /** The largest node of the partition. */
  cpusPerNode: number
  memoryMbPerNode: number
  gpusPerNode: number
}

export interface Observations { backlog: BacklogGroup[], allocations: AllocationView[], partition: PartitionView }

export type AutoAllocAction =
  | { kind: 'submit', reason: string }
  | { kind: 'release', allocationId: string, reason: string }

export interface AutoAllocDecision {
  actions: AutoAllocAction[]
  /** Why nothing (more) was done: "no allocation submitted: 4 already pending (limit 4)". */
  reasons: string[]
  /** When deciding again could change something on its own (a back-off or an idle timeout ending); null: on events. */
  wakeAt: number | null
}

/** Why a task of this shape can never run in an allocation, or null when it can. */
export function unfitReason (g: BacklogGroup, p: PartitionView, limits: AutoAllocLimits): string | null {
  if (g.timeoutMs != null && p.maxTimeMs != null && g.timeoutMs > p.maxTimeMs) return `partition ${p.name}: MaxTime ${slurmClock(p.maxTimeMs)} < task timeout ${shortDuration(g.timeoutMs)}`
  if (g.timeoutMs != null && g.timeoutMs > limits.timeLimitMs) return `allocation time limit ${shortDuration(limits.timeLimitMs)} < task timeout ${shortDuration(g.timeoutMs)}`
  if (g.cores > p.cpusPerNode) return `partition ${p.name}: ${p.cpusPerNode} CPUs per node < ${g.cores} cores asked`
  if (g.memoryMb > p.memoryMbPerNode) return `partition ${p.name}: ${p.memoryMbPerNode} MB per node < ${g.memoryMb} MB asked`
  if (g.gpus > p.gpusPerNode) return `partition ${p.name}: ${p.gpusPerNode} GPUs per node < ${g.gpus} asked`
  return null
}

export function decideAutoAlloc (state: AutoAllocState, obs: Observations, limits: AutoAllocLimits, now: number): AutoAllocDecision {
  const actions: AutoAllocAction[] = []
  const reasons: string[] = []
  let wakeAt: number | null = null
  const wake = (t: number): void => { wakeAt = wakeAt == null ? t : Math.min(wakeAt, t) }

  // Release idle allocations first: they are what the admin pays for, paused or not.
  let alive = obs.allocations
  const waiting = obs.backlog.reduce((n, g) => n + g.tasks, 0)
  for (const a of obs.allocations) {
    if (a.state !== 'running' || a.runningTasks > 0 || a.idleSince == null) continue
    const idleFor = now - a.idleSince
    if (idleFor >= limits.idleTimeoutMs) {
      actions.push({ kind: 'release', allocationId: a.id, reason: `allocation ${a.id} released: idle for ${shortDuration(idleFor)} (idle timeout ${shortDuration(limits.idleTimeoutMs)})` })
      alive = alive.filter(x => x.id !== a.id)
    } else {
      wake(a.idleSince + limits.idleTimeoutMs)
    }
  }

  if (state.paused != null) {
    reasons.push(`no allocation submitted: paused (${state.paused}); \`meshfarm bridge resume\` lifts it`)
    return { actions, reasons, wakeAt }
  }
  if (waiting === 0) {
    reasons.push('no allocation submitted: no task waiting')
    return { actions, reasons, wakeAt }
  }
  const p = obs.partition
  if (p.state !== 'UP') {
    reasons.push(`no allocation submitted: partition ${p.name} is ${p.state}`)
    return { actions, reasons, wakeAt }
  }
  let fitting = 0
  for (const g of obs.backlog) {
    const why = unfitReason(g, p, limits)
    if (why == null) fitting += g.tasks
    else reasons.push(`${why} (${g.tasks} task${g.tasks === 1 ? '' : 's'} not sent to Slurm)`)
  }
  if (fitting === 0) return { actions, reasons, wakeAt }

  if (state.consecutiveFailures > 0 && state.lastFailureAt != null) {
    const i = Math.min(state.consecutiveFailures, limits.backoffMs.length) - 1
    const until = state.lastFailureAt + (limits.backoffMs[i] ?? 0)
    if (now < until) {
      reasons.push(`no allocation submitted: backing off after ${state.consecutiveFailures} failure${state.consecutiveFailures === 1 ? '' : 's'} (last: ${state.lastFailure ?? '?'}); next try in ${shortDuration(until - now)}`)
      wake(until)
      return { actions, reasons, wakeAt }
    }
  }

  // Capacity already coming: free slots of running allocations and all slots of pending ones.
  const covered = alive.reduce((n, a) => n + (a.state === 'pending' ? a.slots : Math.max(0, a.slots - a.runningTasks)), 0)
  let uncovered = fitting - covered
  if (uncovered <= 0) {
    reasons.push(`no allocation submitted: ${fitting} waiting task${fitting === 1 ? '' : 's'} fit in the ${alive.length} allocation${alive.length === 1 ? '' : 's'} already there`)
    return { actions, reasons, wakeAt }
  }
  const slotsPerAllocation = Math.max(1, limits.nodesPerAllocation * p.cpusPerNode)
  let pending = alive.filter(a => a.state === 'pending').length
  let total = alive.length
  let workers = total * limits.nodesPerAllocation
  while (uncovered > 0) {
    if (pending >= limits.maxPending) { reasons.push(`no allocation submitted: ${pending} already pending (limit ${limits.maxPending})`); break }
    if (total >= limits.maxAllocations) { reasons.push(`no allocation submitted: ${total} allocations already (limit ${limits.maxAllocations})`); break }
    if (workers + limits.nodesPerAllocation > limits.maxWorkers) { reasons.push(`no allocation submitted: ${workers} workers already (limit ${limits.maxWorkers})`); break }
    actions.push({ kind: 'submit', reason: `allocation submitted: ${uncovered} waiting task${uncovered === 1 ? '' : 's'} fit partition ${p.name} and no allocation has room for them` })
    uncovered -= slotsPerAllocation
    pending++; total++; workers += limits.nodesPerAllocation
  }
  return { actions, reasons, wakeAt }
}

/** Feeds back one sbatch of an allocation: success clears the failure count, failures count towards the pause. */
export function onSubmitted (state: AutoAllocState, result: { ok: true } | { ok: false, error: SlurmError }, limits: AutoAllocLimits, now: number): AutoAllocState {
  if (result.ok) return { ...state, consecutiveFailures: 0, consecutivePermanent: 0 }
  return failure(state, result.error.message, result.error.kind === 'permanent', limits, now)
}

/** An allocation that ended without ever running (FAILED, BOOT_FAIL, ...) counts as a failure too. */
export function onAllocationEnded (state: AutoAllocState, ended: { ranTasks: boolean, failed: boolean, message: string }, limits: AutoAllocLimits, now: number): AutoAllocState {
  if (!ended.failed || ended.ranTasks) return ended.ranTasks ? { ...state, consecutiveFailures: 0, consecutivePermanent: 0 } : state
  return failure(state, ended.message, false, limits, now)
}

function failure (state: AutoAllocState, message: string, permanent: boolean, limits: AutoAllocLimits, now: number): AutoAllocState {
  const consecutiveFailures = state.consecutiveFailures + 1
  const consecutivePermanent = permanent ? state.consecutivePermanent + 1 : 0
  let paused = state.paused
  if (paused == null && consecutivePermanent >= limits.pauseAfterPermanent) paused = `${consecutivePermanent} permanent failures in a row, last: ${message}`
  else if (paused == null && consecutiveFailures >= limits.pauseAfterFailures) paused = `${consecutiveFailures} failures in a row, last: ${message}`
  return { consecutiveFailures, consecutivePermanent, lastFailureAt: now, lastFailure: message, paused }
}

/** `meshfarm bridge resume`: lifts the pause and forgets the failures, so the next decision may submit at once. */
export function resume (_state: AutoAllocState): AutoAllocState {
  return { ...INITIAL_STATE }
}

/** `--auto-alloc max=4,time=2h,idle=5m[,pending=2,workers=8,nodes=1,pause=5]` -> limits; one line per bad item. */
export function parseAutoAllocSpec (text: string, base: AutoAllocLimits = DEFAULT_LIMITS): AutoAllocLimits {
  const bad = (m: string): MeshfarmError => new MeshfarmError('BAD_ARGUMENT', `--auto-alloc: ${m}`)
  const out: AutoAllocLimits = { ...base }
  const keys = ['max', 'pending', 'workers', 'nodes', 'time', 'idle', 'pause']
  let maxSet = false
  for (const item of text.split(',').map(s => s.trim()).filter(s => s !== '')) {
    const [k, v] = item.split('=', 2)
    if (v == null || v === '') throw bad(`${JSON.stringify(item)}: expected key=value (keys: ${keys.join(', ')})`)
    const whole = (): number => {
      if (!/^\d+$/.test(v) || Number(v) < 1) throw bad(`${k}=${v}: a whole number >= 1`)
      return Number(v)
    }
    const dur = (): number => {
      try { return parseDuration(v, k) } catch (e) { throw bad(errorMessage(e)) }
    }
    switch (k) {
      case 'max': out.maxAllocations = whole(); maxSet = true; break
      case 'pending': out.maxPending = whole(); break
      case 'workers': out.maxWorkers = whole(); break
      case 'nodes': out.nodesPerAllocation = whole(); break
      case 'time': out.timeLimitMs = dur(); break
      case 'idle': out.idleTimeoutMs = dur(); break
      case 'pause': out.pauseAfterFailures = whole(); break
      default: throw bad(`unknown key ${JSON.stringify(k)} (keys: ${keys.join(', ')})`)
    }
  }
  // `max` alone sizes the rest: pending and workers follow it unless given.
  if (maxSet && !/(^|,)\s*pending=/.test(text)) out.maxPending = out.maxAllocations
  if (maxSet && !/(^|,)\s*workers=/.test(text)) out.maxWorkers = out.maxAllocations * out.nodesPerAllocation
  if (out.timeLimitMs <= 0) throw bad('time: must be more than 0')
  return Object.freeze(out)
}
