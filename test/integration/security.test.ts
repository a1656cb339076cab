/**
 * A private mesh, with real peers on loopback: the swarm key, the access list with its roles, invites, removal,
 * hostile frames and files, insecure key files and root.
 */
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, rmSync, chmodSync, existsSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import { startLocalMesh, type LocalMesh } from '../../bin/local-mesh.ts'
import { startMeshfarm } from '../../bin/processes.ts'
import { initMesh, loadMeshConfig } from '../../shared/local/mesh-config.ts'
import { createMeshNode, type MeshNode } from '../../shared/net/mesh.ts'
import { encodeMessage, Channel } from '../../shared/protocol/codec.ts'
import { PROTOCOL_CLIENT } from '../../shared/protocol/constants.ts'
import { CLIENT_REPLIES } from '../../shared/protocol/schema.ts'
import { connect } from '../../shared/client/client.ts'
import { runCli, runCliJson } from '../helpers/cli.ts'
import { spawnSync } from 'node:child_process'
import { CLI_ENTRY, TS_ARGS } from '../../bin/processes.ts'

let mesh: LocalMesh
let dir: string

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'meshfarm-sec-'))
  mesh = await startLocalMesh({ dir, agents: [{ ip: '127.0.0.2', hostname: 'worker', slots: 2 }] })
})

after(async () => {
  await mesh?.stop()
  if (process.env.KEEP_TEST_DIR == null) rmSync(dir, { recursive: true, force: true })
})

const coordinatorAddr = (): ReturnType<typeof multiaddr> => multiaddr(mesh.bootstrap)

async function nodeFor (home: string): Promise<MeshNode> {
  return await createMeshNode({ mesh: loadMeshConfig(home), listen: [] })
}

test('a peer without the swarm key gets no connection', async () => {
  const home = join(dir, 'outsider')
  initMesh(home, { mdns: false, bootstrap: [mesh.bootstrap] })
  const node = await nodeFor(home)
  try {
    await assert.rejects(node.dial(coordinatorAddr(), { signal: AbortSignal.timeout(5000) }))
  } finally {
    await node.stop()
  }
  const r = await runCli(home, ['ping'], { env: { MESHFARM_DISCOVERY_MS: '3000' } })
  assert.equal(r.code, 3)
  assert.match(r.stderr, /^error: no coordinator found/)
})

test('a peer with the key but not on the access list gets no stream', async () => {
  const home = await mesh.newHome('stranger', { roles: [] })
  const node = await nodeFor(home)
  try {
    await assert.rejects(node.dialProtocol(coordinatorAddr(), PROTOCOL_CLIENT, { signal: AbortSignal.timeout(5000) }))
  } finally {
    await node.stop()
  }
})

test('a submitter cannot cancel another user\'s job, but may watch it; an agent cannot submit', async () => {
  const alice = await mesh.newHome('alice')
  const bob = await mesh.newHome('bob')
  const jobDir = join(dir, 'jobs')
  mkdirSync(jobDir, { recursive: true })
  writeFileSync(join(jobDir, 'slow.txt'), 'sleep 20\n')
  const { jobId } = await runCliJson<{ jobId: number }>(alice, ['submit', join(jobDir, 'slow.txt')])
  const r = await runCli(bob, ['cancel', String(jobId)])
  assert.equal(r.code, 6)
  assert.match(r.stderr, /^error: job \d+ belongs to .*: cancelling it needs the admin role\n$/)
  const status = await runCliJson<Array<{ jobId: number, state: string }>>(bob, ['status', String(jobId)])
  assert.equal(status[0].state, 'active', 'others may watch')
  assert.equal((await runCli(mesh.clientHome, ['cancel', String(jobId)])).code, 0, 'an admin may cancel anyone\'s job')
  const agentHome = join(dir, 'agent-worker')
  const denied = await runCli(agentHome, ['submit', join(jobDir, 'slow.txt')])
  assert.equal(denied.code, 6)
  assert.match(denied.stderr, /submitting a job needs the submitter role/)
})

