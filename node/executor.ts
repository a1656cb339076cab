/**
 * Runs assignments on this machine through the opalsTask phases:
 *  - job phase: files shared by the job are fetched once per machine (content cache) into the job folder;
 *  - task phase: a fresh task folder with the task's own inputs, gpu_ids.txt and task.json;
 *  - main phase: the commands in sequence through the launcher, with the task's env, cores and GPUs;
 *  - post phase: outputs (names or globs) are hashed and the finished attempt goes to the outbox.
 * Assignments beyond the free slots wait staged in a local queue, so the next task starts without a round trip.
 */
import { mkdir, rm, rmdir, unlink, writeFile, lstat, realpath, glob } from 'node:fs/promises'
import { join } from 'node:path'
import type { AgentResources, Assignment, AttemptResult, Failure, FileRef } from '../shared/protocol/messages.ts'
import { taskId } from '../shared/protocol/messages.ts'
import { errorMessage } from '../shared/util/errors.ts'
import { hashFile } from '../shared/files/hash.ts'
import { runLimited } from '../shared/util/limit.ts'
import { checkRelativeName, isInside, resolveInside } from '../shared/files/safe-path.ts'
import type { BlobStore } from '../shared/files/blob-store.ts'
import type { TaskLauncher } from './launcher-pool.ts'

export const META_DIR = '.meshfarm'
const INPUT_CONCURRENCY = 16

export interface ExecutorDeps {
  workDir: string
  jobsDir: string
  cache: BlobStore
  launcher: TaskLauncher
  resources: AgentResources
  /** Fetches a blob from the coordinator into the cache. */
  fetchToCache: (hash: string) => Promise<void>
  onStarted: (attemptId: number) => void
  onFinished: (result: AttemptResult, taskDir: string) => void
  log: (line: string) => void
}

interface Job {
  attemptId: number
  assignment: Assignment
  dir: string
  state: 'staging' | 'ready' | 'running' | 'finishing'
  launcherId?: number
  cancelled?: string
}

export class Executor {
  private readonly deps: ExecutorDeps
  private readonly jobs = new Map<number, Job>()
  private readonly ready: Job[] = []
  private readonly sharedReady = new Map<string, Promise<void>>()
  private usedSlots = 0
  private usedCores = 0
  private usedMemory = 0

  constructor (deps: ExecutorDeps) {
    this.deps = deps
  }

  /** Attempt ids this agent holds (staging, waiting or running). */
  held (): number[] {
    return [...this.jobs.keys()]
  }

  get busy (): number {
    return this.jobs.size
  }

  accept (a: Assignment): void {
    if (this.jobs.has(a.attemptId)) return
    const job: Job = { attemptId: a.attemptId, assignment: a, dir: join(this.deps.workDir, String(a.attemptId)), state: 'staging' }
    this.jobs.set(a.attemptId, job)
    void this.stage(job)
  }

  cancel (attemptIds: number[], reason: string): void {
    for (const id of attemptIds) {
      const job = this.jobs.get(id)
      if (job == null) continue
      job.cancelled = reason
      if (job.state === 'running' && job.launcherId != null) this.deps.launcher.kill(job.launcherId, 'SIGTERM')
      if (job.state === 'ready') {
        this.ready.splice(this.ready.indexOf(job), 1)
        void this.finish(job, this.failedResult(job, 'cancelled', { kind: 'cancelled', message: reason, retryable: false }))
      }
    }
  }

  private async stage (job: Job): Promise<void> {
    const a = job.assignment
    try {
      // Two plain mkdirs: a recursive one first fails on the missing parent, then walks back (one task, one
      // folder: this runs for every task).
      for (const d of [job.dir, join(job.dir, META_DIR)]) await mkdir(d).catch(existsAlready)
      const jobDir = join(this.deps.jobsDir, String(a.jobId))
      for (const f of a.shared) {
        await this.ensureShared(jobDir, f)
        await this.deps.cache.placeAt(f.hash, await resolveInside(job.dir, f.name))
      }
      // Task phase: the task's own inputs, several at once (a task may have thousands of small ones).
      await runLimited(a.task.inputs, INPUT_CONCURRENCY, async f => {
        const dest = await resolveInside(job.dir, checkRelativeName(f.name, 'input'))
        await mkdir(join(dest, '..'), { recursive: true })
        await this.fetchCached(f.hash)
        await this.deps.cache.placeAt(f.hash, dest)
      })
      if (a.gpuIds.length > 0) await writeFile(join(job.dir, 'gpu_ids.txt'), a.gpuIds.join('\n') + '\n')
      if (job.cancelled != null) throw new Error(job.cancelled)
      job.state = 'ready'
      this.ready.push(job)
      this.startReady()
    } catch (err) {
      const cancelled = job.cancelled != null
      await this.finish(job, this.failedResult(job, cancelled ? 'cancelled' : 'failed', {
        kind: cancelled ? 'cancelled' : 'staging', message: `staging failed: ${errorMessage(err)}`, retryable: true
      }))
    }
  }

