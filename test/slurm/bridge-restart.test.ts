/**
 * A bridge killed with SIGKILL mid-job and started again from the same state folder, against the real Slurm: it
 * adopts the arrays Slurm still runs (reported as running in its hello), submits nothing twice (every sbatch is
 * counted by the shim on its PATH, per chunk folder), cancels nothing it finds, and the job completes with every
 * task run exactly once by Slurm (each task appends its index to a ledger) and none lost.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { skipUnlessSlurm } from './slurm-env.ts'
import { bridgeMesh, allRecords } from './bridge-env.ts'
import { runCliJson, until } from '../helpers/cli.ts'

const skip = skipUnlessSlurm()
const N = 40

test('a bridge killed with SIGKILL mid-job and restarted: the job completes, no sbatch twice, no task lost or run twice', { skip, timeout: 240_000 }, async () => {
  const m = await bridgeMesh('restart')
  try {
    const ledger = join(m.dir, 'ledger.txt')
    const dir = join(m.dir, 'job')
    mkdirSync(dir, { recursive: true })
    writeFileSync(join(dir, 'job.yaml'), `
name: restart
defaults: { constraints: { site: cluster } }
sweep:
  parameters: { i: { range: [0, ${N}, 1] } }
  task:
    name: "t{i}"
    command: "echo {i} >> ${ledger}; sleep 0.5; echo {i} > out.txt"
    outputs: [out.txt]
`)
    const first = await m.bridge(['--partition', 'debug', '--poll', '1s'], { name: 'bridge' })
    const { jobId } = await runCliJson<{ jobId: number }>(m.mesh.clientHome, ['submit', join(dir, 'job.yaml')])
    // Some results already delivered (their array still open), some tasks running, most waiting in Slurm.
    await until(async () => (await m.client.status(jobId))[0].counts.done >= 4, 60_000, 'a few results delivered')
    first.p.child.kill('SIGKILL')
    await first.p.exited
    const reported = (await m.client.status(jobId))[0].counts.done
    const ranBefore = readFileSync(ledger, 'utf8').split('\n').filter(Boolean).length
    assert.ok(ranBefore < N, 'killed mid-job')
    const sbatchBefore = m.calls('sbatch').length
    assert.ok(sbatchBefore >= 1)

    const second = await m.bridge(['--partition', 'debug', '--poll', '1s'], { home: first.home })
    const restartLog = await second.p.waitFor(/slurm: restart: (.*) task\(s\) adopted.*/, 30_000)
    const summary = await m.client.watch(jobId)
    assert.equal(summary.state, 'done', JSON.stringify(summary))
    assert.equal(summary.counts.done, N)

    const runs = readFileSync(ledger, 'utf8').split('\n').filter(Boolean).map(Number)
    const once = new Map<number, number>()
    for (const i of runs) once.set(i, (once.get(i) ?? 0) + 1)
    assert.deepEqual([...once.entries()].filter(([, n]) => n !== 1), [], 'no task ran twice in Slurm')
    assert.equal(once.size, N, 'every task ran')
    const records = await allRecords(m.client, jobId)
    assert.equal(records.filter(r => r.state === 'done').length, N, 'none lost')
    // Each chunk folder got one sbatch, over both bridge processes together.
    const perChunk = new Map<string, number>()
    for (const line of m.calls('sbatch')) { const cwd = line.split(' ')[1]; perChunk.set(cwd, (perChunk.get(cwd) ?? 0) + 1) }
    assert.deepEqual([...perChunk.entries()].filter(([, n]) => n !== 1), [], `no chunk submitted twice: ${JSON.stringify([...perChunk])}`)
    const adoptedN = Number(/(\d+) task\(s\) adopted/.exec(restartLog[0])?.[1])
    assert.ok(adoptedN > 0, `the restarted bridge adopted the tasks Slurm still had: ${restartLog[0]}`)
    assert.ok(adoptedN <= N - reported, `results already delivered are not adopted again (${adoptedN} adopted, ${reported} reported)`)
    assert.doesNotMatch(second.p.output(), /scancel/, 'nothing found was cancelled')
    assert.equal(m.calls('scancel').length, 0, 'no scancel at all')
    const adopted = records.filter(r => r.attempts === 1).length
    assert.ok(adopted > N / 2, `most tasks kept their first attempt (${adopted}/${N}): adopted, not requeued`)
  } finally {
    await m.stop()
  }
})
