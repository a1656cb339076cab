/**
 * Finished attempts waiting for the coordinator to confirm them. A result is written into its task folder
 * (`.meshfarm/result`) so that it survives the coordinator's absence and the agent's restart; the folder is
 * removed only after the coordinator acknowledges (or refuses) the result.
 *
 * When to write: at once for a task that ran a second or more, or while no coordinator is connected; a short task's
 * result is written only if its acknowledgement has not come within a second (or the session ends). Short tasks
 * are most of a task farm's results, and writing each to disk was the agent's largest cost per task; if the agent
 * dies inside that second, the task runs again, as it would had the agent died a second earlier.
 */
import { readdir, readFile, writeFile, rename } from 'node:fs/promises'
import { join } from 'node:path'
import { Packr } from 'msgpackr'
import type { AttemptResult, FileRef } from '../shared/protocol/messages.ts'
import { INLINE_BLOB_BYTES } from '../shared/protocol/constants.ts'
import { META_DIR, removeTaskDir } from './executor.ts'

const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true })

/** A task that ran at least this long has its result written at once. */
const LONG_TASK_MS = 1000
/** How long a short task's result waits in memory for its acknowledgement. */
const PERSIST_AFTER_MS = 1000

interface Entry {
  result: AttemptResult
  dir: string
  inFlight: boolean
  persisted: boolean
  settled: boolean
  persisting?: Promise<void>
  timer?: NodeJS.Timeout
}

export type Uploader = (ref: FileRef, path: string) => Promise<void>

export class Outbox {
  private readonly entries = new Map<number, Entry>()
  private readonly workDir: string

  constructor (workDir: string) {
    this.workDir = workDir
  }

  /** Reloads results left by a previous run; task folders without a result were interrupted and are removed. */
  async load (): Promise<number> {
    const names = await readdir(this.workDir).catch(() => [] as string[])
    for (const name of names) {
      if (!/^\d+$/.test(name)) continue
      const dir = join(this.workDir, name)
      try {
        const result = packr.unpack(await readFile(join(dir, META_DIR, 'result'))) as AttemptResult
        this.entries.set(result.attemptId, { result, dir, inFlight: false, persisted: true, settled: false })
      } catch {
        await removeTaskDir(dir)
      }
    }
    return this.entries.size
  }

  /**
   * Keeps a finished attempt; it counts as pending at once, so a hello sent meanwhile still claims it. With a
   * coordinator connected, a short task's result may be sent before it is on disk (see the top of this file).
   */
  async add (result: AttemptResult, dir: string, connected: boolean): Promise<void> {
    const entry: Entry = { result, dir, inFlight: false, persisted: false, settled: false }
    this.entries.set(result.attemptId, entry)
    if (!connected || result.endedAt - result.startedAt >= LONG_TASK_MS) {
      entry.inFlight = true
      try {
        await this.persist(entry)
      } finally {
        entry.inFlight = false
      }
      return
    }
    entry.timer = setTimeout(() => { void this.persist(entry).catch(() => {}) }, PERSIST_AFTER_MS)
    entry.timer.unref()
  }

  private async persist (e: Entry): Promise<void> {
    if (e.persisted || e.settled) return
    e.persisting ??= (async () => {
      const file = join(e.dir, META_DIR, 'result')
      await writeFile(`${file}.tmp`, packr.pack(e.result))
      await rename(`${file}.tmp`, file)
      e.persisted = true
    })()
    await e.persisting
  }

  /** Writes every result still held only in memory (the session ended, or the agent is stopping). */
  async persistAll (): Promise<void> {
    await Promise.all([...this.entries.values()].map(async e => { await this.persist(e).catch(() => {}) }))
  }

  has (attemptId: number): boolean {
    return this.entries.has(attemptId)
  }

  ids (): number[] {
    return [...this.entries.keys()]
  }

  get waiting (): number {
    let n = 0
    for (const e of this.entries.values()) if (!e.inFlight) n++
    return n
  }

  get size (): number {
    return this.entries.size
  }

  /** Takes up to `max` unsent results, inlining small files and uploading large ones first. */
  async takeBatch (max: number, upload: Uploader): Promise<AttemptResult[]> {
    const batch: Entry[] = []
    for (const e of this.entries.values()) {
      if (e.inFlight) continue
      e.inFlight = true
      batch.push(e)
      if (batch.length >= max) break
    }
    const out: AttemptResult[] = []
    for (const e of batch) {
      try {
        const r = e.result
        const withData = async (ref: FileRef): Promise<FileRef> => {
          const path = join(e.dir, ref.name)
          if (ref.size <= INLINE_BLOB_BYTES) return { ...ref, data: ref.size === 0 ? new Uint8Array(0) : await readFile(path) }
          await upload(ref, path)
          return ref
        }
        out.push({ ...r, stdout: await withData(r.stdout), stderr: await withData(r.stderr), outputs: await Promise.all(r.outputs.map(withData)) })
      } catch {
        e.inFlight = false
      }
    }
    return out
  }

  /** The coordinator has the result (acked) or does not want it (refused): the task folder goes. */
  async settle (ids: number[]): Promise<void> {
    await Promise.all(ids.map(async id => {
      const e = this.entries.get(id)
      if (e == null) return
      e.settled = true
      clearTimeout(e.timer)
      await e.persisting?.catch(() => {})
      this.entries.delete(id)
      await removeTaskDir(e.dir, e.persisted ? ['stdout', 'stderr', 'result'] : ['stdout', 'stderr'])
    }))
  }

  /** The session ended before answers came: send those again next time, and keep them on disk meanwhile. */
  requeueInFlight (): void {
    for (const e of this.entries.values()) e.inFlight = false
    void this.persistAll()
  }
}
