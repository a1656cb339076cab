/**
 * The pure parts between the harvest policy, the reactor and the machine: what the policy sees, what is offered,
 * what is handed back, when agent.update goes out, what `status --here` shows; and what each task asks the
 * launcher for (its group, priorities, limits), what the start log says, how a memory kill reads.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { AgentResources, Assignment } from '../../shared/protocol/messages.ts'
import type { HeldAttempt } from '../../node/reactor.ts'
import { handBack, harvestStatus, hereTasks, offer, shouldUpdate, taskViews } from '../../node/harvest/offer.ts'
import type { HarvestSummary } from '../../node/harvest/policy.ts'
import { controlLines, spawnExtras, taskLimits } from '../../node/cgroups/hooks.ts'
import { classify } from '../../node/results.ts'
import { agentGroupName } from '../../node/harvest/agent-harvest.ts'
import { formatHere } from '../../bin/commands/harvest.ts'

const BASE: AgentResources = { hostname: 'desk', os: 'linux', cores: 8, physicalCores: 4, memoryMb: 16_000, slots: 4, gpus: [{ index: 0, model: 'A100', memoryMb: 40_000 }], labels: {}, runsAsRoot: false }

function held (id: number, phase: HeldAttempt['phase'], o: { gpu?: boolean, stopping?: boolean, suspendedSince?: number | null, owner?: string } = {}): HeldAttempt {
  const a: Assignment = {
    attemptId: id, jobId: 7, index: id, shared: [], gpuIds: o.gpu === true ? [0] : [], cores: 1, ...(o.owner != null ? { owner: o.owner } : {}),
    task: { index: id, name: `t${id}`, commands: ['true'], env: {}, inputs: [], outputs: [], timeoutMs: 0, constraints: {}, cores: 1, gpus: o.gpu === true ? 1 : 0, memoryMb: 0 }
  }
  return { a, phase, stopping: o.stopping ?? false, suspendedSince: o.suspendedSince ?? null }
}

const SUMMARY: HarvestSummary = { mode: 'owner', ownerPresent: true, idleSince: 1000, lendingUntil: null, control: 'default', suspendedTasks: 0, reason: 'owner present: keyboard used 5 s ago' }

test('the policy sees running attempts only, suspended while a suspension is open, GPU ones marked', () => {
  assert.deepEqual(taskViews([held(1, 'running'), held(2, 'running', { gpu: true, suspendedSince: 5 }), held(3, 'ready'), held(4, 'collecting')]), [
    { id: '1', gpu: false, state: 'running' }, { id: '2', gpu: true, state: 'suspended' }
  ])
})

test('offer: no slots while not lending, no GPUs while another process uses one; the rest as the agent has it', () => {
  assert.deepEqual(offer(BASE, { cpu: true, gpu: true }), BASE)
  assert.deepEqual(offer(BASE, { cpu: false, gpu: false }), { ...BASE, slots: 0, gpus: [] })
  assert.deepEqual(offer(BASE, { cpu: true, gpu: false }), { ...BASE, gpus: [] })
  assert.deepEqual(harvestStatus({ cpu: false, gpu: false }, SUMMARY), { lending: false, ownerPresent: true, idleSinceMs: 1000, lendingUntil: null, reason: SUMMARY.reason })
})

test('hand back: attempts taken but not started go elsewhere when nothing is lent (GPU ones when a GPU is taken)', () => {
  const h = [held(1, 'staging'), held(2, 'ready', { gpu: true }), held(3, 'running'), held(4, 'ready', { stopping: true })]
  assert.deepEqual(handBack(h, { cpu: true, gpu: true }), [])
  assert.deepEqual(handBack(h, { cpu: false, gpu: false }).map(b => b.attemptId), [1, 2])
  assert.deepEqual(handBack(h, { cpu: true, gpu: false }), [{ attemptId: 2, why: 'harvest: a GPU is in use by another process' }])
})

test('agent.update: at once when the offer or the state changes; the words alone at most every 30 s', () => {
  const status = harvestStatus({ cpu: false, gpu: false }, SUMMARY)
  const last = { slots: 0, gpus: 0, status, at: 0 }
  assert.equal(shouldUpdate(null, last, 0), true)
  assert.equal(shouldUpdate(last, { ...last }, 1), false)
  assert.equal(shouldUpdate(last, { ...last, slots: 4 }, 1), true)
  assert.equal(shouldUpdate(last, { ...last, status: { ...status, ownerPresent: null } }, 1), true)
  assert.equal(shouldUpdate(last, { ...last, status: { ...status, lendingUntil: 5 } }, 1), true)
  const words = { ...last, status: { ...status, reason: 'owner present: keyboard used 25 s ago' } }
  assert.equal(shouldUpdate(last, words, 29_999), false)
  assert.equal(shouldUpdate(last, words, 30_000), true)
})

test('status --here: each task with its submitter, its state and since when; in words', () => {
  const tasks = hereTasks([held(1, 'running', { owner: 'alice' }), held(2, 'running', { suspendedSince: 500 }), held(3, 'staging'), held(4, 'running', { stopping: true }), held(5, 'collecting')], id => id === 1 ? 100 : null)
  assert.deepEqual(tasks, [
    { id: '7.1', name: 't1', submitter: 'alice', state: 'running', since: 100 },
    { id: '7.2', name: 't2', submitter: 'unknown', state: 'suspended', since: 500 },
    { id: '7.3', name: 't3', submitter: 'unknown', state: 'starting', since: null },
    { id: '7.4', name: 't4', submitter: 'unknown', state: 'vacating', since: null }
  ])
  const text = formatHere({ harvest: { ...SUMMARY, mode: 'suspended', control: 'never' }, tasks: tasks.slice(1, 2), sources: ['ttys: 1 in use'] }, 60_500)
  assert.match(text, /^this machine: suspended: owner present: keyboard used 5 s ago\n {2}owner present; last input 59 s ago \(.*\); owner said: lend --never\n/)
  assert.match(text, /│ 7\.2 +│ t2 +│ unknown │ suspended │ 1 min +│/)
  assert.match(text, /\npresence:\n {2}ttys: 1 in use$/)
  assert.match(formatHere({ harvest: { ...SUMMARY, ownerPresent: null, idleSince: null }, tasks: [], sources: [] }, 0), /^this machine: not lent: .*\n {2}owner presence unknown\nno tasks here\npresence:$/)
})

test('each task asks the launcher for its group, and for nice 19, idle I/O and RLIMIT_DATA only where needed and possible', () => {
  const all = new Set(['cgroup', 'nice', 'ioprio', 'rlimits'] as const)
  assert.deepEqual(taskLimits({ memoryMb: 512, cores: 2 }, true), { memoryBytes: 512 * 2 ** 20, cores: 2, harvested: true })
  assert.deepEqual(taskLimits({ memoryMb: 0, cores: 0 }, false), { memoryBytes: null, cores: 1, harvested: false })
  assert.deepEqual(spawnExtras({ procFiles: ['/cg/1/cgroup.procs'], nice: 19, ioIdle: true, rlimitDataBytes: null }, all), { extras: { cgroupProcs: ['/cg/1/cgroup.procs'], nice: 19, ioprio: { class: 3, level: 0 } }, missing: [] })
  assert.deepEqual(spawnExtras({ procFiles: [], nice: 0, ioIdle: false, rlimitDataBytes: 1024 }, all), { extras: { rlimits: { data: [1024, 1024] } }, missing: [] })
  // The Node launcher: cgroups and nice, no I/O priority or resource limits.
  const js = new Set(['cgroup', 'nice'] as const)
  assert.deepEqual(spawnExtras({ procFiles: [], nice: 19, ioIdle: true, rlimitDataBytes: 1024 }, js), { extras: { nice: 19 }, missing: ['I/O priority', 'memory limits (RLIMIT_DATA)'] })
  assert.deepEqual(controlLines({ kind: 'process-tree', describe: 'cgroups: not usable (turned off): ...', controllers: new Set() }, js, true), [
    'cgroups: not usable (turned off): ...', 'harvested tasks run at nice 19', 'this task launcher cannot set I/O priority, memory limits (RLIMIT_DATA): tasks run without them'
  ])
  assert.deepEqual(controlLines({ kind: 'cgroup-v1', describe: 'cgroups v1: ...', controllers: new Set(['memory', 'cpu']) }, all, false), ['cgroups v1: ...'])
})

test('a task over its memory fails with kind memory (not retried), however it exited; words true to what was measured', () => {
  const o = { exitCode: 0, signal: null, timedOut: false, error: null, startedAt: 0, endedAt: 1, stdoutBytes: 0, stderrBytes: 0, peakMemoryBytes: 64 * 2 ** 20, overMemoryLimit: true, memoryLimitBytes: 64 * 2 ** 20 }
  assert.deepEqual(classify(o, null, 0), { kind: 'memory', message: 'needed more than its 64 MiB of memory (peak 64 MiB, at the limit): killed by the kernel; ask for more memory', retryable: false })
  assert.equal(classify({ ...o, exitCode: null, signal: 'SIGKILL', overMemoryLimit: false }, null, 0)?.kind, 'signal')
  assert.equal(classify({ ...o, overMemoryLimit: true }, { kind: 'cancel', reason: 'x' }, 0)?.kind, 'cancelled')
})

test('an agent\'s groups are named after its state folder: the same across restarts, different for two agents', () => {
  assert.equal(agentGroupName('/home/a/.meshfarm/agent'), agentGroupName('/home/a/.meshfarm/agent'))
  assert.notEqual(agentGroupName('/home/a/.meshfarm/agent'), agentGroupName('/home/b/.meshfarm/agent'))
  assert.match(agentGroupName('/x'), /^agent-[0-9a-f]{12}$/)
})
