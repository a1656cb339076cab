/**
 * The agent's reactor driven directly: coordinator messages and local events in, a recording comm out, an
 * explicit `now`. Every rule of the agent (slots, cancel, ack, drain, reconnect, stop, vacate) without a process.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { AgentReactor, type AgentComm, type LogRequest } from '../../node/reactor.ts'
import type { AgentMessage, AgentResources, Assignment, AttemptResult, CoordMessage } from '../../shared/protocol/messages.ts'
import type { TaskOutcome } from '../../node/backend/backend.ts'
import type { OutboxEntry, ResultEntry } from '../../node/results.ts'
import { applyHarvest, taskViews, type Sent } from '../../node/harvest/offer.ts'
import { decideHarvest, initialHarvestState } from '../../node/harvest/policy.ts'
import { DEFAULT_HARVEST_CONFIG } from '../../node/harvest/config.ts'
import type { Observation } from '../../node/harvest/types.ts'

class Recorder implements AgentComm {
  sent: AgentMessage[] = []
  calls: string[] = []
  kept: Array<{ entry: OutboxEntry, persistNow: boolean }> = []
  delivering: Array<{ results: ResultEntry[], token: number }> = []
  collecting: Array<{ skeleton: AttemptResult, skipOutputs: boolean }> = []
  logs: LogRequest[] = []
  finishedWhy: string[] = []
  flushes = 0
  send = (msg: AgentMessage): void => { this.sent.push(msg) }
  requestFlush = (): void => { this.flushes++ }
  stage = (a: Assignment): void => { this.calls.push(`stage ${a.attemptId}`) }
  abortStaging = (id: number): void => { this.calls.push(`abort ${id}`) }
  run = (a: Assignment, slot: number): void => { this.calls.push(`run ${a.attemptId} slot ${slot}`) }
  stop = (id: number): void => { this.calls.push(`stop ${id}`) }
  suspend = (id: number): void => { this.calls.push(`suspend ${id}`) }
  resume = (id: number): void => { this.calls.push(`resume ${id}`) }
  collect = (skeleton: AttemptResult, skipOutputs: boolean): void => { this.collecting.push({ skeleton, skipOutputs }) }
  discard = (id: number): void => { this.calls.push(`discard ${id}`) }
  keep = (entry: OutboxEntry, persistNow: boolean): void => { this.kept.push({ entry, persistNow }) }
  persistPending = (): void => { this.calls.push('persist pending') }
  deliver = (results: ResultEntry[], token: number): void => { this.delivering.push({ results, token }) }
  settle = (ids: number[]): void => { this.calls.push(`settle ${ids.join(',')}`) }
  readLogs = (req: LogRequest): void => { this.logs.push(req) }
  setMembers = (ids: string[]): void => { this.calls.push(`members ${ids.join(',')}`) }
  finished = (why: 'drained' | 'stopped'): void => { this.finishedWhy.push(why) }

  /** Messages of one type sent so far. */
  of<T extends AgentMessage['t']> (t: T): Array<Extract<AgentMessage, { t: T }>> {
    return this.sent.filter(m => m.t === t) as Array<Extract<AgentMessage, { t: T }>>
  }

  take (): string[] {
    const c = this.calls
    this.calls = []
    return c
  }
}

const RESOURCES: AgentResources = { hostname: 'a', os: 'linux', cores: 2, physicalCores: 2, memoryMb: 4000, slots: 2, gpus: [], labels: {}, runsAsRoot: false }

function assignment (id: number, extra: Partial<Assignment['task']> = {}): Assignment {
  return {
    attemptId: id, jobId: 1, index: id, shared: [], gpuIds: [], cores: 1,
    task: { index: id, name: `t${id}`, commands: ['true'], env: {}, inputs: [], outputs: [], timeoutMs: 0, constraints: {}, cores: 1, gpus: 0, memoryMb: 0, ...extra }
  }
}

function outcome (exitCode: number | null, ranMs = 10, extra: Partial<TaskOutcome> = {}): TaskOutcome {
  return { exitCode, signal: null, timedOut: false, error: null, startedAt: 1000, endedAt: 1000 + ranMs, stdoutBytes: 0, stderrBytes: 0, peakMemoryBytes: null, overMemoryLimit: null, ...extra }
}

