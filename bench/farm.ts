/**
 * Task-farm throughput: trivial tasks against xargs, GNU parallel and a Node spawn loop; the coordinator's
 * dispatch overhead alone (simulated agents that run nothing); short tasks against the ideal makespan.
 */
import type { BenchContext } from './run.ts'
import { farm, have } from './baselines.ts'
import { makeJob, runJob, startBenchMesh, startSimAgents } from './meshfarm-runs.ts'
import { alternate, summarize } from './stats.ts'

const SLOTS = 2

export async function farmSection (ctx: BenchContext): Promise<void> {
  const n = ctx.quick ? 300 : 10_000
  const rounds = ctx.quick ? 1 : 3
  const bench = await startBenchMesh(ctx.dir, [{ ip: '127.0.0.2', hostname: 'bench-agent', slots: SLOTS, cores: SLOTS }])
  try {
    const contenders: Record<string, () => Promise<number>> = {
      meshfarm: async () => n / (await runJob(bench.client, makeJob('trivial', n, () => 'true'))).totalS,
      xargs: async () => n / await farm.xargs(n, SLOTS),
      'node spawn loop': async () => n / await farm.nodeSpawnLoop(n, SLOTS)
    }
    if (have('parallel')) contenders['GNU parallel'] = async () => n / await farm.parallel(n, SLOTS)
    else ctx.note('GNU parallel is not installed (Debian package `parallel`): its comparison is missing')
    const s = await alternate(rounds, contenders)
    ctx.raw.farm = { tasks: n, slots: SLOTS, rounds, tasksPerSecond: s }
    const mf = s.meshfarm
    const goals: Record<string, { goal: string, target: number }> = {
      xargs: { goal: '>= 0.6x xargs', target: 0.6 },
      'GNU parallel': { goal: '>= 3x parallel', target: 3 }
    }
    for (const name of Object.keys(contenders).filter(k => k !== 'meshfarm')) {
      const ratio = mf.median / s[name].median
      const g = goals[name]
      ctx.row({
        measure: `${n} tasks of true, ${SLOTS} at a time`,
        unit: 'tasks/s',
        meshfarm: mf.median,
        min: mf.min,
        max: mf.max,
        baselineName: name,
        baseline: s[name].median,
        ratio,
        goal: g?.goal,
        met: g != null ? ratio >= g.target : undefined
      })
    }
  } finally {
    await bench.stop()
  }
}

export async function dispatchSection (ctx: BenchContext): Promise<void> {
  const n = ctx.quick ? 5_000 : 100_000
  const rounds = ctx.quick ? 1 : 3
  const bench = await startBenchMesh(ctx.dir, [])
  const sim = await startSimAgents(bench.mesh, 2, 1000)
  try {
    await sim.connected
    const dispatchMs: number[] = []
    const submitMs: number[] = []
    for (let r = 0; r < rounds; r++) {
      const t = await runJob(bench.client, makeJob('dispatch', n, () => 'true'))
      dispatchMs.push((t.totalS - t.submitS) * 1000 / n)
      submitMs.push(t.submitS * 1000 / n)
    }
    const d = summarize(dispatchMs)
    const s = summarize(submitMs)
    ctx.raw.dispatch = { tasks: n, simulatedAgents: 2, slotsEach: 1000, dispatchMsPerTask: d, submitMsPerTask: s }
    ctx.row({ measure: `dispatch overhead, ${n} tasks, agents that run nothing`, unit: 'ms/task', meshfarm: d.median, min: d.min, max: d.max, baselineName: 'HyperQueue (reported)', baseline: 0.1, ratio: 0.1 / d.median, goal: '<= 0.01 ms/task', met: d.median <= 0.01 })
    ctx.row({ measure: `submission, ${n} tasks (durable)`, unit: 'ms/task', meshfarm: s.median, min: s.min, max: s.max })
  } finally {
    await sim.stop()
    await bench.stop()
  }
}

export async function shortTasksSection (ctx: BenchContext): Promise<void> {
  const n = ctx.quick ? 100 : 2_000
  const seconds = 0.05
  const ideal = n * seconds / SLOTS
  const bench = await startBenchMesh(ctx.dir, [{ ip: '127.0.0.2', hostname: 'bench-agent', slots: SLOTS, cores: SLOTS }])
  try {
    const t = await runJob(bench.client, makeJob('short', n, () => `sleep ${seconds}`))
    ctx.raw.short = { tasks: n, seconds, slots: SLOTS, idealS: ideal, makespanS: t.totalS, submitS: t.submitS }
    ctx.row({ measure: `${n} tasks of sleep ${seconds} on ${SLOTS} slots: makespan`, unit: 's', meshfarm: t.totalS, baselineName: 'ideal', baseline: ideal, ratio: ideal / t.totalS, goal: 'within 10% of ideal', met: t.totalS <= ideal * 1.1 })
  } finally {
    await bench.stop()
  }
}
