import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fits, limitRoom, schedule, unschedulableReason, type PerAgentLimit, type SchedAgent, type SchedTask, type Placement, type ScheduleInput, type ScheduleOutput } from '../../coordinator/scheduler.ts'

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

/** Nothing placed beyond what each agent had free, GPUs never shared, every constraint and per-agent limit met. */
function assertSound (agents: SchedAgent[], tasks: SchedTask[], placements: Placement[], limits?: ReadonlyMap<number, PerAgentLimit>): void {
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
    const perGroup = new Map<number, number>()
    for (const p of ps) {
      const g = tasksByKey.get(p.key)!.group
      if (g != null) perGroup.set(g, (perGroup.get(g) ?? 0) + 1)
    }
    for (const [g, n] of perGroup) assert.ok(limitRoom(limits, g, id) >= n, `${id}: job ${g} over its per-agent limit (${n} more on top of ${limits?.get(g)?.held.get(id) ?? 0}, limit ${String(limits?.get(g)?.limit)})`)
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

test('packing respects cores, memory and slots, whichever runs out first', () => {
  const one = (o: Partial<SchedAgent>, tasks: SchedTask[]): Placement[] => {
    const agents = [agent('a', o)]
    const { placements } = schedule({ queue: tasks, agents, affinity: new Map() })
    assertSound(agents, tasks, placements)
    return placements
  }
  const many = (n: number, o: Partial<SchedTask> = {}): SchedTask[] => Array.from({ length: n }, (_, i) => task(i, o))
  assert.equal(one({ freeSlots: 8, freeCores: 8 }, many(5, { cores: 3 })).length, 2, 'cores: 3 + 3 of 8')
  assert.equal(one({ freeSlots: 2, freeCores: 16 }, many(5)).length, 2, 'slots')
  assert.equal(one({ freeSlots: 8, freeCores: 8, freeMemoryMb: 4000 }, many(5, { memoryMb: 1500 })).length, 2, 'memory: 1500 + 1500 of 4000')
  assert.equal(one({ freeSlots: 8, freeCores: 8, freeMemoryMb: 0 }, many(5)).length, 5, 'tasks that reserve no memory need none free')
  assert.equal(one({ freeSlots: 8, freeCores: 8 }, many(3, { gpus: 1 })).length, 0, 'no GPUs, no GPU tasks')
  // Exactly filling an agent is fine: 4 + 2 + 2 cores of 8, then nothing more.
  const exact = one({ freeSlots: 8, freeCores: 8, freeMemoryMb: 3000 }, [task(0, { cores: 4, memoryMb: 1000 }), task(1, { cores: 2, memoryMb: 2000 }), task(2, { cores: 2 }), task(3)])
  assert.deepEqual(exact.map(p => p.key), [0, 1, 2])
  assert.deepEqual(exact.map(p => p.memoryMb), [1000, 2000, 0])
})

test('GPU ids: distinct, from the free list, never shared, not even across passes', () => {
  const gpuAgent = agent('g', { freeSlots: 8, freeCores: 8, freeGpus: [1, 3, 4, 6] })
  const tasks = [task(0, { gpus: 2 }), task(1), task(2, { gpus: 1 }), task(3, { gpus: 2 }), task(4, { gpus: 1 })]
  const first = schedule({ queue: tasks, agents: [gpuAgent], affinity: new Map() })
  assertSound([gpuAgent], tasks, first.placements)
  assert.deepEqual(first.placements.find(p => p.key === 1)?.gpuIds, [], 'a CPU task gets no GPU')
  const used = first.placements.flatMap(p => p.gpuIds)
  assert.equal(used.length, 4, 'all four GPUs handed out: 2 + 1 + 1')
  assert.deepEqual([...used].sort(), [1, 3, 4, 6])
  assert.equal(first.placements.find(p => p.key === 3), undefined, 'no GPUs left for the second two-GPU task')
  // The coordinator's next view has the used GPUs taken out; a later pass gets only what is left.
  const later = { ...gpuAgent, freeSlots: 8 - first.placements.length, freeGpus: [3] }
  const second = schedule({ queue: [task(3, { gpus: 2 }), task(5, { gpus: 1 })], agents: [later], affinity: new Map() })
  assert.deepEqual(second.placements.map(p => [p.key, p.gpuIds]), [[5, [3]]])
})

test('labels: every constraint must match, on the one agent', () => {
  const agents = [agent('x', { labels: { os: 'linux', gpu: 'a100' } }), agent('y', { labels: { os: 'linux', gpu: 'h100' } }), agent('z', { labels: { os: 'mac' } })]
  const tasks = [
    task(0, { constraints: { os: 'linux', gpu: 'h100' } }),
    task(1, { constraints: { os: 'mac', gpu: 'a100' } }),
    task(2, { constraints: { gpu: 'a100' } }),
    task(3, { constraints: { os: 'mac' } }),
    task(4, { constraints: { os: 'linux' } })
  ]
  const { placements } = schedule({ queue: tasks, agents, affinity: new Map() })
  assertSound(agents, tasks, placements)
  const where = new Map(placements.map(p => [p.key, p.agentId]))
  assert.equal(where.get(0), 'y')
  assert.equal(where.has(1), false, 'no agent has both labels')
  assert.equal(where.get(2), 'x')
  assert.equal(where.get(3), 'z')
  assert.ok(['x', 'y'].includes(where.get(4)!))
})

test('affinity: a vanished host is replaced, a draining or full one is waited for', () => {
  const agents = [agent('a'), agent('b')]
  // Bound to an agent no longer on the mesh: the task goes elsewhere and the key is bound anew.
  const gone = schedule({ queue: [task(0, { affinity: 'k' }), task(1, { affinity: 'k' })], agents, affinity: new Map([['k', 'lost']]) })
  assert.equal(gone.placements.length, 2)
  assert.equal(gone.placements[0].agentId, gone.placements[1].agentId)
  assert.equal(gone.newAffinity.get('k'), gone.placements[0].agentId)
  // Bound to an agent that is there but not accepting: its tasks wait; other tasks still run.
  const draining = [agent('a', { accepting: false }), agent('b')]
  const wait = schedule({ queue: [task(0, { affinity: 'k' }), task(1)], agents: draining, affinity: new Map([['k', 'a']]) })
  assert.deepEqual(wait.placements.map(p => [p.key, p.agentId]), [[1, 'b']])
  assert.equal(wait.newAffinity.size, 0)
  // A bound host with a free slot but not enough cores: the task waits too, rather than moving.
  const small = schedule({ queue: [task(0, { affinity: 'k', cores: 3 })], agents: [agent('a', { freeCores: 2 }), agent('b')], affinity: new Map([['k', 'a']]) })
  assert.equal(small.placements.length, 0)
})

test('affinity binds only when a task is placed; a task that fits nowhere binds nothing', () => {
  const agents = [agent('a', { freeCores: 2 }), agent('b', { freeCores: 2 })]
  const { placements, newAffinity } = schedule({ queue: [task(0, { affinity: 'k', cores: 4 }), task(1, { affinity: 'k', cores: 1 }), task(2, { affinity: 'k', cores: 2 })], agents, affinity: new Map() })
  assert.equal(placements.find(p => p.key === 0), undefined)
  const host = placements.find(p => p.key === 1)!.agentId
  assert.equal(newAffinity.get('k'), host)
  assert.equal(placements.find(p => p.key === 2), undefined, 'task 2 waits for the bound host (1 core left there) instead of moving')
})

test('maxScan bounds how much of the queue one pass looks at', () => {
  const agents = [agent('a', { freeSlots: 10, freeCores: 10 })]
  const tasks = [task(0, { cores: 99 }), task(1, { cores: 98 }), task(2), task(3)]
  assert.deepEqual(schedule({ queue: tasks, agents, affinity: new Map(), maxScan: 3 }).placements.map(p => p.key), [2])
  assert.deepEqual(schedule({ queue: tasks, agents, affinity: new Map() }).placements.map(p => p.key), [2, 3])
})

test('unschedulableReason says why no agent could ever run a task', () => {
  const mesh: Parameters<typeof unschedulableReason>[1] = [{ id: 'a', labels: { os: 'linux' }, totalCores: 8, totalMemoryMb: 1000, gpuCount: 0 }, { id: 'b', labels: {}, totalCores: 2, totalMemoryMb: 64000, gpuCount: 2 }]
  assert.match(unschedulableReason(task(0), [])!, /no agents/)
  assert.match(unschedulableReason(task(0, { gpus: 4 }), mesh)!, /needs 4 GPUs; the largest agent has 2/)
  assert.match(unschedulableReason(task(0, { cores: 16 }), mesh)!, /needs 16 cores; the largest agent has 8/)
  assert.match(unschedulableReason(task(0, { memoryMb: 100000 }), mesh)!, /needs 100000 MB/)
  assert.match(unschedulableReason(task(0, { cores: 8, gpus: 1 }), mesh)!, /no single agent has enough/)
  assert.match(unschedulableReason(task(0, { cores: 4, constraints: { os: 'linux' }, memoryMb: 2000 }), mesh)!, /needs 2000 MB of memory; the largest agent has 1000/)
  assert.equal(unschedulableReason(task(0, { cores: 8, memoryMb: 500 }), mesh), null)
})

test('per-agent limits: at most N of a job on one agent, counting what it holds; other jobs still fill it', () => {
  const agents = [agent('a', { freeSlots: 4, freeCores: 4 }), agent('b', { freeSlots: 4, freeCores: 4 })]
  const tasks = [...Array.from({ length: 6 }, (_, i) => task(i, { group: 1 })), task(6, { group: 2 }), task(7)]
  const limits = new Map([[1, { limit: 2, held: new Map([['a', 1]]) }]])
  const { placements } = schedule({ queue: tasks, agents, affinity: new Map(), limits })
  assertSound(agents, tasks, placements, limits)
  const onAgent = (id: string, group?: number): number[] => placements.filter(p => p.agentId === id && tasks[p.key].group === group).map(p => p.key)
  assert.equal(onAgent('a', 1).length, 1, 'a holds one of job 1 already: one more')
  assert.equal(onAgent('b', 1).length, 2)
  assert.ok(placements.some(p => p.key === 6) && placements.some(p => p.key === 7), 'other jobs are not held up by job 1\'s limit')
  // A task bound by affinity to an agent at its job's limit waits, rather than moving.
  const bound = schedule({ queue: [task(0, { group: 1, affinity: 'k' })], agents, affinity: new Map([['k', 'a']]), limits: new Map([[1, { limit: 1, held: new Map([['a', 1]]) }]]) })
  assert.equal(bound.placements.length, 0)
  // Same shape, different jobs: a job at its limit everywhere does not block another job's identical tasks.
  const full = new Map([[1, { limit: 1, held: new Map([['a', 1], ['b', 1]]) }]])
  assert.deepEqual(schedule({ queue: [task(0, { group: 1 }), task(1, { group: 2 })], agents, affinity: new Map(), limits: full }).placements.map(p => p.key), [1])
})

type Scheduler = (input: ScheduleInput) => ScheduleOutput

/** One random round: a mesh, a queue, bindings and limits, scheduled and checked for every invariant. */
function randomRound (scheduler: Scheduler, rand: (n: number) => number): number {
  const labels: Array<Record<string, string>> = [{}, { zone: 'a' }, { zone: 'b' }, { zone: 'a', gpu: 'yes' }]
  const agents = Array.from({ length: 1 + rand(6) }, (_, i) => agent(`n${i}`, {
    accepting: rand(8) !== 0,
    freeSlots: rand(6),
    freeCores: rand(9),
    freeMemoryMb: rand(4) * 1000,
    freeGpus: Array.from({ length: rand(4) }, (_, g) => g * 2 + rand(2)),
    labels: labels[rand(labels.length)]
  }))
  const tasks = Array.from({ length: rand(40) }, (_, k) => task(k, {
    cores: 1 + rand(3),
    gpus: rand(5) === 0 ? 1 + rand(2) : 0,
    memoryMb: rand(3) === 0 ? rand(3) * 600 : 0,
    constraints: rand(4) === 0 ? (rand(3) === 0 ? { zone: 'a', gpu: 'yes' } : { zone: rand(2) === 0 ? 'a' : 'b' }) : {},
    affinity: rand(4) === 0 ? `k${rand(4)}` : undefined,
    group: rand(3)
  }))
  // Bindings from earlier passes, some to agents no longer on the mesh (n6, n7 never exist here).
  const affinity = new Map<string, string>()
  for (let k = 0; k < 4; k++) if (rand(2) === 0) affinity.set(`k${k}`, `n${rand(8)}`)
  // Per-agent limits for some jobs, with what agents already hold of them.
  const limits = new Map<number, PerAgentLimit>()
  for (let g = 0; g < 3; g++) {
    if (rand(2) === 0) limits.set(g, { limit: 1 + rand(3), held: new Map(agents.map(a => [a.id, rand(3)])) })
  }
  const before = JSON.stringify({ agents, tasks, affinity: [...affinity], limits: [...limits].map(([g, l]) => [g, l.limit, [...l.held]]) })
  // Half the rounds split the queue between members with random loads: fair share must keep every invariant.
  const members = rand(2) === 0 ? 1 : 2 + rand(2)
  const queues = Array.from({ length: members }, (_, m) => ({ owner: `m${m}`, load: rand(5), tasks: tasks.filter(t => t.key % members === m) }))
  const { placements, newAffinity } = scheduler(members === 1 ? { queue: tasks, agents, affinity, limits } : { queues, agents, affinity, limits })
  assert.equal(JSON.stringify({ agents, tasks, affinity: [...affinity], limits: [...limits].map(([g, l]) => [g, l.limit, [...l.held]]) }), before, 'inputs untouched')
  assertSound(agents, tasks, placements, limits)

  // Affinity: a key is bound anew only when its old host is gone; every placed task is on its key's host.
  const present = new Set(agents.map(a => a.id))
  for (const [k, id] of newAffinity) {
    assert.ok(present.has(id))
    assert.ok(!present.has(affinity.get(k) ?? ''), `key ${k} re-bound although its host ${String(affinity.get(k))} is present`)
  }
  const hostOf = (k: string): string | undefined => newAffinity.get(k) ?? (present.has(affinity.get(k) ?? '') ? affinity.get(k) : undefined)
  for (const p of placements) {
    const key = tasks[p.key].affinity
    if (key != null) assert.equal(p.agentId, hostOf(key), `task ${p.key} (key ${key}) away from its host`)
  }

  // Work-conserving: what is left over could run nowhere it is allowed to (resources only shrink in a pass).
  const left = new Map(agents.map(a => [a.id, { ...a, freeGpus: a.freeGpus.filter(g => !placements.some(p => p.agentId === a.id && p.gpuIds.includes(g))) }]))
  for (const p of placements) {
    const a = left.get(p.agentId)!
    a.freeSlots--
    a.freeCores -= p.cores
    a.freeMemoryMb -= p.memoryMb
  }
  const placedOf = (g: number | undefined, id: string): number => placements.filter(p => p.agentId === id && tasks[p.key].group === g).length
  const placed = new Set(placements.map(p => p.key))
  for (const t of tasks) {
    if (placed.has(t.key)) continue
    const host = t.affinity != null ? hostOf(t.affinity) : undefined
    const candidates = host != null ? [left.get(host)!] : [...left.values()]
    for (const a of candidates) {
      const free = fits(a, t) && limitRoom(limits, t.group, a.id, placedOf(t.group, a.id)) > 0
      assert.equal(free, false, `task ${t.key} left queued although ${a.id} could take it`)
    }
  }
  return placements.length
}

function seeded (seed: number): (n: number) => number {
  // Math.imul: a plain multiply loses the low bits past 2^53, and the sequence decays to zeros.
  return (n: number): number => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return (seed >>> 8) % n }
}

