/** Raw HTTP against the dashboard for tests: every header as given (Host included), nothing added by a browser. */
import { request } from 'node:http'
import type { Dashboard } from '../../coordinator/dashboard/server.ts'
import type { DashboardUser } from '../../coordinator/dashboard/source.ts'
import type { MemoryMesh } from './memory-mesh.ts'

export interface Reply {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

export interface RawOptions {
  method?: string
  headers?: Record<string, string>
  body?: string | Buffer
  /** Send no Host header at all. */
  noHost?: boolean
  /** Send the body in chunks without a Content-Length. */
  chunked?: boolean
}

export async function raw (d: Dashboard, path: string, o: RawOptions = {}): Promise<Reply> {
  return await new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1',
      port: d.port,
      path,
      method: o.method ?? 'GET',
      setHost: o.noHost !== true,
      // A connection per request: a kept-alive socket the server is closing (after refusing a body it did not
      // read) would otherwise be reused and reset under the next request, a race of the client's pool.
      agent: false,
      headers: { host: `127.0.0.1:${d.port}`, ...o.headers }
    }, res => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
      res.on('error', reject)
    })
    if (o.noHost === true) req.removeHeader('host')
    req.on('error', err => { reject(new Error(`${o.method ?? 'GET'} ${path}${o.chunked === true ? ' (chunked)' : ''}: ${err.message}`)) })
    if (o.body != null && o.chunked === true) {
      const b = Buffer.from(o.body)
      for (let i = 0; i < b.length; i += 65536) req.write(b.subarray(i, i + 65536))
      req.end()
    } else {
      req.end(o.body)
    }
  })
}

export function originOf (d: Dashboard): string {
  return `http://127.0.0.1:${d.port}`
}

/** Logs in through the form as a browser would (Origin and fetch metadata included); returns the Cookie header. */
export async function login (d: Dashboard, mesh: MemoryMesh, user: DashboardUser): Promise<string> {
  const code = mesh.login(user)
  const r = await raw(d, '/login', {
    method: 'POST',
    headers: { origin: originOf(d), 'sec-fetch-site': 'same-origin', 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ code }).toString()
  })
  if (r.status !== 303) throw new Error(`login: ${r.status} ${r.body}`)
  const set = r.headers['set-cookie']?.[0]
  if (set == null) throw new Error('login: no cookie')
  return set.split(';')[0]
}

/** An event stream read frame by frame: `next()` waits for the next frame (event, hello, reset or comment). */
export class SseReader {
  private buf = ''
  private readonly frames: string[] = []
  private waiters: Array<() => void> = []
  readonly ac = new AbortController()
  status = 0
  ended = false

  static async open (d: Dashboard, cookie: string, lastEventId?: number): Promise<SseReader> {
    const r = new SseReader()
    const res = await fetch(`${originOf(d)}/api/events`, {
      headers: { cookie, ...(lastEventId != null ? { 'last-event-id': String(lastEventId) } : {}) },
      signal: r.ac.signal
    })
    r.status = res.status
    if (res.body == null || res.status !== 200) { r.ended = true; return r }
    void (async () => {
      const dec = new TextDecoder()
      try {
        for await (const chunk of res.body!) {
          r.buf += dec.decode(chunk as Uint8Array, { stream: true })
          let i
          while ((i = r.buf.indexOf('\n\n')) >= 0) {
            r.frames.push(r.buf.slice(0, i))
            r.buf = r.buf.slice(i + 2)
          }
          r.wake()
        }
      } catch {}
      r.ended = true
      r.wake()
    })()
    return r
  }

  private wake (): void {
    const w = this.waiters
    this.waiters = []
    for (const f of w) f()
  }

  async next (): Promise<string | null> {
    while (this.frames.length === 0) {
      if (this.ended) return null
      await new Promise<void>(resolve => this.waiters.push(resolve))
    }
    return this.frames.shift()!
  }

  /** Frames until one matches; the ones before it are returned too. */
  async until (match: (frame: string) => boolean): Promise<string[]> {
    const seen: string[] = []
    while (true) {
      const f = await this.next()
      if (f == null) throw new Error(`event stream ended before a matching frame; got ${seen.length} frames`)
      seen.push(f)
      if (match(f)) return seen
    }
  }

  close (): void {
    this.ac.abort()
  }
}

export const seqOf = (frame: string): number | null => {
  const m = /^id: (\d+)$/m.exec(frame)
  return m != null && /^data: \{"seq"/m.test(frame) && !/^event: /m.test(frame) ? Number(m[1]) : null
}