function setup (opts: { inlineBudgetBytes?: number, resultBatch?: number } = {}): { r: AgentReactor, comm: Recorder } {
  const comm = new Recorder()
  const r = new AgentReactor(comm, { resources: RESOURCES, longTaskMs: 1000, resultBatch: opts.resultBatch ?? 256, inlineBudgetBytes: opts.inlineBudgetBytes ?? 4 << 20, inlineMaxBytes: 64 << 10, logPieceBytes: 1 << 20 })
  r.start([])
  r.sessionUp()
  return { r, comm }
}

const assign = (...ids: number[]): CoordMessage => ({ t: 'coord.assign', assignments: ids.map(id => assignment(id)) })

/** Runs an attempt from staging to its result in the outbox. */
function runToResult (r: AgentReactor, comm: Recorder, id: number, exit = 0, ranMs = 10): AttemptResult {
  r.staged(id, 0)
  r.taskStarted(id)
  r.taskExited(id, outcome(exit, ranMs), 50)
  const { skeleton } = comm.collecting.find(c => c.skeleton.attemptId === id)!
  r.resultReady(skeleton)
  return skeleton
}

test('assignments are staged, run one per slot, and the next starts when a slot frees', () => {
  const { r, comm } = setup()
  r.message(assign(1, 2, 3), 0)
  assert.deepEqual(comm.take(), ['stage 1', 'stage 2', 'stage 3'])
  r.staged(1, 0)
  r.staged(2, 0)
  r.staged(3, 0)
  assert.deepEqual(comm.take(), ['run 1 slot 0', 'run 2 slot 1'], 'two slots, the third waits staged')
  r.taskStarted(1)
  r.flush()
  assert.deepEqual(comm.of('agent.started').map(m => m.attemptIds), [[1]])
  r.taskExited(1, outcome(0), 20)
  assert.deepEqual(comm.take(), ['run 3 slot 0'], 'the freed slot goes to the waiting task')
  assert.equal(comm.collecting[0].skeleton.state, 'done')
  assert.deepEqual(r.heldIds().sort(), [1, 2, 3], 'held until its result is collected')
})

test('results: a short one waits in memory, a long one is on disk at once; delivered in a batch; acked ones settle', () => {
  const { r, comm } = setup()
  r.message(assign(1, 2), 0)
  runToResult(r, comm, 1, 0, 10)
  runToResult(r, comm, 2, 3, 5000)
  assert.deepEqual(comm.kept.map(k => [k.entry.kind, k.persistNow]), [['result', false], ['result', true]])
  r.flush()
  assert.equal(comm.delivering.length, 1)
  assert.deepEqual(comm.delivering[0].results.map(e => e.result.attemptId), [1, 2])
  assert.equal(comm.delivering[0].results[1].result.failure?.kind, 'exit')
  r.flush()
  assert.equal(comm.delivering.length, 1, 'one delivery at a time')
  r.delivered(comm.delivering[0].token, [1, 2])
  r.message({ t: 'coord.ack', attemptIds: [1], refused: [2] }, 100)
  assert.deepEqual(comm.take().filter(c => c.startsWith('settle')), ['settle 1,2'])
  assert.deepEqual(r.pendingIds(), [])
})

test('batches stop at the inline budget and the batch size', () => {
  const { r, comm } = setup({ inlineBudgetBytes: 100, resultBatch: 3 })
  r.message(assign(1, 2, 3, 4, 5), 0)
  for (const id of [1, 2, 3, 4, 5]) {
    r.staged(id, 0)
    r.taskExited(id, outcome(0), 10)
    const c = comm.collecting.find(x => x.skeleton.attemptId === id)!
    r.resultReady({ ...c.skeleton, stdout: { ...c.skeleton.stdout, size: id === 2 ? 90 : 30 } })
  }
  r.flush()
  assert.deepEqual(comm.delivering[0].results.map(e => e.result.attemptId), [1], '30 + 90 bytes would pass the budget of 100')
  r.delivered(comm.delivering[0].token, [1])
  r.flush()
  assert.deepEqual(comm.delivering[1].results.map(e => e.result.attemptId), [2])
  r.delivered(comm.delivering[1].token, [2])
  r.flush()
  assert.deepEqual(comm.delivering[2].results.map(e => e.result.attemptId), [3, 4, 5], 'at most 3 per message')
})

