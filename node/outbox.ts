/**
 * Finished attempts (results, vacate notices) kept until the coordinator confirms them, in the agent's state
 * folder (`outbox/<attempt>.entry`), where tasks cannot reach them: a task cannot forge its own result.
 *
 * Durability: an entry is written to a temp file, fsynced, renamed into place, and the folder fsynced, before it
 * counts as on disk; it is deleted only after the coordinator acknowledged it (and the coordinator acknowledges
 * only after its own commit), so a result acknowledged is never the only copy lost.
 *
 * When to write: at once for a task that ran a second or more, or while no coordinator is connected; a short
 * task's result is written only if its acknowledgement has not come within a second (or the session ends). Why
 * this is sound: the coordinator keeps the attempt as running on this agent until it has the result; if the agent
 * dies inside that second, the attempt is lost with the agent and the task runs again, exactly as if the agent had
 * died a second earlier while the task ran, and the task is one that runs in under a second. Nothing the
 * coordinator acknowledged depends on the agent's copy. (Short tasks are most of a task farm's results, and
 * writing each at once was the agent's largest cost per task.)
 */
import { randomBytes } from 'node:crypto'
import { open, readdir, readFile, rename, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { Packr } from 'msgpackr'
import type { OutboxEntry } from './results.ts'
import { entryId } from './results.ts'

const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true })

/** The clock the outbox waits on (tests replace it to fire the timer when they choose). */
export interface OutboxTimers {
  setTimeout: (fn: () => void, ms: number) => unknown
  clearTimeout: (handle: unknown) => void
}

const REAL_TIMERS: OutboxTimers = {
  setTimeout: (fn, ms) => { const t = setTimeout(fn, ms); t.unref(); return t },
  clearTimeout: (h) => { clearTimeout(h as NodeJS.Timeout) }
}

interface Kept {
  entry: OutboxEntry
  persisted: boolean
  settled: boolean
  writing?: Promise<void>
  timer?: unknown
}

export class Outbox {
  private readonly dir: string
  private readonly persistAfterMs: number
  private readonly timers: OutboxTimers
  private readonly kept = new Map<number, Kept>()
  private readonly writes = new Set<Promise<void>>()
  private dirSync: Promise<void> | null = null

  constructor (dir: string, opts: { persistAfterMs: number, timers?: OutboxTimers }) {
    this.dir = dir
    this.persistAfterMs = opts.persistAfterMs
    this.timers = opts.timers ?? REAL_TIMERS
  }

  /** Entries left by a previous run; unreadable files (a crash mid-write) are removed. */
  async load (): Promise<{ entries: OutboxEntry[], broken: number }> {
    const entries: OutboxEntry[] = []
    let broken = 0
    for (const name of await readdir(this.dir).catch(() => [] as string[])) {
      const path = join(this.dir, name)
      if (!/^\d+\.entry$/.test(name)) {
        if (name.endsWith('.tmp')) await unlink(path).catch(() => {})
        continue
      }
      try {
        const entry = packr.unpack(await readFile(path)) as OutboxEntry
        if (String(entryId(entry)) !== name.slice(0, -'.entry'.length)) throw new Error('wrong attempt')
        entries.push(entry)
        this.kept.set(entryId(entry), { entry, persisted: true, settled: false })
      } catch {
        broken++
        await unlink(path).catch(() => {})
      }
    }
    return { entries, broken }
  }

  has (attemptId: number): boolean {
    return this.kept.has(attemptId)
  }

  /** Keeps an entry: on disk now, or after persistAfterMs unless it is settled first. Replaces an older one. */
  keep (entry: OutboxEntry, persistNow: boolean): Promise<void> {
    const id = entryId(entry)
    const old = this.kept.get(id)
    if (old != null) this.timers.clearTimeout(old.timer)
    // A newer version of an entry is written after the older one's write, never before it.
    const k: Kept = { entry, persisted: false, settled: false, writing: old?.writing }
    this.kept.set(id, k)
    if (persistNow || old?.persisted === true) return this.persist(k)
    k.timer = this.timers.setTimeout(() => { void this.persist(k).catch(() => {}) }, this.persistAfterMs)
    return Promise.resolve()
  }

  /** Writes every entry still held only in memory (the session ended, or the agent is stopping). */
  async persistAll (): Promise<void> {
    await Promise.all([...this.kept.values()].map(async k => { await this.persist(k) }))
  }

  /** Resolves when no write is under way (tests; the agent's shutdown). */
  async idle (): Promise<void> {
    while (this.writes.size > 0) await Promise.allSettled([...this.writes])
  }

  /** The coordinator has these: their entries go (files are the caller's). */
  async remove (ids: number[]): Promise<void> {
    await Promise.all(ids.map(async id => {
      const k = this.kept.get(id)
      if (k == null) return
      k.settled = true
      this.timers.clearTimeout(k.timer)
      this.kept.delete(id)
      await k.writing?.catch(() => {})
      if (k.persisted) await unlink(this.path(id)).catch(() => {})
    }))
  }

  private path (id: number): string {
    return join(this.dir, `${id}.entry`)
  }

  private persist (k: Kept): Promise<void> {
    if (k.persisted || k.settled) return k.writing ?? Promise.resolve()
    this.timers.clearTimeout(k.timer)
    const entry = k.entry
    const write = (async () => {
      await k.writing?.catch(() => {})
      if (k.settled || this.kept.get(entryId(entry)) !== k) return
      const target = this.path(entryId(entry))
      const tmp = join(this.dir, `.${entryId(entry)}.${randomBytes(4).toString('hex')}.tmp`)
      const fh = await open(tmp, 'wx', 0o600)
      try {
        await fh.writeFile(packr.pack(entry))
        await fh.sync()
      } finally {
        await fh.close()
      }
      await rename(tmp, target)
      await this.syncDir()
      k.persisted = true
    })()
    k.writing = write
    this.writes.add(write)
    void write.finally(() => this.writes.delete(write)).catch(() => {})
    return write
  }

  /** One fsync of the folder for all the renames made meanwhile. */
  private async syncDir (): Promise<void> {
    this.dirSync ??= (async () => {
      await new Promise(resolve => setImmediate(resolve))
      this.dirSync = null
      const d = await open(this.dir, 'r')
      try {
        await d.sync()
      } finally {
        await d.close()
      }
    })()
    await this.dirSync
  }
}