  /** Job phase: a shared file lands in the job folder once per machine, and only if the cache lacks it. */
  private async ensureShared (jobDir: string, f: FileRef): Promise<void> {
    const key = `${jobDir}\u0000${f.name}`
    let p = this.sharedReady.get(key)
    if (p == null) {
      p = (async () => {
        await this.fetchCached(f.hash)
        const dest = await resolveInside(jobDir, checkRelativeName(f.name, 'shared file'))
        await mkdir(join(dest, '..'), { recursive: true })
        await this.deps.cache.placeAt(f.hash, dest)
      })()
      this.sharedReady.set(key, p)
      p.catch(() => this.sharedReady.delete(key))
    }
    await p
  }

  private readonly fetching = new Map<string, Promise<void>>()

  private async fetchCached (hash: string): Promise<void> {
    if (this.deps.cache.has(hash)) return
    let p = this.fetching.get(hash)
    if (p == null) {
      p = this.deps.fetchToCache(hash).finally(() => this.fetching.delete(hash))
      this.fetching.set(hash, p)
    }
    await p
  }

  private fits (a: Assignment): boolean {
    const r = this.deps.resources
    if (this.usedSlots >= r.slots) return false
    if (this.usedSlots > 0 && this.usedCores + a.cores > r.cores) return false
    if (this.usedSlots > 0 && r.memoryMb > 0 && this.usedMemory + a.task.memoryMb > r.memoryMb) return false
    return true
  }

  private startReady (): void {
    while (this.ready.length > 0 && this.fits(this.ready[0].assignment)) {
      const job = this.ready.shift()!
      void this.run(job)
    }
  }

  private async run (job: Job): Promise<void> {
    const a = job.assignment
    job.state = 'running'
    this.usedSlots++
    this.usedCores += a.cores
    this.usedMemory += a.task.memoryMb
    const meta = join(job.dir, META_DIR)
    // The slot is free as soon as the process has exited: hashing and keeping the result need no cores, and
    // with short tasks the next one should not wait for them.
    let released = false
    const release = (): void => {
      if (released) return
      released = true
      this.usedSlots--
      this.usedCores -= a.cores
      this.usedMemory -= a.task.memoryMb
      this.startReady()
    }
    try {
      const { id, done } = this.deps.launcher.run({
        commands: a.task.commands,
        cwd: job.dir,
        envAdd: this.taskEnv(job),
        stdoutPath: join(meta, 'stdout'),
        stderrPath: join(meta, 'stderr'),
        timeoutMs: a.task.timeoutMs
      }, () => { this.deps.onStarted(job.attemptId) })
      job.launcherId = id
      if (job.cancelled != null) this.deps.launcher.kill(id, 'SIGTERM')
      const r = await done
      job.state = 'finishing'
      release()
      let failure: Failure | undefined
      if (job.cancelled != null) failure = { kind: 'cancelled', message: job.cancelled, retryable: false }
      else if (r.error != null && r.exitCode == null) failure = { kind: 'spawn', message: r.error, retryable: false }
      else if (r.timedOut) failure = { kind: 'timeout', message: `timed out after ${a.task.timeoutMs} ms`, retryable: true }
      else if (r.signal != null) failure = { kind: 'signal', message: `killed by ${r.signal}`, retryable: true }
      else if (r.exitCode !== 0) failure = { kind: 'exit', message: `exited with code ${String(r.exitCode)}`, retryable: true }
      const result: AttemptResult = {
        attemptId: job.attemptId,
        jobId: a.jobId,
        index: a.index,
        state: failure == null ? 'done' : failure.kind === 'cancelled' ? 'cancelled' : 'failed',
        exitCode: r.exitCode,
        signal: r.signal,
        failure,
        startedAt: r.startedAt,
        endedAt: r.endedAt,
        stdout: await logRef(join(meta, 'stdout'), `${META_DIR}/stdout`, r.stdoutBytes),
        stderr: await logRef(join(meta, 'stderr'), `${META_DIR}/stderr`, r.stderrBytes),
        outputs: failure?.kind === 'cancelled' ? [] : await this.collectOutputs(job)
      }
      await this.finish(job, result)
    } catch (err) {
      await this.finish(job, this.failedResult(job, 'failed', { kind: 'internal', message: errorMessage(err), retryable: true }))
    } finally {
      release()
    }
  }

