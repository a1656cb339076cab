/**
 * The bridge's pure parts: its flags (each bad one one line), what it offers from a captured partition, the
 * command line an array element runs, what can never fit, and Slurm's endings as the mesh counts them.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { compileBridge } from '../../node/bridge/slurm/bridge-config.ts'
import { parsePartition, parseSinfoNodes } from '../../node/bridge/slurm/parse.ts'
import { allocationOffer, partitionLimits, partitionOffer, DEFAULT_MAX_JOBS } from '../../node/bridge/slurm/offer.ts'
import { chunkShape, meshOutcome, neverFits, slurmTaskEnv, taskScript, unranOutcome } from '../../node/bridge/slurm/forward-plan.ts'
import { taskOutcome } from '../../node/bridge/slurm/outcome.ts'
import { classify } from '../../node/results.ts'
import { SEQUENCE_SCRIPT } from '../../node/backend/launch-plan.ts'
import type { BackendTask } from '../../node/backend/backend.ts'
import { remoteIsolation } from '../../node/backend/remote.ts'

const fixture = (name: string): string => readFileSync(join(import.meta.dirname, 'fixtures', 'slurm', name), 'utf8')
const HOME = { userHome: '/home/ada' }

test('bridge flags: three modes, defaults, and each mistake in one line naming the flag', () => {
  const f = compileBridge({ partition: 'debug' }, HOME)
  assert.equal(f.mode, 'forward')
  assert.equal(f.pollMs, 5000)
  assert.equal(f.workDir, '/home/ada/meshfarm-work')
  assert.ok(Object.isFrozen(f))
  assert.equal(compileBridge({ inAllocation: true, drainBefore: '90s' }, HOME).drainBeforeMs, 90_000)
  const auto = compileBridge({ partition: 'gpu', autoAlloc: 'max=4,time=2h,idle=5m' }, HOME)
  assert.equal(auto.mode, 'auto')
  assert.deepEqual([auto.autoAlloc?.maxAllocations, auto.autoAlloc?.timeLimitMs, auto.autoAlloc?.idleTimeoutMs], [4, 7_200_000, 300_000])
  const bad: Array<[Parameters<typeof compileBridge>[0], RegExp]> = [
    [{}, /^--partition: required/],
    [{ partition: 'a b' }, /^--partition: "a b": letters, digits/],
    [{ partition: 'p', account: 'x;y' }, /^--account: "x;y"/],
    [{ inAllocation: true, autoAlloc: 'max=1' }, /^--in-allocation and --auto-alloc: give one of them/],
    [{ inAllocation: true, partition: 'p' }, /^--partition: not with --in-allocation/],
    [{ partition: 'p', poll: '200ms' }, /^--poll: 200ms: at least 1 s/],
    [{ partition: 'p', poll: 'often' }, /^--poll: must be a duration/],
    [{ partition: 'p', workDir: '/scratch/my work' }, /^--work-dir: "\/scratch\/my work": a path of plain characters/],
    [{ partition: 'p', sbatchArg: ['--array=1-3'] }, /^--sbatch-arg: --array=1-3: the bridge sets --array itself/],
    [{ partition: 'p', sbatchArg: ['qos=x'] }, /^--sbatch-arg: "qos=x": expected an option/],
    [{ partition: 'p', maxJobs: '0' }, /^--max-jobs/],
    [{ inAllocation: true, maxJobs: '5' }, /^--max-jobs: only in forward mode/],
    [{ inAllocation: true, throttle: '5' }, /^--throttle: only in forward mode/],
    [{ partition: 'p', drainBefore: '1m' }, /^--drain-before: only with --in-allocation or --auto-alloc/],
    [{ partition: 'p', autoAlloc: 'max=two' }, /^--auto-alloc: max=two: a whole number/],
    [{ partition: 'p', label: ['site=lab'] }, /^--label: site is set by the bridge itself/]
  ]
  for (const [flags, re] of bad) assert.throws(() => compileBridge(flags, HOME), (e: Error) => re.test(e.message) && !e.message.includes('\n'), JSON.stringify(flags))
})

test('forward offer from a captured partition: maxJobs tasks at once, labels, MaxTime as maxTaskMs, nothing while not UP', () => {
  const nodes = parseSinfoNodes(fixture('sinfo-nodes.txt'))
  const lines = fixture('scontrol-partitions.txt').split('\n')
  const debug = parsePartition(lines.find(l => l.startsWith('PartitionName=debug '))!, nodes)
  const short = parsePartition(lines.find(l => l.startsWith('PartitionName=short '))!, nodes)
  const base = { hostname: 'login1-slurm', slurmVersion: '22.05.8', labels: { team: 'a' }, runsAsRoot: false }
  const r = partitionOffer(debug, null, base)
  assert.equal(r.slots, DEFAULT_MAX_JOBS)
  assert.equal(r.backend, 'slurm')
  assert.deepEqual(r.labels, { team: 'a', site: 'cluster', partition: 'debug' })
  assert.equal(r.maxTaskMs, undefined, 'MaxTime UNLIMITED')
  assert.ok(r.cores >= DEFAULT_MAX_JOBS, 'room for every slot to take a node-sized task')
  assert.equal(partitionOffer(short, 8, base).maxTaskMs, 120_000)
  assert.equal(partitionOffer(short, 8, base).slots, 8)
  assert.equal(partitionOffer({ ...debug, state: 'DOWN' }, null, base).slots, 0)
  const drained = partitionOffer({ ...debug, nodes: debug.nodes.map(n => ({ ...n, state: 'drained' })) }, null, base)
  assert.equal(drained.slots, 0, 'no usable node, no slots')
  assert.deepEqual(partitionLimits(debug), { name: 'debug', cpusPerNode: nodes[0].cpus, memoryMbPerNode: nodes[0].memoryMb, gpusPerNode: 0, maxTimeMs: null })
  const a = allocationOffer({ partition: 'debug', cpus: 4, memoryMb: 1000, gpus: 2, maxTaskMs: 65_432 }, base, { allocation: '77' })
  assert.deepEqual([a.slots, a.cores, a.gpus.length, a.maxTaskMs, a.labels.allocation], [4, 4, 2, 65_432, '77'])
  assert.equal(allocationOffer({ partition: 'debug', cpus: 0, memoryMb: 0, gpus: 0, maxTaskMs: 0 }, base).slots, 0)
})

const task = (o: Partial<BackendTask> = {}): BackendTask => ({
  attemptId: 41, jobId: 7, index: 3, commands: ['echo hi'], env: { GREETING: "it's" }, taskDir: '/scratch/w/tasks/41', jobDir: '/scratch/w/jobs/7',
  stdoutPath: '/h/.meshfarm/agent/capture/41.out', stderrPath: '/h/.meshfarm/agent/capture/41.err', timeoutMs: 0, cores: 2, memoryMb: 0, gpuIds: [], slot: 0, ...o
})

test('an element\'s script: the task\'s variables exported, quoted; several commands as the local launcher runs them', () => {
  const env = slurmTaskEnv(task())
  assert.equal(env.MESHFARM_TASK_ID, '7.3')
  assert.equal(env.MESHFARM_ATTEMPT_ID, '41')
  assert.equal(env.OMP_NUM_THREADS, '2')
  assert.equal(env.GREETING, "it's")
  for (const k of ['CUDA_VISIBLE_DEVICES', 'MESHFARM_GPUS', 'MESHFARM_AGENT_PID']) assert.equal(env[k], undefined, `${k} comes from Slurm, or means nothing on a node`)
  assert.equal(taskScript(['echo hi'], { A: "x'y" }), "export A='x'\\''y'\necho hi")
  assert.equal(taskScript(['a', 'b c'], {}), `set -- 'a' 'b c'\n${SEQUENCE_SCRIPT}`)
  assert.throws(() => taskScript(['x'], { 'A-B': '1' }), /not a variable name/)
  assert.equal(chunkShape(task()), chunkShape(task({ attemptId: 42, index: 4 })), 'one job, one shape: one chunk')
  assert.notEqual(chunkShape(task()), chunkShape(task({ jobId: 8 })))
  assert.notEqual(chunkShape(task()), chunkShape(task({ timeoutMs: 60_000 })))
})

test('what a partition can never run is refused at once with the reason, not submitted', () => {
  const p = { name: 'gpu', cpusPerNode: 32, memoryMbPerNode: 256_000, gpusPerNode: 4, maxTimeMs: 3_600_000 }
  assert.equal(neverFits(task({ timeoutMs: 7_200_000 }), p), 'partition gpu: MaxTime 1:00:00 < task timeout 2h')
  assert.equal(neverFits(task({ cores: 64 }), p), 'partition gpu: its largest node has 32 CPUs < 64 cores asked')
  assert.equal(neverFits(task({ gpuIds: [0, 1, 2, 3, 4, 5] }), p), 'partition gpu: its largest node has 4 GPUs < 6 asked')
  assert.equal(neverFits(task({ memoryMb: 512_000 }), p), 'partition gpu: its largest node has 256000 MB < 512000 MB asked')
  assert.equal(neverFits(task({ timeoutMs: 0, cores: 32 }), p), null)
})

test('Slurm\'s endings as the mesh counts them, Slurm\'s words in detail, exit codes kept', () => {
  const el = { arrayJobId: '217', index: 4, node: 'n01', startedAt: 1000, endedAt: 5000 }
  const status = (exitCode: number, signal: number | null = null) => ({ index: 4, taskId: '41', exitCode, signal, terminated: false, startedAt: 1000, endedAt: 5000, host: 'n01', slurmJobId: '217_4' })
  const cases: Array<[string | null, ReturnType<typeof status> | null, string | undefined, number | null]> = [
    ['COMPLETED', status(0), undefined, 0],
    ['FAILED', status(3), 'exit', 3],
    ['FAILED', status(139, 11), 'signal', 139],
    ['TIMEOUT', null, 'timeout', null],
    ['NODE_FAIL', null, 'node-fail', null],
    ['BOOT_FAIL', null, 'node-fail', null],
    ['PREEMPTED', null, 'preempted', null],
    ['OUT_OF_MEMORY', status(137, 9), 'memory', 137],
    ['CANCELLED', null, 'batch', null],
    [null, null, 'node-fail', null]
  ]
  for (const [state, s, kind, exit] of cases) {
    const o = meshOutcome(taskOutcome({ jobId: '217_4', slurmState: state, reason: 'None', status: s })!, el)
    assert.equal(o.failure?.kind, kind, String(state))
    assert.equal(o.exitCode, exit, String(state))
    assert.deepEqual(o.backend, { system: 'slurm', jobId: '217', arrayIndex: 4, node: 'n01' })
    if (kind != null) assert.match(o.failure!.detail!, new RegExp(`^Slurm job 217_4: ${state ?? 'no longer listed'}`))
    // What the agent reports: the backend's kind, unless the agent itself cancelled it.
    assert.equal(classify(o, null, 0)?.kind, kind, String(state))
    assert.equal(classify(o, { kind: 'cancel', reason: 'job cancelled' }, 0)?.kind, 'cancelled')
  }
  const t = meshOutcome(taskOutcome({ jobId: '217_4', slurmState: 'TIMEOUT', reason: 'TimeLimit', status: null })!, el)
  assert.equal(t.timedOut, true)
  assert.equal(meshOutcome(taskOutcome({ jobId: '217_4', slurmState: 'OUT_OF_MEMORY', reason: 'OutOfMemory', status: null })!, el).overMemoryLimit, true)
  assert.equal(classify(unranOutcome(1, { kind: 'batch', message: 'not submitted: sbatch: Invalid account', retryable: false }), null, 0)?.retryable, false)
})

test('tasks under Slurm get no sandbox of ours: refused on the coordinator\'s state folder, fine on a folder of its own', () => {
  assert.throws(() => remoteIsolation(true, '/home/ada/.meshfarm'), (e: Error & { code?: string }) => e.code === 'FORBIDDEN' && /coordinator's state folder: tasks run by a batch system run as your user and could read the mesh's keys there/.test(e.message) && !e.message.includes('\n'))
  assert.deepEqual(remoteIsolation(false, '/home/ada/.meshfarm-bridge'), { mode: 'none', mounts: null, userns: false, hide: [], slotUsers: null, bwrap: null, inputs: 'link', shared: 'link' })
})
