/**
 * A bridge killed with SIGKILL around its sbatch, then restarted: no chunk is submitted twice, none is lost,
 * nothing found is cancelled. The killed process is a real child (submit-child.ts); sbatch calls are counted in
 * the child (a file) and in the restarted bridge (a wrapped runner).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { skipUnlessSlurm, countingSlurm, waitForQueue } from './slurm-env.ts'
import { IntentLog, reconcile } from '../../node/bridge/slurm/intent-log.ts'
import { readStatuses, recover, sbatchRunningIn, submitChunk } from '../../node/bridge/slurm/chunk-files.ts'
import { chunkOutcomes } from '../../node/bridge/slurm/follow.ts'
import { createSlurmCli } from '../../node/bridge/slurm/slurm-cli.ts'

const skip = skipUnlessSlurm()
const WORK = '/tmp/meshfarm-slurm-tests'
const CTLD_PID = '/var/lib/meshfarm-test-slurm/slurmctld.pid'

/** Starts the child bridge, waits for it to reach `mode`, kills it with SIGKILL. */
async function killAt (dir: string, mode: string, countFile: string, bridgeId: string): Promise<string> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'submit-child.ts'), dir, mode, countFile, bridgeId], { stdio: ['ignore', 'pipe', 'inherit'] })
  const exited = new Promise(resolve => child.on('exit', resolve))
  let out = ''
  const line = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString()
      const l = out.split('\n').find(x => x.startsWith(`at ${mode}`))
      if (l != null) resolve(l)
    })
    child.on('exit', code => reject(new Error(`child exited (${String(code)}) before ${mode}: ${out}`)))
  })
  child.kill('SIGKILL')
  assert.equal(await exited, null)
  return line
}

/** A bridge id of its own per test run: jobs of earlier runs stay in squeue for MinJobAge under their labels. */
const freshBridge = (): string => `r${Date.now().toString(36)}${Math.floor(Math.random() * 1000)}`

const count = (file: string): number => existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).length : 0

