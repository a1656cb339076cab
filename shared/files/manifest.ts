/**
 * Chunk manifests: a blob cut into fixed-size chunks, each with its sha256, so that a blob can be fetched in
 * pieces from several peers and every piece checked on arrival (the whole blob's hash is checked at the end as
 * always). The chunk size is a function of the blob's size alone, so every peer cuts a blob the same way. A
 * manifest is made by the coordinator from its verified copy the first time a blob is spread, and kept beside it.
 */
import { createHash, randomBytes } from 'node:crypto'
import { open, readFile, rename, rm } from 'node:fs/promises'
import { MeshfarmError } from '../util/errors.ts'

export const CHUNK_BYTES = 4 * 1024 * 1024
/** Blobs from this size are fetched in chunks from whichever peers hold them; smaller ones whole, from the coordinator. */
export const SPREAD_MIN_BYTES = 2 * CHUNK_BYTES
/** Chunks per blob at most: larger blobs get larger chunks, so a manifest stays under 128 KiB. */
export const MAX_CHUNKS = 4096
const HASH_BYTES = 32
const MAGIC = Buffer.from('MFCHUNK1', 'latin1')

export interface Manifest {
  size: number
  chunkBytes: number
  /** sha256 of each chunk, 32 bytes each, in order. */
  hashes: Uint8Array
}

export function chunkBytesFor (size: number): number {
  let bytes = CHUNK_BYTES
  while (Math.ceil(size / bytes) > MAX_CHUNKS) bytes *= 2
  return bytes
}

export function chunkCount (size: number, chunkBytes = chunkBytesFor(size)): number {
  return Math.ceil(size / chunkBytes)
}

/** Byte range of chunk `i`. */
export function chunkSpan (i: number, size: number, chunkBytes = chunkBytesFor(size)): { offset: number, length: number } {
  const offset = i * chunkBytes
  return { offset, length: Math.max(0, Math.min(chunkBytes, size - offset)) }
}

export function chunkHash (m: Manifest, i: number): Uint8Array {
  return m.hashes.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES)
}

/** A manifest from the network or a file, checked against the blob's size; throws PROTOCOL naming what is wrong. */
export function checkManifest (m: Manifest, size: number, where: string): Manifest {
  if (m.size !== size) throw new MeshfarmError('PROTOCOL', `${where}: manifest for ${m.size} bytes, blob has ${size}`)
  if (m.chunkBytes !== chunkBytesFor(size)) throw new MeshfarmError('PROTOCOL', `${where}: chunks of ${m.chunkBytes} bytes, expected ${chunkBytesFor(size)}`)
  if (m.hashes.byteLength !== chunkCount(size) * HASH_BYTES) throw new MeshfarmError('PROTOCOL', `${where}: ${m.hashes.byteLength} bytes of chunk hashes for ${chunkCount(size)} chunks`)
  return m
}

/** Does `data` (chunk `i`'s bytes) match the manifest? */
export function chunkMatches (m: Manifest, i: number, digest: Uint8Array): boolean {
  return Buffer.compare(Buffer.from(chunkHash(m, i)), Buffer.from(digest)) === 0
}

/** Reads a file once and hashes each chunk. */
export async function makeManifest (path: string, size: number): Promise<Manifest> {
  const chunkBytes = chunkBytesFor(size)
  const count = chunkCount(size, chunkBytes)
  const hashes = Buffer.alloc(count * HASH_BYTES)
  const buf = Buffer.allocUnsafe(Math.min(chunkBytes, 4 * 1024 * 1024))
  const fh = await open(path, 'r')
  try {
    for (let i = 0; i < count; i++) {
      const { offset, length } = chunkSpan(i, size, chunkBytes)
      const h = createHash('sha256')
      for (let done = 0; done < length;) {
        const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, length - done), offset + done)
        if (bytesRead === 0) throw new MeshfarmError('FILE_MISSING', `${path}: shorter than ${size} bytes`)
        h.update(buf.subarray(0, bytesRead))
        done += bytesRead
      }
      h.digest().copy(hashes, i * HASH_BYTES)
    }
  } finally {
    await fh.close()
  }
  return { size, chunkBytes, hashes }
}

export function encodeManifest (m: Manifest): Buffer {
  const head = Buffer.alloc(MAGIC.length + 12)
  MAGIC.copy(head, 0)
  head.writeBigUInt64BE(BigInt(m.size), MAGIC.length)
  head.writeUInt32BE(m.chunkBytes, MAGIC.length + 8)
  return Buffer.concat([head, m.hashes])
}

export function decodeManifest (data: Uint8Array, size: number, where: string): Manifest {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength)
  if (buf.byteLength < MAGIC.length + 12 || !buf.subarray(0, MAGIC.length).equals(MAGIC)) throw new MeshfarmError('PROTOCOL', `${where}: not a chunk manifest`)
  return checkManifest({
    size: Number(buf.readBigUInt64BE(MAGIC.length)),
    chunkBytes: buf.readUInt32BE(MAGIC.length + 8),
    hashes: buf.subarray(MAGIC.length + 12)
  }, size, where)
}

/** The manifest kept beside a stored blob (`<blob>.chunks`), made from the blob when missing or unreadable. */
export async function loadOrMakeManifest (blobPath: string, size: number): Promise<Manifest> {
  const file = `${blobPath}.chunks`
  try {
    return decodeManifest(await readFile(file), size, file)
  } catch { /* missing or damaged: made again from the verified blob */ }
  const m = await makeManifest(blobPath, size)
  const tmp = `${file}.${randomBytes(6).toString('hex')}`
  try {
    const fh = await open(tmp, 'wx', 0o444)
    try {
      await fh.writeFile(encodeManifest(m))
      await fh.sync()
    } finally {
      await fh.close()
    }
    await rename(tmp, file)
  } catch {
    // The manifest is a cache: failing to keep it costs a re-read next time, nothing else.
    await rm(tmp, { force: true })
  }
  return m
}
