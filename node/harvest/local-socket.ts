/**
 * A tiny request/reply protocol over a Unix socket on this machine, for `meshfarm lend|reclaim|status --here`
 * and the per-user presence helper. One request per connection: a 4-byte big-endian length, then that many
 * bytes of UTF-8 JSON; one reply framed the same way; then the server closes. The length is checked before the
 * body is buffered, every connection has a deadline, and the number of open connections is bounded, so a hostile
 * local client can make the agent hold at most MAX_CONNECTIONS small buffers for a couple of seconds.
 */
import net from 'node:net'
import { MeshfarmError } from '../../shared/util/errors.ts'

export const MAX_LOCAL_FRAME = 16 * 1024
export const LOCAL_DEADLINE_MS = 2000
const MAX_CONNECTIONS = 16

export function encodeLocalFrame (value: unknown): Buffer {
  const body = Buffer.from(JSON.stringify(value), 'utf8')
  if (body.byteLength > MAX_LOCAL_FRAME) throw new MeshfarmError('PROTOCOL', `local socket: message of ${body.byteLength} bytes is over the ${MAX_LOCAL_FRAME}-byte limit`)
  const head = Buffer.alloc(4)
  head.writeUInt32BE(body.byteLength)
  return Buffer.concat([head, body])
}

export type FrameResult = { kind: 'need-more' } | { kind: 'frame', value: unknown } | { kind: 'error', message: string }

/** Decodes one frame from what has arrived so far. Pure: the size is judged from the header alone. */
export function decodeLocalFrame (buf: Buffer): FrameResult {
  if (buf.byteLength < 4) return { kind: 'need-more' }
  const len = buf.readUInt32BE(0)
  if (len > MAX_LOCAL_FRAME) return { kind: 'error', message: `frame of ${len} bytes is over the ${MAX_LOCAL_FRAME}-byte limit` }
  if (buf.byteLength < 4 + len) return { kind: 'need-more' }
  if (buf.byteLength > 4 + len) return { kind: 'error', message: 'bytes after the request' }
  try {
    return { kind: 'frame', value: JSON.parse(buf.subarray(4, 4 + len).toString('utf8')) }
  } catch {
    return { kind: 'error', message: 'not JSON' }
  }
}

export type LocalHandler = (request: unknown) => Promise<unknown> | unknown

export interface LocalServer {
  path: string
  close: () => Promise<void>
}

/** Serves `handler` on a Unix socket. The handler's reply is sent as is; what it throws becomes { ok: false }. */
export async function serveLocal (path: string, handler: LocalHandler, log: (line: string) => void = () => {}): Promise<LocalServer> {
  let open = 0
  const server = net.createServer(sock => {
    if (open >= MAX_CONNECTIONS) { sock.destroy(); return }
    open++
    let buf = Buffer.alloc(0)
    let done = false
    const finish = (reply: unknown): void => {
      if (done) return
      done = true
      sock.removeAllListeners('data')
      try { sock.end(encodeLocalFrame(reply)) } catch { sock.destroy() }
    }
    sock.setTimeout(LOCAL_DEADLINE_MS, () => { finish({ ok: false, code: 'TIMEOUT', message: 'request not received in time' }); sock.destroy() })
    sock.on('error', () => {})
    sock.on('close', () => { open-- })
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk])
      const r = decodeLocalFrame(buf)
      if (r.kind === 'need-more') return
      if (r.kind === 'error') { log(`local socket: refused a request: ${r.message}`); finish({ ok: false, code: 'PROTOCOL', message: r.message }); return }
      done = true
      sock.removeAllListeners('data')
      Promise.resolve().then(() => handler(r.value)).then(
        reply => { try { sock.end(encodeLocalFrame(reply)) } catch { sock.destroy() } },
        (err: unknown) => {
          const e = err as MeshfarmError
          try { sock.end(encodeLocalFrame({ ok: false, code: typeof e.code === 'string' ? e.code : 'REMOTE', message: String(e.message ?? err).split('\n')[0] })) } catch { sock.destroy() }
        })
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(path, () => { server.off('error', reject); resolve() })
  })
  return { path, close: () => new Promise<void>(resolve => server.close(() => resolve())) }
}

/** Sends one request and returns the reply; every failure is one MeshfarmError line naming the socket. */
export async function requestLocal (path: string, request: unknown, timeoutMs = LOCAL_DEADLINE_MS): Promise<unknown> {
  const frame = encodeLocalFrame(request)
  return await new Promise((resolve, reject) => {
    const sock = net.connect(path)
    let buf = Buffer.alloc(0)
    const fail = (err: MeshfarmError): void => { sock.destroy(); reject(err) }
    const timer = setTimeout(() => fail(new MeshfarmError('TIMEOUT', `${path}: no answer in ${timeoutMs} ms`)), timeoutMs)
    sock.on('connect', () => sock.write(frame))
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk])
      const r = decodeLocalFrame(buf)
      if (r.kind === 'need-more') return
      clearTimeout(timer)
      if (r.kind === 'error') fail(new MeshfarmError('PROTOCOL', `${path}: bad reply: ${r.message}`))
      else { sock.destroy(); resolve(r.value) }
    })
    sock.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer)
      const why = err.code === 'ENOENT' || err.code === 'ECONNREFUSED' ? 'no agent is listening (is meshfarm agent --harvest running?)' : err.code === 'EACCES' ? 'permission denied' : err.message
      fail(new MeshfarmError('NOT_FOUND', `${path}: ${why}`))
    })
    sock.on('end', () => { if (buf.byteLength === 0) { clearTimeout(timer); fail(new MeshfarmError('PROTOCOL', `${path}: closed without an answer`)) } })
  })
}
