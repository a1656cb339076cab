import { test } from 'node:test'
import assert from 'node:assert/strict'
import { DEFAULT_HARVEST_CONFIG, compileHarvestConfig } from '../../node/harvest/config.ts'
import { decideHarvest, initialHarvestState } from '../../node/harvest/policy.ts'
import { HarvestSim, MIN, observe } from '../helpers/harvest-sim.ts'

const T0 = Date.UTC(2026, 10, 23, 9, 0, 0)
const cfg = DEFAULT_HARVEST_CONFIG

/** A sim whose owner left `idleMin` minutes before T0, with `n` CPU tasks running (and `gpu` GPU ones). */
function lendingSim (n: number, gpu = 0): HarvestSim {
  const sim = new HarvestSim(cfg, T0)
  sim.tick(T0, { idleMs: 20 * MIN })
  assert.equal(sim.last.accept.cpu, true, sim.last.reason)
  for (let i = 0; i < n; i++) sim.offer()
  for (let i = 0; i < gpu; i++) assert.ok(sim.offer(true) != null)
  sim.tick(T0 + 1000, { idleMs: 20 * MIN + 1000 })
  assert.equal(sim.last.summary.mode, 'lending')
  return sim
}

test('idle: nothing starts before 15 min of idleness with low load; then lending, in plain words', () => {
  const sim = new HarvestSim(cfg, T0)
  for (const m of [0, 1, 5, 14]) {
    const out = sim.tick(T0 + m * MIN, { idleMs: m * MIN })
    assert.equal(out.accept.cpu, false, `idle ${m} min`)
    assert.deepEqual(out.decisions, [])
  }
  assert.equal(sim.last.reason, 'owner away: idle 14 min, lending after 15 min idle')
  assert.equal(sim.last.summary.ownerPresent, false)
  assert.equal(sim.last.summary.idleSince, T0)
  const out = sim.tick(T0 + 16 * MIN, { idleMs: 16 * MIN, load: 0.05 })
  assert.deepEqual(out.accept, { cpu: true, gpu: true })
  assert.equal(out.reason, 'idle 16 min, load not ours 0.05: lending')
  assert.equal(out.summary.mode, 'lending')
  assert.equal(sim.tick(T0 + 17 * MIN, { idleMs: 30 * 1000 }).reason, 'owner present: keyboard used 30 s ago (pts/1 (tty atime))')
})

test('owner back briefly: every task suspended at once, none taken, continued after 5 min of idleness', () => {
  const sim = lendingSim(3)
  const back = T0 + 10 * MIN
  const out = sim.tick(back, { idleMs: 2000, from: 'session 2 (GNOME idle hint)' })
  assert.deepEqual(out.decisions.map(d => d.op), ['suspend', 'suspend', 'suspend'])
  assert.deepEqual(out.accept, { cpu: false, gpu: false })
  assert.equal(out.summary.mode, 'suspended')
  assert.equal(out.summary.suspendedTasks, 3)
  assert.match(out.reason, /^owner present: keyboard used 2 s ago \(session 2 \(GNOME idle hint\)\); 3 tasks suspended, vacated after 10 min$/)
  // The owner leaves again: 1 and 4 minutes of idleness keep the tasks suspended, 5 minutes continue them.
  assert.deepEqual(sim.tick(back + 1 * MIN, { idleMs: 1 * MIN }).decisions, [])
  const waiting = sim.tick(back + 4 * MIN, { idleMs: 4 * MIN })
  assert.deepEqual(waiting.decisions, [])
  assert.match(waiting.reason, /owner away: idle 4 min, suspended tasks continue after 5 min idle/)
  const cont = sim.tick(back + 5 * MIN, { idleMs: 5 * MIN })
  assert.deepEqual(cont.decisions.map(d => d.op), ['continue', 'continue', 'continue'])
  assert.equal(cont.accept.cpu, false, 'new tasks still wait for 15 min of idleness')
  assert.equal(cont.summary.mode, 'lending')
  assert.equal(sim.states(), 't1:running t2:running t3:running')
  assert.equal(sim.vacated.length, 0)
})

