/**
 * The step backend: the agent's tasks as `srun` steps inside the allocations it holds (the one it runs in, with
 * --in-allocation, or those auto-alloc obtained). Each step gets its own cores (--exact), its memory and GPUs,
 * on the node steps-plan.ts chooses; its stdout and stderr go to files in the work folder (the nodes see it) and
 * are copied to the agent's capture files when it ends. The time limit is a timer here; stopping a step is a
 * signal to its srun, which ends the step in Slurm.
 */
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { settleAttempt, type BackendTask, type TaskBackend, type TaskOutcome } from '../../backend/backend.ts'
import { runStep, type RunningStep, type StepSpec } from './allocation.ts'
import { signalName } from './outcome.ts'
import { slurmTaskEnv, taskScript, unranOutcome } from './forward-plan.ts'
import { chooseNode, offeredMaxTaskMs, stepMemoryMb, timeLeft, type AllocationShape, type NodeUse, type RunningStepView } from './steps-plan.ts'
import type { AllocationCapacity } from './offer.ts'

export interface StepBackendOptions {
  /** Step output files go under `<workDir>/steps`. */
  workDir: string
  drainBeforeMs: number
  killGraceMs?: number
  say: (line: string) => void
  now?: () => number
  /** srun's environment (meshfarm's own variables are left out). */
  env?: Record<string, string | undefined>
  /** Starts one step (allocation.ts runStep). */
  run?: (spec: StepSpec, env: Record<string, string | undefined>) => RunningStep
}

interface Held {
  shape: AllocationShape
  draining: boolean
  used: Map<string, { cpus: number, memoryMb: number, gpus: number }>
  running: Set<number>
  idleSince: number
  ranTasks: number
}

interface Run {
  task: BackendTask
  onStarted: (at: number) => void
  allocation: string | null
  node: string | null
  memoryMb: number
  child: RunningStep | null
  startedAt: number
  timedOut: boolean
  stopped: boolean
  timer?: NodeJS.Timeout
  grace?: NodeJS.Timeout
  resolve: (o: TaskOutcome) => void
  done: Promise<TaskOutcome>
}

/** srun's words when the allocation is gone or ending under a step: not the task's fault. */
const ALLOCATION_GONE = /Unable to create step|already completing or completed|Invalid job id|Job has expired|job .* has expired|Unable to confirm allocation|DUE TO TIME LIMIT|has been revoked|Job step aborted/i

export class StepBackend implements TaskBackend {
  readonly name = 'slurm'
  private readonly o: StepBackendOptions
  private readonly now: () => number
  private readonly held = new Map<string, Held>()
  private readonly runs = new Map<number, Run>()
  private queue: Run[] = []
  private suspendSaid = false

  constructor (o: StepBackendOptions) {
    this.o = o
    this.now = o.now ?? Date.now
  }

  // ---- allocations ----

  add (shape: AllocationShape): void {
    if (this.held.has(shape.jobId)) return
    this.held.set(shape.jobId, { shape, draining: false, used: new Map(), running: new Set(), idleSince: this.now(), ranTasks: 0 })
    this.place()
  }

  setEnd (jobId: string, endsAt: number | null): void {
    const h = this.held.get(jobId)
    if (h != null) h.shape = { ...h.shape, endsAt }
  }

  /** No new steps there: it is about to end. */
  drain (jobId: string): void {
    const h = this.held.get(jobId)
    if (h != null) h.draining = true
  }

  /** The allocation is over; steps still there end with it. */
  remove (jobId: string): void {
    this.held.delete(jobId)
  }

  allocations (): Array<{ jobId: string, draining: boolean, endsAt: number | null, cpus: number, runningTasks: number, ranTasks: number, idleSince: number | null }> {
    return [...this.held.values()].map(h => ({
      jobId: h.shape.jobId, draining: h.draining, endsAt: h.shape.endsAt, cpus: h.shape.nodes.reduce((n, x) => n + x.cpus, 0),
      runningTasks: h.running.size, ranTasks: h.ranTasks, idleSince: h.running.size === 0 ? h.idleSince : null
    }))
  }

  /** What the allocations offer now (draining ones nothing). */
  capacity (partition: string): AllocationCapacity {
    const live = [...this.held.values()].filter(h => !h.draining)
    return {
      partition,
      cpus: live.reduce((n, h) => n + h.shape.nodes.reduce((m, x) => m + x.cpus, 0), 0),
      memoryMb: live.reduce((n, h) => n + h.shape.memoryMbPerNode * h.shape.nodes.length, 0),
      gpus: live.reduce((n, h) => n + h.shape.gpusPerNode * h.shape.nodes.length, 0),
      maxTaskMs: offeredMaxTaskMs([...this.held.values()].map(h => ({ endsAt: h.shape.endsAt, draining: h.draining })), this.now(), this.o.drainBeforeMs)
    }
  }

  running (): RunningStepView[] {
    return [...this.runs.values()].filter(r => r.child != null && r.allocation != null).map(r => ({ attemptId: r.task.attemptId, allocation: r.allocation!, startedAt: r.startedAt, timeoutMs: r.task.timeoutMs }))
  }

