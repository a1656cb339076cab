/**
 * Random owner timelines against the harvest policy, with an invariant checker that recomputes presence on its own:
 * never start (or continue) while the owner is present or unknown, never leave a task suspended longer than
 * maxSuspend, never suspend a GPU task, every suspended task ends continued or vacated. The checker must catch
 * deliberately broken policies, or it proves nothing.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { DEFAULT_HARVEST_CONFIG, compileHarvestConfig, type HarvestConfig } from '../../node/harvest/config.ts'
import { decideHarvest, type OwnerCommand } from '../../node/harvest/policy.ts'
import { HarvestSim, MIN, type Decide, type ObsSpec } from '../helpers/harvest-sim.ts'

function rng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** The checker's own view of the owner, from the same raw observations and commands the policy saw. */
class Referee {
  lastInput = -Infinity
  reclaimedAt = -Infinity
  loadHighSince: number | null = null
  lend: { until: number | null } | null = null
  never = false

  readonly cfg: HarvestConfig

  constructor (cfg: HarvestConfig) {
    this.cfg = cfg
  }

  command (cmd: OwnerCommand, now: number): void {
    if (cmd.op === 'lend') { this.lend = { until: cmd.untilMs }; this.never = false }
    if (cmd.op === 'never') { this.never = true; this.lend = null }
    if (cmd.op === 'default') { this.never = false; this.lend = null }
    if (cmd.op === 'reclaim') { this.reclaimedAt = now; this.lend = null }
  }

  /** 'present' | 'unknown' | idle ms, and whether the owner's lend is in force. */
  judge (now: number, o: ObsSpec): { owner: 'present' | 'unknown' | number, lent: boolean } {
    if (this.lend?.until != null && this.lend.until <= now) this.lend = null
    if (o.load != null) this.loadHighSince = o.load >= this.cfg.highLoad ? (this.loadHighSince ?? now) : null
    const lent = this.lend != null && !this.never
    const idle = o.idleMs ?? null
    if (idle != null && idle < this.cfg.keyboardBusyMs) return { owner: 'present', lent }
    if (now - this.reclaimedAt < this.cfg.keyboardBusyMs) return { owner: 'present', lent }
    if (this.loadHighSince != null && now - this.loadHighSince >= this.cfg.highLoadMs) return { owner: 'present', lent }
    if ((o.blind ?? []).length > 0) return { owner: 'unknown', lent }
    const cap = now - this.reclaimedAt
    if (idle != null) return { owner: Math.min(idle, cap), lent }
    if (o.sessions === 0) return { owner: cap, lent }
    return { owner: 'unknown', lent }
  }
}

function randomObs (r: () => number, now: number, owner: { lastInput: number, blindUntil: number, load: number }): ObsSpec {
  const p = r()
  if (p < 0.04) owner.lastInput = now // owner touches the keyboard
  else if (p < 0.06) owner.lastInput = now - Math.floor(r() * 40_000) // a tty read a little while ago
  if (r() < 0.01) owner.blindUntil = now + Math.floor(r() * 20 * MIN)
  if (r() < 0.05) owner.load = r() < 0.5 ? r() * 0.3 : r() * 1.5
  const sessions = r() < 0.05 ? 0 : 1
  return {
    idleMs: sessions === 0 && r() < 0.5 ? null : now - owner.lastInput,
    sessions,
    blind: now < owner.blindUntil ? ['session 9 (wayland, kde)'] : [],
    load: r() < 0.03 ? null : owner.load,
    gpuProcs: r() < 0.03 ? 1 : r() < 0.5 ? 0 : null
  }
}

function randomCommand (r: () => number, now: number): OwnerCommand | null {
  const p = r()
  if (p < 0.004) return { op: 'reclaim' }
  if (p < 0.007) return { op: 'lend', untilMs: r() < 0.5 ? null : now + Math.floor(r() * 60 * MIN) }
  if (p < 0.009) return { op: 'never' }
  if (p < 0.015) return { op: 'default' }
  return null
}

