/**
 * A content-addressed file store: blobs/ab/abcdef... named by their sha256. Writes go to a temp file, are
 * hash-checked, fsynced and renamed into place, so a blob that exists is always whole and correct.
 */
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream, existsSync, mkdirSync, statSync, type ReadStream } from 'node:fs'
import { open, rename, rm, link, copyFile, chmod } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { hostname } from 'node:os'
import { MeshfarmError } from '../util/errors.ts'
import { isHash } from '../protocol/schema.ts'

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
    let written = 0
    try {
      for await (const chunk of chunks) {
        written += chunk.byteLength
        if (written > size) throw new MeshfarmError('HASH_MISMATCH', `blob ${hash.slice(0, 12)}: more bytes than the announced ${size}`)
        digest.update(chunk)
        await fh.write(chunk)
      }
      if (written !== size) throw new MeshfarmError('PROTOCOL', `blob ${hash.slice(0, 12)}: transfer ended after ${written} of ${size} bytes`)
      const got = digest.digest('hex')
      if (got !== hash) throw new MeshfarmError('HASH_MISMATCH', `blob ${hash.slice(0, 12)}: content hashes to ${got.slice(0, 12)}`)
      await fh.sync()
    } catch (err) {
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

  /** Where a download of this blob lands before it is verified and adopted. */
  downloadPath (hash: string): string {
    return join(this.dir, 'tmp', `${this.path(hash).slice(-64)}.download`)
  }

  /** Takes a file whose hash was already verified into the store. */
  async adopt (hash: string, file: string): Promise<void> {
    await chmod(file, 0o444)
    await this.moveIntoPlace(file, this.path(hash))
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

/** ENOSPC and EDQUOT as one clear line that says where: on a mesh, "disk full" alone does not say whose disk. */
export function translateDiskError (err: unknown, dir: string): unknown {
  const code = (err as NodeJS.ErrnoException)?.code
  if (code === 'ENOSPC' || code === 'EDQUOT') return new MeshfarmError('DISK', `disk full on ${hostname()} (${dir}): ${code === 'EDQUOT' ? 'quota exceeded' : 'no space left'}; nothing was stored`)
  return err
}