test('invite and join: a new workstation joins once; a reused or expired invite is refused', async () => {
  const { invite } = await runCliJson<{ invite: string }>(mesh.clientHome, ['invite', '--role', 'submitter', '--ttl', '10m'])
  const inviteFile = join(dir, 'invite.txt')
  writeFileSync(inviteFile, invite + '\n', { mode: 0o600 })
  const fresh = join(dir, 'newcomer')
  const joined = runJoin(fresh, invite)
  assert.equal(joined.status, 0, joined.stderr)
  assert.match(joined.stdout, /joined the mesh as submitter/)
  const ping = await runCliJson<{ peerId: string }>(fresh, ['ping'])
  assert.ok(mesh.bootstrap.endsWith(ping.peerId))
  const again = runJoin(join(dir, 'second-newcomer'), invite)
  assert.equal(again.status, 6, again.stderr)
  assert.match(again.stderr, /refused this invite|already used/)
  const short = await runCliJson<{ invite: string }>(mesh.clientHome, ['invite', '--role', 'agent', '--ttl', '1s'])
  await new Promise(resolve => setTimeout(resolve, 1500))
  const late = runJoin(join(dir, 'late-newcomer'), short.invite)
  assert.equal(late.status, 6)
  assert.match(late.stderr, /expired/)
  const garbled = runJoin(join(dir, 'garbled'), invite.slice(0, 40))
  assert.equal(garbled.status, 2)
})

/** join reads the invite from standard input: it never appears on a command line. */
function runJoin (home: string, invite: string): ReturnType<typeof spawnSync> & { stdout: string, stderr: string } {
  return spawnSync(process.execPath, [...TS_ARGS, CLI_ENTRY, '--home', home, 'join'], { input: invite + '\n', encoding: 'utf8', timeout: 60_000 }) as any
}

test('a peer removed from the access list is disconnected and cannot come back', async () => {
  const { invite } = await runCliJson<{ invite: string }>(mesh.clientHome, ['invite', '--role', 'agent'])
  const home = join(dir, 'removable')
  assert.equal(runJoin(home, invite).status, 0)
  const args = ['agent', '--listen', '/ip4/127.0.0.4/tcp/0', '--hostname', 'removable', '--slots', '1']
  if (process.getuid?.() === 0) args.push('--allow-root')
  const agent = startMeshfarm(args, { home })
  try {
    await agent.waitFor(/connected to coordinator/, 30_000)
    const peers = await runCliJson<Array<{ hostname: string, peerId: string }>>(mesh.clientHome, ['peers'])
    const peerId = peers.find(p => p.hostname === 'removable')!.peerId
    assert.equal((await runCli(mesh.clientHome, ['access', 'remove', peerId])).code, 0)
    await agent.waitFor(/coordinator went away|session ended/, 15_000)
    const connects = (): number => agent.output().split('connected to coordinator').length - 1
    const seen = connects()
    await new Promise(resolve => setTimeout(resolve, 3000))
    assert.equal(connects(), seen, 'it did not get back in')
    const list = await runCliJson<Array<{ peerId: string }>>(mesh.clientHome, ['access', 'list'])
    assert.ok(!list.some(p => p.peerId === peerId))
  } finally {
    await agent.stop()
  }
})

