/**
 * Shared inputs fetched in chunks from peers, against a real coordinator process: a peer that sends tampered
 * chunks is refused and the chunks come from elsewhere; a peer that vanishes mid-chunk costs a retry, not a
 * failure; two real agents fetching one shared input take chunks from each other.
 */
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import type { PeerId } from '@libp2p/interface'
import { startLocalMesh, type LocalMesh } from '../../bin/local-mesh.ts'
import { loadMeshConfig } from '../../shared/local/mesh-config.ts'
import { createMeshNode, type MeshNode } from '../../shared/net/mesh.ts'
import { Channel } from '../../shared/protocol/codec.ts'
import { PROTOCOL_BLOB } from '../../shared/protocol/constants.ts'
import { BLOB_REQUESTS } from '../../shared/protocol/schema.ts'
import type { BlobReply, BlobRequest } from '../../shared/protocol/messages.ts'
import { askBlob, uploadBlob } from '../../shared/net/blob-protocol.ts'
import { serveBlobStream } from '../../shared/net/blob-serve.ts'
import { fetchSpread, type SourcesReply } from '../../shared/net/spread-fetch.ts'
import { runCli } from '../helpers/cli.ts'

let mesh: LocalMesh
let dir: string
let coord: PeerId
let fetcher: MeshNode
const SIZE = 6 * 4 * 1024 * 1024 + 999
let data: Buffer
let hash: string

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'meshfarm-spread-'))
  mesh = await startLocalMesh({ dir, agents: [] })
  coord = peerIdFromString(mesh.bootstrap.split('/p2p/')[1])
  // The fetcher has the agent role: the coordinator hands chunk manifests to agents only.
  fetcher = await nodeFor(await mesh.newHome('fetcher', { roles: ['agent'] }), [])
  data = randomBytes(SIZE)
  hash = createHash('sha256').update(data).digest('hex')
  writeFileSync(join(dir, 'shared.bin'), data)
  const uploader = await nodeFor(mesh.clientHome, [])
  await uploadBlob(uploader, coord, hash, SIZE, join(dir, 'shared.bin'))
  await uploader.stop()
})

after(async () => {
  await fetcher?.stop()
  await mesh?.stop()
  if (process.env.KEEP_TEST_DIR == null) rmSync(dir, { recursive: true, force: true })
})

async function nodeFor (home: string, listen = ['/ip4/127.0.0.1/tcp/0']): Promise<MeshNode> {
  const node = await createMeshNode({ mesh: loadMeshConfig(home), listen })
  await node.peerStore.merge(coord, { multiaddrs: [multiaddr(mesh.bootstrap.split('/p2p/')[0])] })
  return node
}

/** A peer that claims to hold the whole blob and serves `file` for it (over the stream: it has no bulk port). */
async function fakePeer (name: string, file: string): Promise<MeshNode> {
  const node = await nodeFor(await mesh.newHome(name, { roles: ['agent'] }))
  await node.handle(PROTOCOL_BLOB, (stream, connection) => {
    void serveBlobStream(stream, { id: connection.remotePeer.toString(), ip: null }, {
      locate: () => ({ path: file, size: SIZE, holds: () => true }),
      have: () => ({ t: 'blob.have.reply', size: SIZE, complete: true, chunks: new Uint8Array(0) })
    })
  })
  return node
}

/** The coordinator's answer, with these peers named in it instead of its own. */
async function sourcesWith (peers: MeshNode[]): Promise<SourcesReply> {
  const reply = await askBlob(fetcher, coord, { t: 'blob.sources', hash }, 'blob.sources.reply')
  assert.ok(reply.manifest != null, 'the coordinator spreads a blob this large')
  return { ...reply, peers: peers.map(p => ({ peerId: p.peerId.toString(), addrs: p.getMultiaddrs().map(String) })) }
}

