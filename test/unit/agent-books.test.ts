/**
 * The reactor's two books: slots in use (what fits, which slot number) and results owed to the coordinator
 * (waiting, sending, sent; one delivery at a time; answers of an earlier session ignored).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { SlotBook } from '../../node/slot-book.ts'
import { PendingResults } from '../../node/pending-results.ts'
import type { AgentResources, Assignment, AttemptResult } from '../../shared/protocol/messages.ts'

const OFFER: AgentResources = { slots: 2, cores: 4, memoryMb: 1000, gpus: [], diskFreeMb: 1000, labels: [] } as unknown as AgentResources

function assignment (id: number, cores: number, memoryMb: number): Assignment {
  return {
    attemptId: id, jobId: 1, index: id, shared: [], gpuIds: [], cores,
    task: { index: id, name: `t${id}`, commands: ['true'], env: {}, inputs: [], outputs: [], timeoutMs: 0, constraints: {}, cores, gpus: 0, memoryMb }
  }
}

/** Only what the delivery choice reads: the attempt and its files' sizes. */
function result (attemptId: number): AttemptResult {
  const empty = { name: 'stdout', hash: 'e'.repeat(64), size: 0 }
  return { attemptId, exitCode: 0, startedAt: 1, endedAt: 2, stdout: empty, stderr: { ...empty, name: 'stderr' }, outputs: [] } as unknown as AttemptResult
}

test('slots: the lowest free number; cores and memory counted; a big task runs alone on an idle agent', () => {
  const book = new SlotBook()
  const big = assignment(1, 8, 5000)
  assert.equal(book.fits(big, OFFER), true, 'more than the machine, but the agent is idle')
  assert.equal(book.take(big), 0)
  assert.equal(book.fits(assignment(2, 1, 0), OFFER), false, 'nothing beside the big one')
  book.give(0, big)
  const a = assignment(3, 2, 600)
  const b = assignment(4, 2, 600)
  assert.equal(book.take(a), 0)
  assert.equal(book.fits(b, OFFER), false, 'memory: 600 + 600 > 1000')
  assert.equal(book.fits(assignment(5, 2, 400), OFFER), true)
  assert.equal(book.fits(assignment(6, 3, 0), OFFER), false, 'cores: 2 + 3 > 4')
  assert.equal(book.take(assignment(5, 2, 400)), 1)
  assert.equal(book.fits(assignment(7, 0, 0), OFFER), false, 'both slots taken')
  book.give(0, a)
  assert.equal(book.take(assignment(8, 1, 0)), 0, 'slot 0 is reused')
  book.give(0, a)
  book.give(0, a) // a second give of the same slot changes nothing
  assert.equal(book.busy, 1)
})

test('pending results: one batch at a time; delivered, then acknowledged; a lost session sends them again', () => {
  const p = new PendingResults()
  p.add({ kind: 'result', result: result(1) })
  p.add({ kind: 'result', result: result(2) })
  p.add({ kind: 'vacate', attemptId: 3, vacateKind: 'vacate', reason: 'owner is back' })
  const limits = { resultBatch: 1, inlineBudgetBytes: 1 << 20, inlineMaxBytes: 1 << 16 }
  const first = p.next(limits)
  assert.deepEqual(first.vacated, [{ attemptIds: [3], kind: 'vacate', reason: 'owner is back' }])
  assert.deepEqual(first.batch.map(e => e.result.attemptId), [1])
  assert.deepEqual(p.next(limits).batch, [], 'one delivery under way at a time')
  assert.equal(p.delivered(first.token, [1]), true)
  assert.deepEqual(p.next(limits).batch.map(e => e.result.attemptId), [2])
  p.sessionLost()
  assert.equal(p.delivered(first.token, [2]), false, 'an answer from the earlier session')
  const again = p.next(limits)
  assert.deepEqual(again.batch.map(e => e.result.attemptId), [1], 'unacknowledged results go again, in order')
  assert.deepEqual(again.vacated.map(v => v.attemptIds), [[3]])
  assert.equal(p.deliveryFailed(again.token, [1]), true)
  assert.deepEqual(p.next(limits).batch.map(e => e.result.attemptId), [1], 'a failed delivery waits for the next flush')
  assert.deepEqual(p.settle([1, 3, 99]), [1, 3])
  assert.deepEqual(p.ids(), [2])
  assert.equal(p.replace(result(2))?.kind, 'result')
  assert.equal(p.replace(result(99)), null)
})
