/**
 * The Slurm bridge against what a user would do by hand on the same cluster: N tasks through `meshfarm bridge
 * slurm` (forward mode) vs N plain `sbatch` calls vs hand-written job arrays (one, or as many as MaxArraySize
 * forces). Each task touches one file; a baseline is done when every file is there, the bridge when every result
 * is committed. Skipped, with a note, where no Slurm answers. MESHFARM_BENCH_SLURM_TASKS overrides N (1,000, or
 * 20 with --quick); MESHFARM_BENCH_SLURM_PARTITION the partition (default: the cluster's default one).
 */
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import type { BenchContext } from './run.ts'
import { cpuSeconds, makeJob, peakRssMb, runJob, startBenchMesh } from './meshfarm-runs.ts'
import { startMeshfarm } from '../bin/processes.ts'
import { createSlurmCli } from '../node/bridge/slurm/slurm-cli.ts'
import { chunkLimit } from '../node/bridge/slurm/script.ts'
import { since } from './stats.ts'

/** Why Slurm cannot be benchmarked here, or null. */
function unavailable (): string | null {
  const ping = spawnSync('scontrol', ['ping'], { encoding: 'utf8', timeout: 10_000 })
  if (ping.error != null) return 'no scontrol on this machine (Slurm is not installed; test/slurm/setup.sh sets up a one-node one as root)'
  if (!/is UP/.test(ping.stdout)) return `slurmctld does not answer: ${(ping.stdout + ping.stderr).trim().split('\n')[0] ?? ''}`
  return null
}

function defaultPartition (): string | null {
  const r = spawnSync('sinfo', ['-h', '-o', '%P'], { encoding: 'utf8', timeout: 10_000 })
  return r.stdout.split('\n').find(p => p.endsWith('*'))?.slice(0, -1) ?? r.stdout.split('\n')[0] ?? null
}