/** Runs one seeded timeline; throws on the first broken invariant. */
function runTimeline (seed: number, cfg: HarvestConfig, decide: Decide = decideHarvest): void {
  const r = rng(seed)
  let now = Date.UTC(2026, 10, 23, 8, 0, 0)
  const sim = new HarvestSim(cfg, now, decide)
  const ref = new Referee(cfg)
  const owner = { lastInput: now - 60 * MIN, blindUntil: 0, load: 0.05 }
  const where = (): string => `seed ${seed} at +${Math.round((now - Date.UTC(2026, 10, 23, 8)) / 1000)} s [${sim.states()}]: ${sim.last?.reason}`
  for (let step = 0; step < 400; step++) {
    now += 1000 + Math.floor(r() * 90_000)
    const cmd = randomCommand(r, now)
    if (cmd != null) { sim.command(cmd, now); ref.command(cmd, now) }
    const o = randomObs(r, now, owner)
    const { owner: seen, lent } = ref.judge(now, o)
    const before = new Map(sim.tasks.map(t => [t.id, t.state]))
    const out = sim.tick(now, o)
    const away = typeof seen === 'number' ? seen : null
    const loadOk = o.load != null && o.load <= cfg.backgroundLoad
    if (out.accept.cpu && !lent) {
      assert.ok(away != null && away >= cfg.startIdleMs && loadOk, `started while not idle long enough: ${where()}`)
    }
    for (const d of out.decisions) {
      if (d.op === 'continue' && !lent) assert.ok(away != null && away >= cfg.continueIdleMs && loadOk, `continued too soon: ${where()}`)
      if (d.op === 'suspend') assert.equal(before.get(d.taskId), 'running', `suspend of a task that was not running: ${where()}`)
    }
    if (ref.never) assert.equal(sim.tasks.length, 0, `tasks left under lend --never: ${where()}`)
    if (!lent && away == null) assert.ok(sim.tasks.every(t => t.state !== 'running'), `a task runs while the owner is ${seen}: ${where()}`)
    for (const t of sim.tasks) {
      assert.ok(!(t.gpu && t.state === 'suspended'), `GPU task suspended: ${where()}`)
      const since = sim.suspendedSince.get(t.id)
      if (since != null) assert.ok(now - since < cfg.maxSuspendMs, `suspended ${now - since} ms: ${where()}`)
    }
    // The agent's side: take what is offered, finish some.
    if (r() < 0.5) sim.offer(r() < 0.2)
    for (const t of [...sim.tasks]) if (t.state === 'running' && r() < 0.03) sim.finish(t.id)
  }
  // The owner leaves for good: every suspended task ends continued or vacated, and the machine is lent again.
  sim.command({ op: 'default' }, now)
  for (let i = 0; i < 20; i++) {
    now += MIN
    sim.tick(now, { idleMs: 6 * 60 * MIN, load: 0, sessions: 1, gpuProcs: 0 })
  }
  assert.ok(sim.tasks.every(t => t.state === 'running'), `suspended tasks left at the end: ${where()}`)
  assert.equal(sim.last.accept.cpu, true, where())
}

const SEEDS = Array.from({ length: 200 }, (_, i) => 1000 + i)

test('random timelines: the invariants hold (200 seeds, default and fast thresholds)', () => {
  for (const seed of SEEDS) runTimeline(seed, DEFAULT_HARVEST_CONFIG)
  const fast = compileHarvestConfig({ startIdleMs: '3m', continueIdleMs: '2m', maxSuspendMs: '4m', highLoadMs: '1m' })
  for (const seed of SEEDS) runTimeline(seed, fast)
})

test('the checker catches broken policies', () => {
  const cfg = DEFAULT_HARVEST_CONFIG
  const broken: Record<string, Decide> = {
    'never vacates': (i, c, s, n) => { const o = decideHarvest(i, c, s, n); return { ...o, decisions: o.decisions.filter(d => d.op !== 'vacate') } },
    'always accepts': (i, c, s, n) => ({ ...decideHarvest(i, c, s, n), accept: { cpu: true, gpu: true } }),
    'suspends GPU tasks': (i, c, s, n) => {
      const o = decideHarvest(i, c, s, n)
      const gpu = new Set(i.tasks.filter(t => t.gpu && t.state === 'running').map(t => t.id))
      return { ...o, decisions: o.decisions.map(d => d.op === 'vacate' && gpu.has(d.taskId) ? { op: 'suspend', taskId: d.taskId } : d) }
    },
    'forgets to suspend': (i, c, s, n) => { const o = decideHarvest(i, c, s, n); return { ...o, decisions: o.decisions.filter(d => d.op !== 'suspend') } },
    'continues after the keyboard window': (i, c, s, n) => decideHarvest(i, { ...c, continueIdleMs: c.keyboardBusyMs }, s, n),
    'ignores owner load': (i, c, s, n) => decideHarvest(i, { ...c, highLoad: 1e9, backgroundLoad: 1e9 }, s, n)
  }
  for (const [name, decide] of Object.entries(broken)) {
    const caught = SEEDS.some(seed => { try { runTimeline(seed, cfg, decide); return false } catch { return true } })
    assert.ok(caught, `the checker missed a policy that ${name}`)
  }
})
