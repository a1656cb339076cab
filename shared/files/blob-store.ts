/**
 * A content-addressed file store: blobs/ab/abcdef... named by their sha256. Writes go to a temp file, are
 * hash-checked, fsynced and renamed into place, so a blob that exists is always whole and correct.
 */
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream, existsSync, mkdirSync, statSync, type ReadStream } from 'node:fs'
import { open, rename, rm, link, copyFile, chmod } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { MeshfarmError } from '../util/errors.ts'
import { isHash } from '../protocol/schema.ts'
import { FileWriter } from './file-writer.ts'
import { translateDiskError } from './disk-error.ts'

export { translateDiskError }

export class BlobStore {
  readonly dir: string

  constructor (dir: string) {
    this.dir = dir
    mkdirSync(join(dir, 'tmp'), { recursive: true, mode: 0o700 })
  }

  path (hash: string): string {
    if (!isHash(hash)) throw new MeshfarmError('PROTOCOL', `not a content hash: ${JSON.stringify(String(hash).slice(0, 80))}`)
    return join(this.dir, hash.slice(0, 2), hash)
  }

  /** Hashes seen present: meshfarm never deletes a blob, and every result asks about its stdout and stderr. */
  private readonly known = new Set<string>()

  has (hash: string): boolean {
    if (this.known.has(hash)) return true
    if (!existsSync(this.path(hash))) return false
    if (this.known.size >= 100_000) this.known.clear()
    this.known.add(hash)
    return true
  }

  size (hash: string): number {
    return statSync(this.path(hash)).size
  }

  /** Stores bytes that must hash to `hash`. */
  async putBytes (hash: string, data: Uint8Array): Promise<void> {
    if (this.has(hash)) return
    await this.putStream(hash, data.byteLength, [data])
  }

  /**
   * Stores a stream of exactly `size` bytes that must hash to `hash`; with `partial`, a broken transfer keeps its
   * temp file so that putStream can be called again with the remaining bytes from `resumeFrom`.
   */
  async putStream (hash: string, size: number, chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<void> {
    const target = this.path(hash)
    if (existsSync(target)) {
      for await (const _ of chunks) { /* drain */ }
      return
    }
    const tmp = join(this.dir, 'tmp', `${hash}.${randomBytes(6).toString('hex')}`)
    const digest = createHash('sha256')
    const fh = await open(tmp, 'wx', 0o444)
    // The next piece is hashed (and received) while the disk takes this one.
    const writer = new FileWriter(fh)
    let written = 0
    try {
      for await (const chunk of chunks) {
        if (written + chunk.byteLength > size) throw new MeshfarmError('HASH_MISMATCH', `blob ${hash.slice(0, 12)}: more bytes than the announced ${size}`)
        digest.update(chunk)
        void writer.write(chunk, written)
        written += chunk.byteLength
        const full = writer.pressure()
        if (full != null) await full
      }
      if (written !== size) throw new MeshfarmError('PROTOCOL', `blob ${hash.slice(0, 12)}: transfer ended after ${written} of ${size} bytes`)
      const got = digest.digest('hex')
      if (got !== hash) throw new MeshfarmError('HASH_MISMATCH', `blob ${hash.slice(0, 12)}: content hashes to ${got.slice(0, 12)}`)
      await writer.flush()
      await fh.sync()
    } catch (err) {
      await writer.flush().catch(() => {})
      await fh.close()
      await rm(tmp, { force: true })
      throw translateDiskError(err, this.dir)
    }
    await fh.close()
    await this.moveIntoPlace(tmp, target)
  }

  /**
   * Renames a verified file into place and fsyncs the folder: until then the rename itself may be lost with the
   * power, and an acknowledged result whose agent already deleted its copy would be gone.
   */
  private async moveIntoPlace (file: string, target: string): Promise<void> {
    const dir = dirname(target)
    const created = !existsSync(dir)
    mkdirSync(dir, { recursive: true })
    await rename(file, target)
    await syncDir(dir)
    if (created) await syncDir(this.dir)
  }

  /** A new temp file name for an upload of this blob (written elsewhere, then checked and adopted). */
  tempPath (hash: string): string {
    return join(this.dir, 'tmp', `${this.path(hash).slice(-64)}.${randomBytes(6).toString('hex')}`)
  }

  /** Where a download of this blob lands before it is verified and adopted. */
  downloadPath (hash: string): string {
    return join(this.dir, 'tmp', `${this.path(hash).slice(-64)}.download`)
  }

  /** Takes a file whose hash was already verified into the store. */
  async adopt (hash: string, file: string): Promise<void> {
    await chmod(file, 0o444)
    await this.moveIntoPlace(file, this.path(hash))
  }

  /** Where a stored blob is, for serving it: whole, so any range may be served. */
  locate (hash: string): { path: string, size: number, holds: () => boolean } | null {
    if (!isHash(hash) || !this.has(hash)) return null
    try {
      return { path: this.path(hash), size: this.size(hash), holds: () => true }
    } catch {
      return null
    }
  }

  read (hash: string, offset = 0): ReadStream {
    return createReadStream(this.path(hash), { start: offset, highWaterMark: 256 * 1024 })
  }

  /** Places a blob at `dest` without copying when the file system allows (hard link), read-only. */
  async placeAt (hash: string, dest: string): Promise<void> {
    const src = this.path(hash)
    try {
      await link(src, dest)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return
      await copyFile(src, dest)
    }
  }
}

async function syncDir (dir: string): Promise<void> {
  const fh = await open(dir, 'r')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}