test('cancel: a staged task gets a cancelled result at once, a running one is stopped and its outputs skipped', () => {
  const { r, comm } = setup()
  r.message(assign(1, 2, 3, 4), 0)
  r.staged(1, 0)
  r.staged(2, 0)
  r.staged(3, 0)
  comm.take()
  r.message({ t: 'coord.cancel', attemptIds: [3, 1, 4, 99], reason: 'job cancelled' }, 5)
  assert.deepEqual(comm.take(), ['discard 3', 'stop 1', 'abort 4'])
  assert.equal(comm.kept[0].entry.kind === 'result' && comm.kept[0].entry.result.state, 'cancelled')
  r.taskExited(1, outcome(null, 10, { signal: 'SIGTERM' }), 6)
  assert.deepEqual(comm.collecting.map(c => [c.skeleton.attemptId, c.skeleton.failure?.kind, c.skipOutputs]), [[1, 'cancelled', true]])
  r.staged(4, 7)
  assert.deepEqual(comm.take(), ['discard 4'], 'a task cancelled while staging never runs')
  assert.equal((comm.kept.at(-1)?.entry as { result?: { attemptId: number } }).result?.attemptId, 4)
})

test('a session that drops: results go back to waiting and to disk, and the hello claims held and pending attempts', () => {
  const { r, comm } = setup()
  r.message(assign(1, 2), 0)
  runToResult(r, comm, 1)
  r.staged(2, 0)
  r.flush()
  const token = comm.delivering[0].token
  assert.equal(r.state, 'running')
  r.sessionDown()
  assert.equal(r.state, 'connecting')
  assert.ok(comm.take().includes('persist pending'))
  r.delivered(token, [1]) // a late answer from the old session changes nothing
  const hello = r.hello()
  assert.equal(hello.t, 'agent.hello')
  if (hello.t === 'agent.hello') {
    assert.deepEqual(hello.running, [2])
    assert.deepEqual(hello.pending, [1])
  }
  r.flush()
  assert.equal(comm.delivering.length, 1, 'nothing is sent without a session')
  r.sessionUp()
  r.flush()
  assert.equal(comm.delivering.length, 2, 'delivered again on the new session')
  assert.notEqual(comm.delivering[1].token, token)
})

test('drain: new assignments are vacated, held ones finish, and the agent is done once all is acknowledged', () => {
  const { r, comm } = setup()
  r.message(assign(1), 0)
  r.staged(1, 0)
  r.message({ t: 'coord.drain' }, 1)
  assert.equal(r.state, 'draining')
  r.message(assign(2), 2)
  assert.deepEqual(comm.kept.map(k => [k.entry.kind, k.persistNow]), [['vacate', true]])
  r.flush()
  assert.deepEqual(comm.of('agent.vacated'), [{ t: 'agent.vacated', attemptIds: [2], kind: 'vacate', reason: 'agent is draining' }])
  r.taskExited(1, outcome(0), 10)
  r.resultReady(comm.collecting[0].skeleton)
  assert.equal(comm.kept[1].persistNow, true, 'a draining agent keeps results on disk at once')
  r.message({ t: 'coord.ack', attemptIds: [2], refused: [] }, 20)
  assert.deepEqual(comm.finishedWhy, [])
  r.message({ t: 'coord.ack', attemptIds: [1], refused: [] }, 21)
  assert.deepEqual(comm.finishedWhy, ['drained'])
  assert.equal(r.state, 'stopping')
  r.closed()
  assert.equal(r.state, 'stopped')
})

test('stop: unfinished attempts are vacated, a task that still succeeds keeps its result, the deadline ends the wait', () => {
  const { r, comm } = setup()
  r.message(assign(1, 2, 3, 4), 0)
  r.staged(1, 0)
  r.staged(2, 0)
  r.staged(3, 0)
  comm.take()
  r.stop(10)
  assert.equal(r.state, 'stopping')
  assert.equal(comm.sent[0].t === 'agent.update' && comm.sent[0].resources?.slots, 0, 'first it offers nothing more')
  assert.deepEqual(comm.take(), ['stop 1', 'stop 2', 'discard 3', 'abort 4'])
  r.taskExited(1, outcome(null, 10, { signal: 'SIGTERM' }), 11)
  r.taskExited(2, outcome(0), 11)
  assert.deepEqual(comm.collecting.map(c => c.skeleton.attemptId), [2], 'the one that finished anyway is a result')
  assert.deepEqual(comm.kept.filter(k => k.entry.kind === 'vacate').map(k => k.entry.kind === 'vacate' && k.entry.attemptId), [3, 1])
  assert.deepEqual(comm.finishedWhy, [])
  r.stopDeadline(5000)
  assert.deepEqual(comm.finishedWhy, ['stopped'])
  assert.ok(comm.kept.some(k => k.entry.kind === 'vacate' && k.entry.attemptId === 2 && k.persistNow), 'what had not finished by the deadline is vacated too')
  assert.deepEqual(r.heldIds(), [])
  r.message(assign(9), 5001)
  assert.ok(comm.kept.some(k => k.entry.kind === 'vacate' && k.entry.attemptId === 9), 'a stopping agent takes nothing new')
})

