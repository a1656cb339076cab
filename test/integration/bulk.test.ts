/**
 * The bulk channel against a real coordinator process: a large blob up and down over it, hash-checked; the bulk
 * port takes nothing but a live one-time ticket from the address it was issued to; a peer taken off the access
 * list loses its ticket; hostile blob frames (oversized lengths, bad hashes, bad offsets) get one clear line.
 */
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { connect as tcpConnect, type Socket } from 'node:net'
import { once } from 'node:events'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { peerIdFromString } from '@libp2p/peer-id'
import type { PeerId } from '@libp2p/interface'
import { startLocalMesh, type LocalMesh } from '../../bin/local-mesh.ts'
import { AccessList } from '../../coordinator/access.ts'
import { homePaths } from '../../shared/local/home.ts'
import type { MeshNode } from '../../shared/net/mesh.ts'
import { downloadBlob, fetchRange, openBlobChannel, uploadBlob } from '../../shared/net/blob-protocol.ts'
import { PREFACE } from '../../shared/net/bulk/records.ts'
import { bulkEngine } from '../../shared/net/bulk/engine.ts'
import { until } from '../helpers/cli.ts'
import { coordinatorLog, nodeFor } from '../helpers/mesh-node.ts'

let mesh: LocalMesh
let dir: string
let coord: PeerId
let member: MeshNode
const SIZE = 12 * 1024 * 1024 + 5
let data: Buffer
let hash: string

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'meshfarm-bulk-'))
  mesh = await startLocalMesh({ dir, agents: [] })
  coord = peerIdFromString(mesh.bootstrap.split('/p2p/')[1])
  member = await nodeFor(mesh, mesh.clientHome)
  data = randomBytes(SIZE)
  hash = createHash('sha256').update(data).digest('hex')
  writeFileSync(join(dir, 'big.bin'), data)
  await uploadBlob(member, coord, hash, SIZE, join(dir, 'big.bin'))
})

after(async () => {
  await member?.stop()
  await mesh?.stop()
  if (process.env.KEEP_TEST_DIR == null) rmSync(dir, { recursive: true, force: true })
})


/** Asks for a bulk ticket to get the whole blob, without redeeming it. */
async function ticketFor (node: MeshNode): Promise<{ port: number, token: Uint8Array }> {
  const { ch } = await openBlobChannel(node, coord)
  try {
    await ch.write({ t: 'blob.get', hash, offset: 0, bulk: true })
    const reply = await ch.expect()
    assert.equal(reply.t, 'blob.bulk', JSON.stringify(reply))
    return reply as { port: number, token: Uint8Array }
  } finally {
    await ch.close()
  }
}

/** Connects to the bulk port, sends `bytes` and says how many bytes came back before the coordinator closed. */
async function knock (port: number, bytes: Uint8Array): Promise<number> {
  const socket: Socket = tcpConnect({ host: '127.0.0.1', port })
  await once(socket, 'connect')
  socket.write(bytes)
  let got = 0
  socket.on('data', (d: Buffer) => { got += d.length })
  socket.on('error', () => {})
  await once(socket, 'close')
  return got
}

test('a large blob goes up and down over the bulk channel, hash-checked at both ends', async () => {
  assert.ok(coordinatorLog(dir).includes('bulk transfers on port'), 'the bulk listener runs')
  const dest = join(dir, 'down.bin')
  const r = await fetchRange(member, coord, hash, 0, undefined, { file: dest, position: 0, truncate: true, sync: true })
  assert.equal(r.bulk, true, 'the download took the bulk channel')
  assert.ok(readFileSync(dest).equals(data))
  assert.equal(await downloadBlob(member, coord, hash, join(dir, 'down2.bin')), SIZE)
  // Resumed from the middle: the part already there is hashed too.
  writeFileSync(join(dir, 'part.bin'), data.subarray(0, 5_000_000))
  assert.equal(await downloadBlob(member, coord, hash, join(dir, 'part.bin'), 5_000_000), SIZE)
  assert.ok(readFileSync(join(dir, 'part.bin')).equals(data))
  // A resumed download whose first part is wrong is refused: the whole file's hash is checked.
  writeFileSync(join(dir, 'bad.bin'), randomBytes(5_000_000))
  await assert.rejects(downloadBlob(member, coord, hash, join(dir, 'bad.bin'), 5_000_000), /HASH_MISMATCH|content hashes to/)
  // An upload whose bytes do not match the announced hash is refused and leaves nothing behind.
  const liar = createHash('sha256').update('something else').digest('hex')
  await assert.rejects(uploadBlob(member, coord, liar, SIZE, join(dir, 'big.bin')), /content hashes to/)
  await assert.rejects(fetchRange(member, coord, liar, 0, undefined, { file: join(dir, 'x.bin'), position: 0 }), /no blob/)
})

