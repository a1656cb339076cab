/**
 * Moving bytes over a bulk connection: a file range (or bytes in memory) sealed into records and written to a
 * socket, and records read from a socket and opened into verified plaintext. Reads from the file run in the
 * thread pool while the previous record is sealed; nothing is held beyond two records on the way out.
 */
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import { open } from 'node:fs/promises'
import { MeshfarmError } from '../../util/errors.ts'
import { PREFACE, RECORD_BYTES, RecordOpener, RecordSealer } from './records.ts'

const CONNECT_TIMEOUT_MS = 5000

async function writeParts (socket: Socket, parts: Buffer[]): Promise<void> {
  if (socket.destroyed) throw new MeshfarmError('PROTOCOL', 'bulk connection closed by the other side')
  socket.cork()
  let ok = true
  for (const p of parts) ok = socket.write(p)
  socket.uncork()
  if (!ok) await drained(socket)
}

function drained (socket: Socket): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: unknown): void => {
      socket.off('drain', onDrain)
      socket.off('close', onClose)
      socket.off('error', done)
      err == null ? resolve() : reject(err)
    }
    const onDrain = (): void => { done() }
    const onClose = (): void => { done(new MeshfarmError('PROTOCOL', 'bulk connection closed by the other side')) }
    socket.on('drain', onDrain)
    socket.on('close', onClose)
    socket.on('error', done)
  })
}

/** Sends [offset, offset + length) of a file, or bytes, as records; resolves once the last one is written. */
export async function sendRecords (socket: Socket, source: string | Uint8Array, offset: number, length: number, key: Buffer): Promise<void> {
  const sealer = new RecordSealer(key)
  if (length === 0) {
    await writeParts(socket, sealer.seal(new Uint8Array(0), true))
    return
  }
  if (typeof source !== 'string') {
    for (let pos = 0; pos < length; pos += RECORD_BYTES) {
      const n = Math.min(RECORD_BYTES, length - pos)
      await writeParts(socket, sealer.seal(source.subarray(offset + pos, offset + pos + n), pos + n >= length))
    }
    return
  }
  const fh = await open(source, 'r')
  let next: Promise<number> | null = null
  try {
    const bufs = [Buffer.allocUnsafe(Math.min(RECORD_BYTES, length)), Buffer.allocUnsafe(Math.min(RECORD_BYTES, length))]
    const readAt = async (buf: Buffer, pos: number): Promise<number> => {
      const want = Math.min(RECORD_BYTES, length - pos)
      let got = 0
      while (got < want) {
        const { bytesRead } = await fh.read(buf, got, want - got, offset + pos + got)
        if (bytesRead === 0) throw new MeshfarmError('FILE_MISSING', `${source} is shorter than ${offset + length} bytes`)
        got += bytesRead
      }
      return got
    }
    let pos = 0
    let i = 0
    let reading = readAt(bufs[0], 0)
    next = reading
    while (pos < length) {
      const n = await reading
      next = null
      const end = pos + n
      // The next read goes to the other buffer while this one is sealed (seal copies into the ciphertext).
      if (end < length) next = reading = readAt(bufs[(i + 1) % 2], end)
      await writeParts(socket, sealer.seal(bufs[i % 2].subarray(0, n), end >= length))
      pos = end
      i++
    }
  } finally {
    await next?.catch(() => {})
    await fh.close()
  }
}

/** The verified plaintext of a transfer of `length` bytes, piece by piece, in order. */
export async function * openRecords (socket: Socket, key: Buffer, length: number): AsyncGenerator<Buffer> {
  const opener = new RecordOpener(key, length)
  for await (const chunk of socket) {
    for (const piece of opener.push(chunk as Buffer)) yield piece
    if (opener.done) return
  }
  opener.end()
}

/** Connects to a bulk listener and presents the token; rejects when no connection can be made. */
export async function connectBulk (host: string, port: number, token: Uint8Array, signal?: AbortSignal): Promise<Socket> {
  const socket = connect({ host, port, noDelay: true })
  const timer = setTimeout(() => { socket.destroy(new MeshfarmError('TIMEOUT', `no bulk connection to ${host}:${port} within ${CONNECT_TIMEOUT_MS} ms`)) }, CONNECT_TIMEOUT_MS)
  const onAbort = (): void => { socket.destroy(signal?.reason as Error) }
  signal?.addEventListener('abort', onAbort, { once: true })
  try {
    await once(socket, 'connect')
  } catch (err) {
    socket.destroy()
    throw err
  } finally {
    clearTimeout(timer)
    signal?.removeEventListener('abort', onAbort)
  }
  if (signal != null) {
    signal.addEventListener('abort', onAbort, { once: true })
    socket.once('close', () => { signal.removeEventListener('abort', onAbort) })
  }
  socket.write(Buffer.concat([PREFACE, token]))
  return socket
}