async function untilFiles (dir: string, n: number, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs
  while (readdirSync(dir).length < n) {
    if (Date.now() > until) throw new Error(`${dir}: ${readdirSync(dir).length} of ${n} tasks done after ${timeoutMs / 1000} s`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

function sbatch (script: string, cwd: string): void {
  const r = spawnSync('sbatch', ['--parsable'], { input: script, cwd, encoding: 'utf8', timeout: 300_000 })
  if (r.status !== 0) throw new Error(`sbatch: ${(r.stderr ?? '').trim()}`)
}

export async function slurmSection (ctx: BenchContext): Promise<void> {
  const why = unavailable()
  if (why != null) { ctx.note(`slurm: skipped: ${why}`); return }
  const n = Number(process.env.MESHFARM_BENCH_SLURM_TASKS ?? (ctx.quick ? 20 : 1000))
  const partition = process.env.MESHFARM_BENCH_SLURM_PARTITION ?? defaultPartition()
  if (partition == null) { ctx.note('slurm: skipped: no partition (sinfo lists none)'); return }
  const cfg = await createSlurmCli().config()
  if (!cfg.ok) { ctx.note(`slurm: skipped: ${cfg.error.message}`); return }
  const limit = chunkLimit(cfg.value)
  const timeoutMs = Math.max(120_000, n * 3000)
  const head = `#!/bin/sh\n#SBATCH --partition=${partition}\n#SBATCH --output=/dev/null\n#SBATCH --error=/dev/null\n#SBATCH --time=10\n`

  // N plain sbatch calls, one task each.
  const loopDir = join(ctx.dir, 'loop')
  mkdirSync(loopDir, { recursive: true })
  let t0 = performance.now()
  for (let i = 0; i < n; i++) sbatch(`${head}touch ${loopDir}/${i}\n`, ctx.dir)
  const loopSubmitS = since(t0)
  await untilFiles(loopDir, n, timeoutMs)
  const loopS = since(t0)

  // Hand-written arrays: one when MaxArraySize allows, else as many as it forces (a user must split too).
  const arrayDir = join(ctx.dir, 'array')
  mkdirSync(arrayDir, { recursive: true })
  t0 = performance.now()
  for (let first = 0; first < n; first += limit) {
    const k = Math.min(limit, n - first)
    sbatch(`${head}#SBATCH --array=0-${k - 1}\ntouch ${arrayDir}/$((SLURM_ARRAY_TASK_ID + ${first}))\n`, ctx.dir)
  }
  await untilFiles(arrayDir, n, timeoutMs)
  const arrayS = since(t0)

  // The bridge: a real coordinator and bridge process; timed from submission to the last committed result.
  const bench = await startBenchMesh(join(ctx.dir, 'mesh'), [])
  const home = await bench.mesh.newHome('bench-bridge', { roles: ['agent'] })
  const bridge = startMeshfarm(['bridge', 'slurm', '--partition', partition, '--poll', '1s', '--work-dir', join(ctx.dir, 'work'), '--listen', '/ip4/127.0.0.5/tcp/0'], { home })
  try {
    await bridge.waitFor(/agent: connected to coordinator/, 60_000)
    let submittedS = NaN
    const counted = (async () => {
      const start = performance.now()
      while (true) {
        const sum = [...bridge.output().matchAll(/: (\d+) task\(s\) submitted as array/g)].reduce((s, m) => s + Number(m[1]), 0)
        if (sum >= n) { submittedS = since(start); return }
        await new Promise(resolve => setTimeout(resolve, 50))
      }
    })()
    const bridgePid = bridge.child.pid as number
    const cpu0 = cpuSeconds(bridgePid)
    const t = await runJob(bench.client, makeJob('slurm', n, () => 'true', { constraints: { site: 'cluster' } }))
    const bridgeCpuS = cpuSeconds(bridgePid) - cpu0
    // Its footprint on a login node: CPU while idle (polling squeue every second) and its peak memory.
    const idle0 = cpuSeconds(bridgePid)
    const idleWindowS = ctx.quick ? 3 : 10
    await new Promise(resolve => setTimeout(resolve, idleWindowS * 1000))
    const idleCpuPercent = (cpuSeconds(bridgePid) - idle0) / idleWindowS * 100
    const bridgeRssMb = peakRssMb(bridgePid)
    await Promise.race([counted, new Promise(resolve => setTimeout(resolve, 1000))])
    const bridgeS = t.totalS
    const sbatchCalls = [...bridge.output().matchAll(/submitted as array/g)].length
    ctx.raw.slurm = { tasks: n, partition, maxArraySize: cfg.value.maxArraySize, chunk: limit, loopS, loopSubmitS, arrayS, bridgeS, bridgeSubmittedS: submittedS, bridgeSbatchCalls: sbatchCalls, bridgeCpuS, idleCpuPercent, bridgeRssMb }
    const loopRatio = loopS / bridgeS
    ctx.row({ measure: `Slurm: ${n} tasks end to end, through the bridge`, unit: 's', meshfarm: bridgeS, baselineName: `${n} sbatch calls`, baseline: loopS, ratio: loopRatio, goal: '>= 10x the sbatch loop', met: loopRatio >= 10 })
    const arrays = Math.ceil(n / limit)
    ctx.row({ measure: `Slurm: ${n} tasks end to end, through the bridge`, unit: 's', meshfarm: bridgeS, baselineName: arrays === 1 ? 'one job array' : `${arrays} hand-written arrays (MaxArraySize ${cfg.value.maxArraySize})`, baseline: arrayS, ratio: arrayS / bridgeS, goal: 'within 1.5x of the array', met: bridgeS <= 1.5 * arrayS })
    ctx.row({ measure: `Slurm bridge: CPU for ${n} tasks`, unit: 'CPU s', meshfarm: bridgeCpuS })
    ctx.row({ measure: 'Slurm bridge: CPU while idle (squeue every 1 s)', unit: '% of a core', meshfarm: idleCpuPercent })
    ctx.row({ measure: 'Slurm bridge: peak memory', unit: 'MiB', meshfarm: bridgeRssMb })
    if (Number.isFinite(submittedS)) ctx.row({ measure: `Slurm: ${n} tasks into the queue (${sbatchCalls} sbatch)`, unit: 's', meshfarm: submittedS, baselineName: `${n} sbatch calls`, baseline: loopSubmitS, ratio: loopSubmitS / submittedS })
    if (loopRatio < 10) ctx.note(`slurm: this cluster runs ~${(n / arrayS).toFixed(1)} trivial jobs/s; every variant waits on that, and ${n} sbatch calls took only ${loopSubmitS.toFixed(1)} s here: the loop's cost shows on a busy controller, not on an idle one-node Slurm`)
  } finally {
    await bridge.stop()
    await bench.stop()
    if (existsSync(join(ctx.dir, 'work'))) spawnSync('rm', ['-rf', join(ctx.dir, 'work')])
  }
}
