/**
 * Earlier attempts of tasks, from the event stream (pure): a task's record describes only its last attempt, but
 * the events say where each earlier one ran and when it ended. A `task.started` followed by a `task.requeued`
 * (a retry after a failure, or a lost agent) or a `task.vacated` (an owner came back, a batch system took it
 * back) before the task's next start is an attempt that did not count; the timeline draws it beside the record's.
 * An attempt that ended before its agent said it had started (a short one) has no `task.started`; a requeue
 * event that names its `host` and the attempt's `data.startedAt` still gives its bar.
 */
import type { MeshEvent } from '../protocol/events.ts'
import type { TimelineBar } from './timeline-svg.ts'

interface Open { host: string, start: number }

/** What kind of return to the queue an event says: a retry is a failure of the task, anything else lost work. */
function outcomeOfRequeue (e: MeshEvent): TimelineBar['outcome'] {
  return e.type === 'task.requeued' && e.data?.kind === 'retry' ? 'failed' : 'lost'
}

/**
 * Bars for one job's attempts that ended in a return to the queue, oldest first. `events` are the job's events
 * in seq order (others are ignored); `names` gives task names where known.
 */
export function earlierAttemptBars (events: Iterable<MeshEvent>, names: (index: number) => string = i => `task ${i}`): TimelineBar[] {
  const open = new Map<number, Open>()
  const bars: Array<TimelineBar | null> = []
  /** Where each task's last earlier bar is, so that a reclaim can take it back. */
  const lastBar = new Map<number, number>()
  for (const e of events) {
    if (e.index == null) continue
    const i = e.index
    switch (e.type) {
      case 'task.started': {
        const prev = lastBar.get(i)
        const taken = prev != null ? bars[prev] : null
        lastBar.delete(i)
        if (e.data?.reclaimed === true && taken != null && taken.host === e.host) {
          // An agent thought lost came back still running the task: that attempt never ended, so it is not an
          // earlier one; it goes on from its first start.
          bars[prev!] = null
          open.set(i, { host: taken.host, start: taken.start })
        } else if (e.host != null) {
          open.set(i, { host: e.host, start: e.time })
        }
        break
      }
      case 'task.requeued':
      case 'task.vacated': {
        const startedAt = e.data?.startedAt
        const o = open.get(i) ?? (e.host != null && typeof startedAt === 'number' ? { host: e.host, start: startedAt } : undefined)
        if (o == null) break
        open.delete(i)
        lastBar.set(i, bars.length)
        bars.push({ host: o.host, index: i, name: names(i), start: o.start, end: Math.max(o.start, e.time), outcome: outcomeOfRequeue(e), earlier: true })
        break
      }
      case 'task.finished':
      case 'task.failed':
      case 'task.cancelled':
        open.delete(i)
        lastBar.delete(i)
        break
      default:
        break
    }
  }
  return bars.filter((b): b is TimelineBar => b != null)
}
