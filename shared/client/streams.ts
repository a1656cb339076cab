/**
 * Long-lived requests of the client: following the event stream and a task's log. Both survive a coordinator
 * restart: they reconnect and resume where they were (the last event's sequence number, the log's offset).
 */
import type { MeshEvent } from '../protocol/events.ts'
import { openClientChannel, raiseIfError } from '../net/rpc.ts'
import { isMeshfarmError } from '../util/errors.ts'
import type { MeshClient } from './client.ts'

/** How long the coordinator may be away before a follower gives up. */
const MAX_AWAY_MS = 120_000

/** Retries `attempt` while the coordinator is unreachable; `attempt` returns true when it has finished. */
async function reconnecting (signal: AbortSignal | undefined, attempt: () => Promise<boolean>): Promise<void> {
  const aborted = (): boolean => signal?.aborted === true
  let awaySince: number | null = null
  while (!aborted()) {
    try {
      if (await attempt()) return
      awaySince = null
    } catch (err) {
      // What the coordinator answered (not found, forbidden) is final; a broken stream is not.
      if (isMeshfarmError(err) && err.code !== 'PROTOCOL' && err.code !== 'TIMEOUT' && err.code !== 'NO_COORDINATOR') throw err
      awaySince ??= Date.now()
      if (Date.now() - awaySince > MAX_AWAY_MS) throw err
    }
    if (aborted()) return
    await new Promise(resolve => setTimeout(resolve, 500))
  }
}

export async function followEvents (client: MeshClient, opts: { after?: number, jobId?: number, follow?: boolean, signal?: AbortSignal },
  onEvents: (events: MeshEvent[]) => void | Promise<void>): Promise<number> {
  let last = opts.after ?? 0
  const follow = opts.follow === true
  await reconnecting(opts.signal, async () => {
    const ch = await openClientChannel(client.node, client.coordinator)
    // Reset, not close: a graceful close would wait for the coordinator, which follows until we are gone.
    const onAbort = (): void => { ch.abort(new Error('no longer watching')) }
    opts.signal?.addEventListener('abort', onAbort, { once: true })
    try {
      await ch.write({ t: 'client.events', after: last, jobId: opts.jobId, follow })
      while (true) {
        const reply = await ch.read()
        if (reply == null) return !follow || opts.signal?.aborted === true
        raiseIfError(reply)
        if (reply.t !== 'reply.events') continue
        if (reply.from != null && reply.from < last) last = reply.from
        if (reply.events.length === 0) {
          if (!follow && reply.from == null) return true
          continue
        }
        const fresh = reply.events.filter(e => e.seq > last)
        if (fresh.length === 0) continue
        last = fresh[fresh.length - 1].seq
        await onEvents(fresh)
      }
    } finally {
      opts.signal?.removeEventListener('abort', onAbort)
      if (opts.signal?.aborted === true) ch.abort(new Error('no longer watching'))
      else await ch.close()
    }
  })
  return last
}

export async function followLogs (client: MeshClient, jobId: number, index: number, opts: { stream?: 'stdout' | 'stderr', offset?: number, follow?: boolean },
  onData: (data: Uint8Array) => void): Promise<number> {
  let offset = opts.offset ?? 0
  await reconnecting(undefined, async () => {
    const ch = await openClientChannel(client.node, client.coordinator)
    try {
      await ch.write({ t: 'client.logs', jobId, index, stream: opts.stream ?? 'stdout', offset, follow: opts.follow === true })
      while (true) {
        const reply = await ch.read()
        if (reply == null) return false
        raiseIfError(reply)
        if (reply.t !== 'reply.logs') continue
        // A piece may overlap what we have after a reconnect: keep only what is new.
        const skip = Math.max(0, offset - reply.offset)
        if (skip < reply.data.byteLength) {
          onData(reply.data.subarray(skip))
          offset = reply.offset + reply.data.byteLength
        }
        if (reply.eof) return true
      }
    } finally {
      await ch.close()
    }
  })
  return offset
}
