/**
 * Moving file contents between peers (PROTOCOL_BLOB), the asking side. Every transfer starts on a libp2p stream
 * (Noise-encrypted, the asker's identity proven, the access list checked by the serving side). Small blobs follow
 * on that stream as raw bytes. From BULK_MIN_BYTES up the serving side may offer a one-time bulk transfer instead:
 * a separate TCP connection carrying AES-256-GCM records under a key sent inside the stream (bulk/records.ts), about
 * four times faster than the stream's two ciphers and muxer. When that connection cannot be made the transfer
 * goes over the stream, and says so. Every blob is hash-checked by the receiver; a download resumes from an offset.
 */
import type { PeerId } from '@libp2p/interface'
import { createHash } from 'node:crypto'
import { constants } from 'node:fs'
import { open, truncate } from 'node:fs/promises'
import { Channel } from '../protocol/codec.ts'
import { BLOB_CHUNK_BYTES, PROTOCOL_BLOB } from '../protocol/constants.ts'
import { MeshfarmError, errorMessage, type ErrorCode } from '../util/errors.ts'
import type { MeshNode } from './mesh.ts'
import type { BlobReply, BlobRequest } from '../protocol/messages.ts'
import { BLOB_REPLIES } from '../protocol/schema.ts'
import { FileWriter, type FileTarget } from '../files/file-writer.ts'
import { ipOf } from './addresses.ts'
import { bulkKey } from './bulk/records.ts'
import { BulkError, bulkEngine } from './bulk/engine.ts'

/** Below this a transfer stays on the stream: a second connection costs more than it saves. */
export const BULK_MIN_BYTES = 1024 * 1024
const OPEN_TIMEOUT_MS = 15_000

export interface BlobTransferOptions {
  /** Where a fallback to the stream is said. */
  log?: (line: string) => void
  /** Stay on the stream (the benchmark's comparison; a test of the fallback). */
  noBulk?: boolean
  /** Where the bulk connection goes, from the stream's remote IP and the offered port (tests: through a proxy). */
  bulkAddress?: (ip: string, port: number) => { host: string, port: number }
  signal?: AbortSignal
}

/** Where a fetched range goes: a file, from `position` on; `onChunk` hears each chunk once it is written. */
export interface RangeTarget extends FileTarget {
  onChunk?: (index: number) => void
}

/** Reads exactly `size` raw bytes following a frame. */
export async function * rawBytes (ch: Channel<any, any>, size: number): AsyncGenerator<Uint8Array> {
  let left = size
  while (left > 0) {
    const chunk = await ch.readRaw()
    if (chunk == null) throw new MeshfarmError('PROTOCOL', `transfer ended ${left} bytes early`)
    if (chunk.byteLength > left) throw new MeshfarmError('PROTOCOL', 'more bytes than announced')
    left -= chunk.byteLength
    yield chunk
  }
}

function raise (reply: BlobReply): void {
  if (reply.t === 'blob.error') throw new MeshfarmError(reply.code as ErrorCode, reply.message)
}

/** A blob stream to `peer`, with the remote IP of the connection it runs on (a bulk connection goes there). */
export async function openBlobChannel (node: MeshNode, peer: PeerId, signal?: AbortSignal): Promise<{ ch: Channel<BlobReply, BlobRequest>, ip: string | null }> {
  const opening = new AbortController()
  const timer = setTimeout(() => { opening.abort(new MeshfarmError('TIMEOUT', `opening ${PROTOCOL_BLOB} timed out`)) }, OPEN_TIMEOUT_MS)
  const both = signal != null ? AbortSignal.any([signal, opening.signal]) : opening.signal
  try {
    const conn = await node.dial(peer, { signal: both })
    const stream = await conn.newStream(PROTOCOL_BLOB, { signal: both })
    return { ch: new Channel<BlobReply, BlobRequest>(stream, { accept: BLOB_REPLIES }), ip: ipOf(conn.remoteAddr) }
  } finally {
    clearTimeout(timer)
  }
}

/** One request, one reply (blob.sources, blob.have). */
export async function askBlob<T extends BlobReply['t']> (node: MeshNode, peer: PeerId, req: BlobRequest, expect: T, signal?: AbortSignal): Promise<Extract<BlobReply, { t: T }>> {
  const { ch } = await openBlobChannel(node, peer, signal)
  try {
    await ch.write(req)
    const reply = await ch.expect()
    raise(reply)
    if (reply.t !== expect) throw new MeshfarmError('PROTOCOL', `expected ${expect}, got ${reply.t}`)
    return reply as Extract<BlobReply, { t: T }>
  } finally {
    await ch.close()
  }
}

