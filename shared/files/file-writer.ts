/**
 * Positional writes to one file, queued so that the caller (decrypting, hashing) keeps going while the disk
 * takes the previous piece: one write in flight at a time, each a single buffer (on Linux here, one write of a
 * piece costs a third of the system time of a writev of many), and a bounded queue the caller waits on.
 */
import type { FileHandle } from 'node:fs/promises'

const HIGH_WATER = 8 * 1024 * 1024
/**
 * With `flushEvery`, written data is pushed to the disk every so many bytes while the transfer goes on (an
 * fdatasync beside the writes), so the fsync that makes the file durable at the end has little left to do.
 */
const DEFAULT_FLUSH_EVERY = 64 * 1024 * 1024

/** Where received bytes go: a file from `position` on, as a blob download and the bulk worker both write it. */
export interface FileTarget {
  file: string
  position: number
  /** Empty the file first. */
  truncate?: boolean
  /** fsync it once the range is in. */
  sync?: boolean
  /** A bulk digest session (bulk/engine.ts) fed with the bytes that land where it stands. */
  feed?: number
  /** The range starts at chunk `first`: each chunk reported once written, and checked against `expected`. */
  chunks?: { chunkBytes: number, first: number, expected: Uint8Array | null }
}

export class FileWriter {
  private readonly fh: FileHandle
  private chain: Promise<void> = Promise.resolve()
  private queued = 0
  private error: unknown = null
  private waiters: Array<() => void> = []
  private readonly flushEvery: number
  private sinceFlush = 0
  private flushing: Promise<void> | null = null

  constructor (fh: FileHandle, opts: { flushEvery?: number | null } = {}) {
    this.fh = fh
    this.flushEvery = opts.flushEvery === null ? Infinity : opts.flushEvery ?? DEFAULT_FLUSH_EVERY
  }

  /** Queues `buf` for `pos`; resolves when it is written (or failed: the error surfaces in drained/flush). */
  write (buf: Uint8Array, pos: number): Promise<void> {
    this.queued += buf.byteLength
    this.chain = this.chain.then(async () => {
      if (this.error != null) return
      try {
        let done = 0
        while (done < buf.byteLength) {
          const { bytesWritten } = await this.fh.write(buf, done, buf.byteLength - done, pos + done)
          done += bytesWritten
        }
        this.sinceFlush += buf.byteLength
        if (this.sinceFlush >= this.flushEvery && this.flushing == null) {
          this.sinceFlush = 0
          this.flushing = this.fh.datasync().catch(() => {}).finally(() => { this.flushing = null })
        }
      } catch (err) {
        this.error ??= err
      } finally {
        this.queued -= buf.byteLength
        if (this.queued < HIGH_WATER / 2 || this.error != null) for (const w of this.waiters.splice(0)) w()
      }
    })
    return this.chain
  }

  /** Null while the queue is short; else a promise to await before writing more. Throws a failed write's error. */
  pressure (): Promise<void> | null {
    if (this.error != null) throw this.error
    if (this.queued < HIGH_WATER) return null
    return new Promise<void>(resolve => { this.waiters.push(resolve) }).then(() => { if (this.error != null) throw this.error })
  }

  /** Every queued write done; throws the first failure. */
  async flush (): Promise<void> {
    await this.chain
    await this.flushing
    if (this.error != null) throw this.error
  }
}