test('stop finishes without waiting for the deadline once everything is acknowledged, or at once without a session', () => {
  const { r, comm } = setup()
  r.message(assign(1), 0)
  r.stop(1)
  r.staged(1, 2)
  r.flush()
  assert.deepEqual(comm.of('agent.vacated').map(m => m.attemptIds), [[1]])
  r.message({ t: 'coord.ack', attemptIds: [1], refused: [] }, 3)
  assert.deepEqual(comm.finishedWhy, ['stopped'])
  const other = setup()
  other.r.message(assign(5), 0)
  other.r.sessionDown()
  other.r.stop(1)
  other.r.staged(5, 2)
  assert.deepEqual(other.comm.finishedWhy, ['stopped'], 'no coordinator to tell: the notice waits on disk')
  assert.equal(other.comm.kept[0].persistNow, true)
})

test('suspend and resume are told to the coordinator and recorded in the result', () => {
  const { r, comm } = setup()
  r.message(assign(1), 0)
  r.staged(1, 0)
  r.suspend([1, 7], 100)
  r.suspend([1], 150)
  r.resume([1], 400)
  assert.deepEqual(comm.take().filter(c => /suspend|resume/.test(c)), ['suspend 1', 'resume 1'])
  assert.deepEqual(comm.of('agent.suspended').map(m => m.attemptIds), [[1]])
  assert.deepEqual(comm.of('agent.continued').map(m => m.attemptIds), [[1]])
  r.taskExited(1, outcome(0), 500)
  assert.deepEqual(comm.collecting[0].skeleton.suspensions, [{ from: 100, to: 400 }])
})

test('resources that change are sent and used: more slots start more tasks', () => {
  const { r, comm } = setup()
  r.message(assign(1, 2, 3), 0)
  for (const id of [1, 2, 3]) r.staged(id, 0)
  assert.equal(comm.take().filter(c => c.startsWith('run')).length, 2)
  r.updateResources({ ...RESOURCES, slots: 3, cores: 3 })
  assert.deepEqual(comm.take(), ['run 3 slot 2'])
  assert.equal(comm.of('agent.update')[0].resources?.slots, 3)
})

test('logs are read only for attempts that ran here, in capped pieces; members go to the gate', () => {
  const { r, comm } = setup()
  r.message(assign(1, 2), 0)
  r.staged(1, 0)
  r.message({ t: 'coord.logs', requestId: 7, attemptId: 1, stream: 'stderr', offset: 5, maxBytes: 1e9 }, 1)
  r.message({ t: 'coord.logs', requestId: 8, attemptId: 2, stream: 'stdout', offset: 0, maxBytes: 10 }, 1)
  assert.deepEqual(comm.logs, [{ requestId: 7, attemptId: 1, stream: 'stderr', offset: 5, maxBytes: 1 << 20, final: false }])
  assert.match(comm.of('agent.logs')[0].error ?? '', /no logs/)
  r.message({ t: 'coord.members', peerIds: ['p1', 'p2'] }, 2)
  assert.ok(comm.take().includes('members p1,p2'))
})

test('a result that had to be rewritten is kept in its new form; lifecycle moves that make no sense throw', () => {
  const { r, comm } = setup()
  r.message(assign(1), 0)
  const s = runToResult(r, comm, 1)
  r.resultReplaced({ ...s, state: 'failed', failure: { kind: 'internal', message: 'files lost', retryable: true } })
  assert.deepEqual(comm.kept.map(k => k.persistNow), [false, true])
  r.flush()
  assert.equal(comm.delivering[0].results[0].result.state, 'failed')
  assert.throws(() => { r.closed() }, /running -> stopped is not allowed/)
})

