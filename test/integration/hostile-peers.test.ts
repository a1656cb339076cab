/**
 * Hostile peers against a real coordinator process: a peer with the swarm key but not on the list, a member
 * sending malformed frames on every protocol, an agent-role peer sending every agent message with a bad nested
 * field, a result the coordinator cannot take, and a stream flood. Each must be refused where it arrives, the
 * coordinator must stay up with its state unchanged, and its memory must stay bounded.
 */
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import type { PeerId } from '@libp2p/interface'
import { startLocalMesh, type LocalMesh } from '../../bin/local-mesh.ts'
import { loadMeshConfig } from '../../shared/local/mesh-config.ts'
import { createMeshNode, type MeshNode } from '../../shared/net/mesh.ts'
import { Channel, encodeMessage } from '../../shared/protocol/codec.ts'
import { PROTOCOL_AGENT, PROTOCOL_BLOB, PROTOCOL_CLIENT, PROTOCOL_ROSTER } from '../../shared/protocol/constants.ts'
import { BLOB_REPLIES, CLIENT_REPLIES, COORD_MESSAGES, ROSTER_MESSAGES, type MessageSet } from '../../shared/protocol/schema.ts'
import type { AgentMessage, CoordMessage } from '../../shared/protocol/messages.ts'
import { connect, type MeshClient } from '../../shared/client/client.ts'
import { parseTasklist } from '../../shared/client/spec.ts'
import { until } from '../helpers/cli.ts'
import { coordinatorLog, nodeFor } from '../helpers/mesh-node.ts'

let mesh: LocalMesh
let dir: string
let client: MeshClient
let coord: PeerId

const RESOURCES = { hostname: 'rogue', os: 'linux', cores: 1, physicalCores: 1, memoryMb: 1000, slots: 1, gpus: [], labels: { rogue: 'yes' }, runsAsRoot: false }
const EMPTY = { name: 'stdout', hash: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', size: 0 }

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'meshfarm-hostile-'))
  mesh = await startLocalMesh({ dir, agents: [{ ip: '127.0.0.2', hostname: 'worker', slots: 1 }] })
  client = await connect({ home: mesh.clientHome })
  coord = peerIdFromString(mesh.bootstrap.split('/p2p/')[1])
})

after(async () => {
  await client?.close()
  await mesh?.stop()
  if (process.env.KEEP_TEST_DIR == null) rmSync(dir, { recursive: true, force: true })
})


/** Commit counts and job states, straight from the coordinator's database (read-only, beside it). */
function dbState (): string {
  const db = new DatabaseSync(join(mesh.coordinatorHome, 'coordinator', 'state.db'), { readOnly: true })
  try {
    return JSON.stringify([db.prepare('SELECT id, state FROM jobs ORDER BY id').all(), db.prepare('SELECT job_id, idx, state, commits FROM task_state ORDER BY job_id, idx').all()])
  } finally {
    db.close()
  }
}

/** Sends raw bytes on a new stream of `protocol` and says what came back. */
async function probe (node: MeshNode, protocol: string, accept: MessageSet, bytes: Uint8Array, close = true): Promise<string> {
  const stream = await node.dialProtocol(coord, protocol)
  const ch = new Channel(stream, { accept })
  try {
    // The coordinator may refuse the stream before we have written anything.
    stream.send(bytes)
    if (close) await stream.close().catch(() => {})
    const reply = await ch.read() as { t: string, message?: string } | null
    return reply == null ? 'closed' : `${reply.t}: ${reply.message ?? ''}`
  } catch (err) {
    return `aborted: ${(err as Error).message}`
  }
}

function rssMiB (pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return Number(m?.[1] ?? 0) / 1024
}

