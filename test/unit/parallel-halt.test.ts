import { test } from 'node:test'
import assert from 'node:assert/strict'
import { countJob, exitStatus, newTally } from '../../shared/client/parallel-halt.ts'
import { readHalt } from '../../shared/client/parallel-args.ts'
import { HALT_CASES } from '../fixtures/parallel/halt-cases.ts'

test('--halt and the exit status: the same stop and the same status as GNU parallel on every captured run', () => {
  for (const c of HALT_CASES) {
    const halt = c.halt != null ? readHalt(c.halt) : undefined
    let t = newTally(c.codes.length)
    let ran = 0
    for (const code of c.codes) {
      t = countJob(halt, t, { exitval: code, signal: c.signal ?? 0 })
      ran++
      if (t.haltedWith != null) break
    }
    assert.equal(ran, c.ran, `${c.halt ?? 'no --halt'} ${c.codes.join(' ')}: stops after ${c.ran}`)
    assert.equal(exitStatus(halt, t), c.status, `${c.halt ?? 'no --halt'} ${c.codes.join(' ')}: exit status`)
  }
})

test('the halt status is fixed once met; more than 100 failures is 101; old and short --halt forms', () => {
  const halt = readHalt('soon,fail=2')
  let t = newTally(200)
  for (let i = 0; i < 150; i++) t = countJob(halt, t, { exitval: 1, signal: 0 })
  assert.equal(exitStatus(halt, t), 2, 'jobs that end after the halt do not change its status')
  let none = newTally(200)
  for (let i = 0; i < 150; i++) none = countJob(undefined, none, { exitval: 1, signal: 0 })
  assert.equal(exitStatus(undefined, none), 101)
  assert.equal(countJob(readHalt('2'), newTally(1), { exitval: -1, signal: 15 }).haltedWith, 255, 'a killed job (-1) exits 255, as perl exit(-1)')
  assert.deepEqual(readHalt('-1'), { when: 'soon', on: 'success', count: 1 })
  assert.deepEqual(readHalt('-2'), { when: 'now', on: 'success', count: 1 })
  assert.deepEqual(readHalt('5%'), { when: 'soon', on: 'fail', percent: 5 })
  assert.equal(readHalt('0'), undefined)
  assert.equal(readHalt('never'), undefined)
})