test('owner back for long: suspended tasks are vacated after 10 min, not counted against them', () => {
  const sim = lendingSim(2)
  const back = T0 + 10 * MIN
  sim.tick(back, { idleMs: 0 })
  for (let s = 30; s < 10 * 60; s += 30) {
    const out = sim.tick(back + s * 1000, { idleMs: 5000 })
    assert.deepEqual(out.decisions, [], `at ${s} s`)
  }
  const out = sim.tick(back + 10 * MIN, { idleMs: 5000 })
  assert.deepEqual(out.decisions, [{ op: 'vacate', taskId: 't1', why: 'suspended 10 min' }, { op: 'vacate', taskId: 't2', why: 'suspended 10 min' }])
  assert.equal(out.summary.mode, 'vacating')
  assert.match(out.reason, /vacating 2 tasks/)
  assert.equal(sim.tick(back + 10 * MIN + 1000, { idleMs: 6000 }).summary.mode, 'owner', 'the vacated tasks are gone')
})

test('a vacate stays told: while the agent stops the task the policy asks nothing else of it', () => {
  const sim = lendingSim(1)
  sim.tick(T0 + 10 * MIN, { idleMs: 0 })
  const out = decideHarvest({ observation: observe(T0 + 20 * MIN, { idleMs: 0 }), tasks: sim.tasks }, cfg, sim.state, T0 + 20 * MIN)
  assert.equal(out.decisions[0].op, 'vacate')
  const again = decideHarvest({ observation: observe(T0 + 21 * MIN, { idleMs: 30 * MIN }), tasks: sim.tasks }, cfg, out.state, T0 + 21 * MIN)
  assert.deepEqual(again.decisions, [], 'no continue for a task being vacated')
  assert.equal(again.summary.mode, 'vacating')
})

test('a suspend that did not take is asked again; the vacate clock runs from the first ask', () => {
  const sim = lendingSim(1)
  const t = T0 + 10 * MIN
  const first = decideHarvest({ observation: observe(t, { idleMs: 0 }), tasks: sim.tasks }, cfg, sim.state, t)
  assert.deepEqual(first.decisions, [{ op: 'suspend', taskId: 't1' }])
  // The backend failed: the task still runs.
  const second = decideHarvest({ observation: observe(t + 2000, { idleMs: 2 * MIN }), tasks: sim.tasks }, cfg, first.state, t + 2000)
  assert.deepEqual(second.decisions, [{ op: 'suspend', taskId: 't1' }], 'idle 2 min is not enough to give up the suspension')
  const late = decideHarvest({ observation: observe(t + 10 * MIN, { idleMs: 0 }), tasks: [{ id: 't1', gpu: false, state: 'suspended' }] }, cfg, second.state, t + 10 * MIN)
  assert.deepEqual(late.decisions.map(d => d.op), ['vacate'])
})

test('owner load: high for 2 min suspends, background load lets tasks continue; high load alone never starts', () => {
  const sim = lendingSim(2)
  const t = T0 + 30 * MIN
  assert.deepEqual(sim.tick(t, { load: 0.8 }).decisions, [], 'high load, but not for 2 min yet')
  assert.deepEqual(sim.tick(t + 1 * MIN, { load: 0.9 }).decisions, [])
  const out = sim.tick(t + 2 * MIN, { load: 0.7 })
  assert.deepEqual(out.decisions.map(d => d.op), ['suspend', 'suspend'])
  assert.match(out.reason, /^owner present: load not ours 0\.70 for 2 min/)
  // Between background and high: no longer "busy", not idle enough to continue.
  const mid = sim.tick(t + 3 * MIN, { load: 0.4 })
  assert.deepEqual(mid.decisions, [])
  assert.match(mid.reason, /but load not ours 0\.40 \(lending at 0\.30 or less\)/)
  const cont = sim.tick(t + 4 * MIN, { load: 0.1 })
  assert.deepEqual(cont.decisions.map(d => d.op), ['continue', 'continue'])
  // A dip below high load resets the 2-minute clock.
  sim.tick(t + 5 * MIN, { load: 0.9 })
  sim.tick(t + 6 * MIN, { load: 0.2 })
  assert.deepEqual(sim.tick(t + 7 * MIN + 30_000, { load: 0.9 }).decisions, [])
  const fresh = new HarvestSim(cfg, T0)
  assert.equal(fresh.tick(T0, { idleMs: 60 * MIN, load: 0.31 }).accept.cpu, false)
  assert.equal(fresh.tick(T0 + 1000, { idleMs: 60 * MIN, load: null }).accept.cpu, false, 'unmeasured load does not start tasks')
  assert.match(fresh.last.reason, /load not ours not measured yet/)
})