test('a peer with the swarm key but not on the list gets no connection, and the coordinator says so once', async () => {
  const home = await mesh.newHome('outsider', { roles: [] })
  const node = await createMeshNode({ mesh: loadMeshConfig(home), listen: [] })
  try {
    await assert.rejects(node.dialProtocol(multiaddr(mesh.bootstrap), PROTOCOL_CLIENT, { signal: AbortSignal.timeout(5000) }))
    await assert.rejects(node.dialProtocol(multiaddr(mesh.bootstrap), PROTOCOL_BLOB, { signal: AbortSignal.timeout(5000) }))
    await assert.rejects(node.dialProtocol(multiaddr(mesh.bootstrap), PROTOCOL_AGENT, { signal: AbortSignal.timeout(5000) }))
  } finally {
    await node.stop()
  }
  await until(() => coordinatorLog(dir).includes(`refused a connection from ${node.peerId.toString()}: not on the access list`), 10_000, 'the audit line')
  const lines = coordinatorLog(dir).split('\n').filter(l => l.includes(node.peerId.toString()))
  assert.equal(lines.length, 1, 'one audit line for three attempts')
})

test('a member who may not do something is refused with the role named, and it is logged', async () => {
  const home = await mesh.newHome('agent-only', { roles: ['agent'] })
  const node = await nodeFor(mesh, home)
  try {
    const submit = await probe(node, PROTOCOL_CLIENT, CLIENT_REPLIES, encodeMessage({ t: 'client.blobs.missing', hashes: [] }))
    assert.match(submit, /^reply\.error: submitting a job needs the submitter role/)
    const drain = await probe(node, PROTOCOL_CLIENT, CLIENT_REPLIES, encodeMessage({ t: 'client.drain', peerId: 'worker' }))
    assert.match(drain, /^reply\.error: draining an agent needs the admin role/)
    const submitter = await nodeFor(mesh, await mesh.newHome('only-submits', { roles: ['submitter'] }))
    try {
      const hello = await probe(submitter, PROTOCOL_AGENT, COORD_MESSAGES, encodeMessage({ t: 'agent.hello', resources: RESOURCES, running: [], pending: [], draining: false }))
      assert.match(hello, /^aborted|^closed/)
    } finally {
      await submitter.stop()
    }
    await until(() => /refused .*: submitting a job needs the submitter role/.test(coordinatorLog(dir)), 10_000, 'the refusal in the log')
    assert.match(coordinatorLog(dir), /running tasks needs the agent role/)
  } finally {
    await node.stop()
  }
})

test('malformed frames on every protocol are refused where they arrive; the coordinator keeps serving', async () => {
  const node = await nodeFor(mesh, mesh.clientHome)
  const before = dbState()
  try {
    const huge = new Uint8Array(4)
    new DataView(huge.buffer).setUint32(0, 0x7fffffff)
    const garbage = Uint8Array.from([0, 0, 0, 3, 0xc1, 0xc1, 0xc1])
    const client = {
      huge: await probe(node, PROTOCOL_CLIENT, CLIENT_REPLIES, huge, false),
      truncated: await probe(node, PROTOCOL_CLIENT, CLIENT_REPLIES, encodeMessage({ t: 'client.ping' }).subarray(0, 6)),
      garbage: await probe(node, PROTOCOL_CLIENT, CLIENT_REPLIES, garbage),
      unknown: await probe(node, PROTOCOL_CLIENT, CLIENT_REPLIES, encodeMessage({ t: 'client.rm-rf' })),
      mistyped: await probe(node, PROTOCOL_CLIENT, CLIENT_REPLIES, encodeMessage({ t: 'client.cancel', jobId: 'all' })),
      nested: await probe(node, PROTOCOL_CLIENT, CLIENT_REPLIES, encodeMessage({ t: 'client.tasks', jobId: 1, after: 0, limit: 10, states: ['sleeping'] }))
    }
    assert.match(client.huge, /^aborted: /, 'the stream is reset at the header, before 2 GiB are read')
    assert.match(client.truncated, /^reply\.error: truncated frame/)
    assert.match(client.garbage, /^reply\.error: malformed frame/)
    assert.match(client.unknown, /^reply\.error: unexpected message type "client\.rm-rf"/)
    assert.match(client.mistyped, /^reply\.error: client\.cancel: jobId: expected integer, got "all"/)
    assert.match(client.nested, /^reply\.error: client\.tasks: states\.0: /)
    for (const [protocol, accept] of [[PROTOCOL_BLOB, BLOB_REPLIES], [PROTOCOL_ROSTER, ROSTER_MESSAGES]] as const) {
      assert.match(await probe(node, protocol, accept, huge, false), /^aborted|^closed|^blob\.error/, `${protocol}: huge`)
      assert.match(await probe(node, protocol, accept, garbage), /^aborted|^closed|^blob\.error: malformed/, `${protocol}: garbage`)
    }
    assert.match(await probe(node, PROTOCOL_BLOB, BLOB_REPLIES, encodeMessage({ t: 'blob.get', hash: '../../etc/passwd', offset: 0 })), /^blob\.error: blob\.get: hash/)
    assert.ok((await client_ping()) >= 0)
    assert.equal(dbState(), before, 'nothing changed')
  } finally {
    await node.stop()
  }
})

