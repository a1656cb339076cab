/**
 * What became of one task, pure: Slurm's state for its array element (while Slurm still lists it) plus the status
 * file its wrapper wrote (which outlives MinJobAge) -> a meshfarm outcome, Slurm's words kept in the message.
 * NODE_FAIL, PREEMPTED and a job Slurm forgot without a status file go back to the mesh ('requeue'): the task did
 * nothing wrong.
 */
import type { WrapperStatus } from './script.ts'

export type SlurmFailureKind = 'exit' | 'signal' | 'timeout' | 'cancelled' | 'node-fail' | 'memory' | 'preempted' |
  'boot-fail' | 'deadline' | 'lost' | 'slurm'

export interface SlurmFailure {
  kind: SlurmFailureKind
  message: string
  retryable: boolean
  /** Slurm's own words alone: `Slurm job 217_4: TIMEOUT, reason TimeLimit`. */
  detail: string
}

export interface TaskOutcome {
  state: 'done' | 'failed' | 'requeue'
  exitCode: number | null
  /** Signal number that ended the command, when one did. */
  signal: number | null
  failure?: SlurmFailure
}

export interface OutcomeInput {
  /** `123_4`, for messages. */
  jobId: string
  /** Slurm's state while it lists the job (squeue %T or scontrol JobState); null once it no longer does. */
  slurmState: string | null
  /** Slurm's reason (squeue %r), '' when unknown. */
  reason: string
  /** The batch script's `ExitCode=code:signal` from scontrol, when read. */
  slurmExit?: { code: number, signal: number }
  /** The wrapper's status file, null when it wrote none (yet). */
  status: WrapperStatus | null
}

/** States after which Slurm will not run the element again (the bridge submits --no-requeue). */
export const TERMINAL_SLURM_STATES: ReadonlySet<string> = new Set(['COMPLETED', 'FAILED', 'TIMEOUT', 'CANCELLED', 'NODE_FAIL',
  'OUT_OF_MEMORY', 'PREEMPTED', 'BOOT_FAIL', 'DEADLINE', 'SPECIAL_EXIT', 'REVOKED'])

const SIGNAL_NAMES: Record<number, string> = { 1: 'SIGHUP', 2: 'SIGINT', 3: 'SIGQUIT', 4: 'SIGILL', 6: 'SIGABRT', 7: 'SIGBUS', 8: 'SIGFPE', 9: 'SIGKILL', 11: 'SIGSEGV', 13: 'SIGPIPE', 14: 'SIGALRM', 15: 'SIGTERM', 24: 'SIGXCPU', 25: 'SIGXFSZ' }
export const signalName = (n: number): string => SIGNAL_NAMES[n] ?? `signal ${n}`

function slurmWords (i: OutcomeInput): string {
  const reason = i.reason !== '' && i.reason !== 'None' ? `, reason ${i.reason}` : ''
  const exit = i.slurmExit != null ? `, ExitCode ${i.slurmExit.code}:${i.slurmExit.signal}` : ''
  return `Slurm job ${i.jobId}: ${i.slurmState ?? 'no longer listed'}${reason}${exit}`
}

/** The command's own ending, from the status file. */
function fromStatus (s: WrapperStatus, words: string): TaskOutcome {
  if (s.exitCode === 0) return { state: 'done', exitCode: 0, signal: null }
  if (s.signal != null) {
    const by = s.terminated ? ' (Slurm ended it)' : ''
    return { state: 'failed', exitCode: s.exitCode, signal: s.signal, failure: { kind: 'signal', message: `killed by ${signalName(s.signal)}${by}; ${words}`, retryable: true, detail: words } }
  }
  return { state: 'failed', exitCode: s.exitCode, signal: null, failure: { kind: 'exit', message: `exit code ${s.exitCode}; ${words}`, retryable: true, detail: words } }
}

function failed (kind: SlurmFailureKind, what: string, words: string, s: WrapperStatus | null, retryable: boolean): TaskOutcome {
  return { state: 'failed', exitCode: s?.exitCode ?? null, signal: s?.signal ?? null, failure: { kind, message: `${what} (${words})`, retryable, detail: words } }
}

function requeue (kind: SlurmFailureKind, what: string, words: string): TaskOutcome {
  return { state: 'requeue', exitCode: null, signal: null, failure: { kind, message: `${what} (${words})`, retryable: true, detail: words } }
}

/** The outcome once the task is over; null while it is not (pending, running, completing without a status). */
export function taskOutcome (i: OutcomeInput): TaskOutcome | null {
  const words = slurmWords(i)
  const s = i.status
  switch (i.slurmState) {
    case null:
      // Slurm has forgotten the job (MinJobAge): the status file is all there is.
      if (s != null) return fromStatus(s, words)
      return requeue('lost', 'Slurm no longer lists the job and the task left no status file', words)
    case 'COMPLETED':
      return s != null ? fromStatus(s, words) : { state: 'done', exitCode: 0, signal: null }
    case 'FAILED':
      if (s != null) return fromStatus(s, words)
      // The wrapper never finished: Slurm could not start it (a missing folder, a launch failure).
      return failed('slurm', 'the task did not run to its end', words, null, true)
    case 'TIMEOUT': return failed('timeout', 'hit its Slurm time limit', words, s, true)
    case 'CANCELLED': return failed('cancelled', 'cancelled in Slurm', words, s, false)
    case 'OUT_OF_MEMORY': return failed('memory', 'ran out of its Slurm memory limit (the same --mem would fail again)', words, s, false)
    case 'DEADLINE': return failed('deadline', 'reached its Slurm deadline', words, s, false)
    case 'BOOT_FAIL': return requeue('boot-fail', 'its Slurm node failed to boot', words)
    case 'NODE_FAIL': return requeue('node-fail', 'its Slurm node failed', words)
    case 'PREEMPTED': return requeue('preempted', 'preempted by Slurm', words)
    case 'SPECIAL_EXIT':
    case 'REVOKED':
      return failed('slurm', 'ended by Slurm', words, s, false)
    case 'COMPLETING':
      // The batch script has ended; its status file, when there, already tells how.
      return s != null ? fromStatus(s, words) : null
    default:
      return null
  }
}
