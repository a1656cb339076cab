/**
 * The serving side of PROTOCOL_BLOB, for the coordinator (its store: get, put, sources) and for agents (their
 * cache and downloads in progress: get of a range, have). The request is checked before anything is read or
 * sent; a large get or put becomes a one-time bulk transfer when a bulk listener runs here and the asker can.
 */
import type { Stream } from '@libp2p/interface'
import { createReadStream } from 'node:fs'
import { Channel } from '../protocol/codec.ts'
import { MeshfarmError, errorMessage, isMeshfarmError } from '../util/errors.ts'
import type { BlobReply, BlobRequest } from '../protocol/messages.ts'
import { BLOB_REQUESTS, isHash } from '../protocol/schema.ts'
import type { BlobStore } from '../files/blob-store.ts'
import { rm } from 'node:fs/promises'
import type { BulkEngine } from './bulk/engine.ts'
import { BULK_MIN_BYTES, rawBytes } from './blob-protocol.ts'
import { ipOf } from './addresses.ts'
import type { MeshNode } from './mesh.ts'

/** Control frames of the blob protocol are a few hundred bytes: nothing larger is read. */
const BLOB_FRAME_BYTES = 4096
/** A stream must say what it wants within this time. */
const REQUEST_TIMEOUT_MS = 10_000

export interface Located {
  path: string
  size: number
  /** May [offset, offset + length) be served now (a download in progress holds only some chunks)? */
  holds: (offset: number, length: number) => boolean
}

export type BlobOp = 'get' | 'put' | 'sources' | 'have'

export interface BlobServeOptions {
  /** Where a blob's bytes are, or null. */
  locate: (hash: string) => Located | null
  /** Uploads land here (the coordinator); absent: puts are refused. */
  store?: BlobStore
  /** May the remote peer do this? Throw a MeshfarmError to refuse. */
  authorize?: (peer: string, op: BlobOp) => void
  /** Answers blob.sources (the coordinator). */
  sources?: (peer: string, hash: string) => Promise<BlobReply>
  /** Answers blob.have (an agent: chunks of downloads in progress). */
  have?: (hash: string) => BlobReply
  /** The bulk worker, listening: large transfers get a one-time ticket instead of bytes on the stream. */
  bulk?: BulkEngine | null
  onServed?: (peer: string, hash: string, bytes: number) => void
  /** A blob was uploaded and stored durably (the coordinator starts its chunk manifest before anyone asks). */
  onStored?: (hash: string, size: number) => void
}

/** The hosts the node listens on (0.0.0.0 stays a wildcard), or those it ended up with. */
export function bulkHosts (listen: readonly string[], node: MeshNode): string[] {
  const given = listen.map(a => ipOf(a)).filter((ip): ip is string => ip != null)
  return given.length > 0 ? given : node.getMultiaddrs().map(a => ipOf(a)).filter((ip): ip is string => ip != null)
}

export interface RemotePeer {
  id: string
  /** The address its connection came from: a bulk ticket is bound to it. */
  ip: string | null
}

export async function serveBlobStream (stream: Stream, remote: RemotePeer, opts: BlobServeOptions): Promise<void> {
  const ch = new Channel<BlobRequest, BlobReply>(stream, { accept: BLOB_REQUESTS, maxFrameBytes: BLOB_FRAME_BYTES })
  const timer = setTimeout(() => { ch.abort(new MeshfarmError('TIMEOUT', 'blob request too slow')) }, REQUEST_TIMEOUT_MS)
  try {
    const req = await ch.expect()
    clearTimeout(timer)
    if (!isHash(req.hash)) throw new MeshfarmError('PROTOCOL', 'not a content hash')
    const op: BlobOp = req.t === 'blob.get' ? 'get' : req.t === 'blob.put' ? 'put' : req.t === 'blob.sources' ? 'sources' : 'have'
    opts.authorize?.(remote.id, op)
    if (req.t === 'blob.get') await serveGet(ch, remote, req, opts)
    else if (req.t === 'blob.put') await servePut(ch, remote, req, opts)
    else if (req.t === 'blob.sources') {
      if (opts.sources == null) throw new MeshfarmError('NOT_FOUND', 'this peer keeps no sources')
      await ch.write(await opts.sources(remote.id, req.hash))
    } else {
      if (opts.have == null) throw new MeshfarmError('NOT_FOUND', 'this peer serves whole blobs only')
      await ch.write(opts.have(req.hash))
    }
    await ch.close()
  } catch (err) {
    clearTimeout(timer)
    const code = isMeshfarmError(err) ? err.code : 'REMOTE'
    try {
      await ch.write({ t: 'blob.error', code, message: errorMessage(err) })
      await ch.close()
    } catch {
      ch.abort(err as Error)
    }
  }
}