test('hostile frames are refused and the coordinator keeps serving', async () => {
  const home = await mesh.newHome('hostile')
  const node = await nodeFor(home)
  const coord = peerIdFromString(mesh.bootstrap.split('/p2p/')[1])
  await node.peerStore.merge(coord, { multiaddrs: [multiaddr(mesh.bootstrap.split('/p2p/')[0])] })
  const send = async (bytes: Uint8Array, close = true): Promise<string> => {
    const stream = await node.dialProtocol(coord, PROTOCOL_CLIENT)
    const ch = new Channel(stream, { accept: CLIENT_REPLIES })
    stream.send(bytes)
    if (close) await stream.close().catch(() => {})
    try {
      const reply = await ch.read() as { t: string, message?: string } | null
      return reply == null ? 'closed' : `${reply.t}: ${reply.message ?? ''}`
    } catch (err) {
      return `aborted: ${(err as Error).message}`
    }
  }
  try {
    const oversize = new Uint8Array(4)
    new DataView(oversize.buffer).setUint32(0, 0x7fffffff)
    const results = {
      oversize: await send(oversize, false),
      truncated: await send(encodeMessage({ t: 'client.ping' }).subarray(0, 6)),
      garbage: await send(Uint8Array.from([0, 0, 0, 3, 0xc1, 0xc1, 0xc1])),
      unknown: await send(encodeMessage({ t: 'client.rm-rf' })),
      mistyped: await send(encodeMessage({ t: 'client.cancel', jobId: 'all' })),
      hostileName: await sendSubmit(send)
    }
    // Each refused for what it is, at the edge (the coordinator resets a stream whose header announces 2 GiB).
    assert.match(results.oversize, /^aborted: /)
    assert.match(results.truncated, /^reply\.error: truncated frame/)
    assert.match(results.garbage, /^reply\.error: malformed frame/)
    assert.match(results.unknown, /^reply\.error: unexpected message type "client\.rm-rf"/)
    assert.match(results.mistyped, /^reply\.error: client\.cancel: jobId: /)
    assert.match(results.hostileName, /^reply\.error: task 0\.inputs\[0\]\.name: '\.\.' segment/)
    // A flood of 300 requests over one connection: each is answered, or refused by the per-connection stream
    // limit (never left hanging), and the coordinator serves on.
    const flood = await Promise.allSettled(Array.from({ length: 300 }, async () => await send(encodeMessage({ t: 'client.ping' }))))
    const answered = flood.filter(f => f.status === 'fulfilled' && f.value.startsWith('reply.pong')).length
    const refused = flood.filter(f => f.status === 'rejected' || !f.value.startsWith('reply.pong')).length
    assert.equal(answered + refused, 300)
    assert.ok(answered >= 32, `at least a connection's worth of pings answered (${answered})`)
    const client = await connect({ home })
    try {
      assert.ok((await client.ping()).rttMs >= 0, 'still serving')
      assert.equal((await client.status()).some(j => j.name === 'evil'), false, 'nothing was submitted')
    } finally {
      await client.close()
    }
    assert.equal(mesh.coordinator.child.exitCode, null)
  } finally {
    await node.stop()
  }
})

