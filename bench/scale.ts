/**
 * Scale and recovery: a job of a million tasks (submission time, the coordinator's peak memory), a hundred
 * simulated agents (the coordinator's CPU at rest), and a coordinator killed with 100,000 tasks in its
 * database (time until it schedules again).
 */
import { join } from 'node:path'
import type { BenchContext } from './run.ts'
import { curveSvg, type CurvePoint } from './curve-svg.ts'
import { cpuSeconds, makeJob, peakRssMb, runJob, startBenchMesh, startSimAgents } from './meshfarm-runs.ts'
import { since, summarize } from './stats.ts'

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

export async function scaleSection (ctx: BenchContext): Promise<void> {
  const n = ctx.quick ? 20_000 : 1_000_000
  const agents = ctx.quick ? 10 : 100
  const restS = ctx.quick ? 3 : 10
  const bench = await startBenchMesh(ctx.dir, [])
  const pid = bench.mesh.coordinator.child.pid!
  try {
    const sim = await startSimAgents(bench.mesh, agents, 8)
    await sim.connected
    await sleep(2000)
    const cpu0 = cpuSeconds(pid)
    const t0 = performance.now()
    await sleep(restS * 1000)
    const restPercent = (cpuSeconds(pid) - cpu0) / since(t0) * 100
    await sim.stop()
    ctx.row({ measure: `coordinator CPU at rest, ${agents} agents connected`, unit: '% of a core', meshfarm: restPercent, goal: '< 1%', met: restPercent < 1 })

    const job = makeJob('scale', n, () => 'true')
    const t1 = performance.now()
    await bench.client.submit(job)
    const submitS = since(t1)
    const peakMb = peakRssMb(pid)
    ctx.raw.scale = { tasks: n, submitS, coordinatorPeakRssMb: peakMb, agents, restSeconds: restS, restCpuPercent: restPercent }
    ctx.row({ measure: `submit a job of ${n} tasks (durable)`, unit: 's', meshfarm: submitS, goal: '<= 5 s', met: submitS <= 5 })
    ctx.row({ measure: `coordinator peak memory with ${n} tasks`, unit: 'MiB', meshfarm: peakMb, goal: '< 400 MiB', met: peakMb < 400 })
  } finally {
    await bench.stop()
  }
}

export async function recoverySection (ctx: BenchContext): Promise<void> {
  const n = ctx.quick ? 10_000 : 100_000
  const bench = await startBenchMesh(ctx.dir, [])
  let sim: Awaited<ReturnType<typeof startSimAgents>> | null = null
  try {
    const { jobId } = await bench.client.submit(makeJob('recovery', n, () => 'true'))
    await bench.mesh.coordinator.stop('SIGKILL')
    // An agent is already waiting for the coordinator, as on a real mesh.
    sim = await startSimAgents(bench.mesh, 1, 64)
    const t0 = performance.now()
    const restarted = await bench.mesh.startCoordinator()
    const readyS = since(t0)
    const loadMs = Number(restarted.output().match(/state loaded in (\d+) ms/)?.[1] ?? NaN)
    let firstS = NaN
    while (since(t0) < 120) {
      const [s] = await bench.client.status(jobId)
      if (s.counts.done > 0) { firstS = since(t0); break }
      await sleep(20)
    }
    ctx.raw.recovery = { tasks: n, readyS, stateLoadMs: loadMs, firstResultS: firstS }
    ctx.row({ measure: `coordinator restart with ${n} tasks: until ready`, unit: 's', meshfarm: readyS })
    ctx.row({ measure: `coordinator restart with ${n} tasks: until it schedules again`, unit: 's', meshfarm: firstS })
  } finally {
    await sim?.stop()
    await bench.stop()
  }
}

/**
 * Dispatch throughput against the number of agents: 1, 10 and 100 simulated agents (64 slots each) take a job of
 * trivial tasks; tasks per second from submission to the last result. A row per count, and the curve as an SVG
 * picture beside the table (dispatch-curve.svg).
 */
export async function curveSection (ctx: BenchContext): Promise<void> {
  const n = ctx.quick ? 3_000 : 50_000
  const rounds = ctx.quick ? 1 : 3
  const points: CurvePoint[] = []
  for (const agents of [1, 10, 100]) {
    const bench = await startBenchMesh(join(ctx.dir, `agents-${agents}`), [])
    const sim = await startSimAgents(bench.mesh, agents, 64)
    try {
      await sim.connected
      const rates: number[] = []
      for (let r = 0; r < rounds; r++) {
        const t = await runJob(bench.client, makeJob('curve', n, () => 'true'))
        rates.push(n / (t.totalS - t.submitS))
      }
      const s = summarize(rates)
      points.push({ agents, median: s.median, min: s.min, max: s.max })
      ctx.row({ measure: `dispatch, ${agents} simulated agent${agents > 1 ? 's' : ''} (64 slots each), ${n} tasks`, unit: 'tasks/s', meshfarm: s.median, min: s.min, max: s.max })
    } finally {
      await sim.stop()
      await bench.stop()
    }
  }
  ctx.raw.curve = { tasks: n, rounds, slotsEach: 64, points }
  const file = ctx.picture('dispatch-curve.svg', curveSvg(points, `meshfarm dispatch throughput, ${n.toLocaleString('en-US')} trivial tasks`))
  ctx.note(`dispatch curve: ${file}`)
}
