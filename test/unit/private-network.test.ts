import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { byteStream } from '@libp2p/utils'
import { decodeSwarmKey } from '../../shared/net/private-network.ts'
import { initMesh, loadMeshConfig, writeMesh } from '../../shared/local/mesh-config.ts'
import { homePaths } from '../../shared/local/home.ts'
import { createMeshNode } from '../../shared/net/mesh.ts'

test('a swarm key file that is not a libp2p PSK is refused in one line', () => {
  assert.throws(() => decodeSwarmKey(Buffer.from('hello\n')), /swarm.key is not a libp2p pre-shared key/)
  assert.throws(() => decodeSwarmKey(Buffer.from('/key/swarm/psk/1.0.0/\n/base16/\nabc\n')), /64 hex digits/)
  assert.equal(decodeSwarmKey(Buffer.from(`/key/swarm/psk/1.0.0/\n/base16/\n${'ab'.repeat(32)}\n`)).length, 32)
})

test('two members move 24 MiB each way over one private connection, intact', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'meshfarm-pnet-'))
  const a = join(dir, 'a')
  const b = join(dir, 'b')
  initMesh(a, { mdns: false })
  writeMesh(b, readFileSync(homePaths(a).swarmKey), { bootstrap: [], mdns: false })
  const nodeA = await createMeshNode({ mesh: loadMeshConfig(a), listen: ['/ip4/127.0.0.1/tcp/0'] })
  const nodeB = await createMeshNode({ mesh: loadMeshConfig(b), listen: [] })
  const size = 24 << 20
  const pattern = (seed: number): Uint8Array => { const x = new Uint8Array(1 << 20); for (let i = 0; i < x.length; i++) x[i] = (i * 31 + seed) & 255; return x }
  const sha = (seed: number): string => { const h = createHash('sha256'); for (let i = 0; i < size >> 20; i++) h.update(pattern(seed)); return h.digest('hex') }
  try {
    // The echo side answers every byte with its own pattern: both directions busy at once.
    await nodeA.handle('/test/exchange', async (stream) => {
      const bytes = byteStream(stream)
      const h = createHash('sha256')
      const sending = (async () => { for (let i = 0; i < size >> 20; i++) await bytes.write(pattern(2)) })()
      for (let got = 0; got < size;) { const chunk = (await bytes.read())?.subarray() ?? assert.fail("stream ended early"); h.update(chunk); got += chunk.length }
      await sending
      await bytes.write(Buffer.from(h.digest('hex')))
    })
    const stream = await nodeB.dialProtocol(nodeA.getMultiaddrs(), '/test/exchange')
    const bytes = byteStream(stream)
    const h = createHash('sha256')
    const sending = (async () => { for (let i = 0; i < size >> 20; i++) await bytes.write(pattern(1)) })()
    for (let got = 0; got < size;) { const chunk = (await bytes.read({ bytes: Math.min(1 << 20, size - got) })).subarray(); h.update(chunk); got += chunk.length }
    await sending
    const theirs = Buffer.from((await bytes.read({ bytes: 64 })).subarray()).toString()
    assert.equal(h.digest('hex'), sha(2), 'what B received')
    assert.equal(theirs, sha(1), 'what A received')
  } finally {
    await nodeB.stop()
    await nodeA.stop()
    rmSync(dir, { recursive: true, force: true })
  }
})
