/**
 * Which tasks of a job whose files follow must still wait: per task for its own inputs, every task for a shared
 * file, a file two tasks share freeing both, the same file twice in one task counted once.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { InputWait } from '../../coordinator/input-wait.ts'
import { toBlocks } from '../../shared/protocol/task-blocks.ts'
import type { FileRef, JobHeader, TaskSpec } from '../../shared/protocol/messages.ts'

const ref = (c: string, name = c): FileRef => ({ name, hash: c.repeat(64), size: 1 })
const header = (shared: FileRef[] = []): JobHeader => ({ name: 'j', layout: 'per-task', shared, retries: 0, specText: '', specFile: 'j.yaml', inputsToFollow: true })
const task = (index: number, inputs: FileRef[]): TaskSpec => ({ index, name: `t${index}`, commands: ['true'], env: {}, inputs, outputs: [], timeoutMs: 0, constraints: {}, cores: 1, gpus: 0, memoryMb: 0 })

test('each task waits for its own files; one file freeing two tasks; the same file twice counted once', () => {
  const have = new Set(['a'.repeat(64)])
  const w = InputWait.of(header(), toBlocks([task(0, [ref('a')]), task(1, [ref('b'), ref('b')]), task(2, [ref('b'), ref('c')])]), h => have.has(h))!
  assert.deepEqual([0, 1, 2].map(i => w.waits(i)), [false, true, true])
  assert.equal(w.waitingFor(2), 'b')
  assert.equal(w.arrived('b'.repeat(64)), 1, 'task 1 is free; task 2 still needs c')
  assert.deepEqual([w.waits(1), w.waits(2), w.waitingFor(2)], [false, true, 'c'])
  assert.equal(w.arrived('b'.repeat(64)), 0, 'a file that arrives twice frees nothing more')
  assert.equal(w.arrived('c'.repeat(64)), 1)
  assert.equal(w.done, true)
})

test('a shared file holds every task until it is here; nothing missing: no wait at all', () => {
  const w = InputWait.of(header([ref('s', 'model.bin')]), toBlocks([task(0, []), task(1, [])]), () => false)!
  assert.deepEqual([w.waits(0), w.waits(1), w.waitingFor(1)], [true, true, 'model.bin'])
  assert.equal(w.arrived('s'.repeat(64)), 1)
  assert.deepEqual([w.waits(0), w.waits(1), w.done], [false, false, true])
  assert.equal(InputWait.of(header([ref('s')]), toBlocks([task(0, [ref('a')])]), () => true), null)
})
