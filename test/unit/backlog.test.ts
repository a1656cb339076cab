/**
 * What a batch-system bridge hears of the queue (coord.backlog) and where it stands in placement: the pure
 * grouping, then the core driven with a recording comm and a real store: bridges come after lab agents, hear of
 * what is left waiting after each pass when it changed, and again on a new session.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { backlogFor, isBridge } from '../../coordinator/backlog.ts'
import { schedule, type SchedAgent, type SchedTask } from '../../coordinator/scheduler.ts'
import { CoordinatorCore, type CoordinatorComm } from '../../coordinator/core.ts'
import { Store } from '../../coordinator/store.ts'
import type { AgentResources, CoordMessage, JobHeader, TaskSpec } from '../../shared/protocol/messages.ts'

const sched = (key: number, o: Partial<SchedTask> = {}): SchedTask => ({ key, cores: 1, gpus: 0, memoryMb: 0, constraints: {}, ...o })

test('backlogFor: tasks whose constraints the bridge\'s labels meet, grouped by shape, scan bounded', () => {
  const queue = [sched(1), sched(2), sched(3, { cores: 4, timeoutMs: 60_000 }), sched(4, { constraints: { site: 'cluster' } }), sched(5, { constraints: { gpu: 'a100' } })]
  const b = backlogFor(queue, { site: 'cluster', partition: 'debug' })
  assert.deepEqual(b, {
    groups: [{ tasks: 3, cores: 1, memoryMb: 0, gpus: 0, timeoutMs: 0 }, { tasks: 1, cores: 4, memoryMb: 0, gpus: 0, timeoutMs: 60_000 }],
    truncated: false
  })
  assert.deepEqual(backlogFor(queue, {}, 2), { groups: [{ tasks: 2, cores: 1, memoryMb: 0, gpus: 0, timeoutMs: 0 }], truncated: true })
  assert.deepEqual(backlogFor([], {}), { groups: [], truncated: false })
  const many = Array.from({ length: 100 }, (_, i) => sched(i, { memoryMb: i + 1 }))
  const capped = backlogFor(many, {})
  assert.equal(capped.groups.length, 64)
  assert.equal(capped.truncated, true)
  assert.equal(isBridge({ backend: 'slurm' }), true)
  assert.equal(isBridge({ backend: 'local' }), false)
  assert.equal(isBridge({}), false)
})

test('the scheduler gives a bridge only what no fitting lab agent has room for', () => {
  const agent = (id: string, free: number, spill = false): SchedAgent => ({ id, hostname: id, labels: {}, accepting: true, freeSlots: free, freeCores: free, freeMemoryMb: 1e6, freeGpus: [], ...(spill ? { spill } : {}) })
  const out = schedule({ queue: [1, 2, 3, 4, 5].map(k => sched(k)), agents: [agent('bridge', 1000, true), agent('lab1', 2), agent('lab2', 1)], affinity: new Map() })
  assert.deepEqual(out.placements.map(p => p.agentId), ['lab1', 'lab1', 'lab2', 'bridge', 'bridge'], 'the bridge has the most free slots, and still comes last')
  const busy = schedule({ queue: [sched(1)], agents: [agent('bridge', 1000, true), { ...agent('lab1', 2), idleSlots: 0 }], affinity: new Map() })
  assert.deepEqual(busy.placements.map(p => p.agentId), ['bridge'], 'a lab agent whose slots all run has only queue places: the cluster first')
  const labelled = schedule({ queue: [sched(1, { constraints: { site: 'cluster' } })], agents: [{ ...agent('bridge', 10, true), labels: { site: 'cluster' } }, agent('lab1', 2)], affinity: new Map() })
  assert.deepEqual(labelled.placements.map(p => p.agentId), ['bridge'], 'a job that asks for the cluster goes there')
})

class Recorder implements CoordinatorComm {
  sent: Array<{ to: string, msg: CoordMessage }> = []
  send = (to: string, msg: CoordMessage): void => { this.sent.push({ to, msg }) }
  event = (): void => {}
  backlogs (to: string): Array<Extract<CoordMessage, { t: 'coord.backlog' }>> {
    return this.sent.filter(s => s.to === to && s.msg.t === 'coord.backlog').map(s => s.msg as Extract<CoordMessage, { t: 'coord.backlog' }>)
  }
}

const res = (host: string, slots: number, o: Partial<AgentResources> = {}): AgentResources => ({ hostname: host, os: 'linux', cores: Math.max(1, slots), physicalCores: 1, memoryMb: 8000, slots, gpus: [], labels: {}, runsAsRoot: false, ...o })
const header: JobHeader = { name: 'j', layout: 'per-task', shared: [], retries: 0, specText: '', specFile: 'j.yaml' }
const tasks = (n: number, o: Partial<TaskSpec> = {}): TaskSpec[] => Array.from({ length: n }, (_, i) => ({ index: i, name: `t${i}`, commands: ['true'], env: {}, inputs: [], outputs: [], timeoutMs: 0, constraints: {}, cores: 1, gpus: 0, memoryMb: 0, ...o }))

test('each pass tells a bridge what is left waiting for it, only when that changed; a lab agent hears nothing', () => {
  const store = new Store(join(mkdtempSync(join(tmpdir(), 'meshfarm-backlog-')), 'state.db'))
  const comm = new Recorder()
  const core = new CoordinatorCore(store, comm, { agentLostMs: 1000, crashLimit: 3, prefetch: 0 }, 0)
  // An auto-allocating bridge with no allocation yet: no slots, labels for jobs that ask for the cluster.
  core.onAgentHello('bridge', res('b', 0, { backend: 'slurm', labels: { site: 'cluster', partition: 'debug' } }), [], [], false, [], 0)
  core.onAgentHello('lab', res('l', 2), [], [], false, [], 0)
  core.submit('me', header, tasks(5, { constraints: { site: 'cluster' }, timeoutMs: 600_000 }), 0)
  core.submit('me', header, tasks(3), 0)
  core.schedulePass(1)
  // The cluster job waits for the bridge; the lab agent took two of the plain job, and its third fits the bridge too.
  assert.deepEqual(comm.backlogs('bridge'), [{
    t: 'coord.backlog',
    groups: [{ tasks: 5, cores: 1, memoryMb: 0, gpus: 0, timeoutMs: 600_000 }, { tasks: 1, cores: 1, memoryMb: 0, gpus: 0, timeoutMs: 0 }],
    truncated: false
  }])
  assert.equal(comm.backlogs('lab').length, 0)
  core.schedulePass(2)
  assert.equal(comm.backlogs('bridge').length, 1, 'unchanged: not sent again')
  // An allocation came up: the bridge offers 2 slots, takes two, and hears of the rest.
  core.onAgentUpdate('bridge', res('b', 2, { backend: 'slurm', labels: { site: 'cluster', partition: 'debug' } }), undefined, 3)
  core.schedulePass(3)
  const after = comm.backlogs('bridge').at(-1)!
  assert.equal(after.groups.reduce((n, g) => n + g.tasks, 0), 4)
  // A new session hears it again even if nothing changed.
  core.onAgentHello('bridge', res('b', 2, { backend: 'slurm', labels: { site: 'cluster', partition: 'debug' } }), [], [], false, [], 4)
  const before = comm.backlogs('bridge').length
  core.schedulePass(5)
  assert.equal(comm.backlogs('bridge').length, before + 1)
})
