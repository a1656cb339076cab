/**
 * The bulk worker: every byte of the bulk channel is moved, sealed, opened, hashed and written here, in a thread
 * of its own. Two reasons: a peer's main thread keeps its event loop for the mesh, and this thread's heap stays
 * tiny. Each record allocates new buffers (node:crypto has no in-place API), and V8 answers external memory
 * growth with full garbage collections that walk the whole heap: on a coordinator's heap that tripled the CPU per
 * byte. The main thread talks to it through engine.ts; messages are the types below.
 */
import { createHash, type Hash } from 'node:crypto'
import { constants } from 'node:fs'
import { open, rm, type FileHandle } from 'node:fs/promises'
import type { Socket } from 'node:net'
import { dirname } from 'node:path'
import { parentPort } from 'node:worker_threads'
import { FileWriter, type FileTarget } from '../../files/file-writer.ts'
import { translateDiskError } from '../../files/disk-error.ts'
import { MeshfarmError, errorMessage, isMeshfarmError } from '../../util/errors.ts'
import { BulkListener } from './listener.ts'
import type { BulkDirection } from './records.ts'
import { connectBulk, openRecords, sendRecords } from './transfer.ts'

/** A range to fetch over a bulk connection, into its file target. */
export interface FetchJob extends FileTarget {
  host: string
  port: number
  token: Uint8Array
  key: Uint8Array
  length: number
}

export type ToWorker =
  | { op: 'listen', id: number, hosts: string[], port: number }
  | { op: 'offer', id: number, token: string, key: Uint8Array, peer: string, ip: string, hash: string, direction: BulkDirection, offset: number, length: number, file: string }
  | { op: 'fetch', id: number, job: FetchJob }
  | { op: 'upload', id: number, host: string, port: number, token: Uint8Array, key: Uint8Array, source: string | Uint8Array, offset: number, length: number }
  | { op: 'abort', id: number }
  | { op: 'digest.open', id: number }
  | { op: 'digest.catchup', id: number, session: number, file: string, upTo: number }
  | { op: 'digest.final', id: number, session: number }
  | { op: 'peers', id: number }
  | { op: 'drop', id: number, peers: string[] }
  | { op: 'close', id: number }

export type FromWorker =
  | { id: number, ok: true, value?: unknown }
  | { id: number, ok: false, code: string, message: string, delivered?: number }
  | { id: number, event: 'chunk', index: number }
  | { id: number, event: 'settled', ok: boolean, code?: string, message?: string, digest?: string, bytes?: number }
  | { event: 'log', line: string }

const port = parentPort!
const post = (m: FromWorker): void => { port.postMessage(m) }
const log = (line: string): void => { post({ event: 'log', line }) }

let listener: BulkListener | null = null
const running = new Map<number, AbortController>()
const sessions = new Map<number, { h: Hash, pos: number }>()

/** A failure with what the main thread needs: its code, and how many verified bytes got through first. */
class TransferError extends Error {
  readonly delivered: number
  readonly code: string
  constructor (cause: unknown, delivered: number, file?: string) {
    const err = translateDiskError(cause, file != null ? dirname(file) : 'bulk transfer')
    super(errorMessage(err))
    this.code = isMeshfarmError(err) ? err.code : 'PROTOCOL'
    this.delivered = delivered
  }
}

async function openForWrite (file: string, truncate: boolean): Promise<FileHandle> {
  return await open(file, constants.O_RDWR | constants.O_CREAT | (truncate ? constants.O_TRUNC : 0), 0o600)
}

/** Receives `length` bytes of records into `fh` at `position`; returns the sha256 of all of them when `digest`. */
async function receive (socket: Socket, key: Buffer, length: number, fh: FileHandle, position: number, opts: { digest?: Hash, job?: FetchJob, id?: number, file: string }): Promise<number> {
  const writer = new FileWriter(fh)
  const job = opts.job
  const session = job?.feed != null ? sessions.get(job.feed) : undefined
  let chunkHash: Hash | null = null
  let chunkLeft = 0
  let chunkIndex = job?.chunks?.first ?? 0
  if (job?.chunks != null) chunkLeft = Math.min(job.chunks.chunkBytes, length)
  let pos = position
  let delivered = 0
  try {
    for await (const piece of openRecords(socket, key, length)) {
      opts.digest?.update(piece)
      if (session != null && session.pos === pos) {
        session.h.update(piece)
        session.pos += piece.byteLength
      }
      const written = writer.write(piece, pos)
      if (job?.chunks != null) {
        // A piece may end one chunk and begin the next.
        let off = 0
        while (off < piece.byteLength) {
          const take = Math.min(chunkLeft, piece.byteLength - off)
          chunkHash ??= job.chunks.expected != null ? createHash('sha256') : null
          chunkHash?.update(piece.subarray(off, off + take))
          off += take
          chunkLeft -= take
          if (chunkLeft === 0) {
            const index = chunkIndex++
            if (chunkHash != null) {
              const want = job.chunks.expected!.subarray((index - job.chunks.first) * 32, (index - job.chunks.first + 1) * 32)
              if (!chunkHash.digest().equals(Buffer.from(want))) throw new MeshfarmError('HASH_MISMATCH', `chunk ${index} does not match the manifest`)
              chunkHash = null
            }
            void written.then(() => { post({ id: opts.id!, event: 'chunk', index }) })
            chunkLeft = Math.min(job.chunks.chunkBytes, position + length - (pos + off))
          }
        }
      }
      pos += piece.byteLength
      delivered += piece.byteLength
      const full = writer.pressure()
      if (full != null) await full
    }
    await writer.flush()
    return delivered
  } catch (err) {
    await writer.flush().catch(() => {})
    throw new TransferError(err, delivered, opts.file)
  }
}

