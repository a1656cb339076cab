/**
 * Finished attempts waiting for the coordinator to confirm them. Each one is written into its task folder
 * (`.meshfarm/result`) before it is sent, so results survive the coordinator's absence and the agent's restart;
 * the folder is removed only after the coordinator acknowledges (or refuses) the result.
 */
import { readdir, readFile, writeFile, rename } from 'node:fs/promises'
import { join } from 'node:path'
import { Packr } from 'msgpackr'
import type { AttemptResult, FileRef } from '../shared/protocol.ts'
import { INLINE_BLOB_BYTES } from '../shared/constants.ts'
import { META_DIR, removeTaskDir } from './executor.ts'

const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true })

interface Entry { result: AttemptResult, dir: string, inFlight: boolean }

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
        this.entries.set(result.attemptId, { result, dir, inFlight: false })
      } catch {
        await removeTaskDir(dir)
      }
    }
    return this.entries.size
  }

  /** Keeps a finished attempt; it counts as pending at once, so a hello sent meanwhile still claims it. */
  async add (result: AttemptResult, dir: string): Promise<void> {
    const entry: Entry = { result, dir, inFlight: true }
    this.entries.set(result.attemptId, entry)
    const file = join(dir, META_DIR, 'result')
    try {
      await writeFile(`${file}.tmp`, packr.pack(result))
      await rename(`${file}.tmp`, file)
    } finally {
      entry.inFlight = false
    }
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
      this.entries.delete(id)
      await removeTaskDir(e.dir)
    }))
  }

  /** The session ended before answers came: send those again next time. */
  requeueInFlight (): void {
    for (const e of this.entries.values()) e.inFlight = false
  }
}
