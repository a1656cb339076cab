/**
 * Automatic allocation against the real Slurm (skipped with a printed reason where it cannot be set up): a bridge
 * with --auto-alloc hears of the mesh's backlog (coord.backlog), submits holder allocations within its limits,
 * runs the tasks into them as srun steps and releases them once idle; a bridge whose sbatch is refused (an
 * account the partition does not allow) pauses after two failures, says so in `meshfarm peers`, submits nothing
 * more, and `meshfarm bridge resume` lifts the pause. Every sbatch and scancel is counted by shims on its PATH.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import { skipUnlessSlurm } from './slurm-env.ts'
import { bridgeMesh, allRecords } from './bridge-env.ts'
import { runCli, runCliJson, until } from '../helpers/cli.ts'
import type { AgentSummary } from '../../shared/protocol/messages.ts'

const skip = skipUnlessSlurm()

function job (dir: string, name: string, constraints: string, n: number, command: string): string {
  mkdirSync(join(dir, name), { recursive: true })
  const file = join(dir, name, 'job.yaml')
  writeFileSync(file, `name: ${name}\ndefaults: { constraints: { ${constraints} } }\ntasks:\n${Array.from({ length: n }, (_, i) => `  - command: "${command} # ${i}"\n`).join('')}`)
  return file
}

const holders = (calls: string[], home: string): string[] => calls.filter(l => l.includes(`/work/${home.split('/').pop()!}/allocations`))

test('auto-alloc: a backlog gets allocations (within max), tasks run in them as steps, idle ones are released', { skip, timeout: 180_000 }, async () => {
  const m = await bridgeMesh('auto')
  try {
    const { p, home } = await m.bridge(['--partition', 'debug', '--auto-alloc', 'max=2,time=3m,idle=4s', '--drain-before', '30s', '--poll', '1s'], { name: 'auto' })
    const file = job(m.dir, 'backlog', 'site: cluster', 8, 'sleep 1; echo $SLURM_JOB_ID')
    const { jobId } = await runCliJson<{ jobId: number }>(m.mesh.clientHome, ['submit', file])
    await p.waitFor(/bridge: allocation submitted: \d+ waiting task/, 30_000)
    // The node has 2 CPUs: the first allocation takes both, so the second waits in Slurm, and peers says why.
    await until(async () => (await m.client.peers()).some((a: AgentSummary) => (a.status?.notes ?? []).some(n => /allocation \d+ pending \(\w+\)/.test(n))), 30_000, 'a pending allocation in peers')
    const summary = await m.client.watch(jobId)
    assert.equal(summary.state, 'done', JSON.stringify(summary))
    const records = await allRecords(m.client, jobId)
    const allocs = new Set(records.map(r => r.backend?.jobId))
    const submitted = holders(m.calls('sbatch'), home)
    assert.ok(submitted.length >= 1 && submitted.length <= 2, `at most max=2 allocations: ${submitted.length}`)
    for (const r of records) {
      assert.equal(r.backend?.system, 'slurm')
      assert.ok(r.backend?.jobId != null)
    }
    for (const id of allocs) {
      assert.match(p.output(), new RegExp(`allocation ${id} running on`), 'tasks ran in allocations the bridge obtained')
    }
    // Idle for 4 s: released (scancel), and Slurm says so.
    const [, released] = await p.waitFor(/bridge: allocation (\d+) released: idle for/, 30_000)
    await until(() => /CANCELLED/.test(execFileSync('squeue', ['--me', '-h', '-t', 'all', '-j', released, '-o', '%T'], { encoding: 'utf8' })), 20_000, 'the released allocation cancelled in Slurm')
    assert.ok(m.calls('scancel').some(l => l.endsWith(` ${released}`)), 'released with scancel')
    await until(async () => (await m.client.peers()).some((a: AgentSummary) => (a.status?.notes ?? []).some(n => /no allocation submitted: no task waiting/.test(n))), 30_000, 'the decision in peers')
    // A clean stop gives back what it still holds.
    await p.stop()
    assert.match(p.output(), /bridge: stopping: allocation\(s\) [\d, ]+ released|allocation \d+ released/)
    const left = execFileSync('squeue', ['--me', '-h', '-t', 'pending,running', '-o', '%j'], { encoding: 'utf8' })
    assert.doesNotMatch(left, /^mfa:/m, 'no allocation left behind')
  } finally {
    await m.stop()
  }
})

test('auto-alloc with an account the partition refuses: two sbatch, paused, shown in peers, no retry storm; bridge resume lifts it', { skip, timeout: 180_000 }, async () => {
  const m = await bridgeMesh('pause')
  try {
    const { p, home } = await m.bridge(['--partition', 'lab', '--account', 'nosuch', '--auto-alloc', 'max=2,time=3m,idle=5s', '--drain-before', '30s', '--poll', '1s', '--hostname', 'badacct'], { name: 'bad' })
    const file = job(m.dir, 'refused', 'partition: lab', 3, 'true')
    const { jobId } = await runCliJson<{ jobId: number }>(m.mesh.clientHome, ['submit', file])
    await p.waitFor(/auto-allocation paused: 2 permanent failures in a row, last: sbatch: Invalid account/, 30_000)
    assert.equal(holders(m.calls('sbatch'), home).length, 2, 'two tries, then the pause')
    assert.match(p.output(), /allocation not submitted: sbatch: Invalid account or account\/partition combination specified \(permanent; 1 failure\(s\) in a row\)/)
    await until(async () => (await m.client.peers()).some((a: AgentSummary) => a.hostname === 'badacct' && (a.status?.notes ?? []).some(n => /^auto-allocation paused: .*meshfarm bridge resume/.test(n))), 20_000, 'the pause in peers')
    const why = await runCli(m.mesh.clientHome, ['why', String(jobId)])
    assert.match(why.stdout, /badacct: auto-allocation paused/, `why names the pause: ${why.stdout}`)
    await sleep(4000)
    assert.equal(holders(m.calls('sbatch'), home).length, 2, 'nothing more while paused')

    const r = await runCli(home, ['bridge', 'resume'])
    assert.equal(r.code, 0, r.stderr)
    await p.waitFor(/bridge: resume asked: auto-allocation resumed/, 10_000)
    await until(() => holders(m.calls('sbatch'), home).length === 4, 20_000, 'two more tries after the resume')
    await sleep(3000)
    assert.equal(holders(m.calls('sbatch'), home).length, 4, 'paused again after two more')
    await runCli(m.mesh.clientHome, ['cancel', String(jobId)])
  } finally {
    await m.stop()
  }
})
