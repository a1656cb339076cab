/**
 * Watchers of the event stream: `meshfarm watch`, progress bars, the dashboard. Committed events are published
 * here after each batch; a watcher first reads what it missed from the store (after the last sequence number it
 * saw), then follows live. Watchers never slow the mesh down: each has a bounded queue, and one that cannot keep
 * up is dropped (it reconnects and resumes from the store, missing nothing).
 */
import type { MeshEvent } from '../shared/protocol/events.ts'
import type { Store } from './store.ts'

/** Events a watcher may have queued before it is dropped as too slow. */
const MAX_QUEUED = 50_000
const PAGE = 1000

export type Listener = (events: MeshEvent[]) => void

export class EventFeed {
  private readonly listeners = new Set<Listener>()

  subscribe (listener: Listener): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  publish (events: MeshEvent[]): void {
    for (const l of this.listeners) l(events)
  }

  get watchers (): number {
    return this.listeners.size
  }
}

/**
 * Follows the stream from after `after`: calls `deliver` with batches in order, history first, then live
 * events, without gaps or repeats. Resolves when `deliver` returns false (the watcher is done), the watcher is
 * too slow, or `closed` resolves.
 */
export async function follow (feed: EventFeed, store: Store, after: number, filter: (e: MeshEvent) => boolean,
  deliver: (events: MeshEvent[]) => Promise<boolean>, closed: Promise<void>, live = true): Promise<'done' | 'closed' | 'slow'> {
  // Subscribe first, so nothing committed while the history is read is missed; duplicates are dropped by seq.
  let pending: MeshEvent[] = []
  let wake: (() => void) | null = null
  let slow = false
  const unsubscribe = live
    ? feed.subscribe(events => {
      pending.push(...events)
      if (pending.length > MAX_QUEUED) slow = true
      wake?.()
    })
    : () => {}
  let isClosed = false
  void closed.then(() => { isClosed = true; wake?.() })
  let last = after
  try {
    while (true) {
      const page = store.eventsAfter(last, PAGE).filter(e => e.seq > last)
      if (page.length === 0) break
      last = page[page.length - 1].seq
      const wanted = page.filter(filter)
      if (wanted.length > 0 && !(await deliver(wanted))) return 'done'
      if (isClosed) return 'closed'
    }
    if (!live) return 'done'
    while (!isClosed) {
      if (slow) return 'slow'
      const batch = pending.filter(e => e.seq > last)
      pending = []
      if (batch.length > 0) {
        last = batch[batch.length - 1].seq
        const wanted = batch.filter(filter)
        if (wanted.length > 0 && !(await deliver(wanted))) return 'done'
        continue
      }
      await new Promise<void>(resolve => { wake = resolve })
      wake = null
    }
    return 'closed'
  } finally {
    unsubscribe()
  }
}
