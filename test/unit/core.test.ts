/**
 * The coordinator's state machine, driven directly with a recording comm and a real SQLite store: every
 * scheduling and failure rule without a network.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CoordinatorCore, type CoordinatorComm } from '../../coordinator/core.ts'
import { Store } from '../../coordinator/store.ts'
import type { AgentResources, Assignment, AttemptResult, CoordMessage, JobHeader, TaskSpec } from '../../shared/protocol/messages.ts'
import type { MeshEvent } from '../../shared/protocol/events.ts'
import { whyWaiting } from '../../coordinator/why.ts'

const EMPTY = { name: '.meshfarm/stdout', hash: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', size: 0 }

class Recorder implements CoordinatorComm {
  sent: Array<{ to: string, msg: CoordMessage }> = []
  events: MeshEvent[] = []
  send = (to: string, msg: CoordMessage): void => { this.sent.push({ to, msg }) }
  event = (e: MeshEvent): void => { this.events.push(e) }
  assignments (to?: string): Assignment[] {
    const out = this.sent.filter(s => s.msg.t === 'coord.assign' && (to == null || s.to === to))
      .flatMap(s => (s.msg as Extract<CoordMessage, { t: 'coord.assign' }>).assignments)
    return out
  }

  take (): Assignment[] {
    const a = this.assignments()
    this.sent = []
    return a
  }
}

function resources (host: string, slots: number, gpus = 0): AgentResources {
  return {
    hostname: host, os: 'linux', cores: slots, physicalCores: slots, memoryMb: 8000, slots,
    gpus: Array.from({ length: gpus }, (_, i) => ({ index: i, model: 'test', memoryMb: 1000 })), labels: {}, runsAsRoot: false
  }
}

function header (retries = 0): JobHeader {
  return { name: 'j', layout: 'per-task', shared: [], retries, specText: '', specFile: 'j.yaml' }
}

function tasks (n: number, extra: Partial<TaskSpec> = {}): TaskSpec[] {
  return Array.from({ length: n }, (_, i) => ({
    index: i, name: `t${i}`, commands: ['true'], env: {}, inputs: [], outputs: [], timeoutMs: 0,
    constraints: {}, cores: 1, gpus: 0, memoryMb: 0, ...extra
  }))
}

function result (a: Assignment, exitCode = 0): AttemptResult {
  return {
    attemptId: a.attemptId, jobId: a.jobId, index: a.index, state: exitCode === 0 ? 'done' : 'failed', exitCode, signal: null,
    failure: exitCode === 0 ? undefined : { kind: 'exit', message: `exited with code ${exitCode}`, retryable: true },
    startedAt: 1000, endedAt: 2000, stdout: EMPTY, stderr: EMPTY, outputs: []
  }
}

function setup (opts: { crashLimit?: number, nameOf?: (peer: string) => string | undefined, hasBlob?: (hash: string) => boolean } = {}): { core: CoordinatorCore, comm: Recorder, store: Store, path: string } {
  const path = join(mkdtempSync(join(tmpdir(), 'meshfarm-core-')), 'state.db')
  const store = new Store(path)
  const comm = new Recorder()
  const core = new CoordinatorCore(store, comm, { agentLostMs: 1000, crashLimit: opts.crashLimit ?? 3, prefetch: 0, nameOf: opts.nameOf, hasBlob: opts.hasBlob }, 0)
  return { core, comm, store, path }
}

test('tasks spread over agents, one per slot, and each commits once', () => {
  const { core, comm } = setup()
  core.onAgentHello('A', resources('a', 2), [], [], false, [], 0)
  core.onAgentHello('B', resources('b', 2), [], [], false, [], 0)
  const jobId = core.submit('owner', header(), tasks(6), 0)
  assert.equal(core.schedulePass(0), 4)
  const onA = comm.assignments('A')
  const onB = comm.assignments('B')
  assert.equal(onA.length, 2)
  assert.equal(onB.length, 2)
  comm.take()
  // Nothing over-committed: a full mesh places nothing more.
  assert.equal(core.schedulePass(0), 0)
  assert.deepEqual(core.onResults('A', onA.map(a => result(a)), 0).acked, onA.map(a => a.attemptId))
  // Only the two freed slots are refilled, on A.
  assert.equal(core.schedulePass(0), 2)
  const refill = comm.assignments('A')
  assert.equal(refill.length, 2)
  core.onResults('A', refill.map(a => result(a)), 0)
  core.onResults('B', onB.map(a => result(a)), 0)
  // A result delivered twice is not committed twice.
  assert.deepEqual(core.onResults('B', onB.map(a => result(a)), 0).refused, onB.map(a => a.attemptId))
  const s = core.jobSummary(jobId)
  assert.equal(s.counts.done, 6)
  assert.equal(s.state, 'done')
  assert.equal(core.results(jobId, 0, 100).records.length, 6)
})

test('an agent cut off past the timeout: its result still counts if the task has not started elsewhere', () => {
  const { core, comm, store } = setup()
  core.onAgentHello('A', resources('a', 1), [], [], false, [], 0)
  const jobId = core.submit('owner', header(), tasks(1), 0)
  core.schedulePass(0)
  const [a] = comm.take()
  core.onStarted('A', [a.attemptId], 0)
  // A goes silent past the timeout: the task goes back to the queue, and to B, which has not started it yet.
  assert.deepEqual(core.tick(5000), ['A'])
  core.onAgentHello('B', resources('b', 1), [], [], false, [], 5000)
  core.schedulePass(5000)
  const [b] = comm.take()
  assert.notEqual(a.attemptId, b.attemptId)
  // A's link heals and its result arrives first: accepted, and B's copy is stopped.
  assert.deepEqual(core.onResults('A', [result(a)], 6000).acked, [a.attemptId])
  assert.ok(comm.sent.some(s => s.to === 'B' && s.msg.t === 'coord.cancel' && (s.msg as { attemptIds: number[] }).attemptIds.includes(b.attemptId)))
  // B's late result is refused; the task was committed once, with A's result, and no crash counted.
  assert.deepEqual(core.onResults('B', [result(b)], 6000).refused, [b.attemptId])
  const [rec] = core.results(jobId, 0, 10).records
  assert.equal(rec.host, 'a')
  assert.deepEqual(store.commitCounts(jobId, 1), [1])
  assert.equal(core.jobSummary(jobId).state, 'done')
})

test('once the task runs elsewhere, the lost agent\'s late result is refused and its attempt stopped', () => {
  const { core, comm, store } = setup()
  core.onAgentHello('A', resources('a', 1), [], [], false, [], 0)
  const jobId = core.submit('owner', header(), tasks(1), 0)
  core.schedulePass(0)
  const [a] = comm.take()
  core.tick(5000)
  core.onAgentHello('B', resources('b', 1), [], [], false, [], 5000)
  core.schedulePass(5000)
  const [b] = comm.take()
  core.onStarted('B', [b.attemptId], 5000)
  const late = core.onResults('A', [result(a)], 6000)
  assert.deepEqual(late.refused, [a.attemptId])
  core.onHeartbeat('A', [a.attemptId], 6000)
  assert.ok(comm.sent.some(s => s.to === 'A' && s.msg.t === 'coord.cancel'))
  core.onResults('B', [result(b)], 6000)
  const [rec] = core.results(jobId, 0, 10).records
  assert.equal(rec.host, 'b')
  assert.equal(rec.attempts, 2)
  assert.deepEqual(store.commitCounts(jobId, 1), [1])
})

test('a task that loses every agent it touches while running fails at the crash limit', () => {
  const { core, comm } = setup({ crashLimit: 2 })
  const jobId = core.submit('owner', header(), tasks(1), 0)
  let now = 0
  for (let i = 0; i < 2; i++) {
    core.onAgentHello(`A${i}`, resources('a', 1), [], [], false, [], now)
    core.schedulePass(now)
    const [a] = comm.take()
    core.onStarted(`A${i}`, [a.attemptId], now)
    now += 5000
    core.tick(now)
  }
  const s = core.jobSummary(jobId)
  assert.equal(s.counts.failed, 1)
  const [rec] = core.results(jobId, 0, 10).records
  assert.equal(rec.failure?.kind, 'crash-limit')
})

test('attempts that never started do not count as crashes when their agents go', () => {
  const { core, comm } = setup({ crashLimit: 2 })
  const jobId = core.submit('owner', header(), tasks(1), 0)
  let now = 0
  for (let i = 0; i < 4; i++) {
    core.onAgentHello(`A${i}`, resources('a', 1), [], [], false, [], now)
    core.schedulePass(now)
    assert.equal(comm.take().length, 1)
    now += 5000
    core.tick(now)
  }
  assert.equal(core.jobSummary(jobId).counts.queued, 1)
})

test('non-zero exits are retried only when the job asks', () => {
  const { core, comm } = setup()
  core.onAgentHello('A', resources('a', 1), [], [], false, [], 0)
  const noRetry = core.submit('owner', header(0), tasks(1), 0)
  core.schedulePass(0)
  core.onResults('A', [result(comm.take()[0], 2)], 0)
  assert.equal(core.jobSummary(noRetry).counts.failed, 1)
  const retry = core.submit('owner', header(1), tasks(1), 0)
  core.schedulePass(0)
  core.onResults('A', [result(comm.take()[0], 2)], 0)
  assert.equal(core.jobSummary(retry).counts.queued, 1, 'requeued once')
  core.schedulePass(0)
  core.onResults('A', [result(comm.take()[0], 2)], 0)
  assert.equal(core.jobSummary(retry).counts.failed, 1, 'then failed')
})

test('cancel drops queued tasks, stops running ones and needs the owner or admin', () => {
  const { core, comm } = setup()
  core.onAgentHello('A', resources('a', 1), [], [], false, [], 0)
  const jobId = core.submit('owner', header(), tasks(3), 0)
  core.schedulePass(0)
  const [running] = comm.take()
  assert.throws(() => core.cancelJob(jobId, 'someone-else', false, 0), /admin/)
  assert.equal(core.cancelJob(jobId, 'owner', false, 0), 3)
  const stop = comm.sent.find(s => s.msg.t === 'coord.cancel')
  assert.deepEqual((stop?.msg as { attemptIds: number[] }).attemptIds, [running.attemptId])
  assert.equal(core.jobSummary(jobId).state, 'cancelled')
  // The cancelled attempt's late result commits nothing.
  core.onResults('A', [result(running)], 0)
  assert.equal(core.jobSummary(jobId).counts.done, 0)
})

test('after a restart, queued tasks stay queued and running attempts wait for their agent', () => {
  const { core, comm, store, path } = setup()
  core.onAgentHello('A', resources('a', 2), [], [], false, [], 0)
  const jobId = core.submit('owner', header(), tasks(5), 0)
  core.schedulePass(0)
  const placed = comm.take()
  core.onResults('A', [result(placed[0])], 0)
  store.close()
  // A new coordinator on the same database.
  const comm2 = new Recorder()
  const core2 = new CoordinatorCore(new Store(path), comm2, { agentLostMs: 1000, crashLimit: 3, prefetch: 0 }, 100)
  const s = core2.jobSummary(jobId)
  assert.equal(s.counts.done, 1)
  assert.equal(s.counts.queued, 3)
  assert.equal(s.counts.staging, 1)
  // The agent comes back still running its attempt: the result is accepted.
  core2.onAgentHello('A', resources('a', 2), [placed[1].attemptId], [], false, [], 200)
  const r = core2.onResults('A', [result(placed[1])], 200)
  assert.deepEqual(r.acked, [placed[1].attemptId])
  assert.equal(core2.jobSummary(jobId).counts.done, 2)
})

test('an agent that restarted without its attempts gets them requeued', () => {
  const { core, comm } = setup()
  core.onAgentHello('A', resources('a', 1), [], [], false, [], 0)
  const jobId = core.submit('owner', header(), tasks(1), 0)
  core.schedulePass(0)
  comm.take()
  core.onAgentHello('A', resources('a', 1), [], [], false, [], 10)
  assert.equal(core.jobSummary(jobId).counts.queued, 1)
})

test('GPU tasks only land where GPUs are free, with distinct ids', () => {
  const { core, comm } = setup()
  core.onAgentHello('G', resources('g', 4, 2), [], [], false, [], 0)
  core.onAgentHello('C', resources('c', 4, 0), [], [], false, [], 0)
  const jobId = core.submit('owner', header(), tasks(3, { gpus: 1 }), 0)
  core.schedulePass(0)
  const placed = comm.take()
  assert.equal(placed.length, 2, 'only two GPUs exist')
  assert.deepEqual(placed.map(p => p.gpuIds[0]).sort(), [0, 1])
  assert.ok(placed.every(p => p.gpuIds.length === 1), 'one GPU each')
  // While both GPUs are busy, the third task waits, though the CPU agent has room.
  assert.equal(core.schedulePass(0), 0)
  assert.equal(core.jobSummary(jobId).counts.queued, 1)
  // The task on GPU 1 finishes: the third gets exactly that GPU.
  const onOne = placed.find(p => p.gpuIds[0] === 1)!
  core.onResults('G', [result(onOne)], 0)
  assert.equal(core.schedulePass(0), 1)
  assert.deepEqual(comm.take().map(p => p.gpuIds), [[1]])
})

test('a requeued task is placed once, even with room for it twice', () => {
  const { core, comm } = setup()
  core.onAgentHello('B', resources('b', 4), [], [], false, [], 0)
  const jobId = core.submit('owner', header(), tasks(1), 0)
  core.schedulePass(0)
  assert.equal(comm.take().length, 1)
  // B goes silent past the timeout; C, with room for four, arrives.
  core.onAgentDisconnected('B')
  core.onAgentHello('C', resources('c', 4), [], [], false, [], 5000)
  core.tick(5000)
  core.schedulePass(5000)
  assert.equal(comm.take().length, 1)
  assert.equal(core.tasks(jobId, 0, 1).tasks[0].attempts, 2)
})

test('an agent that restarts reports the attempts that died with it: those count as crashes, the others do not', () => {
  const { core, comm } = setup({ crashLimit: 3 })
  core.onAgentHello('A', resources('a', 2), [], [], false, [], 0)
  const jobId = core.submit('owner', header(), tasks(2), 0)
  core.schedulePass(0)
  const [ran, staged] = comm.take()
  // A dies and comes back: its record says the first task was running; the second never started.
  core.onAgentHello('A', resources('a', 2), [], [], false, [], 10, undefined, [ran.attemptId])
  const s = core.jobSummary(jobId)
  assert.equal(s.counts.queued, 2)
  const crashes = core.state.jobs.get(jobId)!.tasks!
  assert.equal(crashes.counts(ran.index).crashes, 1)
  assert.equal(crashes.counts(staged.index).crashes, 0)
})

test('a crash suspected when an agent goes silent is withdrawn when it comes back still holding the task', () => {
  const { core, comm, store } = setup({ crashLimit: 3 })
  core.onAgentHello('A', resources('a', 1), [], [], false, [], 0)
  const jobId = core.submit('owner', header(), tasks(1), 0)
  core.schedulePass(0)
  const [a] = comm.take()
  core.onStarted('A', [a.attemptId], 0)
  core.tick(5000) // A is silent: a suspected crash
  const counts = (): number => core.state.jobs.get(jobId)!.tasks!.counts(0).crashes
  assert.equal(counts(), 1)
  core.onAgentHello('B', resources('b', 1), [], [], false, [], 5000)
  core.schedulePass(5000)
  const [b] = comm.take()
  core.onStarted('B', [b.attemptId], 5000) // runs elsewhere: A's attempt is fenced, still suspected
  assert.equal(counts(), 1)
  core.onHeartbeat('A', [a.attemptId], 6000) // the same session again: A never died
  assert.equal(counts(), 0, 'withdrawn')
  core.onResults('B', [result(b)], 7000)
  assert.deepEqual(store.commitCounts(jobId, 1), [1])
})

test('an agent restarted after it was declared lost: what its record says died is a crash, the rest is withdrawn', () => {
  const { core, comm } = setup({ crashLimit: 5 })
  core.onAgentHello('A', resources('a', 2), [], [], false, [], 0)
  const jobId = core.submit('owner', header(), tasks(2), 0)
  core.schedulePass(0)
  const [died, ended] = comm.take()
  core.onStarted('A', [died.attemptId, ended.attemptId], 0)
  core.tick(5000)
  core.onAgentHello('B', resources('b', 2), [], [], false, [], 5000)
  core.schedulePass(5000)
  core.onStarted('B', comm.take().map(x => x.attemptId), 5000)
  const t = core.state.jobs.get(jobId)!.tasks!
  assert.deepEqual([t.counts(0).crashes, t.counts(1).crashes], [1, 1], 'both suspected')
  // A restarts: its record says the first task was running when it died; the second had ended (its result lost).
  core.onAgentHello('A', resources('a', 2), [], [], false, [], 9000, undefined, [died.attemptId])
  assert.equal(t.counts(died.index).crashes, 1, 'confirmed')
  assert.equal(t.counts(ended.index).crashes, 0, 'withdrawn')
})

test('holding a job takes back its tasks waiting in agents\' queues; running ones finish; release puts them back', () => {
  const { core, comm } = setup()
  core.onAgentHello('A', resources('a', 1), [], [], false, [], 0)
  core.state.agents.get('A')!.recentTaskMs = 10 // short tasks: the agent holds a queue of them
  const jobId = core.submit('owner', header(), tasks(3), 0)
  core.schedulePass(0)
  const placed = comm.take()
  assert.ok(placed.length >= 2, 'one running, the rest staged in the agent\'s queue')
  core.onStarted('A', [placed[0].attemptId], 0)
  assert.equal(core.hold(jobId, undefined, false, 'owner', false, 0), 2)
  const cancelled = comm.sent.filter(s => s.msg.t === 'coord.cancel').flatMap(s => (s.msg as { attemptIds: number[] }).attemptIds)
  assert.deepEqual(cancelled.sort(), placed.slice(1).map(p => p.attemptId).sort(), 'the staged ones are taken back')
  comm.take()
  assert.equal(core.schedulePass(0), 0, 'nothing placed while held')
  assert.equal(core.jobSummary(jobId).counts.running, 1, 'the running task goes on')
  core.hold(jobId, undefined, true, 'owner', false, 0)
  assert.ok(core.schedulePass(0) >= 1)
})

test('a heartbeat that only says the agent is alive is taken without the commit loop; anything else is not', () => {
  const { core, comm } = setup()
  core.onAgentHello('A', resources('a', 1), [], [], false, [], 0)
  core.submit('owner', header(), tasks(1), 0)
  core.schedulePass(0)
  const [a] = comm.take()
  assert.equal(core.heartbeatOnly('A', [a.attemptId], 1000), true)
  assert.equal(core.state.agents.get('A')!.lastSeen, 1000)
  assert.equal(core.heartbeatOnly('A', [a.attemptId + 99], 1500), false, 'an attempt that is not its own needs a cancel')
  assert.equal(core.heartbeatOnly('B', [], 1500), false, 'unknown agent')
  core.tick(6000) // silent past the timeout: lost
  assert.equal(core.heartbeatOnly('A', [a.attemptId], 6000), false, 'a lost agent coming back needs the full path')
  assert.equal(comm.sent.length, 0)
})

test('priority orders one member\'s jobs (higher first, then the earlier); fair share orders members, and why says so', () => {
  const names: Record<string, string> = { 'peer-alice': 'alice', 'peer-bob': 'bob' }
  const { core, comm } = setup({ nameOf: p => names[p] })
  core.onAgentHello('A', resources('a', 1), [], [], false, [], 0)
  const low = core.submit('peer-alice', header(), tasks(2), 0)
  const high = core.submit('peer-alice', { ...header(), priority: 5 }, tasks(2), 0)
  const alsoHigh = core.submit('peer-alice', { ...header(), priority: 5 }, tasks(1), 0)
  core.schedulePass(0)
  const first = comm.take()
  assert.deepEqual(first.map(a => a.jobId), [high], 'the later job with the higher priority goes first')
  const [lowWhy] = whyWaiting(core, low, undefined, 0)
  assert.match(lowWhy.reason, /; 2 of alice's tasks are ahead of it$/, 'the rest of the high job, and the equal one submitted later')
  assert.match(whyWaiting(core, alsoHigh, 0, 0)[0].reason, /; 1 of alice's tasks are ahead of it$/, 'equal priority: the earlier job first')
  // Bob has used nothing: his tasks go before all of alice's waiting ones, and she is told why.
  const bobs = core.submit('peer-bob', header(), tasks(2), 0)
  assert.match(whyWaiting(core, low, undefined, 0)[0].reason, /fair share: 2 tasks of bob go first \(they have used less lately\)/)
  assert.doesNotMatch(whyWaiting(core, bobs, undefined, 0)[0].reason, /fair share/, 'bob is not told to wait for alice')
  core.onResults('A', first.map(a => result(a)), 0)
  core.schedulePass(0)
  assert.deepEqual(comm.take().map(a => a.jobId), [bobs], 'the freed slot goes to bob')
})

test('a job whose files follow: each task waits only for its own files, and after a restart too', () => {
  const here = new Set<string>(['a'.repeat(64)])
  const { core, comm, store, path } = setup({ hasBlob: h => here.has(h) })
  const ref = (c: string, name: string): { name: string, hash: string, size: number } => ({ name, hash: c.repeat(64), size: 1 })
  core.onAgentHello('A', resources('a', 4), [], [], false, [], 0)
  const jobTasks = tasks(3).map((t, i) => ({ ...t, inputs: [[ref('a', 'in0')], [ref('b', 'in1')], [ref('b', 'in1'), ref('c', 'in2')]][i] }))
  const jobId = core.submit('owner', { ...header(), inputsToFollow: true }, jobTasks, 0)
  core.schedulePass(0)
  const first = comm.take()
  assert.deepEqual(first.map(a => a.index), [0], 'only the task whose file is here')
  assert.match(whyWaiting(core, jobId, 1, 0)[0].reason, /waiting for its input in1 to arrive from the submitter/)
  // A restart while the files are on their way: the new core waits for the same files.
  here.add('b'.repeat(64))
  store.close()
  const again = new CoordinatorCore(new Store(path), comm, { agentLostMs: 1000, crashLimit: 3, prefetch: 0, hasBlob: h => here.has(h) }, 1)
  again.onAgentHello('A', resources('a', 4), [first[0].attemptId], [], false, [], 1)
  again.schedulePass(1)
  assert.deepEqual(comm.take().map(a => a.index), [1], 'task 1 has its file since the restart; task 2 still waits for in2')
  assert.equal(again.inputArrived('f'.repeat(64)), 0, 'a file nobody waits for')
  assert.equal(again.inputArrived('c'.repeat(64)), 1)
  again.schedulePass(1)
  assert.deepEqual(comm.take().map(a => a.index), [2])
  assert.equal(again.getJob(jobId).inputs, undefined, 'nothing left to wait for')
})

test('without inputsToFollow nothing waits: the job was refused at submission unless its files were there', () => {
  const { core, comm } = setup({ hasBlob: () => false })
  core.onAgentHello('A', resources('a', 2), [], [], false, [], 0)
  core.submit('owner', header(), tasks(2).map(t => ({ ...t, inputs: [{ name: 'x', hash: 'd'.repeat(64), size: 1 }] })), 0)
  core.schedulePass(0)
  assert.equal(comm.take().length, 2)
})
