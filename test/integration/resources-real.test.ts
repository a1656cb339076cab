/** Resource detection on the real machine (systeminformation and nvidia-smi run as processes). */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { detectResources } from '../../node/resources.ts'

test('detectResources on this machine: sane values, overrides apply', async () => {
  const t0 = performance.now()
  const r = await detectResources()
  console.log(`detected in ${Math.round(performance.now() - t0)} ms:`, JSON.stringify(r))
  assert.ok(r.hostname.length > 0)
  assert.ok(Number.isInteger(r.cores) && r.cores >= 1)
  assert.ok(r.physicalCores >= 1 && r.physicalCores <= r.cores)
  assert.ok(r.memoryMb > 0)
  assert.equal(r.slots, r.cores)
  assert.ok(r.os.length > 0)
  assert.equal(r.labels.os, process.platform)
  assert.equal(r.labels.arch, process.arch)
  assert.equal(typeof r.runsAsRoot, 'boolean')
  for (const g of r.gpus) assert.ok(Number.isInteger(g.index) && g.model.length > 0 && g.memoryMb >= 0)

  const gpuIds = r.gpus.length > 0 ? [r.gpus[0].index] : [0, 1]
  const o = await detectResources({ cores: 1, memoryMb: 512, slots: 3, hostname: 'h', labels: { site: 'lab2' }, gpus: gpuIds })
  assert.equal(o.cores, 1)
  assert.equal(o.memoryMb, 512)
  assert.equal(o.slots, 3)
  assert.equal(o.hostname, 'h')
  assert.equal(o.labels.site, 'lab2')
  assert.equal(o.labels.os, process.platform)
  assert.deepEqual(o.gpus.map(g => g.index), gpuIds)
  if (r.gpus.length === 0) assert.equal(o.gpus[0].model, 'declared')
})