test('property: a thousand random meshes and queues: nothing over-committed, constraints, limits and affinity kept, no task left that could run', () => {
  const rand = seeded(12345)
  let placedTotal = 0
  for (let round = 0; round < 1000; round++) placedTotal += randomRound(schedule, rand)
  assert.ok(placedTotal > 500, `the random cases place plenty of tasks (${placedTotal})`)
})

test('an idle slot is taken before a place in a busy agent\'s queue', () => {
  // a: one slot, running a task, room for 7 more in its queue; b: one slot, idle.
  const agents = [agent('a', { freeSlots: 7, idleSlots: 0, freeCores: 7 }), agent('b', { freeSlots: 3, idleSlots: 1, freeCores: 3 })]
  const { placements } = schedule({ queue: [task(0), task(1)], agents, affinity: new Map() })
  assert.deepEqual(placements.map(p => p.agentId), ['b', 'a'], 'the idle agent first; then the queue with the most room')
})

test('fair share: a member with 10 tasks makes progress beside one with a million, at once', () => {
  const agents = [agent('a', { freeSlots: 4, freeCores: 4 }), agent('b', { freeSlots: 4, freeCores: 4 })]
  let generated = 0
  function * million (): Generator<SchedTask> {
    for (let i = 0; i < 1_000_000; i++) { generated++; yield task(i) }
  }
  const ten = Array.from({ length: 10 }, (_, i) => task(2_000_000 + i))
  // The big member already runs 8 cores; the small one nothing.
  const { placements } = schedule({ queues: [{ owner: 'big', load: 8, tasks: million() }, { owner: 'small', load: 0, tasks: ten }], agents, affinity: new Map() })
  const small = placements.filter(p => p.key >= 2_000_000).length
  const big = placements.length - small
  assert.equal(placements.length, 8)
  // The small member catches up to the big one's load (8), then they alternate: both progress in this pass.
  assert.equal(small, 8, 'the newcomer gets the free slots until its load reaches the big member\'s')
  assert.ok(generated < 100, `the million-task queue is read lazily (${generated} read)`)
  // Next pass, with the small member now running 8 cores too: they share.
  const next = schedule({ queues: [{ owner: 'big', load: 8, tasks: million() }, { owner: 'small', load: 8, tasks: ten.slice(8) }], agents, affinity: new Map() })
  assert.equal(next.placements.filter(p => p.key >= 2_000_000).length, 2)
  assert.equal(next.placements.filter(p => p.key < 2_000_000).length, 6, 'both members progress in the same pass')
  void big
})

