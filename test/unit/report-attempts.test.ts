import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { MeshEvent } from '../../shared/protocol/events.ts'
import { earlierAttemptBars } from '../../shared/report/attempts.ts'
import { renderTimelineSvg, barsFromRecords } from '../../shared/report/timeline-svg.ts'
import { summarizeJob } from '../../shared/report/summary.ts'
import { rec, T0 } from '../helpers/records.ts'

/** A job's event stream written as a timeline: [seconds, type, index, host?, data?]. */
function stream (rows: Array<[number, MeshEvent['type'], number, string?, MeshEvent['data']?]>): MeshEvent[] {
  return rows.map(([s, type, index, host, data], i) => ({ seq: i + 1, time: T0 + s * 1000, type, jobId: 7, index, ...(host != null ? { host } : {}), ...(data != null ? { data } : {}) }))
}

const events = stream([
  [0, 'task.started', 0, 'alpha'],
  [0, 'task.started', 1, 'alpha'],
  [0, 'task.started', 2, 'beta'],
  [0, 'task.started', 4, 'beta'],
  [3, 'task.vacated', 1, undefined, { kind: 'vacate', why: 'the owner is back' }],
  [4, 'task.started', 1, 'alpha'],
  [5, 'task.requeued', 0, undefined, { kind: 'retry', why: 'exited with code 1' }],
  [6, 'task.started', 0, 'beta'],
  [8, 'task.requeued', 2, undefined, { kind: 'lose', why: 'agent lost' }],
  [9, 'task.started', 2, 'beta', { reclaimed: true }],
  [9, 'task.cancelled', 4],
  [10, 'task.finished', 0, 'beta'],
  [11, 'task.finished', 1, 'alpha'],
  [12, 'task.finished', 2, 'beta'],
  // Lost twice on different machines, then done on a third.
  [13, 'task.started', 3, 'gamma'],
  [14, 'task.requeued', 3, undefined, { kind: 'lose' }],
  [15, 'task.started', 3, 'delta'],
  [16, 'task.requeued', 3, undefined, { kind: 'lose' }],
  [17, 'task.started', 3, 'alpha'],
  [18, 'task.finished', 3, 'alpha'],
  // A requeue without a start seen (the start was pruned from the store): no bar.
  [19, 'task.requeued', 5, undefined, { kind: 'lose' }],
  // An attempt that failed before its started notice: the requeue names its host and start.
  [20, 'task.requeued', 6, 'beta', { kind: 'retry', startedAt: T0 + 19_500 }],
  [21, 'task.started', 6, 'alpha'],
  [22, 'task.finished', 6, 'alpha']
])

test('earlier attempts: a start followed by a return to the queue, with its outcome', () => {
  const bars = earlierAttemptBars(events, i => `t${i}`)
  const s = (ms: number): number => (ms - T0) / 1000
  assert.deepEqual(bars.map(b => [b.index, b.host, s(b.start), s(b.end!), b.outcome, b.earlier]), [
    [1, 'alpha', 0, 3, 'lost', true],
    [0, 'alpha', 0, 5, 'failed', true],
    [3, 'gamma', 13, 14, 'lost', true],
    [3, 'delta', 15, 16, 'lost', true],
    [6, 'beta', 19.5, 20, 'failed', true]
  ])
  assert.equal(bars[0].name, 't1')
})

test('a reclaimed attempt is not an earlier one; if it is lost again, it spans from its first start', () => {
  const again = [...events, ...stream([[20, 'task.started', 7, 'beta'], [21, 'task.requeued', 7, undefined, { kind: 'lose' }], [22, 'task.started', 7, 'beta', { reclaimed: true }], [25, 'task.requeued', 7, undefined, { kind: 'lose' }]])]
  const bars = earlierAttemptBars(again).filter(b => b.index === 7)
  assert.deepEqual(bars.map(b => [(b.start - T0) / 1000, (b.end! - T0) / 1000]), [[20, 25]])
  assert.equal(earlierAttemptBars(events).filter(b => b.index === 2).length, 0)
})

test('the timeline draws earlier attempts faded and apart; the report counts them on their hosts', () => {
  const records = [rec(0, 'beta', 6, 10), rec(1, 'alpha', 4, 11), rec(2, 'beta', 0, 12), rec(3, 'alpha', 17, 18)]
  const earlier = earlierAttemptBars(events).filter(b => b.index <= 3)
  const svg = renderTimelineSvg([...barsFromRecords(records), ...earlier], { now: T0 + 20_000 })
  const bars = svg.match(/<rect class="bar [^>]*>/g)!
  assert.equal(bars.length, 8)
  assert.equal(bars.filter(b => !b.includes('bar-earlier')).length, 4, 'one bar per task without the earlier ones')
  assert.ok(bars.filter(b => b.includes('bar-earlier')).every(b => b.includes('opacity="0.5"')))
  assert.match(svg, /8 attempts \(4 earlier, faded\)/)
  const r = summarizeJob(records, { earlier })
  assert.equal(r.durations!.count, 8)
  assert.deepEqual(r.hosts.map(h => [h.host, h.tasks]), [['alpha', 4], ['beta', 2], ['delta', 1], ['gamma', 1]])
  assert.equal(r.hosts.find(h => h.host === 'alpha')!.failed, 2, 'the retried and the vacated attempt')
})
