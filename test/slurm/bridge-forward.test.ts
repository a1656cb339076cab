/**
 * Forward mode end to end, against the real Slurm (skipped with a printed reason where it cannot be set up): a
 * real coordinator process, a real `meshfarm bridge slurm` process whose sbatch and scancel are counted by shims
 * on its PATH, jobs submitted and fetched with the CLI as a user would. One mesh for the file: the TIMEOUT task
 * (Slurm's limits count in minutes) runs while the other jobs go through.
 */
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { execFileSync, spawnSync } from 'node:child_process'
import { skipUnlessSlurm, slurmEnv, countingSlurm, waitForQueue } from './slurm-env.ts'
import { bridgeMesh, allRecords, type BridgeMesh } from './bridge-env.ts'
import { runCli, runCliJson, until } from '../helpers/cli.ts'
import type { MeshProcess } from '../../bin/processes.ts'
import type { JobSummary, TaskRecord } from '../../shared/protocol/messages.ts'

const skip = skipUnlessSlurm()
let m: BridgeMesh & { bridgeOut: () => MeshProcess }
let bridgeLog: () => string
let timeoutJob: number

function jobFile (name: string, yaml: string, files: Record<string, string> = {}): string {
  const dir = join(m.dir, 'jobs', name)
  mkdirSync(dir, { recursive: true })
  for (const [f, text] of Object.entries(files)) {
    mkdirSync(join(dir, f, '..'), { recursive: true })
    writeFileSync(join(dir, f), text)
  }
  writeFileSync(join(dir, 'job.yaml'), yaml)
  return join(dir, 'job.yaml')
}

async function submit (file: string): Promise<number> {
  const out = await runCliJson<{ jobId: number }>(m.mesh.clientHome, ['submit', file])
  return out.jobId
}

before(async () => {
  if (skip !== false) return
  const mesh = await bridgeMesh('forward')
  const { p } = await mesh.bridge(['--partition', 'debug', '--poll', '1s'])
  m = { ...mesh, bridgeOut: () => p }
  bridgeLog = p.output
  // Submitted first: Slurm ends it at its one-minute limit, a minute or more from now.
  timeoutJob = await submit(jobFile('timeout', 'name: timeout\nretries: 0\ndefaults: { constraints: { site: cluster } }\ntasks:\n  - command: "echo started; sleep 600"\n    timeout: 1m\n'))
}, { timeout: 120_000 })

after(async () => { if (m != null) await m.stop() }, { timeout: 60_000 })

