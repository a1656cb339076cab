/**
 * The task farm end to end, with real processes on loopback: a coordinator on 127.0.0.1, agents on 127.0.0.2
 * and 127.0.0.3, and the CLI run from a third state folder that knows only an agent's address.
 */
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, readdirSync, existsSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execFileSync, spawn } from 'node:child_process'
import { CLI_ENTRY, TS_ARGS } from '../../bin/processes.ts'
import { randomBytes } from 'node:crypto'
import { unlinkSync } from 'node:fs'
import { connect } from '../../shared/client/client.ts'
import type { MeshEvent } from '../../shared/protocol/events.ts'
import { startLocalMesh, type LocalMesh } from '../../bin/local-mesh.ts'
import { hashFile } from '../../shared/files/hash.ts'
import type { JobSummary, TaskRecord, AgentSummary } from '../../shared/protocol/messages.ts'
import { runCli, runCliJson, until } from '../helpers/cli.ts'

let mesh: LocalMesh
let dir: string
/** A client state folder whose only bootstrap peer is an agent, never the coordinator. */
let viaAgent: string

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'meshfarm-farm-'))
  mesh = await startLocalMesh({
    dir,
    // GPUs are declared, not detected: the test then means the same on a machine with real GPUs.
    env: { MESHFARM_LOG: 'debug', MESHFARM_GPU_DETECT: '0' },
    agents: [
      { ip: '127.0.0.2', hostname: 'gpu-box', slots: 2, gpus: '0,1' },
      { ip: '127.0.0.3', hostname: 'cpu-box', slots: 2 }
    ]
  })
  const agentAddr = mesh.agents[0].output().match(/listening on (\/ip4\/127\.0\.0\.\d+\/tcp\/\d+\/p2p\/\w+)/)
  assert.ok(agentAddr, 'agent printed its address')
  viaAgent = await mesh.newHome('third-party', { bootstrap: [agentAddr[1]] })
})

after(async () => {
  await mesh?.stop()
  if (process.env.KEEP_TEST_DIR == null) rmSync(dir, { recursive: true, force: true })
})

function readRecords (dest: string): TaskRecord[] {
  return readdirSync(dest).filter(n => existsSync(join(dest, n, 'task.json')))
    .map(n => JSON.parse(readFileSync(join(dest, n, 'task.json'), 'utf8')) as TaskRecord)
}

test('a sweep with shared and per-task files runs across both agents and every output comes back intact', async () => {
  const job = join(dir, 'sweep')
  mkdirSync(join(job, 'points'), { recursive: true })
  writeFileSync(join(job, 'shared.bin'), Buffer.alloc(300_000, 7))
  for (let i = 0; i < 16; i++) writeFileSync(join(job, 'points', `p${i}.txt`), `${i}\n`)
  writeFileSync(join(job, 'sweep.yaml'), `
name: farm
shared: [shared.bin]
sweep:
  parameters: { i: { range: [0, 16, 1] } }
  task:
    name: "p{i}"
    command: "sleep 0.1; cat p{i}.txt shared.bin | sha256sum > sum_{i}.txt; head -c 100000 /dev/urandom > big_{i}.bin"
    inputs: ["points/p{i}.txt"]
    outputs: ["sum_{i}.txt", "big_*.bin"]
`)
  const dest = join(dir, 'results-farm')
  const out = await runCliJson<{ jobId: number, results: string, summary: JobSummary }>(viaAgent, ['submit', join(job, 'sweep.yaml'), '--wait', '--results', dest])
  assert.equal(out.summary.state, 'done')
  assert.equal(out.summary.counts.done, 16)
  const records = readRecords(dest)
  assert.equal(records.length, 16)
  const hosts = new Set(records.map(r => r.host))
  assert.deepEqual([...hosts].sort(), ['cpu-box', 'gpu-box'], 'tasks ran on both agents')
  for (const r of records) {
    assert.equal(r.state, 'done')
    assert.equal(r.exitCode, 0)
    assert.equal(r.attempts, 1)
    assert.ok(r.peerId != null && r.start != null && r.end != null && r.durationMs != null && r.durationMs >= 100)
    assert.equal(r.outputs.length, 2)
    for (const o of r.outputs) {
      const got = await hashFile(join(dest, r.name, o.name))
      assert.equal(got.hash, o.hash, `${r.name}/${o.name} arrived intact`)
    }
    const i = r.name.slice(1)
    const expected = execFileSync('sh', ['-c', `cat ${join(job, 'points', `p${i}.txt`)} ${join(job, 'shared.bin')} | sha256sum`]).toString()
    assert.equal(readFileSync(join(dest, r.name, `sum_${i}.txt`), 'utf8'), expected)
  }
  assert.ok(existsSync(join(dest, 'sweep.yaml')), 'the job file is kept with the results')
  // The shared file crossed the network once per machine that ran tasks.
  const shared = await hashFile(join(job, 'shared.bin'))
  const sends = mesh.coordinator.output().split('\n').filter(l => l.startsWith(`blob-sent ${shared.hash}`))
  assert.equal(sends.length, hosts.size, `shared file sent ${sends.length} times for ${hosts.size} machines`)
})

