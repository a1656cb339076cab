/**
 * Following chunks: one `squeue --me` per round for everything (pollQueue), then per chunk a pure reading of that
 * answer and of the status files the wrappers wrote (chunkOutcomes).
 */
import type { BatchSystem, QueueEntry, SlurmError } from './batch-system.ts'
import { taskOutcome, type TaskOutcome } from './outcome.ts'
import type { WrapperStatus } from './script.ts'

/** Never poll Slurm more often than this, whatever is asked: a login node is shared. */
export const MIN_POLL_MS = 1000
export const DEFAULT_POLL_MS = 5000

export interface ElementView { index: number, jobId: string, slurmState: string | null, reason: string, outcome: TaskOutcome | null }

/**
 * Each index 0..size-1 of array `arrayJobId`: Slurm's state from this round's queue (null once Slurm has forgotten
 * the element) and its outcome once over. `squeue -r -t all` lists every element of an array it still knows,
 * pending ones one by one, or the rest not yet split off under the array's own id; an element missing from both
 * has been forgotten.
 */
export function chunkOutcomes (arrayJobId: string, size: number, queue: ReadonlyMap<string, QueueEntry>, statuses: ReadonlyMap<number, WrapperStatus>): ElementView[] {
  const out: ElementView[] = []
  for (let index = 0; index < size; index++) {
    const jobId = `${arrayJobId}_${index}`
    // Elements not split off yet are listed under the array's plain id (the pending rest; once cancelled, the
    // rest shows as `123 CANCELLED` without its indexes); a one-element array may be listed so once it runs.
    const plain = queue.get(arrayJobId)
    const q = queue.get(jobId) ?? (plain != null && plain.arrayIndex == null ? plain : undefined)
    const slurmState = q?.state ?? null
    const reason = q?.reason ?? ''
    out.push({ index, jobId, slurmState, reason, outcome: taskOutcome({ jobId, slurmState, reason, status: statuses.get(index) ?? null }) })
  }
  return out
}

export interface Poller { stop: () => Promise<void> }

/**
 * Calls `onQueue` with one squeue answer per round, `intervalMs` apart (at least MIN_POLL_MS), rounds never
 * overlapping; a failed squeue goes to `onError` and the next round comes as usual.
 */
export function pollQueue (batch: BatchSystem, o: { intervalMs?: number, onQueue: (q: Map<string, QueueEntry>) => void | Promise<void>, onError: (e: SlurmError) => void }): Poller {
  const interval = Math.max(MIN_POLL_MS, o.intervalMs ?? DEFAULT_POLL_MS)
  let stopped = false
  let timer: NodeJS.Timeout | undefined
  let wake: (() => void) | undefined
  const loop = (async () => {
    while (!stopped) {
      const q = await batch.queue()
      if (stopped) break
      if (q.ok) await o.onQueue(q.value)
      else o.onError(q.error)
      await new Promise<void>(resolve => { wake = resolve; timer = setTimeout(resolve, interval) })
    }
  })()
  return {
    async stop () {
      stopped = true
      clearTimeout(timer)
      wake?.()
      await loop
    }
  }
}
