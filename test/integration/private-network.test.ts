/**
 * The private network between real libp2p nodes: large transfers both ways, a peer with another mesh's key, a
 * stream tampered with in flight, and a peer that reflects our own bytes back.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { byteStream } from '@libp2p/utils'
import { initMesh, loadMeshConfig, writeMesh } from '../../shared/local/mesh-config.ts'
import { homePaths } from '../../shared/local/home.ts'
import { createMeshNode } from '../../shared/net/mesh.ts'
import { createServer, connect } from 'node:net'
import { multiaddr } from '@multiformats/multiaddr'

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

/** Two homes of one mesh, and a third with its own key. */
function homes (): { dir: string, a: string, b: string, stranger: string } {
  const dir = mkdtempSync(join(tmpdir(), 'meshfarm-pnet-'))
  const a = join(dir, 'a')
  const b = join(dir, 'b')
  const stranger = join(dir, 'stranger')
  initMesh(a, { mdns: false })
  writeMesh(b, readFileSync(homePaths(a).swarmKey), { bootstrap: [], mdns: false })
  initMesh(stranger, { mdns: false })
  return { dir, a, b, stranger }
}

test('a peer with another mesh\'s key gets no connection and no stream', async () => {
  const { dir, a, stranger } = homes()
  const nodeA = await createMeshNode({ mesh: loadMeshConfig(a), listen: ['/ip4/127.0.0.1/tcp/0'] })
  let handled = 0
  await nodeA.handle('/test/any', () => { handled++ })
  const nodeS = await createMeshNode({ mesh: loadMeshConfig(stranger), listen: [] })
  try {
    await assert.rejects(nodeS.dialProtocol(nodeA.getMultiaddrs(), '/test/any', { signal: AbortSignal.timeout(5000) }))
    assert.equal(handled, 0)
    assert.equal(nodeA.getConnections().length, 0, 'nothing stays connected')
  } finally {
    await nodeS.stop()
    await nodeA.stop()
    rmSync(dir, { recursive: true, force: true })
  }
})

/** A TCP relay between two peers that flips one bit of what passes after `after` bytes, once. */
async function tamperingRelay (target: { host: string, port: number }, after: number): Promise<{ port: number, close: () => void, tampered: () => boolean }> {
  let seen = 0
  let done = false
  const server = createServer(client => {
    const upstream = connect(target.port, target.host)
    client.on('data', (d: Buffer) => {
      if (!done && seen + d.length > after) {
        const at = Math.max(0, after - seen)
        d[at] ^= 0x01
        done = true
      }
      seen += d.length
      upstream.write(d)
    })
    upstream.on('data', (d: Buffer) => client.write(d))
    client.on('error', () => upstream.destroy())
    upstream.on('error', () => client.destroy())
    client.on('close', () => upstream.destroy())
    upstream.on('close', () => client.destroy())
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return { port: (server.address() as { port: number }).port, close: () => { server.close() }, tampered: () => done }
}

test('a byte changed in flight is caught: the stream fails, and nothing altered is delivered', async () => {
  const { dir, a, b } = homes()
  const nodeA = await createMeshNode({ mesh: loadMeshConfig(a), listen: ['/ip4/127.0.0.1/tcp/0'] })
  const received: Buffer[] = []
  await nodeA.handle('/test/sink', async (stream) => {
    try {
      for await (const chunk of stream) received.push(Buffer.from(chunk.subarray()))
    } catch { /* the tampered connection is torn down */ }
  })
  const addr = nodeA.getMultiaddrs()[0].getComponents()
  const port = Number(addr.find(c => c.name === 'tcp')!.value)
  // Flip a bit well after the handshakes, in the middle of the data.
  const relay = await tamperingRelay({ host: '127.0.0.1', port }, 64 * 1024)
  const nodeB = await createMeshNode({ mesh: loadMeshConfig(b), listen: [] })
  try {
    const payload = Buffer.alloc(1 << 20, 7)
    const stream = await nodeB.dialProtocol(multiaddr(`/ip4/127.0.0.1/tcp/${relay.port}/p2p/${nodeA.peerId.toString()}`), '/test/sink')
    const sending = (async () => {
      for (let off = 0; off < payload.length; off += 16384) {
        if (!stream.send(payload.subarray(off, off + 16384))) await stream.onDrain()
      }
      await stream.close()
    })()
    await assert.rejects(sending, 'the sender sees the connection fail')
    assert.ok(relay.tampered())
    const got = Buffer.concat(received)
    assert.ok(got.length < payload.length, 'the whole payload never arrived')
    assert.ok(got.every(byte => byte === 7), 'every byte that was delivered is the sender\'s own')
  } finally {
    relay.close()
    await nodeB.stop()
    await nodeA.stop()
    rmSync(dir, { recursive: true, force: true })
  }
})

test('a peer that echoes our nonce and reflects our own bytes back gets nowhere', async () => {
  const { dir, a } = homes()
  const nodeA = await createMeshNode({ mesh: loadMeshConfig(a), listen: ['/ip4/127.0.0.1/tcp/0'] })
  try {
    const port = Number(nodeA.getMultiaddrs()[0].getComponents().find(c => c.name === 'tcp')!.value)
    // A raw TCP peer: it reads the listener's nonce, sends it back as its own, then returns every byte it gets.
    const socket = connect(port, '127.0.0.1')
    let reflected = 0
    let nonce: Buffer | null = null
    const closed = new Promise<void>(resolve => { socket.on('close', () => { resolve() }); socket.on('error', () => {}) })
    socket.on('data', (d: Buffer) => {
      if (nonce == null) {
        nonce = d.subarray(0, 24)
        socket.write(nonce)
        d = d.subarray(24)
      }
      if (d.length > 0) { reflected += d.length; socket.write(d) }
    })
    await closed
    assert.ok(nonce != null, 'the listener sent its nonce')
    assert.equal(nodeA.getConnections().length, 0, 'no connection came of it')
    void reflected
  } finally {
    await nodeA.stop()
    rmSync(dir, { recursive: true, force: true })
  }
})
