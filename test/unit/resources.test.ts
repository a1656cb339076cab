import { test, describe } from 'node:test'
import assert from 'node:assert/strict'
import { applyOverrides, parseGpuList, parseLabels, parseMemoryFlag, parseNvidiaSmi } from '../../node/resources.ts'
import { isMeshfarmError } from '../../shared/util/errors.ts'
import type { AgentResources } from '../../shared/protocol/messages.ts'

/** Asserts a one-line BAD_ARGUMENT whose message matches. */
function badArg (fn: () => unknown, match?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isMeshfarmError(err), String(err))
    assert.equal(err.code, 'BAD_ARGUMENT')
    assert.ok(!err.message.includes('\n'), 'one line')
    if (match != null) assert.match(err.message, match)
    return true
  })
}

describe('parseNvidiaSmi', () => {
  test('8x H100', () => {
    const csv = Array.from({ length: 8 }, (_, i) => `${i}, NVIDIA H100 80GB HBM3, 81559`).join('\n') + '\n'
    const gpus = parseNvidiaSmi(csv)
    assert.equal(gpus.length, 8)
    assert.deepEqual(gpus[0], { index: 0, model: 'NVIDIA H100 80GB HBM3', memoryMb: 81559 })
    assert.deepEqual(gpus.map(g => g.index), [0, 1, 2, 3, 4, 5, 6, 7])
  })

  test('mixed cards, CRLF, blank lines, N/A memory', () => {
    const csv = '0, NVIDIA GeForce RTX 3090, 24576\r\n\r\n1, Tesla V100-SXM2-16GB, 16160\r\n2, NVIDIA A100-SXM4-40GB MIG 1g.5gb, [N/A]\r\n'
    assert.deepEqual(parseNvidiaSmi(csv), [
      { index: 0, model: 'NVIDIA GeForce RTX 3090', memoryMb: 24576 },
      { index: 1, model: 'Tesla V100-SXM2-16GB', memoryMb: 16160 },
      { index: 2, model: 'NVIDIA A100-SXM4-40GB MIG 1g.5gb', memoryMb: 0 }
    ])
  })

  test('model containing a comma is kept whole', () => {
    assert.deepEqual(parseNvidiaSmi('3, Weird, Card, 1024'), [{ index: 3, model: 'Weird, Card', memoryMb: 1024 }])
  })

  test('no GPUs or error text -> []', () => {
    assert.deepEqual(parseNvidiaSmi(''), [])
    assert.deepEqual(parseNvidiaSmi('No devices were found\n'), [])
    assert.deepEqual(parseNvidiaSmi("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n"), [])
  })
})

describe('parseGpuList', () => {
  test('lists, ranges, none', () => {
    assert.deepEqual(parseGpuList('0,1'), [0, 1])
    assert.deepEqual(parseGpuList('0-3'), [0, 1, 2, 3])
    assert.deepEqual(parseGpuList(' 4, 0-1 ,7 '), [0, 1, 4, 7])
    assert.deepEqual(parseGpuList('2'), [2])
    assert.deepEqual(parseGpuList('none'), [])
    assert.deepEqual(parseGpuList('NONE'), [])
    assert.deepEqual(parseGpuList(''), [])
    assert.deepEqual(parseGpuList('  '), [])
  })

  test('junk refused', () => {
    for (const junk of ['a', '0,', ',0', '0,,1', '-1', '1.5', '0-', '3-1', '0;1', 'all', '0 1', '99999', '0-5000']) {
      badArg(() => parseGpuList(junk))
    }
  })

  test('duplicates refused', () => {
    badArg(() => parseGpuList('0,0'), /GPU 0 listed twice/)
    badArg(() => parseGpuList('0-2,1'), /GPU 1 listed twice/)
  })
})

