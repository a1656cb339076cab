/**
 * The outbox on a real folder, with its clock in the test's hands: a short task's result waits for a timer the
 * test fires, never for a sleep racing it.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Outbox, type OutboxTimers } from '../../node/outbox.ts'
import { emptyRef, type OutboxEntry } from '../../node/results.ts'

class ManualTimers implements OutboxTimers {
  private next = 1
  readonly waiting = new Map<number, { fn: () => void, ms: number }>()
  setTimeout = (fn: () => void, ms: number): unknown => { const id = this.next++; this.waiting.set(id, { fn, ms }); return id }
  clearTimeout = (h: unknown): void => { this.waiting.delete(h as number) }
  fireAll (): void {
    const due = [...this.waiting.values()]
    this.waiting.clear()
    for (const t of due) t.fn()
  }
}

function setup (): { dir: string, timers: ManualTimers, box: Outbox, done: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'meshfarm-outbox-'))
  const timers = new ManualTimers()
  return { dir, timers, box: new Outbox(dir, { persistAfterMs: 1000, timers }), done: () => { rmSync(dir, { recursive: true, force: true }) } }
}

function result (id: number): OutboxEntry {
  return {
    kind: 'result',
    result: { attemptId: id, jobId: 1, index: id, state: 'done', exitCode: 0, signal: null, startedAt: 1000, endedAt: 1005, stdout: emptyRef('.meshfarm/stdout'), stderr: emptyRef('.meshfarm/stderr'), outputs: [] }
  }
}

const onDisk = (dir: string, id: number): boolean => existsSync(join(dir, `${id}.entry`))

test('a result kept for later is on disk only once its timer fires, and one settled first never is', async () => {
  const { dir, timers, box, done } = setup()
  try {
    await box.keep(result(1), false)
    await box.keep(result(2), false)
    assert.equal(onDisk(dir, 1), false)
    assert.equal(timers.waiting.size, 2)
    assert.deepEqual([...timers.waiting.values()].map(t => t.ms), [1000, 1000])
    await box.remove([1])
    assert.equal(timers.waiting.size, 1, 'the settled one\'s timer is gone')
    timers.fireAll()
    await box.idle()
    assert.equal(onDisk(dir, 1), false, 'acknowledged in time: never written')
    assert.equal(onDisk(dir, 2), true, 'unacknowledged when its timer fired: written')
  } finally { done() }
})

test('results kept now are on disk, private, whole, and found again by a restarted agent', async () => {
  const { dir, box, done } = setup()
  try {
    await box.keep(result(3), true)
    await box.keep({ kind: 'vacate', attemptId: 4, vacateKind: 'vacate', reason: 'agent stopped' }, true)
    assert.equal(statSync(join(dir, '3.entry')).mode & 0o777, 0o600)
    assert.deepEqual(readdirSync(dir).sort(), ['3.entry', '4.entry'], 'no temp file left behind')
    const again = new Outbox(dir, { persistAfterMs: 1000, timers: new ManualTimers() })
    const { entries, broken } = await again.load()
    assert.equal(broken, 0)
    assert.deepEqual(entries.map(e => e.kind).sort(), ['result', 'vacate'])
  } finally { done() }
})

test('a session that ends writes what was held in memory; a torn file is dropped at load', async () => {
  const { dir, box, done } = setup()
  try {
    await box.keep(result(5), false)
    await box.persistAll()
    assert.equal(onDisk(dir, 5), true)
    writeFileSync(join(dir, '6.entry'), Buffer.from([0xc1, 0x00]))
    writeFileSync(join(dir, '.7.abcd.tmp'), 'half')
    const { entries, broken } = await new Outbox(dir, { persistAfterMs: 1000, timers: new ManualTimers() }).load()
    assert.deepEqual(entries.map(e => e.kind === 'result' ? e.result.attemptId : -1), [5])
    assert.equal(broken, 1)
    assert.deepEqual(readdirSync(dir), ['5.entry'])
  } finally { done() }
})

test('a newer version of an entry replaces the older one on disk, in order', async () => {
  const { dir, box, done } = setup()
  try {
    await box.keep(result(8), true)
    const failed = result(8)
    if (failed.kind === 'result') failed.result = { ...failed.result, state: 'failed' }
    await box.keep(failed, false) // already on disk: the new version is written at once
    await box.idle()
    const { entries } = await new Outbox(dir, { persistAfterMs: 1000, timers: new ManualTimers() }).load()
    assert.equal(entries.length, 1)
    assert.equal(entries[0].kind === 'result' && entries[0].result.state, 'failed')
    await box.remove([8])
    assert.equal(onDisk(dir, 8), false)
  } finally { done() }
})