test('a tampered chunk from a peer is refused and fetched elsewhere; the liar is not asked again', async () => {
  const forged = Buffer.from(data)
  for (let i = 0; i < SIZE; i += 4 * 1024 * 1024) forged[i + 100] ^= 0xff
  writeFileSync(join(dir, 'forged.bin'), forged)
  const liar = await fakePeer('liar', join(dir, 'forged.bin'))
  const honest = await fakePeer('honest', join(dir, 'shared.bin'))
  const lines: string[] = []
  try {
    const first = await sourcesWith([liar, honest])
    const dest = join(dir, 'out-tamper.bin')
    const r = await fetchSpread({ node: fetcher, coordinator: coord, log: l => { lines.push(l) }, downloads: new Map(), sources: async () => first }, hash, first, dest)
    assert.ok(readFileSync(dest).equals(data), 'the file is right')
    const refusals = lines.filter(l => l.includes(`from peer ${liar.peerId.toString().slice(-8)} does not match the manifest`))
    assert.ok(refusals.length >= 1 && refusals.length <= 2, lines.join('\n'))
    assert.ok(r.fromPeers > 0, 'the honest peer sent chunks')
    assert.equal(r.fromPeers + r.fromCoordinator, SIZE, 'nothing counted twice')
  } finally {
    await liar.stop()
    await honest.stop()
  }
})

test('a peer that disappears mid-transfer costs a retry, not a failure', async () => {
  const node = await nodeFor(await mesh.newHome('vanisher', { roles: ['agent'] }))
  let served = 0
  // It answers like a peer holding everything, sends half a chunk and is gone.
  await node.handle(PROTOCOL_BLOB, (stream) => {
    void (async () => {
      const ch = new Channel<BlobRequest, BlobReply>(stream, { accept: BLOB_REQUESTS })
      const req = await ch.expect()
      if (req.t === 'blob.have') {
        await ch.write({ t: 'blob.have.reply', size: SIZE, complete: true, chunks: new Uint8Array(0) })
        await ch.close()
        return
      }
      if (req.t !== 'blob.get') return
      served++
      await ch.write({ t: 'blob.header', size: SIZE, offset: req.offset, length: req.length })
      await ch.writeRaw(data.subarray(req.offset, req.offset + 2 * 1024 * 1024))
      await node.stop()
    })().catch(() => {})
  })
  const lines: string[] = []
  const first = await sourcesWith([node])
  const dest = join(dir, 'out-vanish.bin')
  const r = await fetchSpread({ node: fetcher, coordinator: coord, log: l => { lines.push(l) }, downloads: new Map(), sources: async () => first }, hash, first, dest)
  assert.ok(served >= 1, 'the peer was asked')
  assert.ok(readFileSync(dest).equals(data), 'the file is right')
  assert.ok(lines.some(l => /from peer .* failed .*; it will be fetched again/.test(l)), lines.join('\n'))
  assert.equal(r.fromCoordinator, SIZE)
})

test('two agents fetching one shared input take chunks from each other', async () => {
  await mesh.startAgent({ ip: '127.0.0.2', hostname: 'spread-a', slots: 1, labels: ['spot=a'] })
  await mesh.startAgent({ ip: '127.0.0.3', hostname: 'spread-b', slots: 1, labels: ['spot=b'] })
  const big = randomBytes(64 * 1024 * 1024)
  writeFileSync(join(dir, 'model.bin'), big)
  const sum = createHash('sha256').update(big).digest('hex')
  writeFileSync(join(dir, 'job.yaml'), `name: spread\nshared: [model.bin]\ntasks:\n  - command: "sha256sum model.bin"\n    constraints: { spot: a }\n  - command: "sha256sum model.bin"\n    constraints: { spot: b }\n`)
  const r = await runCli(mesh.clientHome, ['submit', 'job.yaml', '--wait'], { cwd: dir, timeoutMs: 180_000 })
  assert.equal(r.code, 0, r.stderr)
  const results = join(dir, 'meshfarm-results')
  const outs = readdirSync(results, { recursive: true }).map(String).filter(f => f.endsWith('stdout'))
  assert.equal(outs.length, 2)
  for (const f of outs) assert.match(readFileSync(join(results, f), 'utf8'), new RegExp(`^${sum} `))
  const logs = ['spread-a', 'spread-b'].map(h => readFileSync(join(dir, `agent-${h}.log`), 'utf8')).join('\n')
  const got = [...logs.matchAll(/blob [0-9a-f]{12}: (\d+) bytes from peers, (\d+) from the coordinator/g)].map(m => [Number(m[1]), Number(m[2])])
  assert.equal(got.length, 2, logs)
  assert.ok(got.every(([p, c]) => p + c === big.length), JSON.stringify(got))
  assert.ok(got.some(([p]) => p > 0), `some chunks came from the other agent: ${JSON.stringify(got)}`)
})
