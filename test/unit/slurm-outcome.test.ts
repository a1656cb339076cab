import { test } from 'node:test'
import assert from 'node:assert/strict'
import { taskOutcome, TERMINAL_SLURM_STATES, type OutcomeInput } from '../../node/bridge/slurm/outcome.ts'
import type { WrapperStatus } from '../../node/bridge/slurm/script.ts'
import type { QueueEntry } from '../../node/bridge/slurm/batch-system.ts'
import { chunkOutcomes } from '../../node/bridge/slurm/follow.ts'
import { parseQueue } from '../../node/bridge/slurm/parse.ts'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

const status = (o: Partial<WrapperStatus> = {}): WrapperStatus => ({ index: 4, taskId: 'j:4', exitCode: 0, signal: null, terminated: false, startedAt: 1, endedAt: 2, host: 'vm', slurmJobId: '217_4', ...o })
const input = (slurmState: string | null, o: Partial<OutcomeInput> = {}): OutcomeInput => ({ jobId: '217_4', slurmState, reason: 'None', status: null, ...o })

test('every terminal Slurm state maps to an outcome, Slurm\'s words kept', () => {
  const table: Array<[string, OutcomeInput, string, string | undefined, RegExp | undefined]> = [
    ['COMPLETED', input('COMPLETED', { status: status() }), 'done', undefined, undefined],
    ['FAILED', input('FAILED', { reason: 'NonZeroExitCode', status: status({ exitCode: 3 }) }), 'failed', 'exit', /exit code 3; Slurm job 217_4: FAILED, reason NonZeroExitCode/],
    ['TIMEOUT', input('TIMEOUT', { reason: 'TimeLimit', status: status({ exitCode: 143, signal: 15, terminated: true }) }), 'failed', 'timeout', /hit its Slurm time limit \(Slurm job 217_4: TIMEOUT, reason TimeLimit\)/],
    ['CANCELLED', input('CANCELLED'), 'failed', 'cancelled', /cancelled in Slurm/],
    ['NODE_FAIL', input('NODE_FAIL', { reason: 'NodeDown' }), 'requeue', 'node-fail', /its Slurm node failed \(Slurm job 217_4: NODE_FAIL, reason NodeDown\)/],
    ['OUT_OF_MEMORY', input('OUT_OF_MEMORY'), 'failed', 'memory', /OUT_OF_MEMORY/],
    ['PREEMPTED', input('PREEMPTED'), 'requeue', 'preempted', /preempted/],
    ['BOOT_FAIL', input('BOOT_FAIL'), 'requeue', 'boot-fail', /BOOT_FAIL/],
    ['DEADLINE', input('DEADLINE'), 'failed', 'deadline', /DEADLINE/],
    ['SPECIAL_EXIT', input('SPECIAL_EXIT'), 'failed', 'slurm', /SPECIAL_EXIT/],
    ['REVOKED', input('REVOKED'), 'failed', 'slurm', /REVOKED/]
  ]
  assert.deepEqual(new Set(table.map(r => r[0])), TERMINAL_SLURM_STATES, 'the table covers every terminal state')
  for (const [name, i, state, kind, words] of table) {
    const o = taskOutcome(i)
    assert.ok(o != null, name)
    assert.equal(o.state, state, name)
    assert.equal(o.failure?.kind, kind, name)
    if (words != null) assert.match(o.failure!.message, words, name)
  }
})

test('requeued outcomes are not the task\'s failure; user-level failures are retryable, cancel and OOM are not', () => {
  for (const s of ['NODE_FAIL', 'PREEMPTED', 'BOOT_FAIL']) assert.equal(taskOutcome(input(s))?.failure?.retryable, true, s)
  assert.equal(taskOutcome(input('FAILED', { status: status({ exitCode: 1 }) }))?.failure?.retryable, true)
  assert.equal(taskOutcome(input('TIMEOUT'))?.failure?.retryable, true)
  assert.equal(taskOutcome(input('CANCELLED'))?.failure?.retryable, false)
  assert.equal(taskOutcome(input('OUT_OF_MEMORY'))?.failure?.retryable, false)
})

