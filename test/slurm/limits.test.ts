/**
 * sbatch refusing a bad partition or account on the real Slurm (permanent, one line). TIMEOUT, CANCELLED and
 * NODE_FAIL are shown end to end through the bridge (bridge-forward.test.ts).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { skipUnlessSlurm, countingSlurm, slurmEnv } from './slurm-env.ts'
import { submitChunk } from '../../node/bridge/slurm/chunk-files.ts'
import { IntentLog } from '../../node/bridge/slurm/intent-log.ts'
import type { ChunkSpec } from '../../node/bridge/slurm/script.ts'

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

test('sbatch refuses a bad partition and a bad account: permanent, Slurm\'s words, one sbatch each; scancel of what is gone is fine', { skip, timeout: 60_000 }, async () => {
  const env = slurmEnv()
  assert.ok(env.ok)
  const { batch, calls } = countingSlurm()
  const s = setup('lim')
  try {
    const badPart = await submitChunk(batch, s.log, s.spec(2, 'true', { partition: 'nosuchpartition' }), Date.now)
    assert.deepEqual(badPart, { ok: false, error: { kind: 'permanent', message: 'sbatch: Invalid partition name specified' } })
    // Without an accounting daemon Slurm knows no account; partition `lab` allows only account lab (setup.sh).
    const badAcct = await submitChunk(batch, s.log, s.spec(3, 'true', { partition: 'lab', account: 'nosuchaccount' }), Date.now)
    assert.deepEqual(badAcct, { ok: false, error: { kind: 'permanent', message: 'sbatch: Invalid account or account/partition combination specified' } })
    assert.equal(calls.get('sbatch') ?? 0, 2, 'one sbatch each, no retries inside')
    const part = await batch.partition('nosuchpartition')
    assert.deepEqual(part, { ok: false, error: { kind: 'permanent', message: 'scontrol: Invalid partition name specified: nosuchpartition' } })
    const short = await batch.partition(env.shortPartition)
    assert.ok(short.ok && short.value.maxTimeMs === 120_000 && short.value.nodes[0].name === env.node)
    assert.ok((await batch.cancel(['999999', '999998_3'])).ok, 'cancelling what is gone is not an error')
  } finally {
    s.done()
  }
})