test('attempts(): each held attempt with its phase, whether it is being stopped, and its open suspension', () => {
  const { r } = setup()
  r.message(assign(1, 2, 3), 0)
  r.staged(1, 0)
  r.staged(2, 0)
  r.suspend([2], 100)
  r.vacate([1], 'vacate', 'owner', 200)
  assert.deepEqual(r.attempts().map(h => [h.a.attemptId, h.phase, h.stopping, h.suspendedSince]), [[1, 'running', true, null], [2, 'running', false, 100], [3, 'staging', false, null]])
})

test('harvest through the reactor: nothing offered while the owner is there; lent when away; owner back: suspend, GPU task vacated, unstarted handed back; continue; vacate after 10 min', () => {
  const MIN = 60_000
  const T0 = 1_000_000_000
  const base: AgentResources = { ...RESOURCES, gpus: [{ index: 0, model: 'A100', memoryMb: 40_000 }] }
  const comm = new Recorder()
  const r = new AgentReactor(comm, { resources: base, longTaskMs: 1000, resultBatch: 256, inlineBudgetBytes: 4 << 20, inlineMaxBytes: 64 << 10, logPieceBytes: 1 << 20 })
  r.start([])
  r.sessionUp()
  let state = initialHarvestState(T0)
  let sent: Sent | null = null
  let lastInput = T0
  const pass = (now: number): string[] => {
    const obs: Observation = { at: now, input: { idleMs: now - lastInput, from: 'pts/1 (tty atime)', blind: [], sessions: 1 }, loadNotOurs: 0.05, foreignGpu: null, details: [] }
    const out = decideHarvest({ observation: obs, tasks: taskViews(r.attempts()) }, DEFAULT_HARVEST_CONFIG, state, now)
    state = out.state
    const applied = applyHarvest(r, r.attempts(), out, base, sent, now)
    sent = applied.sent
    return applied.told
  }
  const drop = (): void => { comm.sent = comm.sent.filter(m => m.t !== 'agent.update') }
  const updates = (): Array<[number | undefined, number | undefined, boolean | undefined]> => {
    const got = comm.of('agent.update').map((m): [number | undefined, number | undefined, boolean | undefined] => [m.resources?.slots, m.resources?.gpus.length, m.status?.harvest?.lending])
    drop()
    return got
  }

  // The owner is at the keyboard: no slots, no GPUs, not lending.
  pass(T0)
  assert.deepEqual(comm.of('agent.update').map(m => [m.resources?.slots, m.resources?.gpus.length, m.status?.harvest?.lending, m.status?.harvest?.ownerPresent]), [[0, 0, false, true]])
  drop()
  pass(T0 + 20_000)
  assert.deepEqual(updates(), [], 'only the words changed: not sent again within 30 s')
  // Away 16 minutes: lent, and the coordinator places a CPU task, a GPU task and one that is still staging.
  pass(T0 + 16 * MIN)
  assert.deepEqual(updates(), [[2, 1, true]])
  r.message({ t: 'coord.assign', assignments: [assignment(1), { ...assignment(2), gpuIds: [0] }, assignment(3)] }, T0 + 16 * MIN)
  r.staged(1, 0)
  r.staged(2, 0)
  comm.take()
  // Back: the CPU task is suspended, the GPU task vacated (a stopped process keeps its GPU memory), the staging one
  // handed back at once, and nothing more offered.
  lastInput = T0 + 17 * MIN
  assert.deepEqual(pass(T0 + 17 * MIN), ['suspend 1.1', 'vacate 1.2', 'hand back 1.3'])
  assert.deepEqual(comm.take(), ['suspend 1', 'stop 2', 'abort 3'])
  assert.deepEqual(comm.of('agent.suspended').map(m => m.attemptIds), [[1]])
  assert.deepEqual(updates(), [[0, 0, false]])
  r.taskExited(2, outcome(null, 10, { signal: 'SIGTERM' }), T0 + 17 * MIN)
  r.stageFailed(3, { kind: 'staging', message: 'staging stopped', retryable: true }, T0 + 17 * MIN)
  r.flush()
  assert.deepEqual(comm.of('agent.vacated').map(m => [m.attemptIds, m.kind, m.reason]), [[[2], 'vacate', 'harvest: GPU task: owner present'], [[3], 'vacate', 'harvest: its owner is using this machine']])
  // Five idle minutes: it continues (and the machine is lent again).
  assert.deepEqual(pass(T0 + 21 * MIN), [])
  assert.deepEqual(pass(T0 + 22 * MIN), ['continue 1.1'])
  assert.deepEqual(comm.of('agent.continued').map(m => m.attemptIds), [[1]])
  // Back for good: suspended, then vacated after ten minutes suspended; its vacate notice names why.
  lastInput = T0 + 40 * MIN
  assert.deepEqual(pass(T0 + 40 * MIN), ['suspend 1.1'])
  for (let m = 41; m < 50; m++) { lastInput = T0 + m * MIN; assert.deepEqual(pass(T0 + m * MIN), [], `12:${m}`) }
  lastInput = T0 + 50 * MIN
  assert.deepEqual(pass(T0 + 50 * MIN), ['vacate 1.1'])
  r.taskExited(1, outcome(null, 10, { signal: 'SIGKILL' }), T0 + 50 * MIN)
  r.flush()
  assert.deepEqual(comm.of('agent.vacated').at(-1), { t: 'agent.vacated', attemptIds: [1], kind: 'vacate', reason: 'harvest: suspended 10 min' })
  assert.deepEqual(r.heldIds(), [])
})

