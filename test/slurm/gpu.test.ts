/**
 * On a machine with a real NVIDIA GPU (skipped elsewhere; setup.sh then declares Gres=gpu:N): a task asking for
 * one GPU gets --gres=gpu:1 and sees exactly the GPU Slurm gave it, in CUDA_VISIBLE_DEVICES, gpu_ids.txt and to
 * nvidia-smi; a CPU task sees none.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { skipUnlessSlurm, countingSlurm, waitForQueue } from './slurm-env.ts'
import { submitChunk, readStatuses } from '../../node/bridge/slurm/chunk-files.ts'
import { IntentLog } from '../../node/bridge/slurm/intent-log.ts'
import { chunkOutcomes } from '../../node/bridge/slurm/follow.ts'

const smi = spawnSync('nvidia-smi', ['-L'], { encoding: 'utf8' })
const skip = smi.status !== 0 ? 'no NVIDIA GPU here' : skipUnlessSlurm()
const WORK = '/tmp/meshfarm-slurm-tests'

test('a GPU task sees the GPU Slurm gave it; a CPU task sees none', { skip, timeout: 120_000 }, async () => {
  const { batch } = countingSlurm()
  mkdirSync(WORK, { recursive: true })
  const dir = mkdtempSync(join(WORK, 'gpu-'))
  const log = IntentLog.open(join(dir, 'intents.log'))
  try {
    const probe = 'echo "${CUDA_VISIBLE_DEVICES:-}" > cvd.txt; if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then nvidia-smi --query-gpu=index --format=csv,noheader -i "$CUDA_VISIBLE_DEVICES" > smi.txt; fi'
    const ids: string[] = []
    for (const [chunk, gpus] of [[0, 1], [1, 0]] as const) {
      const folder = join(dir, `t${chunk}`)
      mkdirSync(folder)
      const r = await submitChunk(batch, log, { bridgeId: 'test', meshJobId: 'gpu', chunk, chunkDir: join(dir, `c${chunk}`), tasks: [{ taskId: `gpu:${chunk}`, folder, command: probe }], resources: { cores: 1, memoryMb: 100, gpus, timeLimitMs: 60_000 } }, Date.now)
      assert.ok(r.ok, r.ok ? '' : r.error.message)
      ids.push(r.value)
    }
    const q = await waitForQueue(batch, q => ids.every((id, i) => chunkOutcomes(id, 1, q, readStatuses(join(dir, `c${i}`)))[0].outcome != null))
    assert.deepEqual(ids.map((id, i) => chunkOutcomes(id, 1, q, readStatuses(join(dir, `c${i}`)))[0].outcome?.state), ['done', 'done'])
    const cvd = readFileSync(join(dir, 't0', 'cvd.txt'), 'utf8').trim()
    assert.match(cvd, /^\d+$/, 'one GPU id')
    assert.equal(readFileSync(join(dir, 't0', 'gpu_ids.txt'), 'utf8').trim(), cvd)
    assert.equal(readFileSync(join(dir, 't0', 'smi.txt'), 'utf8').trim(), cvd, 'nvidia-smi sees that GPU')
    assert.equal(readFileSync(join(dir, 't1', 'cvd.txt'), 'utf8').trim(), '', 'a CPU task sees no GPU')
    assert.ok(!existsSync(join(dir, 't1', 'gpu_ids.txt')))
  } finally {
    log.close()
    rmSync(dir, { recursive: true, force: true })
  }
})
