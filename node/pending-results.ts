/**
 * What the agent still owes the coordinator: results and vacate notices, each waiting, being sent, or sent and
 * not yet acknowledged. One delivery of results is under way at a time; a token tells a late answer from a
 * delivery of an earlier session. Pure bookkeeping for the reactor (the outbox files are comm's).
 */
import type { AttemptResult } from '../shared/protocol/messages.ts'
import { entryId, pickDeliveries, type OutboxEntry, type ResultEntry } from './results.ts'

interface Pending {
  entry: OutboxEntry
  phase: 'waiting' | 'sending' | 'sent'
}

export interface Deliveries {
  vacated: Array<{ attemptIds: number[], kind: 'vacate' | 'preempt', reason: string }>
  /** Results to send now, with the token their answer must carry; empty when none or one is under way. */
  batch: ResultEntry[]
  token: number
}

export class PendingResults {
  private readonly pending = new Map<number, Pending>()
  private token = 0
  private delivering = false

  get size (): number { return this.pending.size }
  ids (): number[] { return [...this.pending.keys()] }
  has (id: number): boolean { return this.pending.has(id) }
  entry (id: number): OutboxEntry | undefined { return this.pending.get(id)?.entry }

  add (entry: OutboxEntry): void {
    this.pending.set(entryId(entry), { entry, phase: 'waiting' })
  }

  /** Acknowledged: gone for good. Returns the ids that were pending. */
  settle (ids: number[]): number[] {
    return ids.filter(id => this.pending.delete(id))
  }

  /** A result rewritten while it was being delivered; returns the new entry, or null if it is not pending. */
  replace (result: AttemptResult): OutboxEntry | null {
    const p = this.pending.get(result.attemptId)
    if (p == null || p.entry.kind !== 'result') return null
    p.entry = { kind: 'result', result }
    return p.entry
  }

  /** The session ended: everything not acknowledged is sent again in the next one. */
  sessionLost (): void {
    this.token++
    this.delivering = false
    for (const p of this.pending.values()) p.phase = 'waiting'
  }

  /** The vacate notices waiting, and the next batch of results unless one is under way; marks them as sent. */
  next (limits: { resultBatch: number, inlineBudgetBytes: number, inlineMaxBytes: number }): Deliveries {
    const { vacated, batch } = pickDeliveries(this.pending, !this.delivering, limits)
    for (const v of vacated) for (const id of v.attemptIds) this.pending.get(id)!.phase = 'sent'
    for (const e of batch) this.pending.get(e.result.attemptId)!.phase = 'sending'
    if (batch.length > 0) this.delivering = true
    return { vacated, batch, token: this.token }
  }

  /** The coordinator has the batch (its ack follows); false for an answer from an earlier session. */
  delivered (token: number, ids: number[]): boolean {
    return this.finishDelivery(token, ids, 'sent')
  }

  /** The batch did not get through: it waits for the next flush. */
  deliveryFailed (token: number, ids: number[]): boolean {
    return this.finishDelivery(token, ids, 'waiting')
  }

  private finishDelivery (token: number, ids: number[], phase: 'sent' | 'waiting'): boolean {
    if (token !== this.token) return false
    this.delivering = false
    for (const id of ids) {
      const p = this.pending.get(id)
      if (p?.phase === 'sending') p.phase = phase
    }
    return true
  }
}