test('36 tasks with shared and per-task inputs and outputs: two job arrays (MaxArraySize), every result fetched intact', { skip, timeout: 240_000 }, async () => {
  const points: Record<string, string> = { 'shared.txt': 'shared-data\n' }
  for (let i = 0; i < 36; i++) points[`points/p${i}.txt`] = `${i}\n`
  const file = jobFile('sweep', `
name: sweep
shared: [shared.txt]
defaults: { constraints: { site: cluster, partition: debug } }
sweep:
  parameters: { i: { range: [0, 36, 1] } }
  task:
    name: "p{i}"
    command: "cat p{i}.txt shared.txt > sum_{i}.txt; echo task-{i}-$MESHFARM_TASK_ID; echo err-{i} >&2"
    inputs: ["points/p{i}.txt"]
    outputs: ["sum_{i}.txt"]
`, points)
  const dest = join(m.dir, 'results-sweep')
  const out = await runCliJson<{ jobId: number, summary: JobSummary }>(m.mesh.clientHome, ['submit', file, '--wait', '--results', dest], { timeoutMs: 200_000 })
  assert.equal(out.summary.state, 'done', JSON.stringify(out.summary))
  assert.equal(out.summary.counts.done, 36)
  const records = readdirSync(dest).filter(n => existsSync(join(dest, n, 'task.json'))).map(n => JSON.parse(readFileSync(join(dest, n, 'task.json'), 'utf8')) as TaskRecord)
  assert.equal(records.length, 36)
  const arrays = new Set<string>()
  for (const r of records) {
    const i = r.name.slice(1)
    assert.equal(r.state, 'done')
    assert.equal(r.attempts, 1)
    assert.equal(readFileSync(join(dest, r.name, `sum_${i}.txt`), 'utf8'), `${i}\nshared-data\n`)
    assert.equal(readFileSync(join(dest, r.name, 'stdout'), 'utf8'), `task-${i}-${out.jobId}.${r.index}\n`, 'stdout came back')
    assert.equal(readFileSync(join(dest, r.name, 'stderr'), 'utf8'), `err-${i}\n`, 'stderr came back')
    assert.equal(r.backend?.system, 'slurm')
    assert.ok(r.backend?.jobId != null && r.backend.arrayIndex != null, `task.json records the Slurm job and index: ${JSON.stringify(r.backend)}`)
    arrays.add(r.backend.jobId)
  }
  // MaxArraySize=21 here: at most 20 elements per array.
  assert.equal(arrays.size, 2, `36 tasks in arrays of at most 20: ${[...arrays].join(', ')}`)
  assert.equal(m.calls('sbatch').filter(l => l.includes(`/slurm/${out.jobId}-`)).length, 2, 'one sbatch per chunk, none per task')
  const q = execFileSync('squeue', ['--me', '-h', '-r', '-t', 'all', '-o', '%i %j %k'], { encoding: 'utf8' })
  for (const id of arrays) assert.match(q, new RegExp(`^${id}_\\d+ mf:\\S+:${out.jobId}:\\d+ mf:\\S+:${out.jobId}:\\d+$`, 'm'), 'job name and comment name the bridge, the mesh job and the chunk')
})

test('meshfarm cancel reaches scancel: pending and running elements are cancelled in Slurm', { skip, timeout: 120_000 }, async () => {
  const jobId = await submit(jobFile('cancel', 'name: cancel\ndefaults: { constraints: { site: cluster } }\ntasks:\n' + [0, 1, 2].map(i => `  - command: "sleep 300 # ${i}"\n`).join('')))
  const { batch } = countingSlurm()
  // The bridge says which array it made; wait until Slurm runs one element of it.
  const [, array] = await m.bridgeOut().waitFor(new RegExp(`mf:\\S+:${jobId}:\\d+: 3 task\\(s\\) submitted as array (\\d+)`), 30_000)
  const ids = [0, 1, 2].map(i => `${array}_${i}`)
  await waitForQueue(batch, q => ids.some(id => q.get(id)?.state === 'RUNNING'), { timeoutMs: 30_000 })
  const scancels = m.calls('scancel').length
  const r = await runCli(m.mesh.clientHome, ['cancel', String(jobId)])
  assert.equal(r.code, 0, r.stderr)
  // Cancelled pending elements are listed as the array's own id (the rest that was never split off).
  await waitForQueue(batch, q => ids.every(id => (q.get(id) ?? q.get(id.split('_')[0]))?.state === 'CANCELLED'), { timeoutMs: 30_000 })
  assert.ok(m.calls('scancel').length > scancels, 'the bridge ran scancel')
  const s = await m.client.status(jobId)
  assert.equal(s[0].state, 'cancelled')
})

test('a task past its Slurm time limit: TIMEOUT, failed with kind timeout and Slurm\'s words', { skip, timeout: 240_000 }, async () => {
  const summary = await m.client.watch(timeoutJob)
  assert.equal(summary.state, 'failed')
  const [r] = await allRecords(m.client, timeoutJob)
  assert.equal(r.state, 'failed')
  assert.equal(r.failure?.kind, 'timeout', JSON.stringify(r.failure))
  assert.match(r.failure?.detail ?? '', /^Slurm job \d+_0: TIMEOUT/)
  assert.equal(r.backend?.system, 'slurm')
})