test('tasks start as their own files arrive, before the last upload ends; a file gone mid-upload cancels the job', async () => {
  const src = join(dir, 'stream')
  mkdirSync(src, { recursive: true })
  const n = 64
  for (let i = 0; i < n; i++) writeFileSync(join(src, `f${i}.bin`), randomBytes(2 * 2 ** 20))
  const yaml = (name: string): string => `name: ${name}\nsweep:\n  parameters: { i: { range: [0, ${n}, 1] } }\n  task: { name: "s{i}", command: "sha256sum f{i}.bin > sum.txt", inputs: ["f{i}.bin"], outputs: [sum.txt] }\n`
  writeFileSync(join(src, 'stream.yaml'), yaml('stream'))
  const client = await connect({ home: mesh.clientHome })
  try {
    const { jobId } = await client.submitFile(join(src, 'stream.yaml'))
    const uploadedAt = Date.now()
    const summary = await client.watch(jobId)
    assert.equal(summary.counts.done, n)
    const events: MeshEvent[] = []
    await client.events({ after: 0, jobId }, es => { events.push(...es) })
    const firstStart = Math.min(...events.filter(e => e.type === 'task.started').map(e => e.time))
    assert.ok(firstStart < uploadedAt, `the first task started ${uploadedAt - firstStart} ms before the last file was uploaded`)
    // Each task got its own file: the sums came back right.
    const dest = join(dir, 'stream-results')
    await client.fetch(jobId, dest)
    for (const r of readRecords(dest)) {
      const i = Number(r.name.slice(1))
      const sum = readFileSync(join(dest, r.name, 'sum.txt'), 'utf8').split(' ')[0]
      assert.equal(sum, (await hashFile(join(src, `f${i}.bin`))).hash, r.name)
    }

    // A file removed after hashing, before its upload: the job is cancelled, in one line that says so.
    for (let i = 0; i < n; i++) writeFileSync(join(src, `f${i}.bin`), randomBytes(64 * 1024))
    writeFileSync(join(src, 'gone.yaml'), yaml('gone'))
    let removed = false
    const failed = await client.submitFile(join(src, 'gone.yaml'), undefined, p => {
      if (p.phase === 'uploading' && !removed) { removed = true; unlinkSync(join(src, `f${n - 1}.bin`)) }
    }).then(() => null, (err: Error) => err)
    assert.ok(failed != null, 'submit fails')
    const m = /^job (\d+) cancelled: an input file could not be uploaded: /.exec(failed.message)
    assert.ok(m != null, failed.message)
    assert.ok(!failed.message.includes('\n'))
    const gone = await client.watch(Number(m[1]))
    assert.equal(gone.state, 'cancelled')
  } finally {
    await client.close()
  }
})

