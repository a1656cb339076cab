/**
 * What an agent sends back and how it stages, with real processes on loopback: results that would not fit a
 * frame, output names the coordinator refuses, outputs never written, shared files in a subfolder, a download
 * cut by a coordinator restart, a partial download that does not add up, an agent stopped mid-task (its tasks
 * vacated, not crashed: the crash limit here is 1), and the agent's connection gate.
 */
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { startLocalMesh, type LocalMesh } from '../../bin/local-mesh.ts'
import { hashBytes, hashFile } from '../../shared/files/hash.ts'
import { createMeshNode } from '../../shared/net/mesh.ts'
import { loadMeshConfig } from '../../shared/local/mesh-config.ts'
import { PROTOCOL_ROSTER } from '../../shared/protocol/constants.ts'
import type { JobSummary, TaskRecord } from '../../shared/protocol/messages.ts'
import { runCli, runCliJson, until } from '../helpers/cli.ts'

let mesh: LocalMesh
let dir: string

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'meshfarm-results-'))
  mesh = await startLocalMesh({ dir, coordinatorArgs: ['--crash-limit', '1', '--agent-lost', '5s', '--heartbeat', '500ms'], agents: [{ ip: '127.0.0.2', hostname: 'r1', slots: 2 }] })
})

after(async () => {
  await mesh?.stop()
  if (process.env.KEEP_TEST_DIR == null) rmSync(dir, { recursive: true, force: true })
})

function records (dest: string): Map<string, TaskRecord> {
  return new Map(readdirSync(dest).filter(n => existsSync(join(dest, n, 'task.json')))
    .map(n => { const r = JSON.parse(readFileSync(join(dest, n, 'task.json'), 'utf8')) as TaskRecord; return [r.name, r] }))
}

async function submit (name: string, yaml: string, wait = true): Promise<{ jobId: number, summary: JobSummary, dest: string }> {
  const job = join(dir, name)
  mkdirSync(job, { recursive: true })
  writeFileSync(join(job, 'job.yaml'), yaml)
  const dest = join(dir, `results-${name}`)
  const r = await runCli(mesh.clientHome, ['submit', join(job, 'job.yaml'), '--json', ...(wait ? ['--wait', '--results', dest] : [])], { timeoutMs: 240_000 })
  assert.ok(r.code === 0 || r.code === 1, r.stderr)
  return { ...JSON.parse(r.stdout) as { jobId: number, summary: JobSummary }, dest }
}

test('200 outputs of 50 KB arrive intact; a refused output name fails only its task; unwritten outputs are listed', async () => {
  const { summary, dest } = await submit('outs', `
name: outs
tasks:
  - name: many
    command: "for i in $(seq 1 200); do head -c 50000 /dev/urandom > f_$i.bin; done"
    outputs: ["f_*.bin"]
  - name: badname
    command: "echo x > \\"$(printf 'a\\\\tb.txt')\\"; echo ok > good.txt"
    outputs: ["*.txt"]
  - name: missing
    command: "echo hi > made.txt"
    outputs: [made.txt, never.txt, "*.none"]
`)
  assert.equal(summary.counts.done, 2)
  assert.equal(summary.counts.failed, 1)
  const recs = records(dest)
  const many = recs.get('many')!
  assert.equal(many.state, 'done')
  assert.equal(many.outputs.length, 200)
  for (const o of many.outputs) assert.equal((await hashFile(join(dest, 'many', o.name))).hash, o.hash)
  const bad = recs.get('badname')!
  assert.equal(bad.state, 'failed')
  assert.equal(bad.failure?.kind, 'output')
  assert.match(bad.failure?.message ?? '', /^output name not allowed: output: control character in name/)
  assert.equal(bad.attempts, 1, 'not retried: the same task would write the same name')
  const missing = recs.get('missing')!
  assert.equal(missing.state, 'done')
  assert.deepEqual(missing.missingOutputs, ['never.txt'])
})

test('a shared file in a subfolder stages (shared: [{src, as: models/m.bin}])', async () => {
  const job = join(dir, 'subshared')
  mkdirSync(job, { recursive: true })
  writeFileSync(join(job, 'm.bin'), 'weights\n')
  const { summary, dest } = await submit('subshared', `
name: subshared
shared: [{src: m.bin, as: models/m.bin}]
tasks:
  - command: "cat models/m.bin > copy.txt; cat $MESHFARM_JOB_DIR/models/m.bin >> copy.txt"
    outputs: [copy.txt]
`)
  assert.equal(summary.state, 'done')
  assert.equal(readFileSync(join(dest, 'task-0', 'copy.txt'), 'utf8'), 'weights\nweights\n')
  assert.equal(records(dest).get('task-0')?.attempts, 1)
})

