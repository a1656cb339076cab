/**
 * The coordinator process's parts, wired: the store and the core, the commit loop, the agent sessions, the
 * client requests, the blob service and the event feed, around one libp2p node. It has a lifecycle
 * (starting -> running -> stopping -> stopped, or failed) and ONE way down: `stop()`, also taken when the
 * database fails (then `ended` reports the failure, and bin/ decides the exit code).
 */
import { join } from 'node:path'
import { isLoopback } from '../shared/net/addresses.ts'
import { PROTOCOL_AGENT, PROTOCOL_BLOB, PROTOCOL_CLIENT, PROTOCOL_ROSTER } from '../shared/protocol/constants.ts'
import { MeshfarmError, errorMessage } from '../shared/util/errors.ts'
import { ensurePrivateDir, homePaths } from '../shared/local/home.ts'
import { createMeshNode, STREAM_LIMITS, type MeshNode } from '../shared/net/mesh.ts'
import type { MeshConfig } from '../shared/local/mesh-config.ts'
import { BlobStore } from '../shared/files/blob-store.ts'
import { rememberCoordinator, serveRoster } from '../shared/net/discovery.ts'
import { LOCAL_ROLE_KEYS, loadOrCreateIdentity } from '../shared/local/identity.ts'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { CoordinatorCore } from './core.ts'
import { Store } from './store.ts'
import { AccessList } from './access.ts'
import { CommitLoop } from './commit-loop.ts'
import { AgentSessions } from './agent-sessions.ts'
import { serveClientRequest } from './client-requests.ts'
import { startBlobService, type BlobService } from './blob-service.ts'
import { EventFeed } from './event-feed.ts'
import { LogRelay } from './log-relay.ts'
import { createInvites } from './invites.ts'
import { startCoordinatorDashboard, type CoordinatorDashboard } from './dashboard/attach.ts'

export type CoordinatorState = 'starting' | 'running' | 'stopping' | 'stopped' | 'failed'

export interface CoordinatorConfig {
  mesh: MeshConfig
  listen: string[]
  heartbeatMs: number
  agentLostMs: number
  crashLimit: number
  prefetch: number
  log: (line: string) => void
  /** Debug lines (blob transfers) in the log. */
  debug?: boolean
  /** Serve the dashboard on 127.0.0.1 at this port (0: any free one); absent or null: no dashboard. */
  dashboardPort?: number | null
  /** Tell agents which peers hold a large blob, so shared inputs spread peer to peer (default true). */
  spread?: boolean
}

export class Coordinator {
  state: CoordinatorState = 'starting'
  readonly node: MeshNode
  readonly core: CoordinatorCore
  /** Resolves when the coordinator has stopped: null after stop(), the failure when it failed. */
  readonly ended: Promise<MeshfarmError | null>
  private readonly parts: { store: Store, loop: CommitLoop, sessions: AgentSessions, ticker: NodeJS.Timeout, dashboard: CoordinatorDashboard | null, blobService: BlobService }
  private endWith!: (err: MeshfarmError | null) => void
  private failure: MeshfarmError | null = null

  private constructor (node: MeshNode, core: CoordinatorCore, parts: Coordinator['parts']) {
    this.node = node
    this.core = core
    this.parts = parts
    this.ended = new Promise(resolve => { this.endWith = resolve })
  }

