import { test } from 'node:test'
import assert from 'node:assert/strict'
import { schedule, unschedulableReason, type SchedAgent, type SchedTask, type Placement } from '../../coordinator/scheduler.ts'

function agent (id: string, o: Partial<SchedAgent> = {}): SchedAgent {
  return { id, hostname: id, labels: {}, accepting: true, freeSlots: 4, freeCores: 4, freeMemoryMb: 8000, freeGpus: [], ...o }
}

function task (key: number, o: Partial<SchedTask> = {}): SchedTask {
  return { key, cores: 1, gpus: 0, memoryMb: 0, constraints: {}, ...o }
}

function byAgent (placements: Placement[]): Map<string, Placement[]> {
  const m = new Map<string, Placement[]>()
  for (const p of placements) m.set(p.agentId, [...(m.get(p.agentId) ?? []), p])
  return m
}

/** Nothing placed beyond what each agent had free, GPUs never shared, every constraint met. */
function assertSound (agents: SchedAgent[], tasks: SchedTask[], placements: Placement[]): void {
  const tasksByKey = new Map(tasks.map(t => [t.key, t]))
  assert.equal(new Set(placements.map(p => p.key)).size, placements.length, 'a task placed twice')
  for (const [id, ps] of byAgent(placements)) {
    const a = agents.find(x => x.id === id)!
    assert.ok(a.accepting, `${id} is not accepting`)
    assert.ok(ps.length <= a.freeSlots, `${id}: ${ps.length} tasks in ${a.freeSlots} slots`)
    assert.ok(ps.reduce((n, p) => n + p.cores, 0) <= a.freeCores, `${id}: cores over-committed`)
    assert.ok(ps.reduce((n, p) => n + p.memoryMb, 0) <= a.freeMemoryMb, `${id}: memory over-committed`)
    const gpus = ps.flatMap(p => p.gpuIds)
    assert.equal(new Set(gpus).size, gpus.length, `${id}: a GPU given twice`)
    for (const g of gpus) assert.ok(a.freeGpus.includes(g), `${id}: GPU ${g} was not free`)
    for (const p of ps) {
      const t = tasksByKey.get(p.key)!
      assert.equal(p.gpuIds.length, t.gpus)
      assert.equal(p.cores, t.cores)
      for (const [k, v] of Object.entries(t.constraints)) assert.equal(a.labels[k], v, `${id} lacks ${k}=${v}`)
    }
  }
}

test('packing: tasks fill free slots and cores, spread over agents, never over-committed', () => {
  const agents = [agent('a', { freeSlots: 2, freeCores: 2 }), agent('b', { freeSlots: 2, freeCores: 2 })]
  const tasks = Array.from({ length: 10 }, (_, i) => task(i))
  const { placements } = schedule({ queue: tasks, agents, affinity: new Map() })
  assert.equal(placements.length, 4, 'four slots, four tasks')
  assert.deepEqual(placements.map(p => p.key), [0, 1, 2, 3], 'in queue order')
  assert.equal(byAgent(placements).get('a')?.length, 2)
  assert.equal(byAgent(placements).get('b')?.length, 2)
  assertSound(agents, tasks, placements)
  assert.equal(agents[0].freeSlots, 2, 'the input is not mutated')
})

test('a big task that fits nowhere does not hold up the small ones behind it', () => {
  const agents = [agent('a', { freeSlots: 4, freeCores: 4, freeMemoryMb: 1000 })]
  const tasks = [task(0, { cores: 8 }), task(1, { memoryMb: 5000 }), task(2), task(3, { cores: 2 })]
  const { placements } = schedule({ queue: tasks, agents, affinity: new Map() })
  assert.deepEqual(placements.map(p => p.key), [2, 3])
  assertSound(agents, tasks, placements)
})

test('GPU tasks get distinct GPU ids and prefer the agent with the fewest free GPUs', () => {
  const agents = [agent('big', { freeGpus: [0, 1, 2, 3] }), agent('small', { freeGpus: [0, 1] })]
  const tasks = [task(0, { gpus: 1 }), task(1, { gpus: 1 }), task(2, { gpus: 2 }), task(3, { gpus: 3 }), task(4, { gpus: 1 })]
  const { placements } = schedule({ queue: tasks, agents, affinity: new Map() })
  assertSound(agents, tasks, placements)
  const small = byAgent(placements).get('small')!.map(p => p.key)
  assert.deepEqual(small, [0, 1], 'single-GPU tasks go to the small box first')
  const onBig = byAgent(placements).get('big')!
  assert.deepEqual(onBig.map(p => p.key), [2, 4], 'the 3-GPU task waits: only 2 GPUs are left on big after task 2')
  assert.deepEqual(onBig.flatMap(p => p.gpuIds).sort(), [0, 1, 2])
})

