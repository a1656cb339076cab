/**
 * On a machine with a real NVIDIA GPU (skipped elsewhere): the agent finds its GPUs by itself, and each GPU task
 * sees exactly the GPU it was given, in CUDA_VISIBLE_DEVICES, gpu_ids.txt and to nvidia-smi; a CPU task sees none.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startLocalMesh } from '../../bin/local-mesh.ts'
import { connect } from '../../shared/client/client.ts'
import { parseJobYaml } from '../../shared/client/spec.ts'

const smi = spawnSync('nvidia-smi', ['--query-gpu=index,name', '--format=csv,noheader'], { encoding: 'utf8' })
const gpus = smi.status === 0 ? smi.stdout.trim().split('\n').filter(Boolean) : []

test('real GPUs: detected by the agent, one per GPU task, none for CPU tasks', { skip: gpus.length === 0 ? 'no NVIDIA GPU here' : false }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'meshfarm-gpu-'))
  const mesh = await startLocalMesh({ dir, agents: [{ ip: '127.0.0.2', hostname: 'gpu-box', slots: 4 }] })
  const client = await connect({ home: mesh.clientHome })
  try {
    const [agent] = await client.peers()
    assert.equal(agent.gpus.length, gpus.length, `detected ${JSON.stringify(agent.gpus)}; nvidia-smi says ${gpus.join('; ')}`)
    assert.match(agent.gpus[0].model, /NVIDIA|H100|H200|A100|RTX|Tesla/i)
    assert.ok(agent.gpus[0].memoryMb > 1000, `GPU memory ${agent.gpus[0].memoryMb} MB`)
    const file = join(dir, 'gpu.yaml')
    const probe = 'echo "$CUDA_VISIBLE_DEVICES" > cvd.txt; cat gpu_ids.txt > ids.txt 2>/dev/null || true; ' +
      'if [ -n "$CUDA_VISIBLE_DEVICES" ]; then nvidia-smi --query-gpu=index,name --format=csv,noheader -i "$CUDA_VISIBLE_DEVICES" > smi.txt; fi'
    const text = `name: gpu-probe\ntasks:\n${Array.from({ length: gpus.length + 1 }, (_, i) => `  - name: g${i}\n    gpus: 1\n    command: '${probe}'\n    outputs: [cvd.txt, ids.txt, smi.txt]\n`).join('')}  - name: cpu\n    command: '${probe}'\n    outputs: [cvd.txt]\n`
    writeFileSync(file, text)
    const { jobId } = await client.submit(parseJobYaml(text, file, dir))
    const summary = await client.watch(jobId)
    assert.equal(summary.counts.done, gpus.length + 2, JSON.stringify(summary.counts))
    const dest = join(dir, 'results')
    await client.fetch(jobId, dest)
    for (let i = 0; i <= gpus.length; i++) {
      const cvd = readFileSync(join(dest, `g${i}`, 'cvd.txt'), 'utf8').trim()
      assert.match(cvd, /^\d+$/, 'one GPU id')
      assert.equal(readFileSync(join(dest, `g${i}`, 'ids.txt'), 'utf8').trim(), cvd)
      assert.match(readFileSync(join(dest, `g${i}`, 'smi.txt'), 'utf8'), new RegExp(`^${cvd}, `), 'nvidia-smi sees that GPU')
    }
    assert.equal(readFileSync(join(dest, 'cpu', 'cvd.txt'), 'utf8').trim(), '', 'a CPU task sees no GPU')
  } finally {
    await client.close()
    await mesh.stop()
    rmSync(dir, { recursive: true, force: true })
  }
})