test('killed before sbatch and after sbatch (id not logged): the restart submits the first once and adopts the second', { skip, timeout: 120_000 }, async () => {
  mkdirSync(WORK, { recursive: true })
  const dir = mkdtempSync(join(WORK, 'restart-'))
  const countFile = join(dir, 'sbatch-count')
  try {
    const b = freshBridge()
    await killAt(dir, 'before-sbatch', countFile, b)
    const after = await killAt(dir, 'after-sbatch', countFile, b)
    const childId = /at after-sbatch (\d+)/.exec(after)?.[1]
    assert.ok(childId != null, after)
    assert.equal(count(countFile), 1, 'the killed bridges ran one sbatch between them')
    const { batch, calls } = countingSlurm()
    const log = IntentLog.open(join(dir, 'intents.log'))
    try {
      assert.deepEqual(log.open().map(e => [e.key, e.jobId]), [[`mf:${b}:before-sbatch:0`, null], [`mf:${b}:after-sbatch:0`, null]])
      const r = await recover(batch, log, b, Date.now)
      assert.ok(r.ok, r.ok ? '' : r.error.message)
      assert.deepEqual(r.value.filter(a => a.kind !== 'leave').map(a => `${a.kind} ${'key' in a ? a.key : ''}`), [`resubmit mf:${b}:before-sbatch:0`, `adopt mf:${b}:after-sbatch:0`])
      assert.equal(calls.get('sbatch'), 1, 'one sbatch, for the chunk that never reached Slurm')
      assert.equal(log.get(`mf:${b}:after-sbatch:0`)?.jobId, childId, 'the adopted id is the one the killed bridge got')
      const ids = log.open().map(e => ({ id: e.jobId!, dir: e.chunkDir }))
      const q = await waitForQueue(batch, q => ids.every(c => chunkOutcomes(c.id, 3, q, readStatuses(c.dir)).every(v => v.outcome != null)))
      for (const c of ids) assert.deepEqual(chunkOutcomes(c.id, 3, q, readStatuses(c.dir)).map(v => v.outcome?.state), ['done', 'done', 'done'])
      for (const mode of ['before-sbatch', 'after-sbatch']) for (const i of [0, 1, 2]) assert.equal(readFileSync(join(dir, mode, `t${i}`, 'result.txt'), 'utf8'), 'done\n')
      // A second restart changes nothing: both followed, no sbatch.
      const again = await recover(batch, log, b, Date.now)
      assert.ok(again.ok)
      assert.deepEqual(again.value.filter(a => a.kind !== 'leave').map(a => a.kind), ['follow', 'follow'])
      assert.equal(calls.get('sbatch'), 1)
      assert.equal(count(countFile), 1)
    } finally {
      log.close()
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('killed while its sbatch waits on a stopped slurmctld: the orphan sbatch is waited for, then adopted, never doubled', { skip, timeout: 120_000 }, async () => {
  mkdirSync(WORK, { recursive: true })
  const dir = mkdtempSync(join(WORK, 'orphan-'))
  const countFile = join(dir, 'sbatch-count')
  const ctld = Number(readFileSync(CTLD_PID, 'utf8').trim())
  try {
    process.kill(ctld, 'SIGSTOP') // a real controller that does not answer, as while it restarts
    const b = freshBridge()
    await killAt(dir, 'during-sbatch', countFile, b)
    const chunkDir = join(dir, 'during-sbatch', 'chunk')
    assert.ok(sbatchRunningIn().has(chunkDir), 'the orphan sbatch is found by its working folder')
    const log = IntentLog.open(join(dir, 'intents.log'))
    try {
      const probes = new Map([[`mf:${b}:during-sbatch:0`, { submitterRunning: true, tracedJobId: null }]])
      assert.deepEqual(reconcile(b, log.all(), new Map(), probes).map(a => a.kind), ['wait'], 'not submitted again while it runs')
      process.kill(ctld, 'SIGCONT')
      for (let i = 0; i < 600 && sbatchRunningIn().has(chunkDir); i++) await new Promise(resolve => setTimeout(resolve, 100))
      const { batch, calls } = countingSlurm()
      const r = await recover(batch, log, b, Date.now)
      assert.ok(r.ok, r.ok ? '' : r.error.message)
      // Jobs of the test before, under the same bridge label but not in this log, are left alone ('leave').
      assert.deepEqual(r.value.filter(a => a.kind !== 'leave').map(a => a.kind), ['adopt'])
      assert.equal(calls.get('scancel') ?? 0, 0)
      assert.equal(calls.get('sbatch') ?? 0, 0)
      assert.equal(count(countFile), 1)
      const id = log.get(`mf:${b}:during-sbatch:0`)!.jobId!
      const q = await waitForQueue(batch, q => chunkOutcomes(id, 3, q, readStatuses(chunkDir)).every(v => v.outcome != null))
      assert.deepEqual(chunkOutcomes(id, 3, q, readStatuses(chunkDir)).map(v => v.outcome?.state), ['done', 'done', 'done'])
    } finally {
      log.close()
    }
  } finally {
    process.kill(ctld, 'SIGCONT')
    rmSync(dir, { recursive: true, force: true })
  }
})

test('sbatch says "Socket timed out" yet Slurm created the job: the retry finds it by label, no second job', { skip, timeout: 120_000 }, async () => {
  mkdirSync(WORK, { recursive: true })
  const dir = mkdtempSync(join(WORK, 'late-'))
  const ctld = Number(readFileSync(CTLD_PID, 'utf8').trim())
  const b = freshBridge()
  const { batch, calls } = countingSlurm()
  const log = IntentLog.open(join(dir, 'intents.log'))
  try {
    const folder = join(dir, 't0')
    mkdirSync(folder)
    const spec = { bridgeId: b, meshJobId: 'late', chunk: 0, chunkDir: join(dir, 'c0'), tasks: [{ taskId: 'late:0', folder, command: 'echo once >> runs.txt' }], resources: { cores: 1, memoryMb: 50, gpus: 0, timeLimitMs: 60_000 } }
    process.kill(ctld, 'SIGSTOP')
    // sbatch gives up after MessageTimeout (10 s) while its request waits in the controller's socket.
    const first = await submitChunk(batch, log, spec, Date.now)
    process.kill(ctld, 'SIGCONT')
    assert.deepEqual(first, { ok: false, error: { kind: 'transient', message: 'sbatch: Socket timed out on send/recv operation' } })
    const again = await submitChunk(batch, log, spec, Date.now)
    assert.ok(again.ok, again.ok ? '' : again.error.message)
    assert.equal(calls.get('sbatch'), 1, 'the retry looked in squeue and found the job; no second sbatch')
    const q = await waitForQueue(batch, q => chunkOutcomes(again.value, 1, q, readStatuses(spec.chunkDir))[0].outcome != null)
    assert.equal(chunkOutcomes(again.value, 1, q, readStatuses(spec.chunkDir))[0].outcome?.state, 'done')
    assert.equal(readFileSync(join(folder, 'runs.txt'), 'utf8'), 'once\n')
    assert.equal([...q.values()].filter(e => e.name === `mf:${b}:late:0`).length, 1, 'one job under the label')
  } finally {
    process.kill(ctld, 'SIGCONT')
    log.close()
    rmSync(dir, { recursive: true, force: true })
  }
})

test('a controller that does not answer: queries stop at their own time limit, transient, Slurm left as it was', { skip, timeout: 60_000 }, async () => {
  const ctld = Number(readFileSync(CTLD_PID, 'utf8').trim())
  const batch = createSlurmCli({ queryTimeoutMs: 1500 })
  try {
    process.kill(ctld, 'SIGSTOP')
    const started = Date.now()
    const q = await batch.queue()
    assert.deepEqual(q, { ok: false, error: { kind: 'transient', message: 'squeue: no answer within 1.5 s (stopped)' } })
    assert.ok(Date.now() - started < 8000, 'our limit, not squeue\'s 10 s MessageTimeout')
  } finally {
    process.kill(ctld, 'SIGCONT')
  }
  const after = await batch.queue()
  assert.ok(after.ok, after.ok ? '' : after.error.message)
})
