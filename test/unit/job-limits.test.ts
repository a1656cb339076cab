/**
 * JobHeader.perAgent through the coordinator's core (a real store, a recording comm): at most N of a job's tasks
 * on one agent, counted from what each agent holds, kept across a restart; and the header's schema for it and
 * for logNames.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CoordinatorCore, type CoordinatorComm } from '../../coordinator/core.ts'
import { Store } from '../../coordinator/store.ts'
import { CLIENT_REQUESTS } from '../../shared/protocol/schema.ts'
import type { AgentResources, Assignment, AttemptResult, CoordMessage, JobHeader, TaskSpec } from '../../shared/protocol/messages.ts'

const EMPTY = { name: '.meshfarm/stdout', hash: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', size: 0 }

type Sent = Assignment & { to: string }

class Recorder implements CoordinatorComm {
  sent: Array<{ to: string, msg: CoordMessage }> = []
  send = (to: string, msg: CoordMessage): void => { this.sent.push({ to, msg }) }
  event = (): void => {}
  take (): Sent[] {
    const out = this.sent.flatMap(s => s.msg.t === 'coord.assign' ? s.msg.assignments.map(a => ({ ...a, to: s.to })) : [])
    this.sent = []
    return out
  }
}

function resources (host: string, slots: number): AgentResources {
  return { hostname: host, os: 'linux', cores: slots, physicalCores: slots, memoryMb: 8000, slots, gpus: [], labels: {}, runsAsRoot: false }
}

function header (perAgent?: number): JobHeader {
  return { name: 'j', layout: 'per-task', shared: [], retries: 0, specText: '', specFile: 'j.yaml', ...(perAgent != null ? { perAgent } : {}) }
}

function tasks (n: number): TaskSpec[] {
  return Array.from({ length: n }, (_, i) => ({ index: i, name: `t${i}`, commands: ['true'], env: {}, inputs: [], outputs: [], timeoutMs: 0, constraints: {}, cores: 1, gpus: 0, memoryMb: 0 }))
}

function done (a: Assignment): AttemptResult {
  return { attemptId: a.attemptId, jobId: a.jobId, index: a.index, state: 'done', exitCode: 0, signal: null, startedAt: 1, endedAt: 2, stdout: EMPTY, stderr: EMPTY, outputs: [] }
}

const perAgent = (as: Sent[], jobId: number): Record<string, number> => {
  const out: Record<string, number> = {}
  for (const a of as) if (a.jobId === jobId) out[a.to] = (out[a.to] ?? 0) + 1
  return out
}

test('a job with perAgent N gets at most N tasks on each agent, counting what agents hold; other jobs fill the rest; a restart keeps it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'meshfarm-limits-'))
  try {
    const store = new Store(join(dir, 'state.db'))
    const comm = new Recorder()
    const core = new CoordinatorCore(store, comm, { agentLostMs: 1000, crashLimit: 3, prefetch: 0 }, 0)
    core.onAgentHello('A', resources('a', 4), [], [], false, [], 0)
    core.onAgentHello('B', resources('b', 4), [], [], false, [], 0)
    const capped = core.submit('owner', header(1), tasks(6), 0)
    const free = core.submit('owner', header(), tasks(10), 0)
    core.schedulePass(0)
    const first = comm.take()
    assert.deepEqual(perAgent(first, capped), { A: 1, B: 1 }, 'one of the capped job per agent')
    assert.deepEqual(perAgent(first, free), { A: 3, B: 3 }, 'the uncapped job fills the other slots')
    // A finishes its capped task: exactly one more of that job goes to A, none to B (still holding one).
    core.onResults('A', first.filter(a => a.to === 'A' && a.jobId === capped).map(done), 0)
    core.schedulePass(0)
    assert.deepEqual(perAgent(comm.take(), capped), { A: 1 })
    // A restarted coordinator reads the limit back from the store with the job.
    const again = new CoordinatorCore(store, comm, { agentLostMs: 1000, crashLimit: 3, prefetch: 0 }, 0)
    assert.equal(again.jobHeader(capped).perAgent, 1)
    store.close()
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('the job header schema takes perAgent and logNames, and refuses bad ones naming the field', () => {
  const begin = (job: Record<string, unknown>): unknown => CLIENT_REQUESTS.check({ t: 'client.submit.begin', job: { ...header(), ...job }, total: 1 })
  assert.doesNotThrow(() => begin({ perAgent: 2, logNames: { stdout: 'out.log', stderr: 'err.log' } }))
  for (const [field, value] of [['perAgent', 0], ['perAgent', 1.5], ['logNames', { stdout: '../x', stderr: 'e' }], ['logNames', { stdout: '..', stderr: 'e' }],
    ['logNames', { stdout: 'o', stderr: 'e', extra: 'x' }], ['logNames', { stdout: 'a\nb', stderr: 'e' }]] as const) {
    assert.throws(() => begin({ [field]: value }), (err: Error) => err.message.includes(`job.${field}`) && !err.message.includes('\n'), `${field}: ${JSON.stringify(value)}`)
  }
})
