/**
 * The main thread's handle on the bulk worker (worker.ts): one per process, started on first use. Every call is a
 * message with an id and a reply; a fetch also reports each chunk as it is written, an offer reports when its
 * transfer is over. Keys and tokens are drawn here, where the blob stream that carries them runs.
 */
import { randomBytes } from 'node:crypto'
import { Worker } from 'node:worker_threads'
import { MeshfarmError, type ErrorCode } from '../../util/errors.ts'
import { KEY_BYTES, TOKEN_BYTES, bulkKey, type BulkDirection } from './records.ts'
import type { FetchJob, FromWorker, ToWorker } from './worker.ts'

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never
type Pending = { resolve: (v: any) => void, reject: (e: unknown) => void, onChunk?: (index: number) => void, onSettled?: (m: Extract<FromWorker, { event: 'settled' }>) => void }

/** A failed bulk transfer, with how many verified bytes got through first (none: the caller may fall back). */
export class BulkError extends MeshfarmError {
  readonly delivered: number
  constructor (code: ErrorCode, message: string, delivered: number) {
    super(code, message)
    this.delivered = delivered
  }
}

export interface BulkOffer {
  port: number
  token: Uint8Array
  key: Uint8Array
  /** Settles when the transfer is over: a put's digest and size; TIMEOUT when nobody came for the ticket. */
  done: Promise<{ digest?: string, bytes?: number }>
}

/** Calls waiting on the worker; `onBusy` hears when the first starts and the last ends. */
class PendingCalls extends Map<number, Pending> {
  private readonly onBusy: (busy: boolean) => void
  constructor (onBusy: (busy: boolean) => void) {
    super()
    this.onBusy = onBusy
  }

  override set (id: number, p: Pending): this {
    const was = this.size
    super.set(id, p)
    if (was === 0) this.onBusy(true)
    return this
  }

  override delete (id: number): boolean {
    const had = super.delete(id)
    if (had && this.size === 0) this.onBusy(false)
    return had
  }

  override clear (): void {
    super.clear()
    this.onBusy(false)
  }
}

export class BulkEngine {
  private readonly worker: Worker
  private readonly pending = new PendingCalls(busy => { busy ? this.worker.ref() : this.worker.unref() })
  private nextId = 1
  private logLine: (line: string) => void = () => {}
  private listenPort: number | null = null

  constructor () {
    this.worker = new Worker(new URL('./worker.ts', import.meta.url))
    this.worker.on('message', (m: FromWorker) => { this.onMessage(m) })
    this.worker.on('error', err => {
      for (const p of this.pending.values()) {
        p.onSettled?.({ id: 0, event: 'settled', ok: false, code: 'INTERNAL', message: `bulk worker failed: ${err.message}` })
        p.reject(new MeshfarmError('INTERNAL', `bulk worker failed: ${err.message}`))
      }
      this.pending.clear()
    })
    // Referenced only while a call is waiting on it: an idle worker never keeps a CLI process alive.
    this.worker.unref()
  }

  /** Where the worker's refusals are said (the coordinator's or agent's log). */
  setLog (log: (line: string) => void): void {
    this.logLine = log
  }

  /** The port it listens on, once listen() succeeded. */
  get port (): number | null {
    return this.listenPort
  }

  async listen (hosts: string[], port = 0): Promise<number> {
    this.listenPort = await this.call<number>({ op: 'listen', hosts, port })
    return this.listenPort
  }

