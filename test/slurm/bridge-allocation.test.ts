/**
 * Allocation mode inside a real `salloc` (skipped with a printed reason where Slurm cannot be set up): the bridge
 * runs tasks as srun steps within the allocation's cores, never takes one whose limit passes the allocation's
 * end, drains before the end (a running task that cannot finish and the queued ones go back to the mesh), stops,
 * and salloc releases the allocation. A lab agent started afterwards finishes what went back: none lost. Slurm's
 * USR1 (what `--signal=B:USR1@120` sends before the end) drains at once, however far the end.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { skipUnlessSlurm } from './slurm-env.ts'
import { bridgeMesh, allRecords } from './bridge-env.ts'
import { runCliJson, until } from '../helpers/cli.ts'
import type { MeshEvent } from '../../shared/protocol/events.ts'

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

/** The process salloc runs (the bridge): salloc's child whose command line names the bridge. */
function bridgeUnder (sallocPid: number): number {
  const children = readFileSync(`/proc/${sallocPid}/task/${sallocPid}/children`, 'utf8').trim().split(/\s+/).map(Number)
  const pid = children.find(c => readFileSync(`/proc/${c}/cmdline`, 'utf8').includes('bridge'))
  assert.ok(pid != null, `no bridge under salloc ${sallocPid}: children ${children.join(' ')}`)
  return pid
}

test('inside salloc: USR1 drains at once, long before the end; what runs goes back to the mesh and the allocation is released', { skip, timeout: 180_000 }, async () => {
  const m = await bridgeMesh('alloc-usr1')
  try {
    const file = join(m.dir, 'usr1.txt')
    writeFileSync(file, 'sleep 300\nsleep 300\nsleep 300\n')
    // Ten minutes, drained 60 s before the end: without the signal, nothing would drain for nine minutes.
    const { p } = await m.bridge(['--in-allocation', '--drain-before', '60s', '--poll', '1s'], { wrap: ['salloc', '--time=10', '-c2', '--mem=600M', '--quiet'] })
    const alloc = /in allocation (\d+)/.exec(p.output())?.[1]
    assert.ok(alloc != null, p.output())
    const { jobId } = await runCliJson<{ jobId: number }>(m.mesh.clientHome, ['submit', file])
    await until(async () => (await m.client.status(jobId))[0].counts.running === 2, 60_000, 'two tasks running in the allocation')
    process.kill(bridgeUnder(p.child.pid!), 'SIGUSR1')
    await p.waitFor(new RegExp(`bridge: USR1 from Slurm: allocation ${alloc} ends soon; draining`), 10_000)
    await p.waitFor(/draining; 0 running task\(s\) finish here, [23] go back to the mesh/, 30_000)
    assert.equal(await p.exited, 0, `salloc and the bridge ended cleanly: ${p.output().slice(-1500)}`)
    const state = execFileSync('squeue', ['--me', '-h', '-t', 'all', '-j', alloc, '-o', '%T'], { encoding: 'utf8' }).trim()
    assert.equal(state, 'COMPLETED', 'released nine minutes before its time limit')
    const records = await allRecords(m.client, jobId)
    assert.deepEqual(records.map(r => r.state), ['queued', 'queued', 'queued'], 'all three back in the mesh\'s queue, none lost or failed')
    const events: MeshEvent[] = []
    await m.client.events({ jobId }, es => { events.push(...es) })
    const vacated = events.filter(e => e.type === 'task.vacated')
    assert.deepEqual(vacated.map(e => e.index).sort(), [0, 1, 2], 'each handed back once, as a vacate')
    assert.ok(vacated.every(e => e.data?.kind === 'vacate' && e.data?.why === `allocation ${alloc} ends before they could finish`))
    assert.ok(records.every(r => r.failure == null), 'not counted against them')
  } finally {
    await m.stop()
  }
})