  /** Tasks waiting here that no allocation held can take before its drain (they go back to the mesh). */
  unplaceable (): number[] {
    const now = this.now()
    const live = [...this.held.values()].filter(h => !h.draining)
    return this.queue.filter(r => !live.some(h => {
      const left = timeLeft(h.shape.endsAt, now, this.o.drainBeforeMs)
      return left > 0 && (r.task.timeoutMs <= 0 || r.task.timeoutMs <= left) && h.shape.nodes.some(n => n.cpus >= r.task.cores)
    })).map(r => r.task.attemptId)
  }

  // ---- tasks ----

  start (task: BackendTask, onStarted: (startedAt: number) => void): void {
    if (this.runs.has(task.attemptId)) throw new Error(`attempt ${task.attemptId} is already running`)
    let resolve!: (o: TaskOutcome) => void
    const done = new Promise<TaskOutcome>(r => { resolve = r })
    const run: Run = { task, onStarted, allocation: null, node: null, memoryMb: 0, child: null, startedAt: 0, timedOut: false, stopped: false, resolve, done }
    this.runs.set(task.attemptId, run)
    const never = this.neverFits(task)
    if (never != null) {
      run.resolve(unranOutcome(this.now(), { kind: 'batch', message: `refused: ${never}`, retryable: false, detail: never.slice(0, 256) }))
      return
    }
    this.queue.push(run)
    this.place()
  }

  /** Why no node of the allocations held could ever run this task (a step lives on one node), or null. */
  private neverFits (t: BackendTask): string | null {
    const shapes = [...this.held.values()].map(h => h.shape)
    if (shapes.length === 0) return null
    const fits = shapes.some(a => a.nodes.some(n => n.cpus >= t.cores) && a.gpusPerNode >= t.gpuIds.length && (a.memoryMbPerNode === 0 || a.memoryMbPerNode >= t.memoryMb))
    if (fits) return null
    const cpus = Math.max(...shapes.flatMap(a => a.nodes.map(n => n.cpus)))
    return `allocation ${shapes.map(a => a.jobId).join(', ')}: no node has ${t.cores} CPUs, ${t.memoryMb} MB and ${t.gpuIds.length} GPUs (the largest has ${cpus} CPUs)`
  }

  private nodeUses (): NodeUse[] {
    const out: NodeUse[] = []
    for (const h of this.held.values()) {
      if (h.draining) continue
      for (const n of h.shape.nodes) {
        const u = h.used.get(n.name) ?? { cpus: 0, memoryMb: 0, gpus: 0 }
        out.push({ allocation: h.shape.jobId, node: n.name, freeCpus: n.cpus - u.cpus, freeMemoryMb: h.shape.memoryMbPerNode - u.memoryMb, freeGpus: h.shape.gpusPerNode - u.gpus, endsAt: h.shape.endsAt })
      }
    }
    return out
  }

  /** Queued tasks onto free nodes, in order; one that fits nowhere now does not hold up smaller ones. */
  private place (): void {
    for (const run of [...this.queue]) {
      const t = run.task
      const n = chooseNode(this.nodeUses(), { cores: t.cores, memoryMb: t.memoryMb, gpus: t.gpuIds.length, timeoutMs: t.timeoutMs }, this.now(), this.o.drainBeforeMs)
      if (n == null) continue
      this.queue = this.queue.filter(r => r !== run)
      this.launch(run, this.held.get(n.allocation)!, n.node)
    }
  }

  private launch (run: Run, h: Held, node: string): void {
    const t = run.task
    const cpus = h.shape.nodes.find(x => x.name === node)!.cpus
    run.memoryMb = stepMemoryMb(t.memoryMb, t.cores, { cpus }, h.shape.memoryMbPerNode)
    const u = h.used.get(node) ?? { cpus: 0, memoryMb: 0, gpus: 0 }
    h.used.set(node, { cpus: u.cpus + t.cores, memoryMb: u.memoryMb + run.memoryMb, gpus: u.gpus + t.gpuIds.length })
    h.running.add(t.attemptId)
    h.ranTasks++
    run.allocation = h.shape.jobId
    run.node = node
    const dir = join(this.o.workDir, 'steps')
    const files = { stdout: join(dir, `${t.attemptId}.out`), stderr: join(dir, `${t.attemptId}.err`) }
    // GPUs: the ones Slurm gave the step, as any agent's task sees them.
    const gpus = t.gpuIds.length > 0
      ? 'if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then echo "$CUDA_VISIBLE_DEVICES" | tr , \'\\n\' > gpu_ids.txt; export MESHFARM_GPUS="$CUDA_VISIBLE_DEVICES"; else rm -f gpu_ids.txt; fi\n'
      : ''
    const env: Record<string, string | undefined> = {}
    for (const [k, v] of Object.entries(this.o.env ?? process.env)) if (!k.startsWith('MESHFARM_')) env[k] = v
    Object.assign(env, slurmTaskEnv(t))
    try {
      mkdirSync(dir, { recursive: true })
      run.child = (this.o.run ?? runStep)({
        jobId: h.shape.jobId, cores: t.cores, memoryMb: run.memoryMb, gpus: t.gpuIds.length, node, folder: t.taskDir,
        stdout: files.stdout, stderr: files.stderr, command: gpus + taskScript(t.commands, {}), name: `mf:${t.attemptId}`
      }, env)
    } catch (err) {
      this.end(run, h, { exitCode: null, signal: null, srunSaid: `srun: ${(err as Error).message}` }, files)
      return
    }
    run.startedAt = this.now()
    run.onStarted(run.startedAt)
    if (run.stopped) run.child.kill('SIGTERM')
    if (t.timeoutMs > 0) run.timer = setTimeout(() => { run.timedOut = true; this.stop(t.attemptId) }, t.timeoutMs)
    void run.child.done.then(r => { this.end(run, h, r, files) })
  }