function bulkTarget (ip: string | null, port: number, opts: BlobTransferOptions): { host: string, port: number } {
  if (ip == null) throw new MeshfarmError('PROTOCOL', 'the blob stream has no IP address to reach a bulk port on')
  return opts.bulkAddress?.(ip, port) ?? { host: ip, port }
}

/**
 * Fetches [offset, offset + length) of a blob (to its end without a length) from `peer` into a file. Resolves with
 * the blob's size and whether the bulk channel carried it. A failure after some bytes were written rejects: the
 * caller resumes or fetches elsewhere.
 */
export async function fetchRange (node: MeshNode, peer: PeerId, hash: string, offset: number, length: number | undefined, target: RangeTarget, opts: BlobTransferOptions = {}): Promise<{ size: number, length: number, bulk: boolean }> {
  const { ch, ip } = await openBlobChannel(node, peer, opts.signal)
  let reply: BlobReply
  try {
    await ch.write({ t: 'blob.get', hash, offset, ...(length != null ? { length } : {}), ...(opts.noBulk === true ? {} : { bulk: true }) })
    reply = await ch.expect()
    raise(reply)
    if (reply.t === 'blob.header') {
      const n = reply.length ?? reply.size - reply.offset
      if (reply.offset !== offset || (length != null && n !== length)) throw new MeshfarmError('PROTOCOL', `asked for bytes ${offset}+${length ?? 'rest'}, offered ${reply.offset}+${n}`)
      await streamInto(rawBytes(ch, n), n, target)
      return { size: reply.size, length: n, bulk: false }
    }
    if (reply.t !== 'blob.bulk') throw new MeshfarmError('PROTOCOL', `expected blob.header or blob.bulk, got ${reply.t}`)
  } finally {
    await ch.close()
  }
  if (reply.offset !== offset || (length != null && reply.length !== length) || reply.offset + reply.length > reply.size) {
    throw new MeshfarmError('PROTOCOL', `asked for bytes ${offset}+${length ?? 'rest'}, offered ${reply.offset}+${reply.length} of ${reply.size}`)
  }
  const to = bulkTarget(ip, reply.port, opts)
  try {
    await bulkEngine().fetch({
      host: to.host, port: to.port, token: reply.token, key: bulkKey(reply.key, hash, 'get', reply.offset, reply.length), length: reply.length,
      file: target.file, position: target.position, truncate: target.truncate, sync: target.sync, feed: target.feed, chunks: target.chunks
    }, { onChunk: target.onChunk, signal: opts.signal })
    return { size: reply.size, length: reply.length, bulk: true }
  } catch (err) {
    // Nothing came through (no connection, the token refused, the first record altered): the stream can still do it.
    if (err instanceof BulkError && err.delivered === 0 && err.code !== 'HASH_MISMATCH' && err.code !== 'DISK' && opts.signal?.aborted !== true) {
      opts.log?.(`bulk: no transfer from ${to.host}:${to.port} (${errorMessage(err)}); blob ${hash.slice(0, 12)} goes over the libp2p stream`)
      return await fetchRange(node, peer, hash, offset, length, { ...target, truncate: false }, { ...opts, noBulk: true })
    }
    throw err
  }
}

/** The stream path's writer: pieces into the file, chunks checked and reported as the bulk worker would. */
async function streamInto (pieces: AsyncIterable<Uint8Array>, length: number, target: RangeTarget): Promise<void> {
  const fh = await open(target.file, constants.O_RDWR | constants.O_CREAT | (target.truncate === true ? constants.O_TRUNC : 0), 0o600)
  const writer = new FileWriter(fh)
  const chunks = target.chunks
  let pos = target.position
  let index = chunks?.first ?? 0
  let left = chunks != null ? Math.min(chunks.chunkBytes, length) : 0
  let h = chunks?.expected != null ? createHash('sha256') : null
  try {
    for await (const piece of pieces) {
      const written = writer.write(piece, pos)
      let off = 0
      while (chunks != null && off < piece.byteLength) {
        const take = Math.min(left, piece.byteLength - off)
        h?.update(piece.subarray(off, off + take))
        off += take
        left -= take
        if (left === 0) {
          const i = index++
          if (h != null) {
            const want = chunks.expected!.subarray((i - chunks.first) * 32, (i - chunks.first + 1) * 32)
            if (!h.digest().equals(Buffer.from(want))) throw new MeshfarmError('HASH_MISMATCH', `chunk ${i} does not match the manifest`)
            h = createHash('sha256')
          }
          void written.then(() => { target.onChunk?.(i) })
          left = Math.min(chunks.chunkBytes, target.position + length - (pos + off))
        }
      }
      pos += piece.byteLength
      const full = writer.pressure()
      if (full != null) await full
    }
    await writer.flush()
    if (target.sync === true) await fh.sync()
  } finally {
    await writer.flush().catch(() => {})
    await fh.close()
  }
}

