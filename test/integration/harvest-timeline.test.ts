/**
 * The harvest loop over a real timeline: an injected presence file (through the same interface as the real
 * sources) drives the policy, whose decisions act on real task processes in real task groups (this machine's
 * cgroups, or the process tree). Time is the test's: each pass names its `now`, so nothing races a timer; the
 * processes' states are waited for, not slept on.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openTaskGroups, launchSettings, type TaskGroup, type TaskGroups } from '../../node/cgroups/index.ts'
import { DEFAULT_HARVEST_CONFIG } from '../../node/harvest/config.ts'
import type { HarvestOutcome, TaskView } from '../../node/harvest/policy.ts'
import { Harvester } from '../../node/harvest/harvester.ts'
import { InjectedSource, type InjectedState } from '../../node/harvest/sources/injected.ts'
import { OursTracker } from '../../node/harvest/ours.ts'
import { startTask, stats, waitForTree, TREE_SCRIPT, type RunningTask } from '../helpers/harvest-procs.ts'

const MIN = 60_000
const T0 = Date.UTC(2026, 10, 23, 12, 0, 0)

interface Held { view: TaskView, group: TaskGroup, run: RunningTask }

/** What the agent's reactor will do each tick, in miniature: observe, decide, act through the groups. */
class Loop {
  readonly harvester: Harvester
  readonly held = new Map<string, Held>()
  last!: HarvestOutcome
  vacated: Held[] = []
  private next = 1

  readonly groups: TaskGroups
  readonly tracker: OursTracker
  readonly file: string

  constructor (groups: TaskGroups, tracker: OursTracker, file: string) {
    this.groups = groups
    this.tracker = tracker
    this.file = file
    this.harvester = new Harvester({ config: DEFAULT_HARVEST_CONFIG, sources: [new InjectedSource(file)], ours: tracker, now: T0 })
  }

  presence (s: InjectedState): void { writeFileSync(this.file, JSON.stringify(s)) }

  async tick (now: number): Promise<HarvestOutcome> {
    await this.harvester.observe(now)
    const out = this.harvester.decide([...this.held.values()].map(h => ({ ...h.view })), now)
    for (const d of out.decisions) {
      const h = this.held.get(d.taskId)!
      if (d.op === 'suspend') { await h.group.freeze(1000); h.view.state = 'suspended' }
      if (d.op === 'continue') { await h.group.thaw(1000); h.view.state = 'running' }
      if (d.op === 'vacate') {
        await h.group.kill(5000)
        await h.group.remove()
        this.tracker.remove(d.taskId)
        this.held.delete(d.taskId)
        this.vacated.push(h)
      }
    }
    this.last = out
    return out
  }

  async start (): Promise<Held> {
    assert.ok(this.last.accept.cpu, `not accepting: ${this.last.reason}`)
    const id = `tl${this.next++}`
    const limits = { memoryBytes: 256 * 2 ** 20, cores: 1, harvested: true }
    const group = await this.groups.create(id, limits)
    const run = startTask(id, TREE_SCRIPT, launchSettings(this.groups, group, limits))
    const held: Held = { view: { id, gpu: false, state: 'running' }, group, run }
    this.held.set(id, held)
    this.tracker.add(id, group, run.child.pid)
    await waitForTree(async () => await group.pids(), run.child.pid!)
    return held
  }

  async states (): Promise<string[]> {
    return (await stats((await Promise.all([...this.held.values()].map(h => h.group.pids()))).flat())).map(s => s.state)
  }
}

for (const prefer of ['auto', 'none'] as const) {
  test(`owner away, back briefly, back for long (${prefer === 'auto' ? 'cgroups' : 'process tree'}): tasks start, are stopped within a second, continue, are vacated`, async () => {
    await timeline(prefer)
  })
}

async function timeline (prefer: 'auto' | 'none'): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'mf-timeline-'))
  const groups = await openTaskGroups({ name: `timeline-${process.pid}`, prefer })
  const stopped = groups.kind === 'cgroup-v1' ? 'D' : groups.kind === 'cgroup-v2' ? 'S' : 'T'
  console.log(`# ${groups.describe}`)
  const loop = new Loop(groups, new OursTracker(groups), join(dir, 'presence.json'))
  try {
    // 12:00, the owner left at 11:50: ten minutes is not enough.
    loop.presence({ lastInputAt: T0 - 10 * MIN, loadNotOurs: 0.05, sessions: 1 })
    assert.equal((await loop.tick(T0)).accept.cpu, false)
    assert.match(loop.last.reason, /^owner away: idle 10 min, lending after 15 min idle/)
    // 12:05: fifteen minutes: two tasks start.
    await loop.tick(T0 + 5 * MIN)
    assert.equal(loop.last.reason, 'idle 15 min, load not ours 0.05: lending')
    await loop.start()
    await loop.start()
    await loop.tick(T0 + 6 * MIN)
    assert.equal(loop.last.summary.mode, 'lending')
    assert.ok((await loop.states()).every(s => s !== stopped), 'running')

    // 12:07: the owner touches the keyboard: every process of both tasks is stopped within a second.
    loop.presence({ lastInputAt: T0 + 7 * MIN, loadNotOurs: 0.05, sessions: 1 })
    const t0 = performance.now()
    const back = await loop.tick(T0 + 7 * MIN)
    const took = performance.now() - t0
    const frozen = await loop.states()
    console.log(`# owner back: ${back.decisions.length} suspends applied in ${took.toFixed(0)} ms; states ${frozen.join(' ')}`)
    assert.deepEqual(back.decisions.map(d => d.op), ['suspend', 'suspend'])
    assert.ok(took < 1000, `${took} ms`)
    assert.equal(frozen.length, 6, 'three processes per task, double-forked ones included')
    assert.ok(frozen.every(s => s === stopped), frozen.join(' '))
    assert.equal(back.accept.cpu, false)

    // The owner leaves again at 12:07; at 12:12 (five idle minutes) the tasks continue.
    assert.deepEqual((await loop.tick(T0 + 10 * MIN)).decisions, [])
    const cont = await loop.tick(T0 + 12 * MIN)
    assert.deepEqual(cont.decisions.map(d => d.op), ['continue', 'continue'])
    assert.ok((await loop.states()).every(s => s !== stopped))

    // 12:20: back, and working for good: suspended at once, vacated at 12:30.
    for (let m = 20; m <= 30; m++) {
      loop.presence({ lastInputAt: T0 + m * MIN - 5000, loadNotOurs: 0.4, sessions: 1 })
      await loop.tick(T0 + m * MIN)
      if (m === 20) assert.equal(loop.last.summary.mode, 'suspended')
      if (m < 30) assert.equal(loop.held.size, 2, `still held at 12:${m}`)
    }
    assert.deepEqual(loop.vacated.map(h => h.view.id), ['tl1', 'tl2'])
    for (const h of loop.vacated) assert.equal((await h.run.exited).signal, 'SIGKILL', 'a vacated task is stopped for good')
    assert.match(loop.last.reason, /^owner present: keyboard used 5 s ago \(injected \(injected\)\); vacating 2 tasks$/)
    assert.equal((await loop.tick(T0 + 31 * MIN)).summary.mode, 'owner')
  } finally {
    for (const h of loop.held.values()) { await h.group.kill().catch(() => {}); await h.group.remove().catch(() => {}) }
    await groups.close()
    rmSync(dir, { recursive: true, force: true })
  }
}