  /** What a task's environment adds to the agent's own (which the launcher holds, less MESHFARM_* variables). */
  private taskEnv (job: Job): Record<string, string> {
    const a = job.assignment
    const env: Record<string, string> = {}
    env.OMP_NUM_THREADS = String(a.cores)
    // Tasks without GPUs must not wander onto the GPUs given to other tasks.
    if (a.gpuIds.length > 0 || this.deps.resources.gpus.length > 0) env.CUDA_VISIBLE_DEVICES = a.gpuIds.join(',')
    Object.assign(env, a.task.env)
    env.MESHFARM_JOB_ID = String(a.jobId)
    env.MESHFARM_TASK_INDEX = String(a.index)
    env.MESHFARM_TASK_ID = taskId(a.jobId, a.index)
    env.MESHFARM_ATTEMPT_ID = String(a.attemptId)
    env.MESHFARM_TASK_DIR = job.dir
    env.MESHFARM_JOB_DIR = join(this.deps.jobsDir, String(a.jobId))
    env.MESHFARM_CORES = String(a.cores)
    env.MESHFARM_GPUS = a.gpuIds.join(',')
    // Lets a task (or a test of a task that kills its agent) find the agent it runs under.
    env.MESHFARM_AGENT_PID = String(process.pid)
    return env
  }

  /** Post phase: every file matching an output name or glob, hashed. Missing plain names are not an error. */
  private async collectOutputs (job: Job): Promise<FileRef[]> {
    if (job.assignment.task.outputs.length === 0) return []
    const seen = new Set<string>()
    const out: FileRef[] = []
    const realDir = await realpath(job.dir)
    for (const pattern of job.assignment.task.outputs) {
      for await (const rel of glob(pattern, { cwd: job.dir })) {
        const name = String(rel)
        if (seen.has(name) || name === META_DIR || name.startsWith(`${META_DIR}/`)) continue
        const path = join(job.dir, name)
        // Only regular files really inside the task folder: a symlink (or a path through a symlinked folder)
        // could otherwise send back any file the agent can read.
        const st = await lstat(path).catch(() => null)
        if (st == null || !st.isFile()) continue
        if (!isInside(realDir, await realpath(path))) continue
        seen.add(name)
        out.push(await fileRef(path, name))
      }
    }
    return out
  }

  private failedResult (job: Job, state: 'failed' | 'cancelled', failure: Failure): AttemptResult {
    const empty = { name: `${META_DIR}/stdout`, hash: EMPTY_HASH, size: 0 }
    const now = Date.now()
    return {
      attemptId: job.attemptId, jobId: job.assignment.jobId, index: job.assignment.index, state, exitCode: null, signal: null,
      failure, startedAt: now, endedAt: now, stdout: empty, stderr: { ...empty, name: `${META_DIR}/stderr` }, outputs: []
    }
  }

  private async finish (job: Job, result: AttemptResult): Promise<void> {
    this.jobs.delete(job.attemptId)
    if (result.failure?.kind === 'staging') this.deps.log(`agent: task ${taskId(job.assignment.jobId, job.assignment.index)}: ${result.failure.message}`)
    this.deps.onFinished(result, job.dir)
  }

  /** Stops everything (agent shutdown): running tasks are killed, their attempts reported cancelled. */
  stopAll (reason: string): void {
    this.cancel(this.held(), reason)
  }
}

export const EMPTY_HASH = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'

function existsAlready (err: NodeJS.ErrnoException): void {
  if (err.code !== 'EEXIST') throw err
}

/** A task's stdout or stderr: an empty one (the launcher says so) is known without reading it. */
async function logRef (path: string, name: string, bytes: number | null | undefined): Promise<FileRef> {
  return bytes === 0 ? { name, hash: EMPTY_HASH, size: 0 } : await fileRef(path, name)
}

async function fileRef (path: string, name: string): Promise<FileRef> {
  const { hash, size } = await hashFile(path)
  return { name, hash, size }
}

/**
 * Removes a task folder. Most folders hold only meshfarm's own files, whose names are known: a handful of
 * direct unlinks instead of a recursive walk (which was the agent's largest cost per trivial task). Anything
 * else in the folder (inputs, outputs, whatever the task left) falls back to the walk.
 */
export async function removeTaskDir (dir: string, metaFiles: readonly string[] = ['stdout', 'stderr', 'result']): Promise<void> {
  // Asynchronous on purpose: directory operations can wait on the file system's journal (another process's
  // fsync), and the agent's event loop must not wait with them.
  try {
    await Promise.all(metaFiles.map(async name => {
      await unlink(join(dir, META_DIR, name)).catch((err: NodeJS.ErrnoException) => { if (err.code !== 'ENOENT') throw err })
    }))
    await rmdir(join(dir, META_DIR))
    await rmdir(dir)
  } catch {
    await rm(dir, { recursive: true, force: true })
  }
}
