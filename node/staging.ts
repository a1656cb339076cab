/**
 * Staging: an assignment's files placed in its task folder before it runs.
 *  - job phase: files shared by the job land once per machine in the job folder (from the content cache);
 *  - task phase: a fresh task folder with the job's shared files, the task's own inputs and gpu_ids.txt.
 * Files arrive from the cache as hard links, copies or symlinks into the job folder, as the isolation allows
 * (launch-plan.ts: Isolation.inputs, Isolation.shared). Nothing here follows a link a task could have planted.
 */
import { statSync } from 'node:fs'
import { chmod, lchown, lstat, mkdir, open, readdir, rm, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import type { Assignment, FileRef } from '../shared/protocol/messages.ts'
import { runLimited } from '../shared/util/limit.ts'
import type { BlobStore } from '../shared/files/blob-store.ts'
import type { Isolation, SlotUser } from './backend/launch-plan.ts'
import { captureFiles, jobDir, taskDir, type AgentPaths } from './work-dir.ts'
import { fdPath, openDir, placeAt } from './safe-fs.ts'

const INPUT_CONCURRENCY = 16

export interface StagerDeps {
  paths: AgentPaths
  cache: BlobStore
  isolation: Isolation
  /** Brings a blob into the cache (retrying while the coordinator is away); rejects when it cannot. */
  fetch: (hash: string, signal: AbortSignal) => Promise<void>
}

export class Stager {
  private readonly deps: StagerDeps
  private readonly shared = new Map<string, Promise<void>>()
  private readonly fetching = new Map<string, Promise<void>>()
  private readonly jobDirs = new Map<string, Promise<void>>()

  constructor (deps: StagerDeps) {
    this.deps = deps
  }

  /** Folders slot users must read (job folders) are 0755; everything else stays the agent's. */
  private get readableMode (): number {
    return this.deps.isolation.slotUsers != null ? 0o755 : 0o700
  }

  async stage (a: Assignment, signal: AbortSignal): Promise<void> {
    const { paths, isolation: iso } = this.deps
    const dir = taskDir(paths, a.attemptId)
    // A folder left by an earlier run under the same id (a coordinator whose database was moved aside) goes.
    await rm(dir, { recursive: true, force: true })
    await mkdir(dir, { mode: 0o700 })
    const root = await openDir(dir)
    try {
      const job = jobDir(paths, a.jobId)
      await this.ensureJobDir(job)
      for (const f of a.shared) {
        await this.ensureShared(job, f, signal)
        const how = iso.shared === 'symlink' ? 'symlink' : 'link'
        await placeAt(root, f.name, how === 'symlink' ? join(job, f.name) : this.deps.cache.path(f.hash), how, 0o755)
      }
      // The task's own inputs, several at once (a task may have thousands of small ones).
      await runLimited(a.task.inputs, INPUT_CONCURRENCY, async f => {
        await this.fetchCached(f.hash, signal)
        await placeAt(root, f.name, this.deps.cache.path(f.hash), iso.inputs, 0o755)
      })
      if (a.gpuIds.length > 0) {
        const fh = await open(`${fdPath(root)}/gpu_ids.txt`, 'wx', 0o644)
        try {
          await fh.writeFile(a.gpuIds.join('\n') + '\n')
          await fh.chmod(0o644) // readable by a slot user, whatever the agent's umask
        } finally {
          await fh.close()
        }
      }
      signal.throwIfAborted()
    } finally {
      await root.close()
    }
  }

  /** The job folder (bound read-only into the task's sandbox), made once per job. */
  private async ensureJobDir (job: string): Promise<void> {
    let p = this.jobDirs.get(job)
    if (p == null) {
      p = (async () => {
        await mkdir(job, { recursive: true, mode: this.readableMode })
        await chmod(job, this.readableMode)
      })()
      this.jobDirs.set(job, p)
      p.catch(() => this.jobDirs.delete(job))
    }
    await p
  }

  /** Job phase: a shared file lands in the job folder once per machine, and only if the cache lacks it. */
  private async ensureShared (job: string, f: FileRef, signal: AbortSignal): Promise<void> {
    const key = `${job}\u0000${f.name}`
    let p = this.shared.get(key)
    if (p == null) {
      p = (async () => {
        await this.fetchCached(f.hash, signal)
        const root = await openDir(job)
        try {
          await placeAt(root, f.name, this.deps.cache.path(f.hash), 'link', this.readableMode)
        } finally {
          await root.close()
        }
      })()
      this.shared.set(key, p)
      p.catch(() => this.shared.delete(key))
    }
    await p
  }

  private async fetchCached (hash: string, signal: AbortSignal): Promise<void> {
    if (this.deps.cache.has(hash)) return
    let p = this.fetching.get(hash)
    if (p == null) {
      p = this.deps.fetch(hash, signal).finally(() => this.fetching.delete(hash))
      this.fetching.set(hash, p)
    }
    await p
  }

  /**
   * The slot user gets its task folder, the folders staging made in it, and its own copies of its inputs. Hard
   * links (shared files) stay the agent's and read-only: they share the cache's inode.
   */
  async grant (attemptId: number, user: SlotUser): Promise<void> {
    const dir = taskDir(this.deps.paths, attemptId)
    const walk = async (d: string): Promise<void> => {
      await lchown(d, user.uid, user.gid)
      for (const e of await readdir(d, { withFileTypes: true })) {
        const path = join(d, e.name)
        if (e.isDirectory()) await walk(path)
        else if (e.isFile() && (await lstat(path)).nlink === 1) await lchown(path, user.uid, user.gid)
      }
    }
    await walk(dir)
  }

  /** An attempt that leaves no result: its folder and its captured output go. */
  async discard (attemptId: number): Promise<void> {
    const cap = captureFiles(this.deps.paths, attemptId)
    await Promise.all([
      rm(taskDir(this.deps.paths, attemptId), { recursive: true, force: true }),
      unlink(cap.stdout).catch(() => {}),
      unlink(cap.stderr).catch(() => {})
    ])
  }

  /** At a clean stop: what no kept result needs goes; with nothing kept, the agent's work folder goes whole. */
  async close (keep: ReadonlySet<number>): Promise<void> {
    const { paths } = this.deps
    if (keep.size === 0 && paths.work !== paths.workRoot) {
      await rm(paths.work, { recursive: true, force: true })
      return
    }
    await this.clean(keep)
  }

  /**
   * At start: attempts a previous run launched that were still running when it died: their stdout capture exists
   * and is still writable (the launcher makes it read-only when the task exits). A task that ran to its end but
   * whose result was lost with the agent did not die: it is not counted as a crash.
   */
  async launchedWithoutResult (keep: ReadonlySet<number>): Promise<number[]> {
    const ids: number[] = []
    for (const name of await readdir(this.deps.paths.capture).catch(() => [] as string[])) {
      const m = /^(\d+)\.out$/.exec(name)
      const id = Number(m?.[1])
      if (m == null || !Number.isSafeInteger(id) || id <= 0 || keep.has(id)) continue
      const st = await lstat(join(this.deps.paths.capture, name)).catch(() => null)
      if (st != null && (st.mode & 0o200) !== 0) ids.push(id)
    }
    return ids
  }

  /** At start: job folders are rebuilt from the cache on demand; task folders no entry refers to go. */
  async clean (keep: ReadonlySet<number>): Promise<void> {
    const { paths } = this.deps
    await rm(paths.jobs, { recursive: true, force: true })
    const mode = statSync(paths.work).mode & 0o777
    await mkdir(paths.jobs, { mode })
    await chmod(paths.jobs, mode) // mkdir's mode passes through the agent's umask
    for (const name of await readdir(paths.tasks).catch(() => [] as string[])) {
      if (!keep.has(Number(name))) await rm(join(paths.tasks, name), { recursive: true, force: true })
    }
    for (const name of await readdir(paths.capture).catch(() => [] as string[])) {
      if (!keep.has(Number(name.split('.')[0]))) await unlink(join(paths.capture, name)).catch(() => {})
    }
  }
}
