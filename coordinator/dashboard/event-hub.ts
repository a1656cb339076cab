/**
 * Fans the mesh's events out to the pages' server-sent-event streams. One subscription to the source, a
 * bounded queue per page: a page that does not read fast enough is dropped (it reconnects and resumes), and
 * no page can slow the source or another page. The source's calls are synchronous, so a stream that
 * resumes reads its backlog and joins the live feed in one step: nothing missed, nothing twice.
 */
import type { MeshEvent } from '../../shared/protocol/events.ts'
import type { DashboardSource } from './source.ts'

/** Where a stream sends its frames: `write` resolves once the frame is taken (backpressure). */
export interface FrameSink {
  write (frame: string): Promise<unknown>
  /** Ends the stream at once (a slow or closed page). */
  kill (): void
}

export interface HubOptions {
  /** A comment frame this often keeps proxies and the page's liveness check happy (default 15 s). */
  heartbeatMs?: number
  /**
   * Bytes queued per stream before it is dropped as too slow (default 2 MiB): room for a burst of events
   * from one commit, not for a page that stopped reading.
   */
  maxQueuedBytes?: number
  /** Events replayed on resume at most; a longer gap sends `reset` (the page reloads its snapshot). */
  maxBacklog?: number
  /** How long a page waits before reconnecting, sent to EventSource (default 2 s). */
  retryMs?: number
  log?: (line: string) => void
}

export interface StreamHandle {
  /** Resolves when the stream ends, by the page, by a drop or by `closeAll`. */
  done: Promise<void>
  close (): void
}

interface Client {
  id: number
  sink: FrameSink
  queue: string[]
  queuedBytes: number
  lastSent: number
  writing: boolean
  closed: boolean
  finish: () => void
}

export function eventFrame (e: MeshEvent): string {
  return `id: ${e.seq}\ndata: ${JSON.stringify(e)}\n\n`
}

export class EventHub {
  private readonly clients = new Map<number, Client>()
  private readonly unsubscribe: () => void
  private readonly timer: NodeJS.Timeout
  private nextId = 1
  private latest: number
  private readonly heartbeatMs: number
  private readonly maxQueuedBytes: number
  private readonly maxBacklog: number
  private readonly retryMs: number
  private readonly log: (line: string) => void

  private readonly source: DashboardSource

  constructor (source: DashboardSource, opts: HubOptions = {}) {
    this.source = source
    this.heartbeatMs = opts.heartbeatMs ?? 15_000
    this.maxQueuedBytes = opts.maxQueuedBytes ?? 2 * 1024 * 1024
    this.maxBacklog = opts.maxBacklog ?? 10_000
    this.retryMs = opts.retryMs ?? 2000
    this.log = opts.log ?? (() => {})
    this.latest = source.lastSeq?.() ?? findLastSeq(source)
    this.unsubscribe = source.subscribe(e => {
      // Called inside the coordinator's commit path: never throw, never wait.
      try { this.publish(e) } catch (err) { this.log(`dashboard: event ${e.seq} not sent: ${String(err)}`) }
    })
    this.timer = setInterval(() => { for (const c of this.clients.values()) this.enqueue(c, ': heartbeat\n\n') }, this.heartbeatMs)
    this.timer.unref()
  }

  get lastSeq (): number {
    return this.latest
  }

  get streams (): number {
    return this.clients.size
  }

  /**
   * A new stream: `hello` with the current seq (the page then loads its snapshot), or, given the last event
   * id the page saw, every event after it first.
   */
  open (sink: FrameSink, lastEventId: number | null): StreamHandle {
    let finish!: () => void
    const done = new Promise<void>(resolve => { finish = resolve })
    const c: Client = { id: this.nextId++, sink, queue: [], queuedBytes: 0, lastSent: this.latest, writing: false, closed: false, finish }
    // A resumed stream's hello keeps the page's last id, so a drop before the backlog arrives loses nothing.
    const hello = (id: number, resumed: boolean): string => `retry: ${this.retryMs}\nevent: hello\nid: ${id}\ndata: ${JSON.stringify({ seq: id, resumed })}\n\n`
    if (lastEventId == null || lastEventId > this.latest) {
      this.enqueue(c, hello(this.latest, false))
    } else {
      const backlog = this.source.eventsSince(lastEventId, this.maxBacklog + 1).filter(e => e.seq > lastEventId)
      const frames = backlog.map(eventFrame)
      const bytes = frames.reduce((n, f) => n + f.length, 0)
      // A gap too long to replay (or to fit the queue) is a reset: the page reloads its snapshot instead.
      if (backlog.length > this.maxBacklog || bytes > this.maxQueuedBytes / 2) {
        this.log(`dashboard: a stream resuming after ${lastEventId} is ${backlog.length}${backlog.length > this.maxBacklog ? '+' : ''} events behind: reset`)
        this.enqueue(c, `retry: ${this.retryMs}\nevent: reset\nid: ${this.latest}\ndata: ${JSON.stringify({ seq: this.latest })}\n\n`)
      } else {
        this.log(`dashboard: a stream resumes after ${lastEventId} (${backlog.length} events)`)
        this.enqueue(c, hello(lastEventId, true))
        frames.forEach(f => this.enqueue(c, f))
        c.lastSent = Math.max(lastEventId, backlog.at(-1)?.seq ?? 0, this.latest)
      }
    }
    this.clients.set(c.id, c)
    return { done, close: () => this.drop(c, null) }
  }

  /** Ends every stream (shutdown; tests of reconnection). */
  closeAll (): void {
    for (const c of [...this.clients.values()]) this.drop(c, null)
  }

  stop (): void {
    clearInterval(this.timer)
    this.unsubscribe()
    this.closeAll()
  }

  private publish (e: MeshEvent): void {
    if (e.seq > this.latest) this.latest = e.seq
    for (const c of this.clients.values()) this.send(c, e)
  }

  private send (c: Client, e: MeshEvent): void {
    if (e.seq <= c.lastSent) return
    c.lastSent = e.seq
    this.enqueue(c, eventFrame(e))
  }

  private enqueue (c: Client, frame: string): void {
    if (c.closed) return
    if (c.queuedBytes + frame.length > this.maxQueuedBytes) {
      this.drop(c, `dashboard: dropped a slow event stream (${c.queue.length} frames, ${c.queuedBytes} bytes behind)`)
      return
    }
    c.queue.push(frame)
    c.queuedBytes += frame.length
    if (!c.writing) void this.flush(c)
  }

  private async flush (c: Client): Promise<void> {
    c.writing = true
    try {
      while (c.queue.length > 0 && !c.closed) {
        // Frames written together go out as one chunk.
        const batch = c.queue.splice(0, 256).join('')
        c.queuedBytes -= batch.length
        await c.sink.write(batch)
      }
    } catch {
      this.drop(c, null)
    } finally {
      c.writing = false
    }
  }

  private drop (c: Client, why: string | null): void {
    if (c.closed) return
    c.closed = true
    c.queue.length = 0
    c.queuedBytes = 0
    this.clients.delete(c.id)
    if (why != null) this.log(why)
    try { c.sink.kill() } catch {}
    c.finish()
  }
}

/** The newest seq of a source that cannot say it: pages through its events once. */
export function findLastSeq (source: DashboardSource): number {
  let seq = 0
  while (true) {
    const page = source.eventsSince(seq, 5000)
    if (page.length === 0) return seq
    seq = page[page.length - 1].seq
    if (page.length < 5000) return seq
  }
}
