/**
 * A real workload end to end: files compressed with `xz -k -6`, one task each, 2 slots on one machine. meshfarm
 * stages each file in, runs xz, and brings the `.xz` back to the submitter's folder (fetchResults, following the
 * job); `xargs -P2` runs the same xz over the same files in place. Alongside the wall times, the CPU seconds the
 * coordinator and the agent processes spend per GiB they move (their own CPU, not the tasks'): that is what
 * competes with the tasks for the cores.
 */
import { randomInt } from 'node:crypto'
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { BenchContext } from './run.ts'
import { have, timeShell } from './baselines.ts'
import { cpuSeconds, makeJob, startBenchMesh } from './meshfarm-runs.ts'
import { alternate, since, summarize } from './stats.ts'
import { fetchResults } from '../shared/client/fetch.ts'

const GiB = 2 ** 30

/** About 1 MiB of numeric text, as a point cloud or a log would be: xz makes it about a third. */
function pointCloudText (bytes: number): string {
  const lines: string[] = []
  let size = 0
  while (size < bytes) {
    const line = `${randomInt(1e6)}.${randomInt(1000)} ${randomInt(1e6)}.${randomInt(1000)} ${randomInt(5000)}.${randomInt(100)} ${randomInt(256)}\n`
    lines.push(line)
    size += line.length
  }
  return lines.join('').slice(0, bytes)
}

export async function workloadSection (ctx: BenchContext): Promise<void> {
  if (!have('xz')) { ctx.note('xz is not installed: the end-to-end workload is missing'); return }
  const count = ctx.quick ? 10 : 200
  const rounds = ctx.quick ? 1 : 3
  const src = join(ctx.dir, 'files')
  mkdirSync(src, { recursive: true })
  const names = Array.from({ length: count }, (_, i) => `cloud${String(i).padStart(3, '0')}.xyz`)
  for (const n of names) writeFileSync(join(src, n), pointCloudText(2 ** 20))
  const inBytes = count * 2 ** 20

  const bench = await startBenchMesh(join(ctx.dir, 'mesh'), [{ ip: '127.0.0.2', hostname: 'bench-xz', slots: 2 }])
  const coordinatorPid = bench.mesh.coordinator.child.pid as number
  const agentPid = bench.mesh.agents[0].child.pid as number
  const cpu = { coordinator: [] as number[], agent: [] as number[] }
  let round = 0
  try {
    const s = await alternate(rounds, {
      meshfarm: async () => {
        const dest = join(ctx.dir, `back-${round++}`)
        const c0 = cpuSeconds(coordinatorPid)
        const a0 = cpuSeconds(agentPid)
        const t0 = performance.now()
        const job = makeJob('xz', count, i => `xz -k -6 ${names[i]}`, {}, [])
        job.tasks.forEach((t, i) => { t.inputs = [{ src: join(src, names[i]), name: names[i] }]; t.outputs = [`${names[i]}.xz`] })
        const { jobId } = await bench.client.submit(job)
        const report = await fetchResults(bench.client, jobId, dest, { follow: true })
        const wall = since(t0)
        if (report.failed > 0 || report.tasks !== count) throw new Error(`xz job: ${report.tasks} of ${count} tasks fetched, ${report.failed} failed`)
        const outBytes = report.bytes
        const gib = (inBytes + outBytes) / GiB
        cpu.coordinator.push((cpuSeconds(coordinatorPid) - c0) / gib)
        cpu.agent.push((cpuSeconds(agentPid) - a0) / gib)
        rmSync(dest, { recursive: true, force: true })
        return wall
      },
      'xargs -P2': async () => {
        for (const f of readdirSync(src).filter(f => f.endsWith('.xz'))) rmSync(join(src, f))
        return await timeShell(`cd '${src}' && ls | grep -v '\\.xz$' | xargs -P2 -n1 xz -k -6`)
      }
    })
    const co = summarize(cpu.coordinator)
    const ag = summarize(cpu.agent)
    ctx.raw.workload = { files: count, bytesEach: 2 ** 20, wallS: s, cpuPerGiB: { coordinator: co, agent: ag } }
    const ratio = s.meshfarm.median / s['xargs -P2'].median
    const measure = `${count} files of 1 MiB, xz -k -6 each, staged in and back, 2 slots`
    ctx.row({ measure, unit: 's', meshfarm: s.meshfarm.median, min: s.meshfarm.min, max: s.meshfarm.max, baselineName: 'xargs -P2 in place', baseline: s['xargs -P2'].median, ratio, goal: '<= 1.15x xargs', met: ratio <= 1.15 })
    ctx.row({ measure: 'coordinator CPU per GiB staged (xz workload)', unit: 'CPU s/GiB', meshfarm: co.median, min: co.min, max: co.max, goal: '<= 2.5', met: co.median <= 2.5 })
    ctx.row({ measure: 'agent CPU per GiB staged (xz workload)', unit: 'CPU s/GiB', meshfarm: ag.median, min: ag.min, max: ag.max, goal: '<= 2.5', met: ag.median <= 2.5 })
  } finally {
    await bench.stop()
  }
}