test('labels are constraints: a task goes only where its labels are, and nowhere if no agent has them', () => {
  const agents = [agent('cpu', { labels: { arch: 'x86' } }), agent('gpu', { labels: { arch: 'x86', cuda: '12' } })]
  const tasks = [task(0, { constraints: { cuda: '12' } }), task(1, { constraints: { arch: 'arm' } }), task(2, { constraints: { arch: 'x86' } })]
  const { placements } = schedule({ queue: tasks, agents, affinity: new Map() })
  assertSound(agents, tasks, placements)
  assert.equal(placements.find(p => p.key === 0)?.agentId, 'gpu')
  assert.equal(placements.find(p => p.key === 1), undefined)
  assert.ok(placements.some(p => p.key === 2))
  assert.match(unschedulableReason(tasks[1], agents.map(a => ({ id: a.id, labels: a.labels, totalCores: 4, totalMemoryMb: 8000, gpuCount: 0 })))!, /needs label arch=arm, no agent has it/)
})

test('affinity: tasks with the same key go to one host, within a pass and across passes', () => {
  const agents = [agent('a', { freeSlots: 8, freeCores: 8 }), agent('b', { freeSlots: 8, freeCores: 8 })]
  const tasks = Array.from({ length: 8 }, (_, i) => task(i, { affinity: `chip${i % 2}` }))
  const first = schedule({ queue: tasks.slice(0, 4), agents, affinity: new Map() })
  const hostOf = (ps: Placement[], key: number): string => ps.find(p => p.key === key)!.agentId
  assert.equal(hostOf(first.placements, 0), hostOf(first.placements, 2))
  assert.equal(hostOf(first.placements, 1), hostOf(first.placements, 3))
  assert.notEqual(hostOf(first.placements, 0), hostOf(first.placements, 1), 'different keys spread')
  // A later pass honours the bindings the coordinator kept from the first.
  const second = schedule({ queue: tasks.slice(4), agents, affinity: first.newAffinity })
  assert.equal(hostOf(second.placements, 4), hostOf(first.placements, 0))
  assert.equal(hostOf(second.placements, 5), hostOf(first.placements, 1))
  assert.equal(second.newAffinity.size, 0, 'no new bindings')
  // A bound host that is full makes its tasks wait rather than move.
  const full = agents.map(a => a.id === hostOf(first.placements, 0) ? { ...a, freeSlots: 0 } : a)
  const third = schedule({ queue: [task(9, { affinity: 'chip0' })], agents: full, affinity: first.newAffinity })
  assert.equal(third.placements.length, 0)
})

test('draining agents and agents without free slots get nothing', () => {
  const agents = [agent('draining', { accepting: false }), agent('busy', { freeSlots: 0 })]
  assert.equal(schedule({ queue: [task(0), task(1)], agents, affinity: new Map() }).placements.length, 0)
})

test('property: a thousand random meshes and queues are never over-committed', () => {
  let seed = 12345
  const rand = (n: number): number => { seed = (seed * 1103515245 + 12345) >>> 0; return seed % n }
  for (let round = 0; round < 1000; round++) {
    const labels: Array<Record<string, string>> = [{}, { zone: 'a' }, { zone: 'b' }, { zone: 'a', gpu: 'yes' }]
    const agents = Array.from({ length: 1 + rand(6) }, (_, i) => agent(`n${i}`, {
      accepting: rand(8) !== 0,
      freeSlots: rand(6),
      freeCores: rand(9),
      freeMemoryMb: rand(4) * 1000,
      freeGpus: Array.from({ length: rand(4) }, (_, g) => g * 2),
      labels: labels[rand(labels.length)]
    }))
    const tasks = Array.from({ length: rand(40) }, (_, k) => task(k, {
      cores: 1 + rand(3),
      gpus: rand(5) === 0 ? 1 + rand(2) : 0,
      memoryMb: rand(3) === 0 ? rand(3) * 600 : 0,
      constraints: rand(4) === 0 ? { zone: rand(2) === 0 ? 'a' : 'b' } : {},
      affinity: rand(5) === 0 ? `k${rand(3)}` : undefined
    }))
    const { placements, newAffinity } = schedule({ queue: tasks, agents, affinity: new Map() })
    assertSound(agents, tasks, placements)
    for (const p of placements) {
      const key = tasks[p.key].affinity
      if (key != null) assert.equal(newAffinity.get(key), p.agentId, 'tasks of one key share a host')
    }
  }
})
