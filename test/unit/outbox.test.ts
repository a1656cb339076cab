import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Outbox } from '../../node/outbox.ts'
import { EMPTY_HASH, META_DIR } from '../../node/executor.ts'
import type { AttemptResult } from '../../shared/protocol/messages.ts'

function setup (): { work: string, folder: (id: number) => string, result: (id: number, ranMs: number) => AttemptResult, done: () => void } {
  const work = mkdtempSync(join(tmpdir(), 'meshfarm-outbox-'))
  const folder = (id: number): string => {
    const dir = join(work, String(id))
    mkdirSync(join(dir, META_DIR), { recursive: true })
    writeFileSync(join(dir, META_DIR, 'stdout'), '')
    writeFileSync(join(dir, META_DIR, 'stderr'), '')
    return dir
  }
  const empty = (name: string): AttemptResult['stdout'] => ({ name: `${META_DIR}/${name}`, hash: EMPTY_HASH, size: 0 })
  const result = (id: number, ranMs: number): AttemptResult => ({
    attemptId: id, jobId: 1, index: id, state: 'done', exitCode: 0, signal: null, startedAt: 1000, endedAt: 1000 + ranMs,
    stdout: empty('stdout'), stderr: empty('stderr'), outputs: []
  })
  return { work, folder, result, done: () => { rmSync(work, { recursive: true, force: true }) } }
}

test('a short result acknowledged at once never touches the disk; its folder goes', async () => {
  const { work, folder, result, done } = setup()
  try {
    const box = new Outbox(work)
    const dir = folder(1)
    await box.add(result(1, 5), dir, true)
    assert.equal(existsSync(join(dir, META_DIR, 'result')), false)
    assert.deepEqual(box.ids(), [1], 'pending at once')
    await box.settle([1])
    assert.equal(existsSync(dir), false)
    await sleep(1200)
    assert.equal(existsSync(dir), false, 'no late write recreates anything')
  } finally { done() }
})

test('results are on disk at once for long tasks or without a coordinator, after a second for short ones', async () => {
  const { work, folder, result, done } = setup()
  try {
    const box = new Outbox(work)
    await box.add(result(2, 5000), folder(2), true)
    await box.add(result(3, 5), folder(3), false)
    await box.add(result(4, 5), folder(4), true)
    assert.ok(existsSync(join(work, '2', META_DIR, 'result')), 'long task')
    assert.ok(existsSync(join(work, '3', META_DIR, 'result')), 'no coordinator')
    assert.equal(existsSync(join(work, '4', META_DIR, 'result')), false)
    await sleep(1300)
    assert.ok(existsSync(join(work, '4', META_DIR, 'result')), 'unacknowledged for a second')
    // A restarted agent finds all three again.
    const again = new Outbox(work)
    assert.equal(await again.load(), 3)
    assert.deepEqual(again.ids().sort(), [2, 3, 4])
  } finally { done() }
})

test('a session that ends writes what was held in memory', async () => {
  const { work, folder, result, done } = setup()
  try {
    const box = new Outbox(work)
    await box.add(result(5, 5), folder(5), true)
    box.requeueInFlight()
    await box.persistAll()
    assert.ok(existsSync(join(work, '5', META_DIR, 'result')))
  } finally { done() }
})