test('a partial download that does not add up is discarded and fetched again', async () => {
  const job = join(dir, 'partial')
  mkdirSync(job, { recursive: true })
  const data = Buffer.alloc(2 << 20, 1)
  writeFileSync(join(job, 'in.bin'), data)
  // A download cut earlier left this: the right size so far, the wrong bytes.
  const cacheTmp = join(mesh.dir, 'agent-r1', 'agent', 'cache', 'tmp')
  writeFileSync(join(cacheTmp, `${hashBytes(data)}.download`), Buffer.alloc(1 << 20, 0xff))
  const { summary, dest } = await submit('partial', 'name: partial\ntasks:\n  - command: "sha256sum in.bin > sum.txt"\n    inputs: [in.bin]\n    outputs: [sum.txt]\n')
  assert.equal(summary.state, 'done')
  assert.equal(readFileSync(join(dest, 'task-0', 'sum.txt'), 'utf8').split(' ')[0], hashBytes(data))
  assert.equal(records(dest).get('task-0')?.attempts, 1)
})

test('a download cut by a coordinator restart is retried, not counted as a crash (crash limit 1)', async () => {
  const job = join(dir, 'restart')
  mkdirSync(job, { recursive: true })
  const data = Buffer.alloc(300 << 20)
  for (let i = 0; i < data.length; i += 4096) data[i] = i % 251
  writeFileSync(join(job, 'big.bin'), data)
  const hash = hashBytes(data)
  const { jobId } = await submit('restart', 'name: restart\ntasks:\n  - command: "sha256sum big.bin > sum.txt"\n    inputs: [big.bin]\n    outputs: [sum.txt]\n', false)
  const partial = join(mesh.dir, 'agent-r1', 'agent', 'cache', 'tmp', `${hash}.download`)
  await until(() => existsSync(partial) && statSync(partial).size > 0, 120_000, 'the download under way')
  mesh.coordinator.child.kill('SIGKILL')
  await mesh.coordinator.exited
  await mesh.startCoordinator()
  await until(async () => (await runCliJson<JobSummary[]>(mesh.clientHome, ['status', String(jobId)]))[0].state !== 'active', 240_000, 'the job done')
  const [final] = await runCliJson<JobSummary[]>(mesh.clientHome, ['status', String(jobId)])
  assert.equal(final.state, 'done')
  assert.doesNotMatch(mesh.agents[0].output(), /staging failed/)
})

test('an agent stopped mid-task hands its tasks back (vacated): they finish elsewhere, none crashed (crash limit 1)', async () => {
  const r2 = await mesh.startAgent({ ip: '127.0.0.3', hostname: 'r2', slots: 2 })
  const { jobId } = await submit('vacate', 'name: vacate\ntasks:\n' + Array.from({ length: 4 }, () => '  - command: "sleep 4"\n').join(''), false)
  const r2Tasks = join(mesh.dir, 'agent-r2')
  await until(async () => {
    const { tasks } = await runCliJson<{ tasks: TaskRecord[] }>(mesh.clientHome, ['status', String(jobId), '--tasks'])
    return tasks.filter(t => t.state === 'running' && t.host === 'r2').length >= 1
  }, 30_000, 'a task running on r2')
  assert.ok(existsSync(r2Tasks))
  const t0 = Date.now()
  assert.equal(await r2.stop('SIGTERM'), 0, 'the agent stops cleanly')
  assert.ok(Date.now() - t0 < 10_000, `it stopped within its grace (${Date.now() - t0} ms)`)
  await until(async () => (await runCliJson<JobSummary[]>(mesh.clientHome, ['status', String(jobId)]))[0].state !== 'active', 60_000, 'the job done')
  const [s] = await runCliJson<JobSummary[]>(mesh.clientHome, ['status', String(jobId)])
  assert.equal(s.state, 'done')
  assert.equal(s.counts.done, 4)
  assert.match(r2.output(), /agent: stopping: [1-9]\d* unfinished attempt\(s\) handed back/)
})

test('the agent admits only the coordinator and the mesh\'s members, and keeps the list for its next start', async () => {
  const agentHome = join(mesh.dir, 'agent-r1')
  const members = join(agentHome, 'agent', 'members.json')
  await until(() => existsSync(members), 10_000, 'the member list')
  assert.equal(statSync(members).mode & 0o777, 0o600)
  const listed = (JSON.parse(readFileSync(members, 'utf8')) as { peerIds: string[] }).peerIds
  const addr = mesh.agents[0].output().match(/listening on (\/ip4\/127\.0\.0\.2\/tcp\/\d+\/p2p\/\w+)/)![1]
  const strangerHome = await mesh.newHome('stranger', { roles: [] })
  const stranger = await createMeshNode({ mesh: loadMeshConfig(strangerHome), listen: [] })
  try {
    await assert.rejects(stranger.dialProtocol(multiaddr(addr), PROTOCOL_ROSTER, { signal: AbortSignal.timeout(5000) }), 'a peer with the key but not a member gets nothing')
  } finally {
    await stranger.stop()
  }
  const member = await createMeshNode({ mesh: loadMeshConfig(mesh.clientHome), listen: [] })
  try {
    assert.ok(listed.includes(member.peerId.toString()))
    const stream = await member.dialProtocol(multiaddr(addr), PROTOCOL_ROSTER, { signal: AbortSignal.timeout(5000) })
    await stream.close()
  } finally {
    await member.stop()
  }
})