test('Ctrl-C while `submit` uploads cancels the job it already stored, and says so', async () => {
  const src = join(dir, 'interrupt')
  mkdirSync(src, { recursive: true })
  const n = 48
  for (let i = 0; i < n; i++) writeFileSync(join(src, `g${i}.bin`), randomBytes(8 * 2 ** 20))
  writeFileSync(join(src, 'big.yaml'), `name: interrupted\nsweep:\n  parameters: { i: { range: [0, ${n}, 1] } }\n  task: { name: "g{i}", command: "wc -c g{i}.bin", inputs: ["g{i}.bin"] }\n`)
  const cli = spawn(process.execPath, [...TS_ARGS, CLI_ENTRY, '--home', mesh.clientHome, 'submit', 'big.yaml'], { cwd: src, stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  cli.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const exited = new Promise<number | null>(resolve => cli.once('exit', code => { resolve(code) }))
  // The job is stored (the coordinator says so) while its 384 MiB are still on their way.
  const [, jobId] = await mesh.coordinator.waitFor(/job (\d+) 'interrupted' with 48 tasks/, 60_000)
  cli.kill('SIGINT')
  assert.equal(await exited, 130, stderr)
  assert.match(stderr, new RegExp(`interrupted while uploading its files: cancelling job ${jobId}`))
  const client = await connect({ home: mesh.clientHome })
  try {
    const summary = await client.watch(Number(jobId))
    assert.equal(summary.state, 'cancelled')
    assert.ok(summary.counts.cancelled > 0, 'tasks still waiting for their files were cancelled')
  } finally {
    await client.close()
  }
})

test('GPU tasks get distinct GPU ids in CUDA_VISIBLE_DEVICES and gpu_ids.txt', async () => {
  const job = join(dir, 'gpu')
  mkdirSync(job, { recursive: true })
  writeFileSync(join(job, 'gpu.yaml'), `
name: gpu
sweep:
  parameters: { i: [0, 1, 2, 3] }
  task:
    name: "g{i}"
    gpus: 1
    command: "echo $CUDA_VISIBLE_DEVICES > cvd.txt; cp gpu_ids.txt ids.txt; sleep 0.5"
    outputs: [cvd.txt, ids.txt]
`)
  const dest = join(dir, 'results-gpu')
  const out = await runCliJson<{ summary: JobSummary }>(viaAgent, ['submit', join(job, 'gpu.yaml'), '--wait', '--results', dest])
  assert.equal(out.summary.state, 'done')
  const records = readRecords(dest)
  assert.equal(records.length, 4)
  for (const r of records) {
    assert.equal(r.host, 'gpu-box', 'GPU tasks only go to the agent with GPUs')
    assert.equal(r.resources.gpus.length, 1)
    const cvd = readFileSync(join(dest, r.name, 'cvd.txt'), 'utf8').trim()
    const ids = readFileSync(join(dest, r.name, 'ids.txt'), 'utf8').trim()
    assert.equal(cvd, String(r.resources.gpus[0]))
    assert.equal(ids, cvd)
  }
  // Tasks that overlapped in time had different GPUs.
  for (const a of records) {
    for (const b of records) {
      if (a === b) continue
      const overlap = Date.parse(a.start!) < Date.parse(b.end!) && Date.parse(b.start!) < Date.parse(a.end!)
      if (overlap) assert.notDeepEqual(a.resources.gpus, b.resources.gpus, `${a.name} and ${b.name} overlapped on one GPU`)
    }
  }
})

test('a task that exits non-zero is reported failed with its exit code and stderr', async () => {
  const job = join(dir, 'fail')
  mkdirSync(job, { recursive: true })
  writeFileSync(join(job, 'tasks.txt'), 'echo fine\necho boom >&2; exit 3\n')
  const dest = join(dir, 'results-fail')
  const r = await runCli(viaAgent, ['submit', join(job, 'tasks.txt'), '--wait', '--results', dest])
  assert.equal(r.code, 1, 'submit --wait exits 1 when a task failed')
  const records = readRecords(dest)
  const failed = records.find(x => x.state === 'failed')
  assert.ok(failed)
  assert.equal(failed.exitCode, 3)
  assert.match(failed.failure?.message ?? '', /code 3/)
  assert.equal(readFileSync(join(dest, failed.name, 'stderr'), 'utf8'), 'boom\n')
  assert.equal(records.find(x => x.state === 'done')?.name, 'task-0')
})

test('cancel stops running tasks', async () => {
  const job = join(dir, 'cancel')
  mkdirSync(job, { recursive: true })
  const marker = `sleep 31.${process.pid}`
  writeFileSync(join(job, 'slow.txt'), `${marker}\n`.repeat(6))
  const { jobId } = await runCliJson<{ jobId: number }>(viaAgent, ['submit', join(job, 'slow.txt')])
  await until(async () => {
    const [s] = await runCliJson<JobSummary[]>(viaAgent, ['status', String(jobId)])
    return s.counts.running >= 2
  }, 30_000, 'tasks running')
  assert.ok(pgrep(marker) > 0, 'the tasks are running')
  const r = await runCliJson<{ cancelled: number }>(viaAgent, ['cancel', String(jobId)])
  assert.equal(r.cancelled, 6)
  await until(() => pgrep(marker) === 0, 15_000, 'task processes gone')
  const [s] = await runCliJson<JobSummary[]>(viaAgent, ['status', String(jobId)])
  assert.equal(s.state, 'cancelled')
  assert.equal(s.counts.cancelled, 6)
})

function pgrep (pattern: string): number {
  try {
    return execFileSync('pgrep', ['-f', '-x', pattern]).toString().trim().split('\n').filter(Boolean).length
  } catch {
    return 0
  }
}

test('an invalid job file is refused with one line naming the field, and nothing is submitted', async () => {
  const job = join(dir, 'bad')
  mkdirSync(job, { recursive: true })
  writeFileSync(join(job, 'bad.yaml'), 'name: bad\ntasks:\n  - command: "true"\n    cores: two\n')
  const before = await runCliJson<JobSummary[]>(viaAgent, ['status'])
  const r = await runCli(viaAgent, ['submit', join(job, 'bad.yaml')])
  assert.equal(r.code, 2)
  const lines = r.stderr.trim().split('\n')
  assert.equal(lines.length, 1, `one line: ${r.stderr}`)
  assert.match(lines[0], /^error: .*bad\.yaml: tasks\[0\]\.cores: /)
  const afterJobs = await runCliJson<JobSummary[]>(viaAgent, ['status'])
  assert.equal(afterJobs.length, before.length)
  const missing = await runCli(viaAgent, ['submit', join(job, 'nope.yaml')])
  assert.equal(missing.code, 2)
  assert.match(missing.stderr, /^error: .*nope\.yaml: no such file\n$/)
})

test('peers, status and ping answer from a machine that knows only the mesh', async () => {
  const peers = await runCliJson<AgentSummary[]>(viaAgent, ['peers'])
  assert.deepEqual(peers.map(p => p.hostname).sort(), ['cpu-box', 'gpu-box'])
  const gpu = peers.find(p => p.hostname === 'gpu-box')!
  assert.deepEqual(gpu.gpus.map(g => g.index), [0, 1])
  assert.equal(gpu.slots, 2)
  assert.equal(gpu.state, 'up')
  const ping = await runCliJson<{ peerId: string }>(viaAgent, ['ping'])
  assert.ok(mesh.bootstrap.endsWith(ping.peerId))
  const table = await runCli(viaAgent, ['peers'])
  assert.match(table.stdout, /gpu-box/)
  assert.match(table.stdout, /cpu-box/)
})

test('fetch brings a finished job into another folder and resumes a partial one', async () => {
  const jobs = await runCliJson<JobSummary[]>(viaAgent, ['status'])
  const farm = jobs.find(j => j.name === 'farm')!
  const dest = join(dir, 'refetch')
  const first = await runCliJson<{ tasks: number, files: number }>(viaAgent, ['fetch', String(farm.jobId), '--dest', dest])
  assert.equal(first.tasks, 16)
  // Break it: remove one task's task.json and truncate an output to a partial download.
  const victim = readRecords(dest)[0]
  const big = victim.outputs.find(o => o.name.startsWith('big_'))!
  rmSync(join(dest, victim.name, 'task.json'))
  const full = readFileSync(join(dest, victim.name, big.name))
  rmSync(join(dest, victim.name, big.name))
  writeFileSync(join(dest, victim.name, `${big.name}.part`), full.subarray(0, 40_000))
  const second = await runCliJson<{ tasks: number, skipped: number, bytes: number }>(viaAgent, ['fetch', String(farm.jobId), '--dest', dest])
  assert.equal(second.skipped, 15)
  assert.equal((await hashFile(join(dest, victim.name, big.name))).hash, big.hash)
  // Resumed, not downloaded again: the big output's first 40,000 bytes did not cross the network twice.
  const rest = [victim.stdout, victim.stderr, ...victim.outputs.filter(o => o !== big)].reduce((n, f) => n + (f?.size ?? 0), 0)
  assert.ok(second.bytes <= big.size - 40_000 + rest, `resumed from the partial file: ${second.bytes} bytes fetched, at most ${big.size - 40_000 + rest}`)
})