test('the bulk port takes nothing but a live ticket: guessed, garbage and replayed tokens are refused', async () => {
  const { port, token } = await ticketFor(member)
  assert.equal(await knock(port, Buffer.concat([PREFACE, randomBytes(32)])), 0, 'a guessed token: closed, nothing sent back')
  await until(() => coordinatorLog(dir).includes('bulk: refused a connection from 127.0.0.1: unknown or used token'), 10_000, 'the refusal')
  assert.equal(await knock(port, Buffer.from('GET / HTTP/1.1\r\n\r\n')), 0, 'not a bulk connection: closed')
  // The real ticket works once (the records come back), then never again.
  assert.ok(await knock(port, Buffer.concat([PREFACE, token])) > SIZE, 'the ticket carried the blob')
  assert.equal(await knock(port, Buffer.concat([PREFACE, token])), 0, 'a replayed token: closed, nothing sent back')
})

test('a bulk transfer for a peer taken off the access list is refused', async () => {
  const home = await mesh.newHome('leaver', { roles: ['submitter'] })
  const leaver = await nodeFor(mesh, home)
  try {
    const { port, token } = await ticketFor(leaver)
    const access = new AccessList(join(homePaths(mesh.coordinatorHome).coordinatorDir, 'access.json'), coord.toString())
    assert.ok(access.remove(leaver.peerId.toString()))
    await until(() => coordinatorLog(dir).includes(`bulk: ended the tickets and transfers of ${leaver.peerId.toString().slice(-8)}`), 20_000, 'the revocation')
    assert.equal(await knock(port, Buffer.concat([PREFACE, token])), 0, 'the revoked ticket gets nothing')
    // Nor a new ticket on the connection it still has.
    await assert.rejects(fetchRange(leaver, coord, hash, 0, undefined, { file: join(dir, 'leaver.bin'), position: 0 }), /not on this mesh's access list/)
  } finally {
    await leaver.stop()
  }
})

test('hostile blob frames (oversized lengths, bad hashes, bad offsets) get one clear line; the coordinator keeps serving', async () => {
  const ask = async (req: object): Promise<string> => {
    const { ch } = await openBlobChannel(member, coord)
    try {
      await ch.write(req as never)
      const reply = await ch.expect() as { t: string, message?: string }
      return `${reply.t}: ${reply.message ?? ''}`
    } catch (err) {
      return `aborted: ${(err as Error).message}`
    } finally {
      await ch.close().catch(() => {})
    }
  }
  const lines = {
    pastEnd: await ask({ t: 'blob.get', hash, offset: 0, length: SIZE + 1, bulk: true }),
    offsetPastEnd: await ask({ t: 'blob.get', hash, offset: SIZE + 10, length: 5 }),
    badHash: await ask({ t: 'blob.get', hash: 'zz'.repeat(32), offset: 0 }),
    hugePut: await ask({ t: 'blob.put', hash: 'ab'.repeat(32), size: 2 ** 60, bulk: true }),
    negative: await ask({ t: 'blob.get', hash, offset: -1 }),
    sources: await ask({ t: 'blob.sources', hash: '../etc' })
  }
  assert.match(lines.pastEnd, /^blob\.error: blob\.get: bytes 0\+12582918 of a blob of 12582917$/)
  assert.match(lines.offsetPastEnd, /^blob\.error: blob\.get: bytes \d+\+5 of a blob of 12582917$/)
  assert.match(lines.badHash, /^blob\.error: blob\.get: hash: /)
  assert.match(lines.hugePut, /^blob\.error: blob\.put: size: /)
  assert.match(lines.negative, /^blob\.error: blob\.get: offset: /)
  assert.match(lines.sources, /^blob\.error: blob\.sources: hash: /)
  for (const l of Object.values(lines)) assert.ok(!l.includes('\n'), `one line: ${l}`)
  // Records that fail authentication on a real ticket: the receiver says so in one line, writes nothing wrong.
  const { port, token } = await ticketFor(member)
  await assert.rejects(bulkEngine().fetch({ host: '127.0.0.1', port, token, key: randomBytes(32), length: SIZE, file: join(dir, 'forged.bin'), position: 0, truncate: true }),
    /bulk transfer: record 0: a record that failed authentication/)
  assert.ok((await uploadBlob(member, coord, hash, SIZE, join(dir, 'big.bin')).then(() => true)), 'still serving')
})