test('fair share: equal members alternate; a member whose tasks fit nowhere does not hold up the others', () => {
  const agents = [agent('a', { freeSlots: 6, freeCores: 6 })]
  const x = Array.from({ length: 10 }, (_, i) => task(i))
  const y = Array.from({ length: 10 }, (_, i) => task(100 + i))
  const { placements } = schedule({ queues: [{ owner: 'x', load: 0, tasks: x }, { owner: 'y', load: 0, tasks: y }], agents, affinity: new Map() })
  assert.deepEqual(placements.map(p => p.key < 100 ? 'x' : 'y'), ['x', 'y', 'x', 'y', 'x', 'y'])
  // A member with 10,000 GPU tasks (no GPU anywhere) and the lowest load: the other member still gets the slots.
  const gpuHungry = Array.from({ length: 10_000 }, (_, i) => task(1000 + i, { gpus: 1 }))
  const r = schedule({ queues: [{ owner: 'g', load: 0, tasks: gpuHungry }, { owner: 'y', load: 50, tasks: y }], agents, affinity: new Map(), maxScan: 2000 })
  assert.equal(r.placements.length, 6)
})

test('the property test catches deliberately broken schedulers', () => {
  const broken: Record<string, [Scheduler, RegExp]> = {
    'ignores per-agent limits': [input => schedule({ ...input, limits: undefined }), /over its per-agent limit/],
    'counts this pass but not what agents hold': [input => schedule({ ...input, limits: new Map([...input.limits ?? []].map(([g, l]) => [g, { limit: l.limit, held: new Map() }])) }), /over its per-agent limit/],
    'over-commits cores': [input => schedule({ ...input, agents: input.agents.map(a => ({ ...a, freeCores: a.freeCores + 2 })) }), /cores over-committed/],
    'gives a GPU twice': [input => schedule({ ...input, agents: input.agents.map(a => ({ ...a, freeGpus: [...a.freeGpus, ...a.freeGpus] })) }), /a GPU given twice/],
    'ignores constraints': [input => schedule({ ...input, queue: [...input.queue ?? []].map(t => ({ ...t, constraints: {} })) }), /lacks/],
    'leaves runnable tasks queued': [input => schedule({ ...input, queue: [...input.queue ?? []].slice(0, 3) }), /left queued although/],
    'drops a member\'s queue': [input => schedule({ ...input, queues: input.queues?.slice(1) }), /left queued although/]
  }
  for (const [what, [scheduler, why]] of Object.entries(broken)) {
    const rand = seeded(12345)
    assert.throws(() => { for (let round = 0; round < 1000; round++) randomRound(scheduler, rand) }, why, `a scheduler that ${what} passes the property test`)
  }
})
