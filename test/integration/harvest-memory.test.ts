/**
 * Every task gets what it asked for, and no more, on an ordinary agent (no --harvest) with this machine's cgroups:
 * each task sees its memory request as its cgroup's hard limit and its cores as its CPU quota; a task that
 * allocates four times its memory request is stopped and reported failed with kind `memory` (not retried, not a
 * crash), while the task beside it and the agent carry on.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startLocalMesh } from '../../bin/local-mesh.ts'
import { connect } from '../../shared/client/client.ts'
import { parseTasklist } from '../../shared/client/spec.ts'
import { records, waitFor } from '../helpers/harvest-agent.ts'

const isRoot = process.getuid?.() === 0
const MiB = 2 ** 20

test('a task over its memory is stopped and reported as kind memory; the task beside it and the agent carry on', { skip: !isRoot && 'cgroups need root on this machine' }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mf-memory-'))
  chmodSync(dir, 0o755)
  const rel = join(dir, 'release')
  mkdirSync(rel, { mode: 0o755 })
  const mesh = await startLocalMesh({ dir, env: { MESHFARM_GPU_DETECT: '0' }, agents: [{ ip: '127.0.0.2', hostname: 'box', slots: 2 }] })
  const client = await connect({ home: mesh.clientHome })
  try {
    const agentLog = mesh.agents[0].output()
    console.log(`# ${agentLog.split('\n').find(l => l.startsWith('agent: cgroups'))}`)
    // Task 1 says what its cgroups give it, then waits; task 0 asks for 64 MiB and takes 256 (tail keeps its
    // whole line, and /dev/zero has no newline).
    const limits = 'M=$(grep :memory: /proc/self/cgroup | cut -d: -f3); C=$(grep :cpu: /proc/self/cgroup | cut -d: -f3); ' +
      'echo memory $(cat /sys/fs/cgroup/memory$M/memory.limit_in_bytes) memsw $(cat /sys/fs/cgroup/memory$M/memory.memsw.limit_in_bytes) ' +
      'quota $(cat /sys/fs/cgroup/cpu$C/cpu.cfs_quota_us) shares $(cat /sys/fs/cgroup/cpu$C/cpu.shares); ' +
      `while [ ! -e ${rel}/go ]; do sleep 0.05; done`
    const text = [
      'head -c 268435456 /dev/zero | tail # meshfarm: memory=64M',
      `${limits} # meshfarm: memory=96M cores=1`
    ].join('\n') + '\n'
    writeFileSync(join(dir, 'mem.txt'), text)
    const { jobId } = await client.submit(parseTasklist(text, join(dir, 'mem.txt'), dir, { retries: 2 }))

    const hog = await waitFor(async () => (await records(client, jobId)).find(r => r.index === 0 && r.state === 'failed') ?? null, 'the hog failed')
    console.log(`# ${JSON.stringify(hog.failure)} peak ${hog.peakMemoryBytes}`)
    assert.equal(hog.failure?.kind, 'memory')
    assert.match(hog.failure!.message, /^needed more than its 64 MiB of memory \(peak 6\d MiB, at the limit\): killed by the kernel; ask for more memory$/)
    assert.ok(hog.peakMemoryBytes != null && hog.peakMemoryBytes <= 65 * MiB && hog.peakMemoryBytes >= 60 * MiB, String(hog.peakMemoryBytes))
    assert.equal(hog.attempts, 1, 'not retried: the same request meets the same limit anywhere')

    // The task beside it still runs, and saw its own limits.
    assert.equal((await records(client, jobId)).find(r => r.index === 1)?.state, 'running')
    writeFileSync(join(rel, 'go'), '')
    assert.equal((await client.watch(jobId)).counts.done, 1)
    let out = ''
    let err = ''
    await client.logs(jobId, 1, { stream: 'stdout' }, d => { out += Buffer.from(d).toString() })
    await client.logs(jobId, 1, { stream: 'stderr' }, d => { err += Buffer.from(d).toString() })
    console.log(`# task 1 saw: ${out.trim()}`)
    assert.equal(err, '')
    assert.equal(out.trim(), `memory ${96 * MiB} memsw ${96 * MiB} quota 100000 shares 1024`)

    // And the agent takes the next job.
    const next = parseTasklist('echo next\n', join(dir, 'next.txt'), dir)
    const { jobId: j2 } = await client.submit(next)
    assert.equal((await client.watch(j2)).state, 'done')
    assert.doesNotMatch(mesh.agents[0].output(), /cannot|failed:/)
  } finally {
    await client.close()
    await mesh.stop()
    if (process.env.KEEP_TEST_DIR == null) rmSync(dir, { recursive: true, force: true })
  }
})