async function fetchJob (id: number, job: FetchJob, signal: AbortSignal): Promise<number> {
  let socket: Socket
  try {
    socket = await connectBulk(job.host, job.port, job.token, signal)
  } catch (err) {
    throw new TransferError(err, 0)
  }
  const fh = await openForWrite(job.file, job.truncate === true)
  try {
    const t0 = performance.now()
    const n = await receive(socket, Buffer.from(job.key), job.length, fh, job.position, { job, id, file: job.file })
    const t1 = performance.now()
    if (job.sync === true) await fh.sync()
    if (process.env.MESHFARM_BULK_TRACE === '1') log(`bulk-trace: fetch ${n} bytes in ${(t1 - t0).toFixed(0)} ms, fsync ${(performance.now() - t1).toFixed(0)} ms`)
    return n
  } finally {
    socket.destroy()
    await fh.close()
  }
}

async function upload (m: Extract<ToWorker, { op: 'upload' }>, signal: AbortSignal): Promise<void> {
  const socket = await connectBulk(m.host, m.port, m.token, signal)
  try {
    await sendRecords(socket, m.source, m.offset, m.length, Buffer.from(m.key))
    // Everything handed to the kernel; the serving side confirms storage on the blob stream.
    await new Promise<void>((resolve, reject) => {
      socket.end(() => { resolve() })
      socket.once('error', reject)
    })
  } finally {
    socket.destroy()
  }
}

function offer (m: Extract<ToWorker, { op: 'offer' }>): boolean {
  if (listener == null) return false
  const key = Buffer.from(m.key)
  const settle = (err: unknown, extra: { digest?: string, bytes?: number } = {}): void => {
    post(err == null
      ? { id: m.id, event: 'settled', ok: true, ...extra }
      : { id: m.id, event: 'settled', ok: false, code: err instanceof TransferError ? err.code : isMeshfarmError(err) ? err.code : 'PROTOCOL', message: errorMessage(err) })
  }
  let result: { digest?: string, bytes?: number } = {}
  const run = m.direction === 'get'
    ? async (socket: Socket) => { await sendRecords(socket, m.file, m.offset, m.length, key) }
    : async (socket: Socket) => {
      // An upload lands in a new temp file, hashed as it arrives and fsynced; the store checks the hash and adopts it.
      const fh = await open(m.file, 'wx', 0o444)
      const digest = createHash('sha256')
      try {
        const bytes = await receive(socket, key, m.length, fh, 0, { digest, file: m.file })
        await fh.sync()
        result = { digest: digest.digest('hex'), bytes }
      } catch (err) {
        await fh.close()
        await rm(m.file, { force: true })
        throw err
      }
      await fh.close()
    }
  return listener.offer({ peer: m.peer, ip: m.ip, hash: m.hash, direction: m.direction, offset: m.offset, length: m.length, work: { run, settle: err => { settle(err, result) } } }, m.token)
}

async function catchup (session: number, file: string, upTo: number): Promise<number> {
  const s = sessions.get(session)
  if (s == null) throw new MeshfarmError('INTERNAL', `no digest session ${session}`)
  if (s.pos >= upTo) return s.pos
  const fh = await open(file, 'r')
  try {
    const buf = Buffer.allocUnsafe(Math.min(4 << 20, upTo - s.pos))
    while (s.pos < upTo) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, upTo - s.pos), s.pos)
      if (bytesRead === 0) throw new MeshfarmError('FILE_MISSING', `${file}: shorter than ${upTo} bytes`)
      s.h.update(buf.subarray(0, bytesRead))
      s.pos += bytesRead
    }
  } finally {
    await fh.close()
  }
  return s.pos
}

async function handle (m: ToWorker): Promise<unknown> {
  switch (m.op) {
    case 'listen':
      listener = await BulkListener.start(m.hosts, m.port, log)
      return listener.port
    case 'offer':
      return offer(m)
    case 'fetch': {
      const ac = new AbortController()
      running.set(m.id, ac)
      try {
        return await fetchJob(m.id, m.job, ac.signal)
      } finally {
        running.delete(m.id)
      }
    }
    case 'upload': {
      const ac = new AbortController()
      running.set(m.id, ac)
      try {
        await upload(m, ac.signal)
        return undefined
      } finally {
        running.delete(m.id)
      }
    }
    case 'abort':
      running.get(m.id)?.abort(new MeshfarmError('TIMEOUT', 'transfer given up'))
      return undefined
    case 'digest.open':
      sessions.set(m.id, { h: createHash('sha256'), pos: 0 })
      return undefined
    case 'digest.catchup':
      return await catchup(m.session, m.file, m.upTo)
    case 'digest.final': {
      const s = sessions.get(m.session)
      sessions.delete(m.session)
      if (s == null) throw new MeshfarmError('INTERNAL', `no digest session ${m.session}`)
      return { hex: s.h.digest('hex'), pos: s.pos }
    }
    case 'peers':
      return listener?.peers() ?? []
    case 'drop':
      listener?.drop(m.peers)
      return undefined
    case 'close':
      for (const ac of running.values()) ac.abort(new MeshfarmError('NO_COORDINATOR', 'closing'))
      await listener?.close()
      listener = null
      return undefined
  }
}

port.on('message', (m: ToWorker) => {
  handle(m).then(value => { post({ id: m.id, ok: true, value }) }, (err: unknown) => {
    const delivered = err instanceof TransferError ? err.delivered : undefined
    const code = err instanceof TransferError ? err.code : isMeshfarmError(err) ? err.code : 'INTERNAL'
    post({ id: m.id, ok: false, code, message: errorMessage(err), ...(delivered != null ? { delivered } : {}) })
  })
})