  static async start (config: CoordinatorConfig): Promise<Coordinator> {
    const { log } = config
    const paths = homePaths(config.mesh.home)
    ensurePrivateDir(paths.coordinatorDir)
    const startedAt = Date.now()
    const store = new Store(join(paths.coordinatorDir, 'state.db'))
    const blobs = new BlobStore(join(paths.coordinatorDir, 'blobs'))
    const identity = await loadOrCreateIdentity(config.mesh.home)
    const selfId = peerIdFromPrivateKey(identity).toString()
    const acl = new AccessList(join(paths.coordinatorDir, 'access.json'), selfId)
    // The CLI and an agent run from this same state folder (the coordinator's machine) use keys of their own.
    const operator = peerIdFromPrivateKey(await loadOrCreateIdentity(config.mesh.home, LOCAL_ROLE_KEYS.operator)).toString()
    const localAgent = peerIdFromPrivateKey(await loadOrCreateIdentity(config.mesh.home, LOCAL_ROLE_KEYS.agent)).toString()
    if (!acl.has(operator, 'admin')) acl.add(operator, ['submitter', 'admin'], 'this machine (operator)')
    if (!acl.has(localAgent, 'agent')) acl.add(localAgent, ['agent'], 'this machine (agent)')

    let coordinator: Coordinator | null = null
    let sessions: AgentSessions | null = null
    const feed = new EventFeed()
    const loop = new CommitLoop({
      store,
      deliver: (agentId, msg) => { sessions?.deliver(agentId, msg) },
      publish: events => { feed.publish(events) },
      afterHandlers: now => { core.schedulePass(now) },
      resync: now => { core.resync(now) },
      onFatal: err => { void coordinator?.fail(err) },
      log
    })
    // Recovery may requeue tasks: like every change, through the loop (its effects reach nobody yet).
    const core: CoordinatorCore = loop.runNow(() => new CoordinatorCore(store, loop.comm, {
      agentLostMs: config.agentLostMs, crashLimit: config.crashLimit, prefetch: config.prefetch, nameOf: peer => acl.nameOf(peer),
      hasBlob: hash => blobs.has(hash)
    }, startedAt))
    log(`coordinator: state loaded in ${Date.now() - startedAt} ms`)

    // The access list is enforced twice: here, on every encrypted connection, and again on every request.
    const audit = auditOnce(log)
    const node = await createMeshNode({
      mesh: config.mesh,
      listen: config.listen,
      privateKey: identity,
      log,
      allowPeer: peer => {
        const ok = acl.admits(peer.toString(), Date.now())
        if (!ok) audit(peer.toString(), `coordinator: refused a connection from ${peer.toString()}: not on the access list`)
        return ok
      }
    })
    const self = (): { peerId: string, addrs: string[] } => ({ peerId: node.peerId.toString(), addrs: shareableAddrs(node) })
    const logs = new LogRelay({ core, store, blobs, deliver: (agentId, msg) => { sessions?.deliver(agentId, msg) } })
    sessions = new AgentSessions({ core, loop, acl, blobs, logs, heartbeatMs: config.heartbeatMs, log })
    // ---- dashboard (coordinator/dashboard/): its own server on 127.0.0.1, login codes over client.dashboard ----
    const dashboard = config.dashboardPort != null
      ? await startCoordinatorDashboard({ port: config.dashboardPort, core, store, feed, loop, blobs, rolesOf: peer => acl.roles(peer), nameOf: peer => acl.nameOf(peer), log })
        .catch(async err => { await node.stop(); store.close(); throw err })
      : null
    const clientDeps = {
      node, core, loop, store, acl, blobs, feed, logs, log,
      invites: createInvites(config.mesh, acl, self),
      membersChanged: () => { sessions?.broadcastMembers() },
      dashboardCode: dashboard?.issueCode
    }
    await node.handle(PROTOCOL_AGENT, (stream, connection) => { void sessions?.serve(stream, connection) }, STREAM_LIMITS.agent)
    await node.handle(PROTOCOL_CLIENT, (stream, connection) => { void serveClientRequest(clientDeps, stream, connection) }, STREAM_LIMITS.client)
    // A stored file may be what tasks of a job submitted before its files were waiting for.
    const onStored = (hash: string): void => {
      loop.run(() => core.inputArrived(hash)).catch(err => { log(`coordinator: ${errorMessage(err)}`) })
    }
    const blobService = await startBlobService({ node, blobs, acl, log, debug: config.debug === true, listen: config.listen, spread: config.spread !== false, onStored })
    await node.handle(PROTOCOL_BLOB, blobService.handler, STREAM_LIMITS.blob)
    await node.handle(PROTOCOL_ROSTER, (stream) => { serveRoster(stream, self) }, STREAM_LIMITS.roster)

    // Agents admit the mesh's members: when the access list changes on disk (an edit, a join), tell them.
    let members = acl.memberIds().join(',')
    const ticker = setInterval(() => {
      const now = acl.memberIds().join(',')
      if (now !== members) {
        members = now
        sessions?.broadcastMembers()
      }
      // Every tick, not on a change of the member set: a peer added and removed between two ticks had tickets too.
      void blobService.membersChanged().catch(err => { log(`coordinator: bulk: ${errorMessage(err)}`) })
      loop.run(() => core.tick(Date.now())).then(lost => {
        for (const id of lost) log(`coordinator: agent ${id.slice(-8)} lost; its tasks go back to the front of the queue`)
        if (core.hasQueued()) loop.kick()
      }, err => { log(`coordinator: ${errorMessage(err)}`) })
      store.pruneEvents()
    }, Math.max(100, Math.floor(config.heartbeatMs / 2)))

    coordinator = new Coordinator(node, core, { store, loop, sessions, ticker, dashboard, blobService })
    log(`coordinator: listening on ${node.getMultiaddrs().map(String).join(' ')}`)
    // The CLI on this machine finds us here, without mDNS or a bootstrap list.
    rememberCoordinator(config.mesh.home, { peerId: selfId, addrs: node.getMultiaddrs().map(String) })
    coordinator.state = 'running'
    loop.kick()
    return coordinator
  }

  /** The one way down: stop taking work, close sessions, stop the node, close the database. */
  async stop (): Promise<void> {
    if (this.state === 'stopping' || this.state === 'stopped' || this.state === 'failed') return await this.ended.then(() => {})
    this.state = 'stopping'
    await this.shutdown()
    this.state = this.failure != null ? 'failed' : 'stopped'
    this.endWith(this.failure)
  }

  private async fail (err: MeshfarmError): Promise<void> {
    this.failure = err
    await this.stop()
  }

  private async shutdown (): Promise<void> {
    const { store, loop, sessions, ticker, dashboard, blobService } = this.parts
    clearInterval(ticker)
    await dashboard?.close().catch(() => {})
    await blobService.close().catch(() => {})
    loop.close(this.failure ?? new MeshfarmError('NO_COORDINATOR', 'the coordinator is stopping'))
    sessions.closeAll()
    try { await this.node.stop() } catch { /* already stopped */ }
    try { store.close() } catch { /* already closed or failed */ }
  }
}

/** Logs a refusal once per peer a minute: an audit trail that a flood of attempts cannot turn into a log flood. */
function auditOnce (log: (line: string) => void): (peer: string, line: string) => void {
  const last = new Map<string, number>()
  return (peer, line) => {
    const now = Date.now()
    if ((last.get(peer) ?? 0) > now - 60_000) return
    if (last.size > 10_000) last.clear()
    last.set(peer, now)
    log(line)
  }
}

/** Addresses other machines can reach: loopback ones only when the coordinator has no other. */
function shareableAddrs (node: MeshNode): string[] {
  const all = node.getMultiaddrs().map(String)
  const outside = all.filter(a => !isLoopback(a))
  return outside.length > 0 ? outside : all
}