/** Uploads a local file (or bytes) as a blob; resolves once the serving side has stored it durably. */
export async function uploadBlob (node: MeshNode, peer: PeerId, hash: string, size: number, source: string | Uint8Array, opts: BlobTransferOptions = {}): Promise<void> {
  if (opts.noBulk !== true && size >= BULK_MIN_BYTES) {
    const { ch, ip } = await openBlobChannel(node, peer, opts.signal)
    let why: unknown = null
    try {
      await ch.write({ t: 'blob.put', hash, size, bulk: true })
      const reply = await ch.expect()
      raise(reply)
      if (reply.t === 'blob.stored') return
      if (reply.t !== 'blob.bulk') throw new MeshfarmError('PROTOCOL', `expected blob.bulk, got ${reply.t}`)
      const to = bulkTarget(ip, reply.port, opts)
      try {
        await bulkEngine().upload({ host: to.host, port: to.port, token: reply.token, key: bulkKey(reply.key, hash, 'put', 0, size), source, offset: 0, length: size }, opts.signal)
      } catch (err) {
        if (!(err instanceof BulkError) || err.delivered !== 0 || opts.signal?.aborted === true) throw err
        why = `${to.host}:${to.port}: ${errorMessage(err)}`
      }
      if (why == null) {
        // Acknowledged once the serving side has it durably (hash-checked, fsynced, renamed).
        const done = await ch.expect()
        raise(done)
        if (done.t !== 'blob.stored') throw new MeshfarmError('PROTOCOL', `expected blob.stored, got ${done.t}`)
        return
      }
    } finally {
      await ch.close()
    }
    opts.log?.(`bulk: no upload connection (${errorMessage(why)}); blob ${hash.slice(0, 12)} goes over the libp2p stream`)
  }
  const { ch } = await openBlobChannel(node, peer, opts.signal)
  try {
    await ch.write({ t: 'blob.put', hash, size })
    if (typeof source === 'string') {
      const fh = await open(source, 'r')
      try {
        const buf = Buffer.allocUnsafe(BLOB_CHUNK_BYTES)
        let pos = 0
        while (pos < size) {
          const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, size - pos), pos)
          if (bytesRead === 0) throw new MeshfarmError('FILE_MISSING', `${source} shrank while it was being sent`)
          // send() keeps a reference to the chunk, so each chunk gets its own copy.
          await ch.writeRaw(Uint8Array.prototype.slice.call(buf, 0, bytesRead))
          pos += bytesRead
        }
      } finally {
        await fh.close()
      }
    } else if (source.byteLength > 0) {
      await ch.writeRaw(source)
    }
    const reply = await ch.expect()
    raise(reply)
  } finally {
    await ch.close()
  }
}

/**
 * Downloads a blob into `dest` (created, or continued from `offset`), hashed as the bytes arrive (a resumed
 * download hashes the part it already has first), fsynced and checked against `hash` before it resolves. A broken
 * download leaves `dest` partial, so calling again with offset = its size resumes.
 */
export async function downloadBlob (node: MeshNode, peer: PeerId, hash: string, dest: string, offset = 0, onBytes?: (n: number) => void, opts: BlobTransferOptions = {}): Promise<number> {
  const engine = bulkEngine()
  const session = await engine.digestOpen()
  let finished = false
  try {
    if (offset > 0) {
      await truncate(dest, offset)
      await engine.digestCatchup(session, dest, offset)
    }
    const { size } = await fetchRange(node, peer, hash, offset, undefined, { file: dest, position: offset, truncate: offset === 0, sync: true, feed: session }, opts)
    onBytes?.(size - offset)
    // Whatever came over the stream (a fallback) is read back; bulk bytes were hashed on arrival.
    await engine.digestCatchup(session, dest, size)
    const { hex } = await engine.digestFinal(session)
    finished = true
    if (hex !== hash) throw new MeshfarmError('HASH_MISMATCH', `${dest}: content hashes to ${hex.slice(0, 12)}, expected ${hash.slice(0, 12)}`)
    return size
  } finally {
    if (!finished) await engine.digestFinal(session).catch(() => {})
  }
}