test('not over yet: pending, running, completing without a status file, unknown states', () => {
  for (const s of ['PENDING', 'RUNNING', 'CONFIGURING', 'SUSPENDED', 'REQUEUED', 'COMPLETING', 'SOMETHING_NEW']) assert.equal(taskOutcome(input(s)), null, s)
  assert.equal(taskOutcome(input('COMPLETING', { status: status({ exitCode: 2 }) }))?.failure?.kind, 'exit', 'a status file ends COMPLETING early')
})

test('after MinJobAge: the status file alone decides; no file means lost, back to the mesh', () => {
  assert.deepEqual(taskOutcome(input(null, { status: status() })), { state: 'done', exitCode: 0, signal: null })
  const segv = taskOutcome(input(null, { status: status({ exitCode: 139, signal: 11 }) }))
  assert.equal(segv?.state, 'failed'); assert.equal(segv?.signal, 11)
  assert.match(segv!.failure!.message, /killed by SIGSEGV; Slurm job 217_4: no longer listed/)
  const term = taskOutcome(input(null, { status: status({ exitCode: 143, signal: 15, terminated: true }) }))
  assert.match(term!.failure!.message, /killed by SIGTERM \(Slurm ended it\)/)
  const lost = taskOutcome(input(null))
  assert.equal(lost?.state, 'requeue'); assert.equal(lost?.failure?.kind, 'lost')
})

test('FAILED without a status file: the wrapper never finished, Slurm\'s exit code kept', () => {
  const o = taskOutcome(input('FAILED', { reason: 'NonZeroExitCode', slurmExit: { code: 1, signal: 0 } }))
  assert.equal(o?.failure?.kind, 'slurm')
  assert.match(o!.failure!.message, /ExitCode 1:0/)
  assert.deepEqual(taskOutcome(input('COMPLETED')), { state: 'done', exitCode: 0, signal: null })
})

test('following a chunk: one queue answer and the status files give each index its state and outcome', () => {
  const entry = (jobId: string, state: string, reason = 'None'): [string, QueueEntry] => [jobId, { jobId, arrayJobId: jobId.split('_')[0], arrayIndex: jobId.includes('_') ? Number(jobId.split('_')[1]) : null, state, reason, nodes: 'vm', name: 'mf:b:j:0', comment: 'mf:b:j:0' }]
  const queue = new Map([entry('50_0', 'COMPLETED'), entry('50_1', 'RUNNING'), entry('50_2', 'PENDING', 'JobArrayTaskLimit'), entry('51_0', 'COMPLETED')])
  const views = chunkOutcomes('50', 4, queue, new Map([[0, status({ index: 0 })], [3, status({ index: 3, exitCode: 2 })]]))
  assert.deepEqual(views.map(v => [v.jobId, v.slurmState, v.outcome?.state ?? null]), [
    ['50_0', 'COMPLETED', 'done'], ['50_1', 'RUNNING', null], ['50_2', 'PENDING', null], ['50_3', null, 'failed']
  ], 'index 3 is no longer listed: its status file decides')
  assert.equal(views[2].reason, 'JobArrayTaskLimit')
  const single = new Map([entry('60', 'TIMEOUT', 'TimeLimit')])
  assert.equal(chunkOutcomes('60', 1, single, new Map())[0].outcome?.failure?.kind, 'timeout', 'a one-element array listed under its plain id')
  // Captured on 22.05 (squeue-cancelled-rest.txt): scancel 929_0 929_1 929_2 while 929_0 ran and 1-2 waited;
  // the pending rest is listed once, as `929 CANCELLED`, without its indexes.
  const cancelled = parseQueue(readFileSync(join(import.meta.dirname, 'fixtures', 'slurm', 'squeue-cancelled-rest.txt'), 'utf8'))
  assert.deepEqual([...cancelled.keys()].sort(), ['929', '929_0'])
  assert.deepEqual(chunkOutcomes('929', 3, cancelled, new Map()).map(v => [v.jobId, v.slurmState, v.outcome?.failure?.kind]), [
    ['929_0', 'CANCELLED', 'cancelled'], ['929_1', 'CANCELLED', 'cancelled'], ['929_2', 'CANCELLED', 'cancelled']
  ], 'the rest listed under the array\'s id, not lost')
})
