/**
 * Moving file contents between peers (PROTOCOL_BLOB): one stream per transfer, a header frame, then raw bytes
 * with backpressure. Nothing is held whole in memory; every blob is hash-checked by the receiver, and a
 * download resumes from an offset.
 */
import type { PeerId, Stream } from '@libp2p/interface'
import { open } from 'node:fs/promises'
import { hashFile } from '../files/hash.ts'
import { Channel } from '../protocol/codec.ts'
import { BLOB_CHUNK_BYTES, PROTOCOL_BLOB } from '../protocol/constants.ts'
import { MeshfarmError, errorMessage, isMeshfarmError, type ErrorCode } from '../util/errors.ts'
import type { MeshNode } from './mesh.ts'
import type { BlobReply, BlobRequest } from '../protocol/messages.ts'
import { BLOB_REPLIES, BLOB_REQUESTS, isFiniteInt, isHash } from '../protocol/schema.ts'
import type { BlobStore } from '../files/blob-store.ts'
import { openChannel } from './rpc.ts'

/** Control frames of the blob protocol are a few hundred bytes: nothing larger is read. */
const BLOB_FRAME_BYTES = 4096

export interface BlobServeHooks {
  /** May the remote peer read/write blobs? Throw a MeshfarmError to refuse. */
  authorize?: (peer: string, op: 'get' | 'put') => void
  onServed?: (peer: string, hash: string, bytes: number) => void
}

/** Serves blob.get and blob.put from a store. */
export async function serveBlobStream (stream: Stream, remotePeer: string, store: BlobStore, hooks: BlobServeHooks = {}): Promise<void> {
  const ch = new Channel<BlobRequest, BlobReply>(stream, { accept: BLOB_REQUESTS, maxFrameBytes: BLOB_FRAME_BYTES })
  try {
    const req = await ch.expect()
    hooks.authorize?.(remotePeer, req.t === 'blob.get' ? 'get' : 'put')
    if (!isHash(req.hash)) throw new MeshfarmError('PROTOCOL', 'not a content hash')
    if (req.t === 'blob.get') {
      if (!store.has(req.hash)) throw new MeshfarmError('NOT_FOUND', `no blob ${req.hash.slice(0, 12)}`)
      const size = store.size(req.hash)
      const offset = isFiniteInt(req.offset) ? Math.min(req.offset, size) : 0
      await ch.write({ t: 'blob.header', size, offset })
      let sent = 0
      for await (const chunk of store.read(req.hash, offset)) {
        await ch.writeRaw(chunk as Uint8Array)
        sent += (chunk as Uint8Array).byteLength
      }
      hooks.onServed?.(remotePeer, req.hash, sent)
      await ch.close()
      return
    }
    if (!isFiniteInt(req.size)) throw new MeshfarmError('PROTOCOL', 'blob.put: bad size')
    await store.putStream(req.hash, req.size, rawBytes(ch, req.size))
    await ch.write({ t: 'blob.stored', hash: req.hash })
    await ch.close()
  } catch (err) {
    const code = isMeshfarmError(err) ? err.code : 'REMOTE'
    try {
      await ch.write({ t: 'blob.error', code, message: errorMessage(err) })
      await ch.close()
    } catch {
      ch.abort(err as Error)
    }
  }
}

/** Reads exactly `size` raw bytes following a frame. */
async function * rawBytes (ch: Channel<any, any>, size: number): AsyncGenerator<Uint8Array> {
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

/** Uploads a local file (or bytes) as a blob. */
export async function uploadBlob (node: MeshNode, peer: PeerId, hash: string, size: number, source: string | Uint8Array): Promise<void> {
  const ch = await openChannel<BlobReply, BlobRequest>(node, peer, PROTOCOL_BLOB, BLOB_REPLIES)
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
 * Downloads a blob into `dest` (created or appended to from `offset`), verifying the whole file's hash at the
 * end. A broken download leaves `dest` partial, so calling again with offset = its size resumes.
 */
export async function downloadBlob (node: MeshNode, peer: PeerId, hash: string, dest: string, offset = 0, onBytes?: (n: number) => void): Promise<number> {
  const ch = await openChannel<BlobReply, BlobRequest>(node, peer, PROTOCOL_BLOB, BLOB_REPLIES)
  const fh = await open(dest, offset > 0 ? 'r+' : 'w', 0o600)
  try {
    await ch.write({ t: 'blob.get', hash, offset })
    const header = await ch.expect()
    raise(header)
    if (header.t !== 'blob.header') throw new MeshfarmError('PROTOCOL', `expected blob.header, got ${header.t}`)
    let pos = header.offset
    await fh.truncate(pos)
    for await (const chunk of rawBytes(ch, header.size - header.offset)) {
      await fh.write(chunk, 0, chunk.byteLength, pos)
      pos += chunk.byteLength
      onBytes?.(chunk.byteLength)
    }
    await fh.sync()
    await fh.close()
    const { hash: got } = await hashFile(dest)
    if (got !== hash) throw new MeshfarmError('HASH_MISMATCH', `${dest}: content hashes to ${got.slice(0, 12)}, expected ${hash.slice(0, 12)}`)
    return header.size
  } finally {
    await fh.close().catch(() => {})
    await ch.close()
  }
}