describe('parseLabels', () => {
  test('key=value pairs', () => {
    assert.deepEqual(parseLabels(['os=linux', 'site=lab2']), { os: 'linux', site: 'lab2' })
    assert.deepEqual(parseLabels(['a=b=c', 'empty=']), { a: 'b=c', empty: '' })
    assert.deepEqual(parseLabels(['x=1', 'x=2']), { x: '2' })
    assert.deepEqual(parseLabels([]), {})
  })

  test('missing = or empty key refused', () => {
    badArg(() => parseLabels(['os']), /key=value/)
    badArg(() => parseLabels(['=linux']), /empty key/)
    badArg(() => parseLabels([' =x']), /empty key/)
    badArg(() => parseLabels(['__proto__=x']), /reserved/)
  })
})

describe('parseMemoryFlag', () => {
  test('units', () => {
    assert.equal(parseMemoryFlag('2048'), 2048)
    assert.equal(parseMemoryFlag('512M'), 512)
    assert.equal(parseMemoryFlag('512MB'), 512)
    assert.equal(parseMemoryFlag('16G'), 16384)
    assert.equal(parseMemoryFlag('16g'), 16384)
    assert.equal(parseMemoryFlag('16GiB'), 16384)
    assert.equal(parseMemoryFlag('1.5G'), 1536)
    assert.equal(parseMemoryFlag('1T'), 1048576)
    assert.equal(parseMemoryFlag('2048K'), 2)
    assert.equal(parseMemoryFlag(' 8 G '), 8192)
  })

  test('junk refused', () => {
    for (const junk of ['', 'G', '16X', '-1', '16 GB extra', '0', '512K', 'abc', '1e3', '16GG']) {
      badArg(() => parseMemoryFlag(junk))
    }
  })
})

const machine: AgentResources = {
  hostname: 'node7',
  os: 'Ubuntu 24.04',
  cores: 64,
  physicalCores: 32,
  memoryMb: 515000,
  slots: 64,
  gpus: [0, 1, 2, 3].map(index => ({ index, model: 'NVIDIA H100 80GB HBM3', memoryMb: 81559 })),
  labels: { os: 'linux', arch: 'x64' },
  runsAsRoot: false
}

describe('applyOverrides', () => {
  test('no overrides: equal copy, input untouched', () => {
    const before = structuredClone(machine)
    const out = applyOverrides(machine, {})
    assert.deepEqual(out, machine)
    assert.notEqual(out, machine)
    assert.notEqual(out.gpus, machine.gpus)
    assert.deepEqual(machine, before)
  })

  test('cores, slots, memory, hostname, labels', () => {
    const out = applyOverrides(machine, { cores: 8, memoryMb: 16384, hostname: 'alias', labels: { site: 'lab2', os: 'custom' } })
    assert.equal(out.cores, 8)
    assert.equal(out.slots, 8, 'slots follow overridden cores')
    assert.equal(out.physicalCores, 8)
    assert.equal(out.memoryMb, 16384)
    assert.equal(out.hostname, 'alias')
    assert.deepEqual(out.labels, { os: 'custom', arch: 'x64', site: 'lab2' })
    assert.equal(applyOverrides(machine, { cores: 8, slots: 2 }).slots, 2)
    assert.equal(applyOverrides(machine, { slots: 3 }).cores, 64)
  })

  test('gpus: keep listed detected ones', () => {
    const out = applyOverrides(machine, { gpus: [1, 3] })
    assert.deepEqual(out.gpus.map(g => g.index), [1, 3])
    assert.equal(out.gpus[0].model, 'NVIDIA H100 80GB HBM3')
    assert.deepEqual(applyOverrides(machine, { gpus: [] }).gpus, [])
  })

  test('gpus: unknown id refused', () => {
    badArg(() => applyOverrides(machine, { gpus: [0, 9] }), /GPU 9 not found/)
  })

  test('gpus: declared when none detected', () => {
    const out = applyOverrides({ ...machine, gpus: [] }, { gpus: [0, 1] })
    assert.deepEqual(out.gpus, [{ index: 0, model: 'declared', memoryMb: 0 }, { index: 1, model: 'declared', memoryMb: 0 }])
  })

  test('bad numbers refused', () => {
    badArg(() => applyOverrides(machine, { cores: 0 }), /--cores/)
    badArg(() => applyOverrides(machine, { slots: 1.5 }), /--slots/)
    badArg(() => applyOverrides(machine, { memoryMb: -1 }), /--memory/)
  })
})
