/**
 * Allocation mode inside a real `salloc` (skipped with a printed reason where Slurm cannot be set up): the bridge
 * runs tasks as srun steps within the allocation's cores, never takes one whose limit passes the allocation's
 * end, drains before the end (a running task that cannot finish and the queued ones go back to the mesh), stops,
 * and salloc releases the allocation. A lab agent started afterwards finishes what went back: none lost.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { skipUnlessSlurm } from './slurm-env.ts'
import { bridgeMesh, allRecords } from './bridge-env.ts'
import { runCliJson } from '../helpers/cli.ts'

const skip = skipUnlessSlurm()

test('inside salloc: steps on the allocation\'s cores, drained before its end with tasks still queued, released; none lost', { skip, timeout: 240_000 }, async () => {
  const m = await bridgeMesh('alloc')
  try {
    const dir = join(m.dir, 'job')
    mkdirSync(dir, { recursive: true })
    // One task without a limit (it cannot be known to finish: vacated at the drain), then eight short ones.
    writeFileSync(join(dir, 'job.yaml'), `
name: alloc
tasks:
  - name: endless
    command: "trap 'exit 143' TERM; if [ -n \\"$SLURM_JOB_ID\\" ]; then sleep 120 & wait; fi; echo lab > out.txt"
    outputs: [out.txt]
${Array.from({ length: 8 }, (_, i) => `  - name: s${i}\n    command: "sleep 3; echo \\"$SLURM_JOB_ID $SLURM_STEP_ID\\" > out.txt"\n    timeout: 9s\n    outputs: [out.txt]\n`).join('')}
  - name: too-long
    command: "echo fine > out.txt"
    timeout: 10m
    outputs: [out.txt]
`)
    // Two minutes of 2 CPUs, drained 90 s before the end: about 20 s of work once the bridge is up.
    const { p } = await m.bridge(['--in-allocation', '--drain-before', '90s', '--poll', '1s'], { wrap: ['salloc', '--time=2', '-c2', '--mem=600M', '--quiet'] })
    const alloc = /in allocation (\d+)/.exec(p.output())?.[1]
    assert.ok(alloc != null, p.output())
    const { jobId } = await runCliJson<{ jobId: number }>(m.mesh.clientHome, ['submit', join(dir, 'job.yaml'), '--allow-unplaceable'])
    await p.waitFor(/draining; (\d+) running task\(s\) finish here, (\d+) go back to the mesh/, 60_000)
    const exit = await p.exited
    assert.equal(exit, 0, `salloc and the bridge ended cleanly: ${p.output().slice(-1500)}`)
    const state = execFileSync('squeue', ['--me', '-h', '-t', 'all', '-j', alloc, '-o', '%T'], { encoding: 'utf8' }).trim()
    assert.equal(state, 'COMPLETED', 'the allocation was released when the bridge stopped, before its time limit')

    // Before a lab agent comes: what ran in the allocation ran there as steps; nothing is lost.
    const mid = await allRecords(m.client, jobId)
    const inAlloc = mid.filter(r => r.state === 'done')
    assert.ok(inAlloc.length >= 2, `some tasks ran in the allocation: ${mid.map(r => `${r.name}:${r.state}`).join(' ')}`)
    for (const r of inAlloc) {
      assert.equal(r.backend?.jobId, alloc)
      assert.match(r.name, /^s\d$/)
    }
    assert.equal(mid.find(r => r.name === 'too-long')?.state, 'queued', 'a task whose limit passes the allocation\'s end was never placed there')
    const endless = mid.find(r => r.name === 'endless')!
    assert.equal(endless.state, 'queued', 'the running task that could not finish went back to the mesh')
    assert.equal(endless.attempts, 1, 'it had started in the allocation')
    assert.ok(mid.filter(r => r.state === 'queued').length >= 3, 'queued ones went back too')

    await m.mesh.startAgent({ ip: '127.0.0.6', hostname: 'lab', slots: 2 })
    const summary = await m.client.watch(jobId)
    assert.equal(summary.state, 'done', JSON.stringify(summary))
    assert.equal(summary.counts.done, 10, 'none lost')
    const end = await allRecords(m.client, jobId)
    const back = end.find(r => r.name === 'endless')!
    assert.equal(back.host, 'lab')
    assert.ok((back.vacates ?? 0) >= 1, `handed back, not counted against it: ${JSON.stringify(back)}`)
    assert.ok(end.filter(r => r.host === 'lab').length >= 3)
  } finally {
    await m.stop()
  }
})
