/**
 * The task state machine's table: every legal transition, every illegal one refused, and the shape a task farm
 * relies on (terminal states are final, every non-terminal state can be cancelled, a held task never runs).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { TASK_STATES, TERMINAL_STATES, type TaskState } from '../../shared/protocol/data.ts'
import { IllegalTransition, TASK_EVENTS, TRANSITIONS, allowed, transition, type TaskEvent } from '../../coordinator/task-states.ts'

/** The whole table, written out once more by hand: a change to the machine must change this test too. */
const EXPECTED: Array<[TaskState, TaskEvent, TaskState]> = [
  ['queued', 'place', 'staging'], ['queued', 'hold', 'held'], ['queued', 'reclaim', 'running'],
  ['queued', 'finish', 'done'], ['queued', 'fail', 'failed'], ['queued', 'cancel', 'cancelled'],
  ['held', 'release', 'queued'], ['held', 'cancel', 'cancelled'],
  ['staging', 'start', 'running'], ['staging', 'retry', 'queued'], ['staging', 'vacate', 'queued'], ['staging', 'preempt', 'queued'],
  ['staging', 'lose', 'queued'], ['staging', 'finish', 'done'], ['staging', 'fail', 'failed'], ['staging', 'cancel', 'cancelled'],
  ['running', 'suspend', 'suspended'], ['running', 'retry', 'queued'], ['running', 'vacate', 'queued'], ['running', 'preempt', 'queued'],
  ['running', 'lose', 'queued'], ['running', 'finish', 'done'], ['running', 'fail', 'failed'], ['running', 'cancel', 'cancelled'],
  ['suspended', 'continue', 'running'], ['suspended', 'retry', 'queued'], ['suspended', 'vacate', 'queued'], ['suspended', 'preempt', 'queued'],
  ['suspended', 'lose', 'queued'], ['suspended', 'finish', 'done'], ['suspended', 'fail', 'failed'], ['suspended', 'cancel', 'cancelled']
]

test('every legal transition leads where the table says', () => {
  for (const [from, event, to] of EXPECTED) assert.equal(transition(from, event), to, `${event} in ${from}`)
})

test('everything not in the table is refused with the state and event named', () => {
  const legal = new Set(EXPECTED.map(([from, event]) => `${from}/${event}`))
  let refused = 0
  for (const from of TASK_STATES) {
    for (const event of TASK_EVENTS) {
      if (legal.has(`${from}/${event}`)) continue
      assert.equal(allowed(from, event), false)
      assert.throws(() => transition(from, event), (err: unknown) => err instanceof IllegalTransition && err.message === `illegal task transition: ${event} in state ${from}`)
      refused++
    }
  }
  // 8 states x 14 events, less the 32 legal ones.
  assert.equal(refused, TASK_STATES.length * TASK_EVENTS.length - EXPECTED.length)
})

test('terminal states are final; every other state can be cancelled; a held task cannot start', () => {
  for (const s of TERMINAL_STATES) assert.deepEqual(TRANSITIONS[s], {}, `${s} has no way out`)
  for (const s of TASK_STATES) if (!TERMINAL_STATES.has(s)) assert.equal(transition(s, 'cancel'), 'cancelled')
  for (const e of ['place', 'start', 'reclaim', 'finish'] as const) assert.equal(allowed('held', e), false)
  // Suspending needs a running task; continuing, a suspended one.
  assert.equal(allowed('staging', 'suspend'), false)
  assert.equal(allowed('running', 'continue'), false)
})