async function serveGet (ch: Channel<BlobRequest, BlobReply>, remote: RemotePeer, req: Extract<BlobRequest, { t: 'blob.get' }>, opts: BlobServeOptions): Promise<void> {
  const found = opts.locate(req.hash)
  if (found == null) throw new MeshfarmError('NOT_FOUND', `no blob ${req.hash.slice(0, 12)}`)
  const offset = Math.min(req.offset, found.size)
  const length = req.length ?? found.size - offset
  if (offset + length > found.size) throw new MeshfarmError('PROTOCOL', `blob.get: bytes ${offset}+${length} of a blob of ${found.size}`)
  if (!found.holds(offset, length)) throw new MeshfarmError('NOT_FOUND', `blob ${req.hash.slice(0, 12)}: bytes ${offset}+${length} not held here yet`)
  if (req.bulk === true && opts.bulk?.port != null && remote.ip != null && length >= BULK_MIN_BYTES) {
    const offer = await opts.bulk.offer({ peer: remote.id, ip: remote.ip, hash: req.hash, direction: 'get', offset, length, file: found.path })
    if (offer != null) {
      offer.done.then(() => { opts.onServed?.(remote.id, req.hash, length) }, () => {})
      await ch.write({ t: 'blob.bulk', size: found.size, offset, length, port: offer.port, token: offer.token, key: offer.key })
      return
    }
  }
  await ch.write({ t: 'blob.header', size: found.size, offset, ...(req.length != null ? { length } : {}) })
  if (length > 0) {
    for await (const chunk of createReadStream(found.path, { start: offset, end: offset + length - 1, highWaterMark: 256 * 1024 })) {
      await ch.writeRaw(chunk as Uint8Array)
    }
  }
  opts.onServed?.(remote.id, req.hash, length)
}

async function servePut (ch: Channel<BlobRequest, BlobReply>, remote: RemotePeer, req: Extract<BlobRequest, { t: 'blob.put' }>, opts: BlobServeOptions): Promise<void> {
  const store = opts.store
  if (store == null) throw new MeshfarmError('FORBIDDEN', 'this peer takes no uploads')
  if (req.bulk === true && opts.bulk?.port != null && remote.ip != null && req.size >= BULK_MIN_BYTES) {
    if (store.has(req.hash)) {
      await ch.write({ t: 'blob.stored', hash: req.hash })
      return
    }
    const tmp = store.tempPath(req.hash)
    const offer = await opts.bulk.offer({ peer: remote.id, ip: remote.ip, hash: req.hash, direction: 'put', offset: 0, length: req.size, file: tmp })
    if (offer != null) {
      await ch.write({ t: 'blob.bulk', size: req.size, offset: 0, length: req.size, port: offer.port, token: offer.token, key: offer.key })
      try {
        // The worker wrote and fsynced it; here it is checked and adopted (renamed, folder fsynced) before the ack.
        const { digest, bytes } = await offer.done
        if (bytes !== req.size) throw new MeshfarmError('PROTOCOL', `blob ${req.hash.slice(0, 12)}: transfer ended after ${bytes ?? 0} of ${req.size} bytes`)
        if (digest !== req.hash) throw new MeshfarmError('HASH_MISMATCH', `blob ${req.hash.slice(0, 12)}: content hashes to ${String(digest).slice(0, 12)}`)
        await store.adopt(req.hash, tmp)
      } catch (err) {
        await rm(tmp, { force: true })
        throw err
      }
      await ch.write({ t: 'blob.stored', hash: req.hash })
      opts.onStored?.(req.hash, req.size)
      return
    }
  }
  await store.putStream(req.hash, req.size, rawBytes(ch, req.size))
  await ch.write({ t: 'blob.stored', hash: req.hash })
  opts.onStored?.(req.hash, req.size)
}