test('a node set DOWN mid-task: NODE_FAIL, the task goes back to the mesh and completes on its retry', { skip, timeout: 180_000 }, async () => {
  const env = slurmEnv()
  assert.ok(env.ok)
  const marker = join(m.dir, 'node-fail-marker')
  const jobId = await submit(jobFile('nodefail', `name: nodefail\nretries: 0\ndefaults: { constraints: { site: cluster } }\ntasks:\n  - command: "if [ -e ${marker} ]; then echo second; else touch ${marker}; sleep 300; fi"\n`))
  await until(() => existsSync(marker), 60_000, 'first attempt running in Slurm')
  try {
    execFileSync('scontrol', ['update', `nodename=${env.node}`, 'state=down', 'reason=meshfarm-test'])
  } finally {
    // Back up for the retry (and the tests after); Slurm has already failed the running job.
    await until(() => /NODE_FAIL/.test(execFileSync('squeue', ['--me', '-h', '-t', 'all', '-o', '%T'], { encoding: 'utf8' })), 30_000, 'NODE_FAIL in squeue')
    // ReturnToService=2 may have brought it back already; setup.sh waits until it takes jobs again.
    spawnSync('scontrol', ['update', `nodename=${env.node}`, 'state=resume'])
    spawnSync('bash', [join(import.meta.dirname, 'setup.sh')])
  }
  const summary = await m.client.watch(jobId)
  assert.equal(summary.state, 'done', JSON.stringify(summary))
  const [r] = await allRecords(m.client, jobId)
  assert.equal(r.attempts, 2, 'NODE_FAIL counted as a crash of the attempt, not a failure of the task')
  assert.match(bridgeLog(), /submitted as array/)
})

test('a permanent sbatch error: one sbatch, the tasks fail with kind batch and Slurm\'s words, no retry storm', { skip, timeout: 120_000 }, async () => {
  const broken = await m.bridge(['--partition', 'debug', '--poll', '1s', '--sbatch-arg=--constraint=nosuchfeature', '--label', 'pool=broken'])
  const jobId = await submit(jobFile('broken', 'name: broken\nretries: 2\ndefaults: { constraints: { pool: broken } }\ntasks:\n  - command: "true # 0"\n  - command: "true # 1"\n'))
  const summary = await m.client.watch(jobId)
  assert.equal(summary.state, 'failed')
  for (const r of await allRecords(m.client, jobId)) {
    assert.equal(r.failure?.kind, 'batch', JSON.stringify(r.failure))
    assert.match(r.failure?.detail ?? '', /^sbatch: Invalid feature specification$/)
    assert.equal(r.attempts, 1, 'not retried: retrying reproduces it')
  }
  assert.equal(m.calls('sbatch').filter(l => l.includes(`/slurm/${jobId}-`)).length, 1, 'one sbatch for the chunk')
  assert.equal(broken.p.output().split('\n').filter(l => /Invalid feature specification/.test(l)).length, 1, 'one line in the log')
  await broken.p.stop()
})

test('an unknown partition, or --in-allocation outside one: one line, exit 2', { skip, timeout: 60_000 }, async () => {
  const home = await m.mesh.newHome('misconfigured', { roles: ['agent'] })
  const bad = await runCli(home, ['bridge', 'slurm', '--partition', 'nosuch', '--work-dir', join(m.dir, 'work', 'misconfigured')])
  assert.equal(bad.code, 2, bad.stderr)
  assert.equal(bad.stderr.trim().split('\n').length, 1, bad.stderr)
  assert.match(bad.stderr, /--partition nosuch: Invalid partition name specified/)
  const outside = await runCli(home, ['bridge', 'slurm', '--in-allocation', '--work-dir', join(m.dir, 'work', 'misconfigured')], { env: { SLURM_JOB_ID: '', SLURM_JOBID: '' } })
  assert.equal(outside.code, 2, outside.stderr)
  assert.match(outside.stderr, /^error: --in-allocation: SLURM_JOB_ID is not set: not inside a Slurm allocation/)
})
