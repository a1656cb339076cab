import { test } from 'node:test'
import assert from 'node:assert/strict'
import { median, stderrTail, summarizeJob } from '../../shared/report/summary.ts'
import { formatReport } from '../../shared/report/text.ts'
import { rec } from '../helpers/records.ts'

// alpha (2 slots): 0-4, 1-3, 4-10 -> busy 12 s; beta (observed 1 slot): 0-10 failed, then nothing.
// The job spans 0..20 s (gamma's task ends at 20).
const records = [
  rec(0, 'alpha', 0, 4), rec(1, 'alpha', 1, 3), rec(2, 'alpha', 4, 10),
  rec(3, 'beta', 0, 10, { state: 'failed', exitCode: 3, failure: { kind: 'exit', message: 'exited with code 3', retryable: false }, stderr: { name: 'stderr', hash: 'h', size: 0, data: new TextEncoder().encode('line 1\nline 2\n\u001b[31mred\u001b[0m\nlast line\n') } }),
  rec(4, 'gamma', 12, 20, { missingOutputs: ['out_4.txt'] }),
  rec(5, null, null, null, { state: 'cancelled' })
]

test('durations: min, median, max over finished attempts', () => {
  const r = summarizeJob(records, { slots: { alpha: 2 } })
  assert.deepEqual(r.durations, { count: 5, minSeconds: 2, medianSeconds: 6, maxSeconds: 10 })
  assert.equal(r.spanSeconds, 20)
  assert.equal(r.tasks, 6)
  assert.deepEqual(r.states, { done: 4, failed: 1, cancelled: 1 })
  assert.deepEqual(r.missingOutputs, [{ index: 4, name: 'task-4', state: 'done', outputs: ['out_4.txt'] }])
  assert.equal(r.start, '2026-11-22T10:00:00.000Z')
  assert.equal(median([1, 2, 3, 4]), 2.5)
  assert.ok(Number.isNaN(median([])))
})

test('per host: throughput over the job span, utilisation = busy / (span x slots)', () => {
  const r = summarizeJob(records, { slots: { alpha: 2 } })
  const alpha = r.hosts.find(h => h.host === 'alpha')!
  assert.deepEqual(alpha, { host: 'alpha', tasks: 3, done: 3, failed: 0, busySeconds: 12, slots: 2, slotsFrom: 'agent', tasksPerSecond: 0.15, utilisation: 0.3 })
  const beta = r.hosts.find(h => h.host === 'beta')!
  assert.equal(beta.slotsFrom, 'observed')
  assert.equal(beta.slots, 1)
  assert.equal(beta.utilisation, 0.5)
  assert.equal(beta.failed, 1)
  // Without declared slots, alpha's two overlapping tasks say 2 slots.
  assert.equal(summarizeJob(records).hosts.find(h => h.host === 'alpha')!.slots, 2)
  assert.deepEqual(r.hosts.map(h => h.host), ['alpha', 'beta', 'gamma'])
})

test('failures: exit code, reason and the end of stderr, without terminal escapes', () => {
  const r = summarizeJob(records, { tailLines: 3 })
  assert.equal(r.failures.length, 1)
  const f = r.failures[0]
  assert.equal(f.exitCode, 3)
  assert.equal(f.kind, 'exit')
  assert.equal(f.stderrTail, 'line 2\n[31mred[0m\nlast line')
  assert.ok(!f.stderrTail!.includes('\u001b'))
  // stderr from elsewhere (a results folder) wins over the record's inline copy.
  assert.equal(summarizeJob(records, { stderrOf: () => 'from the file\n' }).failures[0].stderrTail, 'from the file')
})

test('stderr tails: bounded, invalid UTF-8 replaced', () => {
  assert.equal(stderrTail(new Uint8Array([0x61, 0xff, 0x62])), 'a\uFFFDb')
  assert.ok(stderrTail('x'.repeat(10_000)).length <= 2000)
  assert.equal(stderrTail('a\r\nb\rc\n\n\n', 2), 'b\nc')
})

test('an empty or never-started job summarises to zeros, not NaN', () => {
  const r = summarizeJob([rec(0, null, null, null, { state: 'queued' })])
  assert.equal(r.durations, null)
  assert.equal(r.spanSeconds, 0)
  assert.deepEqual(r.hosts, [])
  assert.equal(r.start, null)
  assert.match(formatReport(r), /1 task \(1 queued\)/)
})

test('the human report has the durations, a host table and the failures', () => {
  const text = formatReport(summarizeJob(records, { slots: { alpha: 2 }, name: 'sweep' }))
  assert.match(text, /^job 7 sweep: 6 tasks \(4 done, 1 failed, 1 cancelled\)/)
  assert.match(text, /min 2\.000 s, median 6\.000 s, max 10\.000 s/)
  assert.match(text, /│ alpha +│ 3 +│ 3 +│ 0 +│ 12\.00 +│ 2 +│ 0\.150 +│ 30\.0% +│/)
  assert.match(text, /│ beta .*│ 1 \(seen\) .*│ 50\.0% +│/)
  assert.match(text, /task 3 task-3, end of stderr:\n {2}\| line 1/)
  assert.match(text, /1 task did not write declared outputs:\n {2}task 4 task-4 \(done\): out_4\.txt/)
})