async function client_ping (): Promise<number> {
  return (await client.ping()).rttMs
}

/** A rogue agent: an agent-role peer that speaks the agent protocol by hand. */
async function rogueSession (name: string): Promise<{ node: MeshNode, ch: Channel<CoordMessage, AgentMessage>, send: (m: object) => void }> {
  const node = await nodeFor(mesh, await mesh.newHome(name, { roles: ['agent'] }))
  const stream = await node.dialProtocol(coord, PROTOCOL_AGENT)
  const ch = new Channel<CoordMessage, AgentMessage>(stream, { accept: COORD_MESSAGES })
  return { node, ch, send: (m: object) => { stream.send(encodeMessage(m)) } }
}

test('an agent-role peer sending every agent message with a bad nested field: refused at the edge, state unchanged', async () => {
  const bad: Array<[string, object]> = [
    ['hello with empty resources', { t: 'agent.hello', resources: {}, running: [], pending: [], draining: false }],
    ['hello with 10^12 slots', { t: 'agent.hello', resources: { ...RESOURCES, slots: 1e12 }, running: [], pending: [], draining: false }],
    ['hello with a label map of the wrong type', { t: 'agent.hello', resources: { ...RESOURCES, labels: { a: 1 } }, running: [], pending: [], draining: false }]
  ]
  const afterHello: Array<[string, object]> = [
    ['heartbeat', { t: 'agent.heartbeat', running: ['x'] }],
    ['started', { t: 'agent.started', attemptIds: [-1] }],
    ['results', { t: 'agent.results', results: 'all' }],
    ['update', { t: 'agent.update', resources: { ...RESOURCES, cores: 0 } }],
    ['suspended', { t: 'agent.suspended', attemptIds: [1.5] }],
    ['continued', { t: 'agent.continued', attemptIds: null }],
    ['vacated', { t: 'agent.vacated', attemptIds: [1], kind: 'evict', reason: 'x' }],
    ['logs', { t: 'agent.logs', requestId: 1, data: 'text', offset: 0, eof: true }],
    ['hello twice', { t: 'agent.hello', resources: RESOURCES, running: [], pending: [], draining: false }]
  ]
  const before = dbState()
  for (const [what, msg] of bad) {
    const { node, ch, send } = await rogueSession(`rogue-${what.replaceAll(' ', '-').replaceAll('^', '')}`)
    try {
      send(msg)
      await assert.rejects(ch.expect(), `${what}: the session ends`)
    } finally {
      await node.stop()
    }
  }
  for (const [what, msg] of afterHello) {
    const { node, ch, send } = await rogueSession(`rogue-after-${what.replaceAll(' ', '-')}`)
    try {
      send({ t: 'agent.hello', resources: { ...RESOURCES, labels: { rogue: 'no' } }, running: [], pending: [], draining: false })
      assert.equal((await ch.expect()).t, 'coord.welcome')
      send(msg)
      await assert.rejects(async () => { while (true) await ch.expect() }, `${what}: the session ends`)
    } finally {
      await node.stop()
    }
  }
  await until(() => /agent\.hello: resources\.slots: .*1000000000000/.test(coordinatorLog(dir)), 10_000, 'the refusal naming the field')
  assert.match(coordinatorLog(dir), /agent\.vacated: kind: /)
  assert.equal(mesh.coordinator.child.exitCode, null, 'the coordinator is up')
  assert.doesNotMatch(coordinatorLog(dir), /free disk space/, 'no database alarm for a bad message')
  assert.equal(dbState(), before, 'nothing changed in the database')
  assert.ok(await client_ping() >= 0)
})

