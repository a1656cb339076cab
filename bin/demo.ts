/**
 * `meshfarm demo`: a coordinator and two agents as separate processes on loopback, a sweep of about 50 tasks
 * with a shared input file, per-task inputs and outputs, progress, where the results are, and everything it
 * started stopped again.
 */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync, readdirSync, readFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { startLocalMesh, type LocalMesh } from './local-mesh.ts'
import { connect } from '../shared/client/client.ts'
import { Progress, summaryLine, table } from './output.ts'
import type { TaskRecord } from '../shared/protocol/messages.ts'

export function writeDemoSweep (dir: string, tasks: number): string {
  mkdirSync(join(dir, 'inputs'), { recursive: true })
  writeFileSync(join(dir, 'model.txt'), 'shared model parameters\n'.repeat(1000))
  for (let i = 0; i < tasks; i++) writeFileSync(join(dir, 'inputs', `point_${i}.txt`), `${i}\n`)
  const spec = `# A parameter sweep: one task per point, each reads the shared model and its own input.
name: demo-sweep
label: meshfarm demo
defaults:
  cores: 1
  timeout: 1m
shared: [model.txt]
sweep:
  parameters:
    i: { range: [0, ${tasks}, 1] }
  task:
    name: "point-{i}"
    command: "x=$(cat point_{i}.txt); echo \\"point $x: $(wc -l < model.txt) model lines, squared $((x * x))\\" > result_{i}.txt; echo done {i} on $MESHFARM_TASK_ID"
    inputs: ["inputs/point_{i}.txt"]
    outputs: ["result_{i}.txt"]
`
  const file = join(dir, 'sweep.yaml')
  writeFileSync(file, spec)
  return file
}

export async function runDemo (opts: { tasks: number, keep: boolean }): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'meshfarm-demo-'))
  let mesh: LocalMesh | null = null
  const stopAll = async (): Promise<void> => { await mesh?.stop() }
  const onSignal = (): void => { void stopAll().then(() => process.exit(130)) }
  process.once('SIGINT', onSignal)
  try {
    console.log(`demo: starting a coordinator and two agents on loopback (state in ${dir})`)
    mesh = await startLocalMesh({
      dir,
      agents: [
        { ip: '127.0.0.2', hostname: 'demo-agent-1', slots: 2 },
        { ip: '127.0.0.3', hostname: 'demo-agent-2', slots: 2 }
      ]
    })
    const specFile = writeDemoSweep(join(dir, 'job'), opts.tasks)
    console.log(`demo: mesh up; submitting ${specFile}`)
    const client = await connect({ home: mesh.clientHome })
    try {
      const { jobId, total } = await client.submitFile(specFile)
      const dest = resolve('meshfarm-results', `demo-sweep-${jobId}`)
      console.log(`demo: job ${jobId} with ${total} tasks submitted`)
      const bar = new Progress(`job ${jobId}`)
      const [summary] = await Promise.all([
        client.watch(jobId, s => { bar.update(s.counts.done + s.counts.failed + s.counts.cancelled, s.total, `${s.counts.running + s.counts.staging} running`) }),
        client.fetch(jobId, dest, { follow: true })
      ])
      bar.stop()
      console.log(summaryLine(summary))
      const perHost = new Map<string, number>()
      for (const name of readdirSync(dest)) {
        const json = join(dest, name, 'task.json')
        if (!existsSync(json)) continue
        const rec = JSON.parse(readFileSync(json, 'utf8')) as TaskRecord
        perHost.set(rec.host ?? '?', (perHost.get(rec.host ?? '?') ?? 0) + 1)
      }
      console.log(table(['host', 'tasks'], [...perHost.entries()].sort()))
      const sample = join(dest, 'point-7')
      if (existsSync(sample)) console.log(`demo: e.g. ${join(sample, 'result_7.txt')}: ${readFileSync(join(sample, 'result_7.txt'), 'utf8').trim()}`)
      console.log(`demo: results are in ${dest} (one folder per task: outputs, stdout, stderr, task.json)`)
      return summary.state === 'done' ? 0 : 1
    } finally {
      await client.close()
    }
  } finally {
    process.removeListener('SIGINT', onSignal)
    await stopAll()
    console.log('demo: coordinator and agents stopped')
    if (!opts.keep) rmSync(dir, { recursive: true, force: true })
  }
}