  /**
   * A one-time transfer for `peer` (connected from `ip`): the worker holds the ticket before this resolves, so the
   * token may be sent at once. `file`: what a get sends, where a put lands. Null when the worker has no room.
   */
  async offer (spec: { peer: string, ip: string, hash: string, direction: BulkDirection, offset: number, length: number, file: string }): Promise<BulkOffer | null> {
    if (this.listenPort == null) return null
    const token = randomBytes(TOKEN_BYTES)
    const oneTimeKey = randomBytes(KEY_BYTES)
    const key = bulkKey(oneTimeKey, spec.hash, spec.direction, spec.offset, spec.length)
    const id = this.nextId++
    let settle!: (m: Extract<FromWorker, { event: 'settled' }>) => void
    const done = new Promise<{ digest?: string, bytes?: number }>((resolve, reject) => {
      settle = m => { m.ok ? resolve({ digest: m.digest, bytes: m.bytes }) : reject(new MeshfarmError((m.code ?? 'PROTOCOL') as ErrorCode, m.message ?? 'bulk transfer failed')) }
    })
    done.catch(() => {}) // a get's caller does not wait for it
    const accepted = await new Promise<boolean>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onSettled: m => { this.pending.delete(id); settle(m) } })
      this.worker.postMessage({ op: 'offer', id, token: token.toString('hex'), key, ...spec } satisfies ToWorker)
    })
    if (!accepted) {
      this.pending.delete(id)
      return null
    }
    return { port: this.listenPort, token, key: oneTimeKey, done }
  }

  /** Receives a transfer into a file; resolves with the bytes received. Rejects with a BulkError. */
  async fetch (job: FetchJob, opts: { onChunk?: (index: number) => void, signal?: AbortSignal } = {}): Promise<number> {
    const id = this.nextId++
    const onAbort = (): void => { this.worker.postMessage({ op: 'abort', id } satisfies ToWorker) }
    opts.signal?.addEventListener('abort', onAbort, { once: true })
    try {
      return await this.send<number>({ op: 'fetch', id, job }, opts.onChunk)
    } finally {
      opts.signal?.removeEventListener('abort', onAbort)
    }
  }

  async upload (spec: { host: string, port: number, token: Uint8Array, key: Uint8Array, source: string | Uint8Array, offset: number, length: number }, signal?: AbortSignal): Promise<void> {
    const id = this.nextId++
    const onAbort = (): void => { this.worker.postMessage({ op: 'abort', id } satisfies ToWorker) }
    signal?.addEventListener('abort', onAbort, { once: true })
    try {
      await this.send({ op: 'upload', id, ...spec })
    } finally {
      signal?.removeEventListener('abort', onAbort)
    }
  }

  /** A running sha256 over a file written out of order: fed by fetches at its position, caught up by reading back. */
  async digestOpen (): Promise<number> {
    const id = this.nextId++
    await this.send({ op: 'digest.open', id })
    return id
  }

  async digestCatchup (session: number, file: string, upTo: number): Promise<number> {
    return await this.call<number>({ op: 'digest.catchup', session, file, upTo })
  }

  async digestFinal (session: number): Promise<{ hex: string, pos: number }> {
    return await this.call({ op: 'digest.final', session })
  }

  /** Peers with tickets or transfers; drop() ends those of peers that lost their place. */
  async peers (): Promise<string[]> {
    return await this.call<string[]>({ op: 'peers' })
  }

  async drop (peers: string[]): Promise<void> {
    if (peers.length > 0) await this.call({ op: 'drop', peers })
  }

  /** Stops listening and ends transfers under way; the worker stays for a later listen (tests start several). */
  async close (): Promise<void> {
    this.listenPort = null
    await this.call({ op: 'close' })
  }

  private async call<T> (m: DistributiveOmit<ToWorker, 'id'>): Promise<T> {
    return await this.send<T>({ ...m, id: this.nextId++ } as ToWorker)
  }

  private async send<T> (m: ToWorker, onChunk?: (index: number) => void): Promise<T> {
    return await new Promise<T>((resolve, reject) => {
      this.pending.set(m.id, { resolve, reject, onChunk })
      this.worker.postMessage(m)
    })
  }

  private onMessage (m: FromWorker): void {
    if ('event' in m && m.event === 'log') {
      this.logLine(m.line)
      return
    }
    const p = this.pending.get(m.id)
    if (p == null) return
    if ('event' in m) {
      if (m.event === 'chunk') p.onChunk?.(m.index)
      else p.onSettled?.(m)
      return
    }
    if (m.ok) {
      // An offer stays pending until its transfer is over.
      if (p.onSettled == null || m.value !== true) this.pending.delete(m.id)
      p.resolve(m.value)
    } else {
      this.pending.delete(m.id)
      p.reject(new BulkError(m.code as ErrorCode, m.message, m.delivered ?? 0))
    }
  }
}

let shared: BulkEngine | null = null

/** This process's bulk engine. */
export function bulkEngine (): BulkEngine {
  shared ??= new BulkEngine()
  return shared
}
