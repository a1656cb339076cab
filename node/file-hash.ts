/** sha256 of an open file, read from its descriptor (never by name again: the name may change under us). */
import { createHash } from 'node:crypto'
import type { FileHandle } from 'node:fs/promises'

const CHUNK = 1 << 20

export async function hashHandle (fh: FileHandle): Promise<{ hash: string, size: number }> {
  const h = createHash('sha256')
  const buf = Buffer.allocUnsafe(CHUNK)
  let size = 0
  while (true) {
    const { bytesRead } = await fh.read(buf, 0, CHUNK, size)
    if (bytesRead === 0) break
    h.update(buf.subarray(0, bytesRead))
    size += bytesRead
  }
  return { hash: h.digest('hex'), size }
}

/** The whole content of an open file, if it still hashes to `hash`; null if it changed. */
export async function readVerified (fh: FileHandle, hash: string, size: number): Promise<Uint8Array | null> {
  const buf = Buffer.alloc(size)
  let off = 0
  while (off < size) {
    const { bytesRead } = await fh.read(buf, off, size - off, off)
    if (bytesRead === 0) return null
    off += bytesRead
  }
  const extra = await fh.read(Buffer.alloc(1), 0, 1, size)
  if (extra.bytesRead !== 0) return null
  return createHash('sha256').update(buf).digest('hex') === hash ? buf : null
}
