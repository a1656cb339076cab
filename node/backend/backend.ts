/**
 * The seam between deciding and running: whatever runs a task (the local launchers today; a Slurm bridge or a
 * harvest-aware wrapper next) implements TaskBackend. The agent's reactor never sees processes, only this.
 */

import type { Assignment, BackendInfo, Failure } from '../../shared/protocol/messages.ts'

/** One attempt to run, with everything a backend needs and nothing about the mesh. */
export interface BackendTask {
  attemptId: number
  jobId: number
  index: number
  commands: readonly string[]
  /** The task's own variables from the job file (the backend adds meshfarm's: launch-plan.ts taskEnv). */
  env: Record<string, string>
  /** The task's folder (its working directory) and its job's folder of shared files. */
  taskDir: string
  jobDir: string
  /** Where its stdout and stderr go: files the task only ever gets as open descriptors. */
  stdoutPath: string
  stderrPath: string
  /** 0: no limit. The backend stops the task when it is reached and says so (timedOut). */
  timeoutMs: number
  cores: number
  memoryMb: number
  gpuIds: number[]
  /** Which of the agent's slots it runs in (slot users, per-slot resources). */
  slot: number
  /**
   * The agent's own record of the attempt. A backend whose tasks outlive the agent process (a batch system) keeps
   * it, so that a restarted agent can adopt what still runs there (AgentReactor.adopt); others ignore it.
   */
  assignment?: Assignment
}

/** How a process ended: what a task launcher reports, and the core of a task's outcome. */
export interface ProcessEnd {
  exitCode: number | null
  signal: string | null
  /** The task could not be started (or its launcher died); exitCode is then usually null. */
  error: string | null
  startedAt: number
  endedAt: number
  /** Sizes of the stdout and stderr files when the task ended (null if unknown). */
  stdoutBytes: number | null
  stderrBytes: number | null
  /** Peak resident memory of its processes, where known. */
  peakMemoryBytes: number | null
}

/** How an attempt ended, as the backend saw it. */
export interface TaskOutcome extends ProcessEnd {
  timedOut: boolean
  /** It went over its memory limit (a cgroup's OOM kill), where known. */
  overMemoryLimit: boolean | null
  /**
   * How it ended in the backend's own words, where the backend knows better than the exit status (a batch
   * system's NODE_FAIL, PREEMPTED, TIMEOUT, OUT_OF_MEMORY): used as the attempt's failure unless it was cancelled.
   */
  failure?: Failure
  /** Where it ran (a batch system's job id, array index, node): recorded in task.json. */
  backend?: BackendInfo
  /** The hard memory limit it ran under, where one was set (for the failure's words). */
  memoryLimitBytes?: number | null
}

export interface TaskBackend {
  /** Shown in logs and task.json (e.g. 'local', 'slurm'). */
  readonly name: string
  /** Starts an attempt; onStarted fires once its program runs. Its end comes from wait(). */
  start: (task: BackendTask, onStarted: (startedAt: number) => void) => void
  /** Freezes a running attempt (its owner came back); continue() thaws it. */
  suspend: (attemptId: number) => void
  continue: (attemptId: number) => void
  /** SIGTERM now, SIGKILL after the grace period (the backend's default when not given). */
  stop: (attemptId: number, graceMs?: number) => void
  /** The attempt's outcome; never rejects. Call once per started attempt. */
  wait: (attemptId: number) => Promise<TaskOutcome>
  /** Ends every attempt still running (SIGKILL) and releases the backend. */
  close: () => Promise<void>
}

/** Backend.wait over a map of attempts in flight: the attempt's outcome, after which the backend forgets it. */
export async function settleAttempt (inFlight: Map<number, { done: Promise<TaskOutcome> }>, attemptId: number): Promise<TaskOutcome> {
  const run = inFlight.get(attemptId)
  if (run == null) throw new Error(`attempt ${attemptId} was never started here`)
  try {
    return await run.done
  } finally {
    inFlight.delete(attemptId)
  }
}