test('unknown presence is not idle: a session nothing sees into blocks lending and suspends running tasks', () => {
  const sim = lendingSim(1, 1)
  const out = sim.tick(T0 + 5 * MIN, { idleMs: 40 * MIN, blind: ['session 4 (wayland, bob): no idle hint'] })
  assert.deepEqual(out.accept, { cpu: false, gpu: false })
  assert.deepEqual(out.decisions.map(d => d.op), ['suspend', 'vacate'])
  assert.equal(out.summary.ownerPresent, null)
  assert.equal(out.summary.idleSince, null)
  assert.match(out.reason, /^presence unknown: cannot see session 4 \(wayland, bob\): no idle hint; not lent unless its owner says meshfarm lend/)
  // Recent input is recent input, blind channels or not.
  assert.match(sim.tick(T0 + 6 * MIN, { idleMs: 1000, blind: ['session 4'] }).reason, /^owner present: keyboard used 1 s ago/)
  const none = new HarvestSim(cfg, T0)
  assert.match(none.tick(T0, { idleMs: null, sessions: null }).reason, /^presence unknown: no presence source can tell/)
  // ...unless the owner lends it.
  none.command({ op: 'lend', untilMs: null }, T0)
  const lent = none.tick(T0 + 1000, { idleMs: null, sessions: null })
  assert.deepEqual(lent.accept, { cpu: true, gpu: true })
  assert.equal(lent.reason, 'lent by its owner until they say otherwise')
})

test('nobody logged in counts as idle forever', () => {
  const sim = new HarvestSim(cfg, T0)
  const out = sim.tick(T0, { idleMs: null, sessions: 0 })
  assert.equal(out.accept.cpu, true)
  assert.equal(out.reason, 'nobody logged in, load not ours 0.05: lending')
  assert.equal(out.summary.idleSince, null)
})

test('lend --until: lent although present, until then; afterwards the default policy suspends', () => {
  const sim = lendingSim(2)
  const t = T0 + 60 * MIN
  sim.tick(t, { idleMs: 0 })
  assert.equal(sim.states(), 't1:suspended t2:suspended')
  sim.command({ op: 'lend', untilMs: t + 2 * 3600_000, label: '18:00' }, t + 1000)
  const lent = sim.tick(t + 1000, { idleMs: 0, load: 1.5 })
  assert.deepEqual(lent.decisions.map(d => d.op), ['continue', 'continue'])
  assert.deepEqual(lent.accept, { cpu: true, gpu: true })
  assert.equal(lent.reason, 'lent by its owner until 18:00')
  assert.equal(lent.summary.lendingUntil, t + 2 * 3600_000)
  assert.deepEqual(sim.tick(t + 90 * MIN, { idleMs: 0, load: 1.5 }).decisions, [], 'no suspension while lent')
  const after = sim.tick(t + 2 * 3600_000, { idleMs: 0 })
  assert.deepEqual(after.decisions.map(d => d.op), ['suspend', 'suspend'])
  assert.match(after.reason, /^owner present: .*; lending by its owner ended 0 s ago$/)
  assert.equal(after.summary.control, 'default')
})

test('reclaim: suspends at once (GPU tasks vacated) even when the sources see nobody; ordinary rules after', () => {
  const sim = lendingSim(1, 1)
  const t = T0 + 60 * MIN
  sim.command({ op: 'reclaim' }, t)
  const out = sim.tick(t, { idleMs: 60 * MIN })
  assert.deepEqual(out.decisions, [{ op: 'suspend', taskId: 't1' }, { op: 'vacate', taskId: 't2', why: 'GPU task: owner present' }])
  assert.match(out.reason, /^owner present: reclaimed by its owner 0 s ago/)
  assert.equal(out.summary.idleSince, t)
  assert.deepEqual(sim.tick(t + 4 * MIN, { idleMs: 64 * MIN }).decisions, [], 'reclaim counts as input: 4 min is too soon')
  assert.deepEqual(sim.tick(t + 5 * MIN, { idleMs: 65 * MIN }).decisions.map(d => d.op), ['continue'])
  assert.equal(sim.last.accept.cpu, false)
  assert.equal(sim.tick(t + 15 * MIN, { idleMs: 75 * MIN }).accept.cpu, true)
  // Reclaim ends a lend.
  sim.command({ op: 'lend', untilMs: null }, t + 16 * MIN)
  sim.command({ op: 'reclaim' }, t + 17 * MIN)
  assert.equal(sim.state.control.mode, 'default')
})

