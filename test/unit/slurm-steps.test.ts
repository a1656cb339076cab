/**
 * Tasks as srun steps inside allocations, the decisions over scripted timelines (explicit `now`, no Slurm): an
 * allocation read from captured scontrol output, which node a step goes to, the offer shrinking as the end
 * approaches, what goes back at the drain, and srun's endings as outcomes.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseJobDetails } from '../../node/bridge/slurm/parse.ts'
import { allocationShape, chooseNode, offeredMaxTaskMs, parseTres, stepMemoryMb, tasksToVacate, timeLeft, type NodeUse } from '../../node/bridge/slurm/steps-plan.ts'
import { stepOutcome } from '../../node/bridge/slurm/steps.ts'
import { classify } from '../../node/results.ts'

const fixture = (name: string): string => readFileSync(join(import.meta.dirname, 'fixtures', 'slurm', name), 'utf8')
const MIN = 60_000

test('an allocation from captured scontrol output: nodes, CPUs, memory, end; TRES read whole', () => {
  const [d] = parseJobDetails(fixture('scontrol-job-allocation.txt'))
  const a = allocationShape(d)
  assert.equal(a.jobId, '922')
  assert.equal(a.partition, 'debug')
  assert.deepEqual(a.nodes, [{ name: 'vm', cpus: 2 }])
  assert.equal(a.memoryMbPerNode, 512)
  assert.equal(a.endsAt, d.startAt! + 3 * MIN)
  assert.deepEqual(parseTres('cpu=8,mem=4G,node=2,billing=8,gres/gpu=4'), { cpus: 8, memoryMb: 4096, nodes: 2, gpus: 4 })
  const two = allocationShape({ ...d, nodes: 'n[1-2]', fields: { ...d.fields, TRES: 'cpu=5,mem=2G,node=2,gres/gpu=2' } })
  assert.deepEqual(two.nodes, [{ name: 'n1', cpus: 3 }, { name: 'n2', cpus: 2 }])
  assert.deepEqual([two.memoryMbPerNode, two.gpusPerNode], [1024, 1])
  assert.equal(allocationShape({ ...d, timeLimitMs: null }).endsAt, null, 'no limit, no end')
  assert.throws(() => allocationShape({ ...d, nodes: '' }), /no nodes/)
})

const node = (n: string, free: number, o: Partial<NodeUse> = {}): NodeUse => ({ allocation: 'a1', node: n, freeCpus: free, freeMemoryMb: 8000, freeGpus: 0, endsAt: 60 * MIN, ...o })
const req = (o: Partial<{ cores: number, memoryMb: number, gpus: number, timeoutMs: number }> = {}): { cores: number, memoryMb: number, gpus: number, timeoutMs: number } => ({ cores: 1, memoryMb: 0, gpus: 0, timeoutMs: 0, ...o })

test('a step goes to the fullest node that fits and has time for its limit before the drain', () => {
  const nodes = [node('n1', 4), node('n2', 1), node('n3', 2, { allocation: 'a2', endsAt: 20 * MIN })]
  assert.equal(chooseNode(nodes, req(), 0, 2 * MIN)?.node, 'n2', 'the fullest: emptier allocations can be released')
  assert.equal(chooseNode(nodes, req({ cores: 2 }), 0, 2 * MIN)?.node, 'n3')
  assert.equal(chooseNode(nodes, req({ cores: 2, timeoutMs: 30 * MIN }), 0, 2 * MIN)?.node, 'n1', 'a2 drains in 18 min: no room for 30')
  assert.equal(chooseNode(nodes, req({ cores: 8 }), 0, 2 * MIN), null)
  assert.equal(chooseNode(nodes, req({ gpus: 1 }), 0, 2 * MIN), null)
  assert.equal(chooseNode(nodes, req({ memoryMb: 9000 }), 0, 2 * MIN), null)
  assert.equal(chooseNode(nodes, req(), 58 * MIN, 2 * MIN), null, 'past every drain point')
  assert.equal(timeLeft(null, 123, 2 * MIN), Infinity)
  assert.equal(stepMemoryMb(0, 1, { cpus: 2 }, 512), 256, 'without --mem a step would take the node\'s whole memory')
  assert.equal(stepMemoryMb(300, 1, { cpus: 2 }, 512), 300)
  assert.equal(stepMemoryMb(0, 1, { cpus: 2 }, 0), 0)
})

test('a timeline: the offer shrinks as the end comes, the drain hands back what cannot finish', () => {
  const end = 60 * MIN
  const drain = 2 * MIN
  const live = [{ endsAt: end, draining: false }]
  // At the start: 58 min of limit on offer; it shrinks as time goes; a draining allocation offers nothing.
  assert.equal(offeredMaxTaskMs(live, 0, drain), 58 * MIN)
  assert.equal(offeredMaxTaskMs(live, 40 * MIN, drain), 18 * MIN)
  assert.equal(offeredMaxTaskMs(live, 59 * MIN, drain), 0)
  assert.equal(offeredMaxTaskMs([{ endsAt: end, draining: true }], 0, drain), 0)
  assert.equal(offeredMaxTaskMs([...live, { endsAt: null, draining: false }], 0, drain), null, 'one without an end: no limit')
  assert.equal(offeredMaxTaskMs([], 0, drain), 0)
  // At the drain (58 min): a task that ends before the end finishes; one that would not, or has no limit, goes back.
  const running = [
    { attemptId: 1, allocation: 'a1', startedAt: 50 * MIN, timeoutMs: 5 * MIN },
    { attemptId: 2, allocation: 'a1', startedAt: 50 * MIN, timeoutMs: 20 * MIN },
    { attemptId: 3, allocation: 'a1', startedAt: 57 * MIN, timeoutMs: 0 },
    { attemptId: 4, allocation: 'a2', startedAt: 50 * MIN, timeoutMs: 20 * MIN }
  ]
  const ends = new Map<string, number | null>([['a1', end], ['a2', 90 * MIN]])
  assert.deepEqual(tasksToVacate(running, ends, new Set(['a1']), 10_000), [2, 3], 'a2 is not draining')
  assert.deepEqual(tasksToVacate(running, ends, new Set(['a1', 'a2']), 10_000), [2, 3])
  assert.deepEqual(tasksToVacate([{ attemptId: 5, allocation: 'a1', startedAt: 55 * MIN, timeoutMs: 5 * MIN - 5000 }], ends, new Set(['a1']), 10_000), [5], 'within the margin of the end')
})

test('srun\'s endings: exit codes, signals it names, an allocation gone under it (not the task\'s fault)', () => {
  const e = { jobId: '922', node: 'vm', startedAt: 10, endedAt: 20, timedOut: false }
  assert.equal(stepOutcome({ exitCode: 0, signal: null, srunSaid: '' }, e).exitCode, 0)
  const three = stepOutcome({ exitCode: 3, signal: null, srunSaid: 'srun: error: vm: task 0: Exited with exit code 3' }, e)
  assert.deepEqual([three.exitCode, three.signal, classify(three, null, 0)?.kind], [3, null, 'exit'])
  const segv = stepOutcome({ exitCode: 139, signal: null, srunSaid: 'srun: error: vm: task 0: Segmentation fault' }, e)
  assert.deepEqual([segv.exitCode, segv.signal, classify(segv, null, 0)?.kind], [null, 'SIGSEGV', 'signal'])
  const gone = stepOutcome({ exitCode: 1, signal: null, srunSaid: 'srun: error: Unable to create step for job 922: Job/step already completing or completed' }, e)
  assert.equal(gone.failure?.kind, 'node-fail')
  assert.match(gone.failure?.detail ?? '', /Unable to create step/)
  const oom = stepOutcome({ exitCode: 137, signal: null, srunSaid: 'slurmstepd: error: Detected 1 oom-kill event(s) in StepId=922.3' }, e)
  assert.equal(classify(oom, null, 0)?.kind, 'memory')
  const late = stepOutcome({ exitCode: 137, signal: null, srunSaid: 'srun: error: vm: task 0: Killed' }, { ...e, timedOut: true })
  assert.equal(classify(late, null, 5000)?.kind, 'timeout')
  assert.deepEqual(stepOutcome({ exitCode: 0, signal: null, srunSaid: '' }, e).backend, { system: 'slurm', jobId: '922', node: 'vm' })
})
