/**
 * Auto-allocation over scripted timelines: explicit `now`, no clock, no Slurm. Each step observes, decides and
 * feeds results back the way the bridge's loop will.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  decideAutoAlloc, DEFAULT_LIMITS, INITIAL_STATE, onAllocationEnded, onSubmitted, parseAutoAllocSpec, resume, unfitReason,
  type AllocationView, type AutoAllocLimits, type AutoAllocState, type BacklogGroup, type PartitionView
} from '../../node/bridge/slurm/autoalloc.ts'

const MIN = 60_000
const part: PartitionView = { name: 'debug', state: 'UP', maxTimeMs: null, cpusPerNode: 4, memoryMbPerNode: 16000, gpusPerNode: 0 }
const limits: AutoAllocLimits = { ...DEFAULT_LIMITS, maxAllocations: 4, maxPending: 2, maxWorkers: 4, timeLimitMs: 120 * MIN, idleTimeoutMs: 5 * MIN }
const tasks = (n: number, o: Partial<BacklogGroup> = {}): BacklogGroup[] => [{ tasks: n, cores: 1, memoryMb: 0, gpus: 0, timeoutMs: 10 * MIN, ...o }]
const alloc = (id: string, o: Partial<AllocationView> = {}): AllocationView => ({ id, state: 'pending', slots: 4, runningTasks: 0, idleSince: null, ...o })
const submits = (d: ReturnType<typeof decideAutoAlloc>): number => d.actions.filter(a => a.kind === 'submit').length

test('a backlog gets allocations up to the pending limit, and the reason says why no more', () => {
  const d = decideAutoAlloc(INITIAL_STATE, { backlog: tasks(20), allocations: [], partition: part }, limits, 0)
  assert.equal(submits(d), 2, '20 tasks need 5 allocations of 4 slots, pending limit 2')
  assert.match(d.actions[0].reason, /allocation submitted: 20 waiting tasks fit partition debug/)
  assert.deepEqual(d.reasons, ['no allocation submitted: 2 already pending (limit 2)'])
  // Next pass: both pending -> nothing more; one starts running -> one more may go.
  const two = [alloc('10'), alloc('11')]
  assert.equal(submits(decideAutoAlloc(INITIAL_STATE, { backlog: tasks(20), allocations: two, partition: part }, limits, MIN)), 0)
  const oneRuns = [alloc('10', { state: 'running', runningTasks: 4 }), alloc('11')]
  const d3 = decideAutoAlloc(INITIAL_STATE, { backlog: tasks(16), allocations: oneRuns, partition: part }, limits, 2 * MIN)
  assert.equal(submits(d3), 1)
})

test('no allocation when the ones there have room, none over max allocations or max workers', () => {
  const d = decideAutoAlloc(INITIAL_STATE, { backlog: tasks(3), allocations: [alloc('10', { state: 'running', runningTasks: 1 })], partition: part }, limits, 0)
  assert.equal(submits(d), 0)
  assert.match(d.reasons[0], /3 waiting tasks fit in the 1 allocation already there/)
  const four = ['1', '2', '3', '4'].map(id => alloc(id, { state: 'running', runningTasks: 4 }))
  const full = decideAutoAlloc(INITIAL_STATE, { backlog: tasks(50), allocations: four, partition: part }, { ...limits, maxWorkers: 10 }, 0)
  assert.deepEqual(full.reasons, ['no allocation submitted: 4 allocations already (limit 4)'])
  const workers = decideAutoAlloc(INITIAL_STATE, { backlog: tasks(50), allocations: four.slice(0, 2), partition: part }, { ...limits, maxWorkers: 2 }, 0)
  assert.deepEqual(workers.reasons, ['no allocation submitted: 2 workers already (limit 2)'])
})

test('tasks that can never fit the partition or the allocation are named, not allocated for', () => {
  const short = { ...part, name: 'short', maxTimeMs: 2 * MIN }
  const d = decideAutoAlloc(INITIAL_STATE, { backlog: tasks(3, { timeoutMs: 60 * MIN }), allocations: [], partition: short }, limits, 0)
  assert.equal(submits(d), 0)
  assert.deepEqual(d.reasons, ['partition short: MaxTime 0:02:00 < task timeout 1h (3 tasks not sent to Slurm)'])
  assert.equal(unfitReason(tasks(1, { timeoutMs: 180 * MIN })[0], part, limits), 'allocation time limit 2h < task timeout 3h')
  assert.equal(unfitReason(tasks(1, { cores: 8 })[0], part, limits), 'partition debug: 4 CPUs per node < 8 cores asked')
  assert.equal(unfitReason(tasks(1, { gpus: 1 })[0], part, limits), 'partition debug: 0 GPUs per node < 1 asked')
  const mixed = decideAutoAlloc(INITIAL_STATE, { backlog: [...tasks(2, { cores: 8 }), ...tasks(2)], allocations: [], partition: part }, limits, 0)
  assert.equal(submits(mixed), 1, 'the fitting ones still get an allocation')
  const down = decideAutoAlloc(INITIAL_STATE, { backlog: tasks(2), allocations: [], partition: { ...part, state: 'DOWN' } }, limits, 0)
  assert.deepEqual(down.reasons, ['no allocation submitted: partition debug is DOWN'])
})

test('idle allocations are released after the idle timeout, busy ones kept; wakeAt says when to look again', () => {
  const allocations = [alloc('1', { state: 'running', idleSince: 0 }), alloc('2', { state: 'running', idleSince: 3 * MIN }), alloc('3', { state: 'running', runningTasks: 2 })]
  const early = decideAutoAlloc(INITIAL_STATE, { backlog: [], allocations, partition: part }, limits, 4 * MIN)
  assert.deepEqual(early.actions, [])
  assert.equal(early.wakeAt, 5 * MIN)
  const later = decideAutoAlloc(INITIAL_STATE, { backlog: [], allocations, partition: part }, limits, 5 * MIN)
  assert.deepEqual(later.actions, [{ kind: 'release', allocationId: '1', reason: 'allocation 1 released: idle for 5m (idle timeout 5m)' }])
  assert.equal(later.wakeAt, 8 * MIN)
})

test('timeline: failures back off 0, 1, 15 min; permanent ones pause after two; resume lifts it', () => {
  const obs = { backlog: tasks(4), allocations: [], partition: part }
  const transient = { ok: false as const, error: { kind: 'transient' as const, message: 'sbatch: Socket timed out on send/recv operation' } }
  let s: AutoAllocState = INITIAL_STATE
  let t = 0
  assert.equal(submits(decideAutoAlloc(s, obs, limits, t)), 1)
  s = onSubmitted(s, transient, limits, t)
  assert.equal(submits(decideAutoAlloc(s, obs, limits, t)), 1, 'first failure: back-off 0, try again at once')
  s = onSubmitted(s, transient, limits, t)
  const wait = decideAutoAlloc(s, obs, limits, t + 30_000)
  assert.equal(submits(wait), 0)
  assert.match(wait.reasons[0], /backing off after 2 failures \(last: sbatch: Socket timed out on send\/recv operation\); next try in 30s/)
  assert.equal(wait.wakeAt, t + MIN)
  t += MIN
  assert.equal(submits(decideAutoAlloc(s, obs, limits, t)), 1, 'after 1 min')
  s = onSubmitted(s, transient, limits, t)
  assert.equal(submits(decideAutoAlloc(s, obs, limits, t + 14 * MIN)), 0, '15 min after the third')
  assert.equal(submits(decideAutoAlloc(s, obs, limits, t + 15 * MIN)), 1)
  s = onSubmitted(s, { ok: true }, limits, t + 15 * MIN)
  assert.equal(s.consecutiveFailures, 0, 'a success clears the count')
  // A bad account: permanent, pauses after the second in a row.
  const badAccount = { ok: false as const, error: { kind: 'permanent' as const, message: 'sbatch: Invalid account or account/partition combination specified' } }
  s = onSubmitted(s, badAccount, limits, t)
  assert.equal(s.paused, null)
  s = onSubmitted(s, badAccount, limits, t)
  assert.match(s.paused ?? '', /2 permanent failures in a row, last: sbatch: Invalid account/)
  const paused = decideAutoAlloc(s, obs, limits, t + 1000 * MIN)
  assert.equal(submits(paused), 0, 'paused stays paused, however long')
  assert.match(paused.reasons[0], /no allocation submitted: paused \(2 permanent failures.*`meshfarm bridge resume` lifts it/)
  s = resume(s)
  assert.equal(submits(decideAutoAlloc(s, obs, limits, t + 1000 * MIN)), 1)
})

test('many transient failures pause too; an allocation that died unused counts, one that ran tasks clears', () => {
  const flaky = { ok: false as const, error: { kind: 'transient' as const, message: 'sbatch: Resource temporarily unavailable' } }
  let s: AutoAllocState = INITIAL_STATE
  for (let i = 0; i < limits.pauseAfterFailures; i++) s = onSubmitted(s, flaky, limits, i)
  assert.match(s.paused ?? '', /5 failures in a row/)
  s = onAllocationEnded(INITIAL_STATE, { ranTasks: false, failed: true, message: 'allocation 9: BOOT_FAIL' }, limits, 0)
  assert.equal(s.consecutiveFailures, 1)
  assert.equal(onAllocationEnded(s, { ranTasks: true, failed: true, message: 'x' }, limits, 1).consecutiveFailures, 0)
})

test('--auto-alloc spec: keys checked, durations parsed, max sizes pending and workers', () => {
  const l = parseAutoAllocSpec('max=4,time=2h,idle=5m')
  assert.equal(l.maxAllocations, 4); assert.equal(l.maxPending, 4); assert.equal(l.maxWorkers, 4)
  assert.equal(l.timeLimitMs, 2 * 3_600_000); assert.equal(l.idleTimeoutMs, 5 * MIN)
  assert.equal(parseAutoAllocSpec('max=4,pending=1,nodes=2').maxWorkers, 8)
  assert.equal(parseAutoAllocSpec('max=4,pending=1').maxPending, 1)
  assert.throws(() => parseAutoAllocSpec('max=four'), /--auto-alloc: max=four: a whole number >= 1/)
  assert.throws(() => parseAutoAllocSpec('maxx=4'), /--auto-alloc: unknown key "maxx"/)
  assert.throws(() => parseAutoAllocSpec('time=2 hours'), /--auto-alloc: time: must be a duration/)
  assert.throws(() => parseAutoAllocSpec('idle'), /expected key=value/)
})
