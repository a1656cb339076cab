/**
 * The local backend: tasks run on this machine through the launcher pool, with the agent's isolation. The time
 * limit and the stop grace are timers here, in TypeScript; the launchers only spawn, signal and wait.
 */
import type { LauncherPool } from '../launcher/pool.ts'
import type { SpawnRequest, SpawnResult } from '../launcher/client.ts'
import { settleAttempt, type BackendTask, type TaskBackend, type TaskOutcome } from './backend.ts'
import { launchRequest, taskEnv, type Isolation } from './launch-plan.ts'

/** What a resource manager (node/cgroups/) adds around a task: limits before it starts, findings after. */
export interface LocalTaskHooks {
  /** Before spawn: cgroup.procs files to enter, priorities, resource limits. */
  beforeStart?: (task: BackendTask) => Promise<Pick<SpawnRequest, 'cgroupProcs' | 'nice' | 'ioprio' | 'rlimits'>>
  /** After exit: e.g. whether the task went over its memory limit, its peak memory from the cgroup. */
  afterExit?: (task: BackendTask, outcome: TaskOutcome) => Promise<Partial<TaskOutcome>>
  /** Freezes or thaws the task another way (a cgroup freezer); false: fall back to SIGSTOP/SIGCONT. */
  freeze?: (task: BackendTask, frozen: boolean) => boolean
}

export interface LocalBackendOptions {
  launcher: Pick<LauncherPool, 'spawn' | 'signal' | 'close'>
  isolation: Isolation
  /** How long a stopped task has between SIGTERM and SIGKILL. */
  killGraceMs: number
  agentHasGpus: boolean
  agentPid: number
  hooks?: LocalTaskHooks
}

interface Run {
  task: BackendTask
  launcherId: number | null
  timedOut: boolean
  /** A signal asked for before the launcher had the task. */
  early: NodeJS.Signals[]
  timeout?: NodeJS.Timeout
  grace?: NodeJS.Timeout
  done: Promise<TaskOutcome>
}

export class LocalBackend implements TaskBackend {
  readonly name = 'local'
  private readonly opts: LocalBackendOptions
  private readonly runs = new Map<number, Run>()

  constructor (opts: LocalBackendOptions) {
    this.opts = opts
  }

  start (task: BackendTask, onStarted: (startedAt: number) => void): void {
    if (this.runs.has(task.attemptId)) throw new Error(`attempt ${task.attemptId} is already running`)
    const run: Run = { task, launcherId: null, timedOut: false, early: [], done: Promise.resolve(null as unknown as TaskOutcome) }
    run.done = this.execute(run, onStarted)
    this.runs.set(task.attemptId, run)
  }

  private async execute (run: Run, onStarted: (startedAt: number) => void): Promise<TaskOutcome> {
    const { task } = run
    const iso = this.opts.isolation
    const startedAt = Date.now()
    let result: SpawnResult
    try {
      const extras = await this.opts.hooks?.beforeStart?.(task) ?? {}
      const envAdd = taskEnv({
        attemptId: task.attemptId, jobId: task.jobId, index: task.index, cores: task.cores, gpuIds: task.gpuIds,
        agentHasGpus: this.opts.agentHasGpus, env: task.env, taskDir: task.taskDir, jobDir: task.jobDir,
        agentPid: this.opts.agentPid, slotUser: iso.slotUsers?.[task.slot]
      })
      const req = launchRequest({ commands: task.commands, envAdd, taskDir: task.taskDir, jobDir: task.jobDir, stdoutPath: task.stdoutPath, stderrPath: task.stderrPath, slot: task.slot, ...extras }, iso)
      const { id, done } = this.opts.launcher.spawn(req, () => { onStarted(Date.now()) })
      run.launcherId = id
      for (const sig of run.early.splice(0)) this.signal(run, sig)
      if (task.timeoutMs > 0) {
        run.timeout = setTimeout(() => {
          run.timedOut = true
          this.stop(task.attemptId)
        }, task.timeoutMs)
      }
      result = await done
    } catch (err) {
      result = { exitCode: null, signal: null, error: `cannot start the task: ${(err as Error).message}`, startedAt, endedAt: Date.now(), stdoutBytes: null, stderrBytes: null, peakMemoryBytes: null }
    } finally {
      clearTimeout(run.timeout)
      clearTimeout(run.grace)
    }
    let outcome: TaskOutcome = { ...result, timedOut: run.timedOut, overMemoryLimit: null }
    try {
      const more = await this.opts.hooks?.afterExit?.(task, outcome)
      if (more != null) outcome = { ...outcome, ...more }
    } catch { /* a finding we could not make is not a failure of the task */ }
    return outcome
  }

  private signal (run: Run, sig: NodeJS.Signals): void {
    if (run.launcherId == null) run.early.push(sig)
    else this.opts.launcher.signal(run.launcherId, sig)
  }

  suspend (attemptId: number): void {
    const run = this.runs.get(attemptId)
    if (run == null) return
    if (this.opts.hooks?.freeze?.(run.task, true) !== true) this.signal(run, 'SIGSTOP')
  }

  continue (attemptId: number): void {
    const run = this.runs.get(attemptId)
    if (run == null) return
    if (this.opts.hooks?.freeze?.(run.task, false) !== true) this.signal(run, 'SIGCONT')
  }

  stop (attemptId: number, graceMs = this.opts.killGraceMs): void {
    const run = this.runs.get(attemptId)
    if (run == null || run.grace != null) return
    this.signal(run, 'SIGTERM')
    // A frozen task cannot act on SIGTERM until it is thawed (a cgroup freezer ignores SIGCONT).
    this.opts.hooks?.freeze?.(run.task, false)
    this.signal(run, 'SIGCONT')
    run.grace = setTimeout(() => { this.signal(run, 'SIGKILL') }, graceMs)
  }

  async wait (attemptId: number): Promise<TaskOutcome> {
    return await settleAttempt(this.runs, attemptId)
  }

  async close (): Promise<void> {
    await this.opts.launcher.close()
  }
}
