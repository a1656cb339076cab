/**
 * The coordinator process: a mesh node serving the agent, client, blob and roster protocols around the
 * synchronous core. This file owns every await and timer; decisions live in core.ts and scheduler.ts.
 */
import { join } from 'node:path'
import type { Connection, Stream } from '@libp2p/interface'
import { Channel } from '../shared/protocol/codec.ts'
import {
  DEFAULT_AGENT_LOST_MS, DEFAULT_CRASH_LIMIT, DEFAULT_HEARTBEAT_MS, PROTOCOL_AGENT, PROTOCOL_BLOB, PROTOCOL_CLIENT, PROTOCOL_ROSTER
} from '../shared/protocol/constants.ts'
import { MeshfarmError, errorMessage, isMeshfarmError } from '../shared/util/errors.ts'
import { ensurePrivateDir, homePaths } from '../shared/local/home.ts'
import { createMeshNode, HANDLER_OPTIONS, type MeshNode } from '../shared/net/mesh.ts'
import type { MeshConfig } from '../shared/local/mesh-config.ts'
import type { AgentMessage, AttemptResult, ClientReply, ClientRequest, CoordMessage, JobHeader, TaskSpec } from '../shared/protocol/messages.ts'
import { AGENT_MESSAGES, CLIENT_REQUESTS, isFiniteInt } from '../shared/protocol/schema.ts'
import { BlobStore } from '../shared/files/blob-store.ts'
import { serveBlobStream } from '../shared/net/blob-protocol.ts'
import { rememberCoordinator, serveRoster } from '../shared/net/discovery.ts'
import { checkFileRef, checkTaskSpec } from '../shared/protocol/task-check.ts'
import { checkRelativeName } from '../shared/files/safe-path.ts'
import { CoordinatorCore, type CoordinatorComm } from './core.ts'
import { Store } from './store.ts'
import { SerialWriter } from '../shared/net/serial-writer.ts'
import { VERSION } from '../shared/util/version.ts'
import { LOCAL_ROLE_KEYS, loadOrCreateIdentity } from '../shared/local/identity.ts'
import { encodeInvite } from '../shared/local/invite.ts'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { generateKeyPair, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { AccessList, parseRole, type Role } from './access.ts'

export interface CoordinatorOptions {
  mesh: MeshConfig
  listen: string[]
  heartbeatMs?: number
  agentLostMs?: number
  crashLimit?: number
  prefetch?: number
  log?: (line: string) => void
}

export interface CoordinatorService {
  node: MeshNode
  core: CoordinatorCore
  stop: () => Promise<void>
}

/** The shortest time between two commits of agent messages (see runBatch). */
const COMMIT_INTERVAL_MS = 4

export async function startCoordinator (opts: CoordinatorOptions): Promise<CoordinatorService> {
  const paths = homePaths(opts.mesh.home)
  ensurePrivateDir(paths.coordinatorDir)
  const log = opts.log ?? ((line: string) => { console.log(line) })
  const heartbeatMs = opts.heartbeatMs ?? DEFAULT_HEARTBEAT_MS
  const store = new Store(join(paths.coordinatorDir, 'state.db'))
  const blobs = new BlobStore(join(paths.coordinatorDir, 'blobs'))
  const sessions = new Map<string, SerialWriter<CoordMessage>>()
  const watchers = new Map<number, Set<() => void>>()
  const comm: CoordinatorComm = {
    send: (agentId, msg) => { sessions.get(agentId)?.send(msg) },
    jobChanged: (jobId) => { for (const w of watchers.get(jobId) ?? []) w() }
  }
  const startedAt = Date.now()
  const core = new CoordinatorCore(store, comm, {
    agentLostMs: opts.agentLostMs ?? DEFAULT_AGENT_LOST_MS,
    crashLimit: opts.crashLimit ?? DEFAULT_CRASH_LIMIT,
    prefetch: opts.prefetch ?? 1
  }, startedAt)
  log(`coordinator: state loaded in ${Date.now() - startedAt} ms`)
  const identity = await loadOrCreateIdentity(opts.mesh.home)
  const selfId = peerIdFromPrivateKey(identity).toString()
  const acl = new AccessList(join(paths.coordinatorDir, 'access.json'), selfId)
  // The CLI and an agent run from this same state folder (the coordinator's machine) use keys of their own.
  const operator = peerIdFromPrivateKey(await loadOrCreateIdentity(opts.mesh.home, LOCAL_ROLE_KEYS.operator)).toString()
  const localAgent = peerIdFromPrivateKey(await loadOrCreateIdentity(opts.mesh.home, LOCAL_ROLE_KEYS.agent)).toString()
  if (!acl.has(operator, 'admin')) acl.add(operator, ['submitter', 'admin'], 'this machine (operator)')
  if (!acl.has(localAgent, 'agent')) acl.add(localAgent, ['agent'], 'this machine (agent)')
  // The access list is enforced twice: here, on every encrypted connection, and again on every request.
  const node = await createMeshNode({ mesh: opts.mesh, listen: opts.listen, privateKey: identity, allowPeer: (peer) => acl.admits(peer.toString(), Date.now()) })
  const self = (): { peerId: string, addrs: string[] } => ({ peerId: node.peerId.toString(), addrs: node.getMultiaddrs().map(String) })

  // Agent messages are handled in batches: whatever arrived in one turn of the loop, and one scheduling pass,
  // go into one transaction, so a busy mesh pays one commit (one fsync) per batch rather than several per task.
  // Replies that promise durability (acks) go out only after that commit.
  const batch: Array<(afterCommit: Array<() => void>) => void> = []
  let batchQueued = false
  let lastCommit = 0
  const runBatch = (): void => {
    batchQueued = false
    lastCommit = performance.now()
    const work = batch.splice(0)
    const afterCommit: Array<() => void> = []
    try {
      store.transaction(() => {
        for (const handle of work) {
          // Each message in its own savepoint: one that fails does not undo the others.
          try {
            store.transaction(() => { handle(afterCommit) })
          } catch (err) {
            log(`coordinator: handling an agent message failed: ${errorMessage(err)}`)
          }
        }
        core.schedulePass(Date.now())
      })
    } catch (err) {
      // Memory now holds changes the database does not (and assignments may be on their way): carrying on would
      // let the two drift apart. Stop; agents keep their unconfirmed results, and a restart reconciles from disk.
      console.error(`error: the coordinator database could not commit (${errorMessage(err)}); stopping so that nothing is lost: free disk space and start it again`)
      process.exit(8)
    }
    for (const reply of afterCommit) reply()
  }
  const enqueue = (handle?: (afterCommit: Array<() => void>) => void): void => {
    if (handle != null) batch.push(handle)
    if (batchQueued) return
    batchQueued = true
    // At most one commit every few milliseconds: under load, results gather into larger batches (one fsync
    // each); when the mesh is quiet, the batch runs at once.
    const wait = lastCommit + COMMIT_INTERVAL_MS - performance.now()
    if (wait > 0) setTimeout(runBatch, wait)
    else setImmediate(runBatch)
  }
  const kick = (): void => { enqueue() }

  await node.handle(PROTOCOL_AGENT, (stream, connection) => { void agentSession(stream, connection) }, HANDLER_OPTIONS)
  await node.handle(PROTOCOL_CLIENT, (stream, connection) => { void clientRequest(stream, connection) }, HANDLER_OPTIONS)
  await node.handle(PROTOCOL_BLOB, (stream, connection) => {
    void serveBlobStream(stream, connection.remotePeer.toString(), blobs, {
      authorize: (peer, op) => {
        if (op === 'get') requireMember(peer)
        else if (!acl.has(peer, 'agent')) acl.require(peer, 'submitter', 'uploading files')
      },
      onServed: (peer, hash, bytes) => { if (process.env.MESHFARM_LOG === 'debug') log(`blob-sent ${hash} ${peer} ${bytes}`) }
    })
  }, HANDLER_OPTIONS)
  await node.handle(PROTOCOL_ROSTER, (stream) => { serveRoster(stream, self) }, HANDLER_OPTIONS)

  async function agentSession (stream: Stream, connection: Connection): Promise<void> {
    const agentId = connection.remotePeer.toString()
    const ch = new Channel<AgentMessage, CoordMessage>(stream, { accept: AGENT_MESSAGES })
    const writer = new SerialWriter(ch)
    try {
      acl.require(agentId, 'agent', 'running tasks')
      const hello = await ch.expect()
      if (hello.t !== 'agent.hello') throw new MeshfarmError('PROTOCOL', 'an agent session starts with agent.hello')
      const previous = sessions.get(agentId)
      sessions.set(agentId, writer)
      previous?.close()
      writer.send({ t: 'coord.welcome', heartbeatMs })
      writer.send({ t: 'coord.members', peerIds: memberIds() })
      core.onAgentHello(agentId, hello.resources, numbers(hello.running), numbers(hello.pending), hello.draining === true, [connection.remoteAddr.toString()], Date.now())
      log(`coordinator: agent ${hello.resources.hostname} (${agentId.slice(-8)}) joined with ${hello.resources.slots} slots`)
      kick()
      while (true) {
        const msg = await ch.read()
        if (msg == null) break
        await onAgentMessage(agentId, msg, writer)
      }
    } catch (err) {
      log(`coordinator: agent ${agentId.slice(-8)}: ${errorMessage(err)}`)
      ch.abort(err as Error)
    } finally {
      if (sessions.get(agentId) === writer) {
        sessions.delete(agentId)
        core.onAgentDisconnected(agentId)
      }
    }
  }

  async function onAgentMessage (agentId: string, msg: AgentMessage, writer: SerialWriter<CoordMessage>): Promise<void> {
    switch (msg.t) {
      case 'agent.heartbeat':
        enqueue(() => { core.onHeartbeat(agentId, numbers(msg.running), Date.now()) })
        break
      case 'agent.started':
        enqueue(() => { core.onStarted(agentId, numbers(msg.attemptIds)) })
        break
      case 'agent.results': {
        // Output files first: a result is committed only once its files are in the blob store.
        const results = await storeInlineBlobs(msg.results)
        enqueue(afterCommit => {
          const { acked, refused } = core.onResults(agentId, results, Date.now())
          afterCommit.push(() => { writer.send({ t: 'coord.ack', attemptIds: acked, refused }) })
        })
        break
      }
      case 'agent.vacated':
        enqueue(afterCommit => {
          const { acked, refused } = core.onVacated(agentId, numbers(msg.attemptIds), Date.now())
          afterCommit.push(() => { writer.send({ t: 'coord.ack', attemptIds: acked, refused }) })
        })
        break
      case 'agent.update':
        if (msg.resources != null) {
          const resources = msg.resources
          enqueue(() => { core.onAgentUpdate(agentId, resources) })
        }
        break
      case 'agent.suspended':
      case 'agent.continued':
      case 'agent.logs':
        break
      case 'agent.hello':
        throw new MeshfarmError('PROTOCOL', 'agent.hello sent twice')
    }
  }

  /** Writes inline outputs to the blob store; results whose blobs are missing wait for the agent to send them again. */
  async function storeInlineBlobs (raw: unknown[]): Promise<AttemptResult[]> {
    const out: AttemptResult[] = []
    for (const r of raw as AttemptResult[]) {
      if (r == null || typeof r !== 'object' || !isFiniteInt(r.attemptId) || !isFiniteInt(r.jobId) || !isFiniteInt(r.index)) continue
      const files = [checkFileRef(r.stdout, 'stdout'), checkFileRef(r.stderr, 'stderr'), ...(Array.isArray(r.outputs) ? r.outputs : []).map((o, i) => checkFileRef(o, `outputs[${i}]`))]
      let complete = true
      for (const f of files) {
        if (f.data != null) await blobs.putBytes(f.hash, f.data)
        else if (!blobs.has(f.hash)) complete = false
      }
      if (complete) out.push(r)
    }
    return out
  }

  async function clientRequest (stream: Stream, connection: Connection): Promise<void> {
    const peer = connection.remotePeer.toString()
    const ch = new Channel<ClientRequest, ClientReply>(stream, { accept: CLIENT_REQUESTS })
    try {
      const req = await ch.expect()
      await handleClient(peer, req, ch)
    } catch (err) {
      const code = isMeshfarmError(err) ? err.code : 'REMOTE'
      try {
        await ch.write({ t: 'reply.error', code, message: errorMessage(err) })
      } catch { /* the client is gone */ }
    } finally {
      await ch.close()
    }
  }

  function requireMember (peer: string): void {
    if (acl.roles(peer).length === 0) throw new MeshfarmError('FORBIDDEN', `peer ${peer.slice(-8)} is not on this mesh's access list`)
  }

  async function handleClient (peer: string, req: ClientRequest, ch: Channel<ClientRequest, ClientReply>): Promise<void> {
    // An invite's one-time identity may only redeem itself.
    if (req.t === 'client.join') return await redeemInvite(peer, req.peerId, req.name, ch)
    requireMember(peer)
    switch (req.t) {
      case 'client.ping':
        return await ch.write({ t: 'reply.pong', peerId: node.peerId.toString(), version: VERSION, time: Date.now() })
      case 'client.blobs.missing': {
        const hashes = req.hashes.filter((h): h is string => typeof h === 'string')
        return await ch.write({ t: 'reply.blobs.missing', hashes: hashes.filter(h => !blobs.has(h)) })
      }
      case 'client.submit.begin':
        acl.require(peer, 'submitter', 'submitting a job')
        return await receiveSubmission(peer, req.job, req.total, ch)
      case 'client.status':
        return await ch.write({ t: 'reply.status', jobs: req.jobId != null ? [core.jobSummary(req.jobId)] : core.jobSummaries() })
      case 'client.tasks':
        return await ch.write({ t: 'reply.tasks', ...core.tasks(req.jobId, req.after, Math.min(req.limit, 5000), req.states) })
      case 'client.peers':
        return await ch.write({ t: 'reply.peers', agents: core.peers(Date.now()) })
      case 'client.cancel':
        return await ch.write({ t: 'reply.cancelled', jobId: req.jobId, tasks: core.cancelJob(req.jobId, peer, acl.has(peer, 'admin')) })
      case 'client.results':
        return await ch.write({ t: 'reply.results', ...core.results(req.jobId, req.after, req.limit) })
      case 'client.job':
        return await ch.write({ t: 'reply.job', job: core.jobHeader(req.jobId), summary: core.jobSummary(req.jobId) })
      case 'client.watch':
        return await watch(req.jobId, ch)
      case 'client.drain':
        acl.require(peer, 'admin', 'draining an agent')
        core.drain(req.peerId)
        return await ch.write({ t: 'reply.drained', peerId: req.peerId })
      case 'client.invite':
        acl.require(peer, 'admin', 'inviting peers')
        return await ch.write({ t: 'reply.invite', ...await createInvite(parseRole(req.role), req.ttlMs) })
      case 'client.access.list':
        return await ch.write({ t: 'reply.access', peers: acl.list() })
      case 'client.access.add':
        acl.require(peer, 'admin', 'changing the access list')
        peerIdFromString(req.peerId)
        acl.add(req.peerId, req.roles.map(r => parseRole(String(r))), req.name)
        return await ch.write({ t: 'reply.ok' })
      case 'client.access.remove': {
        acl.require(peer, 'admin', 'changing the access list')
        const target = core.peerIdOf(req.peerId) ?? req.peerId
        if (!acl.remove(target)) throw new MeshfarmError('NOT_FOUND', `${req.peerId} is not on the access list`)
        log(`coordinator: ${target.slice(-8)} removed from the access list; closing its connections`)
        await node.hangUp(peerIdFromString(target)).catch(() => {})
        return await ch.write({ t: 'reply.ok' })
      }
      default:
        throw new MeshfarmError('PROTOCOL', `unexpected ${req.t}`)
    }
  }

  async function createInvite (role: Role, ttlMs: number): Promise<{ invite: string, expiresAt: number }> {
    const ttl = Math.min(Math.max(isFiniteInt(ttlMs) ? ttlMs : 3_600_000, 1000), 30 * 86_400_000)
    const key = await generateKeyPair('Ed25519')
    const now = Date.now()
    acl.addInvite(peerIdFromPrivateKey(key).toString(), role, ttl, now)
    const invite = encodeInvite({
      swarmKey: opts.mesh.swarmKey, coordinator: self(), key: privateKeyToProtobuf(key), role, expiresAt: now + ttl
    })
    return { invite, expiresAt: now + ttl }
  }

  async function redeemInvite (invitePeer: string, newPeer: string, name: string | undefined, ch: Channel<ClientRequest, ClientReply>): Promise<void> {
    if (!acl.isInvite(invitePeer)) throw new MeshfarmError('FORBIDDEN', 'joining needs an invite')
    peerIdFromString(newPeer)
    const role = acl.redeem(invitePeer, newPeer, typeof name === 'string' ? name.slice(0, 100) : undefined, Date.now())
    log(`coordinator: ${name ?? newPeer.slice(-8)} joined as ${role}`)
    await ch.write({ t: 'reply.joined', role })
  }

  async function receiveSubmission (peer: string, rawHeader: JobHeader, total: number, ch: Channel<ClientRequest, ClientReply>): Promise<void> {
    const header = checkHeader(rawHeader)
    if (!isFiniteInt(total, 1)) throw new MeshfarmError('SPEC_INVALID', 'a job needs at least one task')
    const tasks: TaskSpec[] = []
    while (true) {
      const msg = await ch.expect()
      if (msg.t === 'client.submit.end') break
      if (msg.t !== 'client.submit.tasks') throw new MeshfarmError('PROTOCOL', `unexpected ${msg.t} during a submission`)
      for (const raw of msg.tasks) {
        if (tasks.length >= total) throw new MeshfarmError('PROTOCOL', `more tasks than the announced ${total}`)
        tasks.push(checkTaskSpec(raw, tasks.length))
      }
    }
    if (tasks.length !== total) throw new MeshfarmError('PROTOCOL', `received ${tasks.length} of ${total} tasks`)
    const missing = new Set<string>()
    for (const f of header.shared) if (!blobs.has(f.hash)) missing.add(f.name)
    for (const t of tasks) for (const f of t.inputs) if (!blobs.has(f.hash)) missing.add(f.name)
    if (missing.size > 0) throw new MeshfarmError('FILE_MISSING', `input files were not uploaded: ${[...missing].slice(0, 5).join(', ')}`)
    const jobId = core.submit(peer, header, tasks, Date.now())
    log(`coordinator: job ${jobId} '${header.name}' with ${tasks.length} tasks from ${peer.slice(-8)}`)
    kick()
    await ch.write({ t: 'reply.submitted', jobId, total: tasks.length })
  }

  /** Sends progress until the job ends, at most every 200 ms. */
  async function watch (jobId: number, ch: Channel<ClientRequest, ClientReply>): Promise<void> {
    core.getJob(jobId)
    let wake: (() => void) | null = null
    let dirty = true
    const onChange = (): void => { dirty = true; wake?.() }
    let set = watchers.get(jobId)
    if (set == null) watchers.set(jobId, set = new Set())
    set.add(onChange)
    const closed = new Promise<void>(resolve => { ch.stream.addEventListener('close', () => { resolve() }, { once: true }) })
    try {
      while (true) {
        if (dirty) {
          dirty = false
          const summary = core.jobSummary(jobId)
          await ch.write({ t: 'reply.progress', summary })
          if (summary.state !== 'active') return
        }
        const changed = new Promise<void>(resolve => { wake = resolve })
        await Promise.race([changed, closed, new Promise(resolve => setTimeout(resolve, 5000))])
        if (ch.stream.status !== 'open') return
        await new Promise(resolve => setTimeout(resolve, 200))
      }
    } finally {
      set.delete(onChange)
      if (set.size === 0) watchers.delete(jobId)
    }
  }

  // Agents admit connections only from the coordinator and the members it lists: a changed list goes out at once.
  const memberIds = (): string[] => acl.list().map(p => p.peerId)
  let lastMembers = memberIds().join(',')
  const ticker = setInterval(() => {
    const members = memberIds()
    if (members.join(',') !== lastMembers) {
      lastMembers = members.join(',')
      for (const w of sessions.values()) w.send({ t: 'coord.members', peerIds: members })
    }
    const lost = core.tick(Date.now())
    for (const id of lost) log(`coordinator: agent ${id.slice(-8)} lost; its tasks go back to the queue`)
    if (core.hasQueued()) kick()
  }, Math.max(100, Math.floor(heartbeatMs / 2)))

  log(`coordinator: listening on ${node.getMultiaddrs().map(String).join(' ')}`)
  // The CLI on this machine finds us here, without mDNS or a bootstrap list.
  rememberCoordinator(opts.mesh.home, self())
  return {
    node,
    core,
    stop: async () => {
      clearInterval(ticker)
      for (const w of sessions.values()) w.close()
      await node.stop()
      store.close()
    }
  }
}

function numbers (v: unknown): number[] {
  return Array.isArray(v) ? v.filter((x): x is number => isFiniteInt(x)) : []
}

function checkHeader (h: JobHeader): JobHeader {
  if (h == null || typeof h !== 'object') throw new MeshfarmError('PROTOCOL', 'job header missing')
  const name = typeof h.name === 'string' && h.name.trim() !== '' ? h.name.slice(0, 200) : 'job'
  return {
    name,
    label: typeof h.label === 'string' ? h.label.slice(0, 200) : undefined,
    layout: h.layout === 'flat' ? 'flat' : 'per-task',
    shared: (Array.isArray(h.shared) ? h.shared : []).map((f, i) => checkFileRef(f, `shared[${i}]`)),
    retries: isFiniteInt(h.retries) ? Math.min(h.retries, 100) : 0,
    specText: typeof h.specText === 'string' ? h.specText.slice(0, 1 << 20) : '',
    specFile: typeof h.specFile === 'string' ? checkRelativeName(h.specFile.split('/').pop() ?? 'job.yaml', 'specFile') : 'job.yaml'
  }
}