test('a result the coordinator cannot take fails its task with the reason, instead of leaving it running', async () => {
  const { node, ch, send } = await rogueSession('rogue-results')
  try {
    send({ t: 'agent.hello', resources: RESOURCES, running: [], pending: [], draining: false })
    const job = parseTasklist('echo x\n', join(dir, 'rogue.txt'), dir, { constraints: { rogue: 'yes' } })
    const { jobId } = await client.submit(job)
    let assigned: Extract<CoordMessage, { t: 'coord.assign' }>['assignments'][number] | undefined
    while (assigned == null) {
      const m = await ch.expect()
      if (m.t === 'coord.assign') assigned = m.assignments[0]
    }
    // No start or end times, and an output name with a TAB: the shape is refused, the ids are readable.
    send({ t: 'agent.results', results: [{ attemptId: assigned.attemptId, jobId: assigned.jobId, index: assigned.index, state: 'done', exitCode: 0, signal: null, stdout: EMPTY, stderr: EMPTY, outputs: [{ ...EMPTY, name: 'a\tb' }] }] })
    let ack: Extract<CoordMessage, { t: 'coord.ack' }> | undefined
    while (ack == null) {
      const m = await ch.expect()
      if (m.t === 'coord.ack') ack = m
    }
    assert.deepEqual(ack.attemptIds, [assigned.attemptId], 'acknowledged, so the agent does not send it forever')
    const summary = await client.watch(jobId)
    assert.equal(summary.state, 'failed')
    const [rec] = (await client.tasks(jobId)).tasks
    assert.equal(rec.failure?.kind, 'output')
    assert.match(rec.failure?.message ?? '', /result refused by the coordinator: startedAt/)
  } finally {
    await node.stop()
  }
})

test('a stream flood: streams beyond the limit are refused, those within answered, memory stays bounded', async () => {
  const pid = mesh.coordinator.child.pid!
  const baseline = rssMiB(pid)
  const nodes = await Promise.all(Array.from({ length: 4 }, async () => await nodeFor(mesh, mesh.clientHome)))
  try {
    // Each stream announces an 8 MiB frame and sends only its first bytes, holding the coordinator's buffers.
    const header = new Uint8Array(4 + 60_000)
    new DataView(header.buffer).setUint32(0, 8 * 1024 * 1024 - 1)
    const outcomes = await Promise.allSettled(nodes.flatMap(node => Array.from({ length: 150 }, async () => {
      const stream = await node.dialProtocol(coord, PROTOCOL_CLIENT)
      stream.send(header)
      return stream
    })))
    const opened = outcomes.filter(o => o.status === 'fulfilled').length
    const refused = outcomes.length - opened
    assert.ok(refused > 0, `streams beyond the per-connection limit are refused (${opened} opened)`)
    assert.ok(opened <= 4 * 32, `at most 32 client streams per connection (${opened})`)
    const peak = rssMiB(pid)
    assert.ok(peak - baseline < 300, `coordinator memory grew by ${Math.round(peak - baseline)} MiB (bound: 300 MiB)`)
    // Meanwhile an honest client is served.
    assert.ok(await client_ping() >= 0)
  } finally {
    await Promise.all(nodes.map(async n => { await n.stop() }))
  }
  assert.equal(mesh.coordinator.child.exitCode, null)
})