async function sendSubmit (send: (b: Uint8Array, close?: boolean) => Promise<string>): Promise<string> {
  const task = { index: 0, name: 'x', commands: ['true'], cores: 1, gpus: 0, memoryMb: 0, timeoutMs: 0, env: {}, constraints: {}, outputs: [], inputs: [{ name: '../../../../tmp/owned', hash: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', size: 0 }] }
  const frames = [
    encodeMessage({ t: 'client.submit.begin', job: { name: 'evil', layout: 'per-task', shared: [], retries: 0, specText: '', specFile: 'x.yaml' }, total: 1 }),
    encodeMessage({ t: 'client.submit.tasks', tasks: [task] }),
    encodeMessage({ t: 'client.submit.end' })
  ]
  return await send(Buffer.concat(frames))
}

test('hostile output names: a task cannot send back files outside its folder', async () => {
  const jobDir = join(dir, 'escape')
  mkdirSync(jobDir, { recursive: true })
  writeFileSync(join(dir, 'secret.txt'), 'private\n')
  writeFileSync(join(jobDir, 'escape.yaml'), `name: escape\ntasks:\n  - command: "ln -s ${join(dir, 'secret.txt')} leak.txt; ln -s ${dir} up; echo ok > fine.txt"\n    outputs: ["leak.txt", "up/secret.txt", "fine.txt"]\n`)
  const dest = join(dir, 'escape-results')
  const out = await runCliJson<{ summary: { state: string } }>(mesh.clientHome, ['submit', join(jobDir, 'escape.yaml'), '--wait', '--results', dest])
  assert.equal(out.summary.state, 'done')
  const files = readdirSync(join(dest, 'task-0')).sort()
  assert.deepEqual(files, ['fine.txt', 'stderr', 'stdout', 'task.json'])
})

test('key files readable by others make the agent refuse to start; root needs --allow-root', async () => {
  const home = await mesh.newHome('careless', { roles: ['agent'] })
  chmodSync(join(home, 'identity.key'), 0o644)
  const r = await runCli(home, ['agent', '--listen', '/ip4/127.0.0.5/tcp/0'])
  assert.equal(r.code, 7)
  assert.match(r.stderr, /^error: .*identity\.key is readable by other users \(mode 644\): run chmod 600/)
  chmodSync(join(home, 'identity.key'), 0o600)
  if (process.getuid?.() === 0) {
    const root = await runCli(home, ['agent', '--listen', '/ip4/127.0.0.5/tcp/0'])
    assert.equal(root.code, 6)
    assert.match(root.stderr, /runs as root .*--allow-root/)
    const peers = await runCliJson<Array<{ hostname: string, runsAsRoot: boolean }>>(mesh.clientHome, ['peers'])
    assert.equal(peers.find(p => p.hostname === 'worker')?.runsAsRoot, true, 'peers says which agents run as root')
  }
})

test('an invite only adds a new member: redeeming it with an existing member\'s id changes nothing', async () => {
  const before = await runCliJson<Array<{ peerId: string, roles: string[] }>>(mesh.clientHome, ['access', 'list'])
  const admin = before.find(p => p.roles.includes('admin') && p.peerId !== mesh.bootstrap.split('/p2p/')[1])!
  const { invite } = await runCliJson<{ invite: string }>(mesh.clientHome, ['invite', '--role', 'agent'])
  // A hand-made join: the invite's one-time key, asking for the admin's peer id to become an agent.
  const { decodeInvite } = await import('../../shared/local/invite.ts')
  const { privateKeyFromProtobuf } = await import('@libp2p/crypto/keys')
  const { request } = await import('../../shared/net/rpc.ts')
  const inv = decodeInvite(invite)
  const node = await createMeshNode({ mesh: { home: join(dir, 'impostor'), swarmKey: inv.swarmKey, bootstrap: [], mdns: false }, listen: [], privateKey: privateKeyFromProtobuf(inv.key) })
  try {
    await node.peerStore.merge(peerIdFromString(inv.coordinator.peerId), { multiaddrs: [multiaddr(mesh.bootstrap.split('/p2p/')[0])] })
    await assert.rejects(request(node, peerIdFromString(inv.coordinator.peerId), { t: 'client.join', peerId: admin.peerId, name: 'impostor' }, 'reply.joined'),
      /already a member of this mesh: an invite only adds new members/)
  } finally {
    await node.stop()
  }
  const after = await runCliJson<Array<{ peerId: string, roles: string[] }>>(mesh.clientHome, ['access', 'list'])
  assert.deepEqual(after.find(p => p.peerId === admin.peerId)?.roles, admin.roles, 'the admin is still an admin')
})

test('bad input at the command line: one line naming what is wrong, the documented exit code, JSON errors on stdout', async () => {
  const cases: Array<[string[], number, RegExp]> = [
    [['submit', join(dir, 'nope.txt'), '--cores', 'two'], 2, /^error: --cores: must be a whole number from 1 to 4096, got "two"\n$/],
    [['submit', join(dir, 'nope.txt'), '--retries', 'x'], 2, /^error: --retries: /],
    [['coordinator', '--crash-limit', 'abc'], 2, /^error: --crash-limit: must be a whole number/],
    [['status', 'one'], 2, /^error: JOB: must be a whole number/],
    [['submit'], 2, /^error: missing required argument 'file'\n$/],
    [['frobnicate'], 2, /^error: unknown command 'frobnicate'/],
    [['status', '99999'], 5, /^error: no job 99999\n$/]
  ]
  for (const [args, code, stderr] of cases) {
    const r = await runCli(mesh.clientHome, args)
    assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`)
    assert.match(r.stderr, stderr, args.join(' '))
  }
  const json = await runCli(mesh.clientHome, ['status', '99999', '--json'])
  assert.equal(json.code, 5)
  assert.deepEqual(JSON.parse(json.stdout), { error: { code: 'NOT_FOUND', message: 'no job 99999' } })
  // A reused invite: one clear line, and no half-made state folder left behind.
  const { invite } = await runCliJson<{ invite: string }>(mesh.clientHome, ['invite', '--role', 'agent'])
  assert.equal(runJoin(join(dir, 'once'), invite).status, 0)
  assert.equal(JSON.parse(readFileSync(join(dir, 'once', 'mesh.json'), 'utf8')).mdns, false, 'the joined home keeps the mesh\'s mDNS setting')
  const twice = runJoin(join(dir, 'twice'), invite)
  assert.equal(twice.status, 6)
  assert.match(twice.stderr, /^error: .*(already used|did not accept)[^\n]*\n$/)
  assert.doesNotMatch(twice.stderr, /object Event/)
  assert.equal(existsSync(join(dir, 'twice', 'identity.key')), false, 'no half-made home')
  // The "no mesh" hint names what join really takes.
  const none = await runCli(join(dir, 'no-mesh-here'), ['status'])
  assert.equal(none.code, 3)
  assert.match(none.stderr, /meshfarm join invite\.txt/)
})