test('lend --never vacates at once and takes nothing; --policy default brings the ordinary rules back', () => {
  const sim = lendingSim(2)
  sim.command({ op: 'never' }, T0 + 5 * MIN)
  const out = sim.tick(T0 + 5 * MIN, { idleMs: 60 * MIN })
  assert.deepEqual(out.decisions.map(d => [d.op, d.taskId]), [['vacate', 't1'], ['vacate', 't2']])
  assert.equal(out.reason, 'never lent: its owner said meshfarm lend --never; vacating 2 tasks')
  assert.equal(sim.tick(T0 + 6 * MIN, { idleMs: 60 * MIN }).accept.cpu, false)
  sim.command({ op: 'reclaim' }, T0 + 7 * MIN)
  assert.equal(sim.state.control.mode, 'never', 'reclaim does not undo never')
  sim.command({ op: 'default' }, T0 + 8 * MIN)
  assert.equal(sim.tick(T0 + 30 * MIN, { idleMs: 60 * MIN }).accept.cpu, true)
})

test('GPU tasks are vacated, never suspended; a GPU used by someone else stops GPU work only', () => {
  const sim = lendingSim(1, 1)
  const busy = sim.tick(T0 + 5 * MIN, { gpuProcs: 1 })
  assert.deepEqual(busy.decisions, [{ op: 'vacate', taskId: 't2', why: 'a GPU is in use by another process' }])
  assert.deepEqual(busy.accept, { cpu: true, gpu: false })
  assert.match(busy.reason, /a GPU is in use by another process: no GPU tasks/)
  assert.equal(sim.offer(true), null)
  assert.ok(sim.offer(false) != null)
  const free = sim.tick(T0 + 6 * MIN, { gpuProcs: 0 })
  assert.deepEqual(free.accept, { cpu: true, gpu: true })
  const gpuTask = sim.offer(true)!
  const back = sim.tick(T0 + 7 * MIN, { idleMs: 0 })
  assert.deepEqual(back.decisions.find(d => d.taskId === gpuTask), { op: 'vacate', taskId: gpuTask, why: 'GPU task: owner present' })
  assert.ok(back.decisions.filter(d => d.taskId !== gpuTask).every(d => d.op === 'suspend'))
})

test('an observation taken earlier is aged: idleness grows with the time since it was read', () => {
  const sim = new HarvestSim(cfg, T0)
  assert.equal(sim.tick(T0 + 2 * MIN, { at: T0, idleMs: 14 * MIN }).accept.cpu, true, '14 min read 2 min ago is 16 min now')
  assert.match(sim.tick(T0 + 3 * MIN, { at: T0 + 3 * MIN - 20_000, idleMs: 10_000 }).reason, /keyboard used 30 s ago/)
})

test('state is not mutated and forgets tasks the agent no longer holds', () => {
  const state = initialHarvestState(T0)
  const frozen = structuredClone(state)
  const out = decideHarvest({ observation: observe(T0, { idleMs: 0 }), tasks: [{ id: 'a', gpu: false, state: 'running' }] }, cfg, state, T0)
  assert.deepEqual(state, frozen)
  assert.ok(out.state.suspendedAt.a != null)
  const gone = decideHarvest({ observation: observe(T0 + 1000, { idleMs: 0 }), tasks: [] }, cfg, out.state, T0 + 1000)
  assert.deepEqual(gone.state.suspendedAt, {})
  assert.equal(gone.state.mode, 'owner')
})

test('thresholds are configurable', () => {
  const fast = compileHarvestConfig({ startIdleMs: '2m', continueIdleMs: '1m', keyboardBusyMs: '10s', maxSuspendMs: '3m', backgroundLoad: 1, highLoad: '2', highLoadMs: '30s' })
  const sim = new HarvestSim(fast, T0)
  assert.equal(sim.tick(T0, { idleMs: 2 * MIN, load: 0.9 }).accept.cpu, true)
  sim.offer()
  assert.equal(sim.tick(T0 + 1000, { idleMs: 11_000 }).decisions.length, 0, '11 s is idle with a 10 s keyboard window')
  assert.equal(sim.tick(T0 + 2000, { idleMs: 9000 }).decisions[0].op, 'suspend')
  assert.equal(sim.tick(T0 + 2000 + 3 * MIN, { idleMs: 0 }).decisions[0].op, 'vacate')
})
