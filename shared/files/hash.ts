/** sha256 helpers: content addresses for blobs (FileRef.hash). */
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { readFile, stat } from 'node:fs/promises'

const SMALL_FILE = 256 * 1024

/** sha256 hex of a file, streamed so large outputs are never held in memory. */
export async function hashFile (path: string): Promise<{ hash: string, size: number }> {
  // Most task outputs (stdout, stderr, small results) are tiny: one read, not a stream with a 1 MiB buffer.
  if ((await stat(path)).size <= SMALL_FILE) {
    const data = await readFile(path)
    return { hash: hashBytes(data), size: data.byteLength }
  }
  const h = createHash('sha256')
  let size = 0
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    const buf = chunk as Buffer
    h.update(buf)
    size += buf.length
  }
  return { hash: h.digest('hex'), size }
}

/** sha256 hex of bytes in memory. */
export function hashBytes (data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex')
}