  private end (run: Run, h: Held, r: { exitCode: number | null, signal: string | null, srunSaid: string }, files: { stdout: string, stderr: string }): void {
    clearTimeout(run.timer)
    clearTimeout(run.grace)
    const t = run.task
    const u = h.used.get(run.node!)
    if (u != null) h.used.set(run.node!, { cpus: u.cpus - t.cores, memoryMb: u.memoryMb - run.memoryMb, gpus: u.gpus - t.gpuIds.length })
    h.running.delete(t.attemptId)
    if (h.running.size === 0) h.idleSince = this.now()
    for (const [from, to] of [[files.stdout, t.stdoutPath], [files.stderr, t.stderrPath]]) {
      try { copyFileSync(from, to) } catch { try { writeFileSync(to, '') } catch {} }
    }
    run.resolve(stepOutcome(r, { jobId: h.shape.jobId, node: run.node, startedAt: run.startedAt || this.now(), endedAt: this.now(), timedOut: run.timedOut }))
    this.place()
  }

  suspend (_attemptId: number): void {
    if (this.suspendSaid) return
    this.suspendSaid = true
    this.o.say('slurm: steps cannot be suspended by their user; they keep running')
  }

  continue (_attemptId: number): void {}

  stop (attemptId: number, graceMs = this.o.killGraceMs ?? 5000): void {
    const run = this.runs.get(attemptId)
    if (run == null || run.stopped) return
    run.stopped = true
    if (run.child == null) {
      this.queue = this.queue.filter(r => r !== run)
      run.resolve(unranOutcome(this.now()))
      return
    }
    run.child.kill('SIGTERM')
    run.grace = setTimeout(() => { run.child?.kill('SIGKILL') }, graceMs)
  }

  async wait (attemptId: number): Promise<TaskOutcome> {
    return await settleAttempt(this.runs, attemptId)
  }

  async close (): Promise<void> {
    const left = [...this.runs.values()]
    for (const r of left) this.stop(r.task.attemptId, 1000)
    await Promise.all(left.map(async r => await r.done))
  }
}

/** srun's ending as the agent's outcome: its exit code is the task's (128+n for a signal, which srun names). */
export function stepOutcome (r: { exitCode: number | null, signal: string | null, srunSaid: string }, e: { jobId: string, node: string | null, startedAt: number, endedAt: number, timedOut: boolean }): TaskOutcome {
  const backend = { system: 'slurm', jobId: e.jobId, ...(e.node != null ? { node: e.node } : {}) }
  const base = { timedOut: e.timedOut, error: null, startedAt: e.startedAt, endedAt: Math.max(e.startedAt, e.endedAt), stdoutBytes: null, stderrBytes: null, peakMemoryBytes: null, overMemoryLimit: null, backend }
  const said = r.srunSaid.split('\n').filter(l => l.trim() !== '').slice(-1)[0] ?? ''
  if (!e.timedOut && r.exitCode !== 0 && ALLOCATION_GONE.test(r.srunSaid)) {
    return { ...base, exitCode: null, signal: null, failure: { kind: 'node-fail', message: `its allocation ${e.jobId} is gone: ${said}`, retryable: true, detail: said.slice(0, 256) } }
  }
  if (/Out Of Memory|oom-kill/i.test(r.srunSaid)) {
    return { ...base, exitCode: r.exitCode, signal: null, overMemoryLimit: true, failure: { kind: 'memory', message: `went over its Slurm memory limit (${said})`, retryable: false, detail: said.slice(0, 256) } }
  }
  if (r.exitCode != null && r.exitCode > 128 && r.exitCode < 160 && /task \d+: (?!Exited with exit code)/.test(r.srunSaid)) {
    return { ...base, exitCode: null, signal: signalName(r.exitCode - 128) }
  }
  if (r.exitCode == null && r.signal == null) return { ...base, exitCode: null, signal: null, error: said !== '' ? said : 'srun did not run' }
  return { ...base, exitCode: r.exitCode, signal: r.exitCode == null ? r.signal : null }
}
