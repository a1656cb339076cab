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

/**
 * Property: random timelines of backlogs, allocations starting and ending, submissions failing. Checked on every
 * decision: never over the pending, allocation or worker limits, never a submission while paused or backing off,
 * never a release of a busy allocation, and a reason whenever tasks wait and nothing is submitted.
 */
test('property: 300 random timelines keep every limit, the pause and the back-off', () => {
  let seed = 4242
  const rand = (n: number): number => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return (seed >>> 8) % n }
  let submitted = 0; let paused = 0; let released = 0
  for (let run = 0; run < 300; run++) {
    const lim: AutoAllocLimits = { ...limits, maxAllocations: 1 + rand(5), maxPending: 1 + rand(3), maxWorkers: 1 + rand(6), nodesPerAllocation: 1 + rand(2) }
    let s: AutoAllocState = INITIAL_STATE
    let allocs: AllocationView[] = []
    let next = 1
    let t = 0
    for (let step = 0; step < 40; step++) {
      t += rand(3) * MIN
      const backlog = rand(4) === 0 ? [] : tasks(rand(30), { timeoutMs: rand(5) === 0 ? 300 * MIN : 10 * MIN })
      const d = decideAutoAlloc(s, { backlog, allocations: allocs, partition: part }, lim, t)
      const subs = d.actions.filter(a => a.kind === 'submit').length
      const alive = allocs.length - d.actions.filter(a => a.kind === 'release').length
      assert.ok(allocs.filter(a => a.state === 'pending').length + subs <= Math.max(lim.maxPending, allocs.filter(a => a.state === 'pending').length), 'pending limit')
      assert.ok(subs === 0 || alive + subs <= lim.maxAllocations, 'allocation limit')
      assert.ok(subs === 0 || (alive + subs) * lim.nodesPerAllocation <= lim.maxWorkers, 'worker limit')
      if (s.paused != null) assert.equal(subs, 0, 'paused')
      if (s.consecutiveFailures > 1 && s.lastFailureAt != null && t < s.lastFailureAt + lim.backoffMs[Math.min(s.consecutiveFailures, lim.backoffMs.length) - 1]) assert.equal(subs, 0, 'backing off')
      for (const a of d.actions) {
        if (a.kind !== 'release') continue
        const x = allocs.find(y => y.id === a.allocationId)
        assert.ok(x != null && x.state === 'running' && x.runningTasks === 0, 'only idle running allocations are released')
        released++
      }
      if (subs === 0 && backlog.some(g => g.tasks > 0)) assert.ok(d.reasons.length > 0, 'a reason when tasks wait and nothing is submitted')
      allocs = allocs.filter(a => !d.actions.some(x => x.kind === 'release' && x.allocationId === a.id))
      for (let i = 0; i < subs; i++) {
        if (rand(4) === 0) {
          s = onSubmitted(s, { ok: false, error: { kind: rand(2) === 0 ? 'permanent' : 'transient', message: 'sbatch: x' } }, lim, t)
          break // the loop stops at the first failure and decides again later
        }
        s = onSubmitted(s, { ok: true }, lim, t)
        allocs.push({ id: String(next++), state: 'pending', slots: part.cpusPerNode, runningTasks: 0, idleSince: null })
        submitted++
      }
      // Slurm moves on: pending ones start, running ones get or lose work, some end.
      allocs = allocs.flatMap(a => {
        if (a.state === 'pending') return rand(2) === 0 ? [{ ...a, state: 'running' as const, idleSince: t }] : [a]
        if (rand(10) === 0) return []
        const busy = rand(3) === 0 ? rand(a.slots + 1) : 0
        // A busy allocation may still carry the idleSince of before (the bridge's view lags): busy wins.
        return [{ ...a, runningTasks: busy, idleSince: busy > 0 && rand(2) === 0 ? null : (a.idleSince ?? t) }]
      })
      if (s.paused != null) { paused++; if (rand(3) === 0) s = resume(s) }
    }
  }
  assert.ok(submitted > 500 && paused > 10 && released > 50, `the timelines exercise everything (submitted ${submitted}, paused steps ${paused}, released ${released})`)
})
