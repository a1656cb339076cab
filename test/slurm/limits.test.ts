/**
 * Faults Slurm really produces, on the real Slurm: a task past its --time (TIMEOUT), scancel (CANCELLED), the node
 * set DOWN mid-task (NODE_FAIL, back to the mesh), and sbatch refusing a bad partition or account (permanent, one
 * line). The node test runs last: a DOWN node fails every job on it.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { skipUnlessSlurm, countingSlurm, slurmEnv, waitForQueue } from './slurm-env.ts'
import { submitChunk, readStatuses } from '../../node/bridge/slurm/chunk-files.ts'
import { IntentLog } from '../../node/bridge/slurm/intent-log.ts'
import { chunkOutcomes } from '../../node/bridge/slurm/follow.ts'
import type { ChunkSpec } from '../../node/bridge/slurm/script.ts'
import type { BatchSystem } from '../../node/bridge/slurm/batch-system.ts'

const skip = skipUnlessSlurm()
const WORK = '/tmp/meshfarm-slurm-tests'

function setup (name: string): { dir: string, log: IntentLog, spec: (chunk: number, command: string, o?: Partial<ChunkSpec>) => ChunkSpec, done: () => void } {
  mkdirSync(WORK, { recursive: true })
  const dir = mkdtempSync(join(WORK, `${name}-`))
  const log = IntentLog.open(join(dir, 'intents.log'))
  const spec = (chunk: number, command: string, o: Partial<ChunkSpec> = {}): ChunkSpec => {
    const folder = join(dir, `t${chunk}`)
    mkdirSync(folder, { recursive: true })
    return { bridgeId: 'test', meshJobId: name, chunk, chunkDir: join(dir, `c${chunk}`), tasks: [{ taskId: `${name}:${chunk}`, folder, command }], resources: { cores: 1, memoryMb: 50, gpus: 0, timeLimitMs: null }, ...o }
  }
  return { dir, log, spec, done: () => { log.close(); rmSync(dir, { recursive: true, force: true }) } }
}

async function submitted (batch: BatchSystem, log: IntentLog, spec: ChunkSpec): Promise<string> {
  const r = await submitChunk(batch, log, spec, Date.now)
  assert.ok(r.ok, r.ok ? '' : r.error.message)
  return r.value
}

test('TIMEOUT past --time and CANCELLED by scancel, side by side; bad partition and account refused in one line', { skip, timeout: 240_000 }, async () => {
  const env = slurmEnv()
  assert.ok(env.ok)
  const { batch, calls } = countingSlurm()
  const s = setup('lim')
  try {
    const slow = s.spec(0, 'sleep 600', { partition: env.shortPartition, resources: { cores: 1, memoryMb: 50, gpus: 0, timeLimitMs: 60_000 } })
    const doomed = s.spec(1, 'sleep 600')
    const slowId = await submitted(batch, s.log, slow)
    const doomedId = await submitted(batch, s.log, doomed)
    await waitForQueue(batch, q => q.get(`${doomedId}_0`)?.state === 'RUNNING')
    const c = await batch.cancel([doomedId])
    assert.ok(c.ok, c.ok ? '' : c.error.message)
    const cancelled = await waitForQueue(batch, q => q.get(`${doomedId}_0`)?.state === 'CANCELLED')
    const [cv] = chunkOutcomes(doomedId, 1, cancelled, readStatuses(doomed.chunkDir))
    assert.equal(cv.outcome?.state, 'failed')
    assert.equal(cv.outcome?.failure?.kind, 'cancelled')
    assert.equal(cv.outcome?.failure?.retryable, false)
    assert.ok((await batch.cancel([doomedId, '999999'])).ok, 'cancelling what is gone is not an error')

    // Permanent errors while the timeout runs: no retry, Slurm's words, one line.
    const before = calls.get('sbatch') ?? 0
    const badPart = await submitChunk(batch, s.log, s.spec(2, 'true', { partition: 'nosuchpartition' }), Date.now)
    assert.deepEqual(badPart, { ok: false, error: { kind: 'permanent', message: 'sbatch: Invalid partition name specified' } })
    // Without an accounting daemon Slurm knows no account; partition `lab` allows only account lab (setup.sh).
    const badAcct = await submitChunk(batch, s.log, s.spec(3, 'true', { partition: 'lab', account: 'nosuchaccount' }), Date.now)
    assert.deepEqual(badAcct, { ok: false, error: { kind: 'permanent', message: 'sbatch: Invalid account or account/partition combination specified' } })
    assert.equal((calls.get('sbatch') ?? 0) - before, 2, 'one sbatch each, no retries inside')
    const part = await batch.partition('nosuchpartition')
    assert.equal(part.ok ? '' : part.error.kind, 'permanent')
    const short = await batch.partition(env.shortPartition)
    assert.ok(short.ok && short.value.maxTimeMs === 120_000 && short.value.nodes[0].name === env.node)

    const timedOut = await waitForQueue(batch, q => q.get(`${slowId}_0`)?.state === 'TIMEOUT', { intervalMs: 2000, timeoutMs: 180_000 })
    const [tv] = chunkOutcomes(slowId, 1, timedOut, readStatuses(slow.chunkDir))
    assert.equal(tv.outcome?.state, 'failed')
    assert.equal(tv.outcome?.failure?.kind, 'timeout')
    assert.match(tv.outcome?.failure?.message ?? '', new RegExp(`Slurm job ${slowId}_0: TIMEOUT, reason TimeLimit`))
    const d = await batch.details(`${slowId}_0`)
    assert.ok(d.ok && d.value[0].state === 'TIMEOUT' && d.value[0].timeLimitMs === 60_000)
  } finally {
    s.done()
  }
})

test('a node set DOWN mid-task: NODE_FAIL, the task goes back to the mesh; the node is resumed', { skip, timeout: 120_000 }, async () => {
  const env = slurmEnv()
  assert.ok(env.ok)
  const { batch } = countingSlurm()
  const s = setup('nf')
  try {
    const spec = s.spec(0, 'sleep 600')
    const id = await submitted(batch, s.log, spec)
    await waitForQueue(batch, q => q.get(`${id}_0`)?.state === 'RUNNING')
    const down = spawnSync('scontrol', ['update', `nodename=${env.node}`, 'state=down', 'reason=meshfarm test: node lost mid-task'], { encoding: 'utf8' })
    assert.equal(down.status, 0, down.stderr)
    const q = await waitForQueue(batch, q => q.get(`${id}_0`)?.state === 'NODE_FAIL')
    const [v] = chunkOutcomes(id, 1, q, readStatuses(spec.chunkDir))
    assert.equal(v.outcome?.state, 'requeue', 'not the task\'s failure')
    assert.equal(v.outcome?.failure?.kind, 'node-fail')
    assert.match(v.outcome?.failure?.message ?? '', /NODE_FAIL, reason NodeDown/)
  } finally {
    spawnSync('scontrol', ['update', `nodename=${env.ok ? env.node : ''}`, 'state=resume']) // ReturnToService=2 may have done it
    spawnSync('bash', [join(import.meta.dirname, 'setup.sh')]) // waits until the node takes jobs again
    s.done()
  }
})
