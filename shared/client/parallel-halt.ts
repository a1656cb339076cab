/**
 * GNU parallel's --halt and exit status (20221122: should_we_halt and halt), as a pure tally: each finished job is
 * counted, and the rule says when the run stops and with which exit status. On a mesh, halting cancels the job
 * (its running tasks are stopped, its queued ones dropped): `now` and `soon` both do that.
 *
 *   no --halt        exit status = failed jobs, at most 101
 *   fail=N / done=N  halt once N jobs failed / finished; exit status = failed jobs (at most 101), or with N = 1
 *                    the exit status of the job that made it halt (128 + its signal if it was killed)
 *   fail=P% / done=P%  the same with P% of all jobs; exit status = the percentage of jobs that failed, rounded up
 *   success=N / P%   halt once N (P%) jobs succeeded; exit status 0
 * A run with --halt that never halts ends with the failed jobs (count) or the failed percentage of those started.
 */
import type { HaltSpec } from './parallel-args.ts'

export interface HaltTally {
  /** Jobs of this run: the base of percentages. */
  total: number
  finished: number
  failed: number
  /** Set once the rule is met: the run stops, with this exit status. */
  haltedWith: number | null
}

/** How a job ended, as parallel sees it: its exit value (-1 when killed) and signal number (0: none). */
export interface JobEnd { exitval: number, signal: number }

export function newTally (total: number): HaltTally {
  return { total, finished: 0, failed: 0, haltedWith: null }
}

function byte (n: number): number {
  return ((n % 256) + 256) % 256
}

function failedJob (e: JobEnd): boolean {
  return e.exitval !== 0 || e.signal !== 0
}

/** The tally after one more job ended; haltedWith is set when this job meets the rule (and never changes after). */
export function countJob (halt: HaltSpec | undefined, t: HaltTally, e: JobEnd): HaltTally {
  const failed = failedJob(e)
  const next: HaltTally = { ...t, finished: t.finished + 1, failed: t.failed + (failed ? 1 : 0) }
  if (halt == null || t.haltedWith != null) return next
  let limit: number | null = null
  if (halt.on === 'fail' && failed) limit = next.failed
  if (halt.on === 'success' && !failed) limit = next.finished - next.failed
  if (halt.on === 'done') limit = next.finished
  if (limit == null) return next
  const needed = halt.count ?? next.total * (halt.percent ?? 100) / 100
  if (limit < needed) return next
  if (halt.on === 'success') return { ...next, haltedWith: 0 }
  // As bash reports it: the job's exit value, else 128 + its signal; an exit status is a byte (-1 is 255).
  if (halt.count === 1) return { ...next, haltedWith: byte(e.exitval !== 0 ? e.exitval : e.signal !== 0 ? e.signal + 128 : 0) }
  const status = halt.percent != null ? Math.ceil(next.failed / Math.max(1, next.total) * 100) : Math.min(next.failed, 101)
  return { ...next, haltedWith: status }
}

/** The run's exit status once every job it ran has ended (or it halted). */
export function exitStatus (halt: HaltSpec | undefined, t: HaltTally): number {
  if (t.haltedWith != null) return t.haltedWith
  if (halt?.percent != null) return Math.ceil(t.failed / Math.max(1, t.finished) * 100)
  return Math.min(t.failed, 101)
}