test('harvest through the reactor: a stopping agent is told nothing and offers nothing', () => {
  const { r, comm } = setup()
  r.stop(0)
  comm.sent = []
  const out = decideHarvest({ observation: { at: 0, input: { idleMs: 0, from: null, blind: [], sessions: 1 }, loadNotOurs: 0, foreignGpu: null, details: [] }, tasks: [] }, DEFAULT_HARVEST_CONFIG, initialHarvestState(0), 0)
  assert.equal(applyHarvest(r, r.attempts(), out, RESOURCES, null, 0).sent, null)
  assert.deepEqual(comm.sent, [])
})

test('adopted attempts (a batch system still runs them after a restart): held in slots, reported running in hello, run to their results', () => {
  const comm = new Recorder()
  const r = new AgentReactor(comm, { resources: RESOURCES, longTaskMs: 1000, resultBatch: 256, inlineBudgetBytes: 4 << 20, inlineMaxBytes: 64 << 10, logPieceBytes: 1 << 20 })
  // Attempt 3's vacate notice waits in the outbox: it is reported, not adopted again.
  r.start([{ kind: 'vacate', attemptId: 3, vacateKind: 'vacate', reason: 'agent stopped' }])
  r.adopt([assignment(1), assignment(2), assignment(3), assignment(1)])
  assert.deepEqual(comm.take(), ['run 1 slot 0', 'run 2 slot 1'], 'each once, straight to the backend, no staging')
  const hello = r.hello() as Extract<AgentMessage, { t: 'agent.hello' }>
  assert.deepEqual([hello.running, hello.pending, hello.crashed], [[1, 2], [3], undefined])
  r.sessionUp()
  // Both slots are taken: a new assignment waits for one.
  r.message(assign(4), 0)
  r.staged(4, 0)
  assert.deepEqual(comm.take(), ['stage 4'])
  r.taskStarted(1)
  r.taskExited(1, outcome(0), 10)
  assert.deepEqual(comm.take(), ['run 4 slot 0'])
  r.resultReady(comm.collecting.find(c => c.skeleton.attemptId === 1)!.skeleton)
  assert.deepEqual(r.pendingIds().sort(), [1, 3])
})

test('a backend\'s own reading of the ending (NODE_FAIL, PREEMPTED) is the attempt\'s failure; an agent\'s cancel still wins', () => {
  const { r, comm } = setup()
  r.message(assign(1, 2), 0)
  for (const id of [1, 2]) { r.staged(id, 0); r.taskStarted(id) }
  const nodeFail = { kind: 'node-fail' as const, message: 'its Slurm node failed (Slurm job 9_0: NODE_FAIL)', retryable: true, detail: 'Slurm job 9_0: NODE_FAIL' }
  r.taskExited(1, outcome(null, 10, { failure: nodeFail, backend: { system: 'slurm', jobId: '9', arrayIndex: 0 } }), 20)
  const one = comm.collecting.find(c => c.skeleton.attemptId === 1)!.skeleton
  assert.deepEqual([one.state, one.failure, one.backend], ['failed', nodeFail, { system: 'slurm', jobId: '9', arrayIndex: 0 }])
  r.message({ t: 'coord.cancel', attemptIds: [2], reason: 'job cancelled' }, 21)
  r.taskExited(2, outcome(null, 10, { failure: { kind: 'batch', message: 'cancelled in Slurm', retryable: false } }), 22)
  assert.equal(comm.collecting.find(c => c.skeleton.attemptId === 2)!.skeleton.failure?.kind, 'cancelled')
})
