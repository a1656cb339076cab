/**
 * Client requests (PROTOCOL_CLIENT, one stream per request): who may ask what is ONE table (request type ->
 * role), checked before the request's body is read beyond its first frame; peers that may not submit get a
 * small frame limit, and every request must arrive within a time limit. Changes go through the commit loop, so
 * a reply always describes something already on disk.
 */
import type { Connection, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { Channel } from '../shared/protocol/codec.ts'
import type { ClientReply, ClientRequest } from '../shared/protocol/messages.ts'
import { CLIENT_REQUESTS } from '../shared/protocol/schema.ts'
import { MAX_FRAME_BYTES } from '../shared/protocol/constants.ts'
import { MeshfarmError, errorMessage, isMeshfarmError } from '../shared/util/errors.ts'
import { VERSION } from '../shared/util/version.ts'
import type { BlobStore } from '../shared/files/blob-store.ts'
import type { MeshNode } from '../shared/net/mesh.ts'
import type { Role } from '../shared/protocol/data.ts'
import type { AccessList } from './access.ts'
import type { CommitLoop } from './commit-loop.ts'
import type { CoordinatorCore } from './core.ts'
import type { EventFeed } from './event-feed.ts'
import type { Store } from './store.ts'
import type { LogRelay } from './log-relay.ts'
import type { Invites } from './invites.ts'
import { receiveSubmission } from './submission.ts'
import { serveEvents, serveWatch } from './watchers.ts'
import { whyWaiting } from './why.ts'
import { withTimeout } from './agent-sessions.ts'

type Need = 'invite' | 'member' | [Role, string]

/** What each request needs: an invite's one-time identity, any member, or a role (and what it is for). */
export const REQUIRED_ROLE: Readonly<Record<ClientRequest['t'], Need>> = {
  'client.join': 'invite',
  'client.ping': 'member',
  'client.status': 'member',
  'client.tasks': 'member',
  'client.peers': 'member',
  'client.results': 'member',
  'client.job': 'member',
  'client.watch': 'member',
  'client.events': 'member',
  'client.why': 'member',
  'client.access.list': 'member',
  'client.dashboard': 'member',
  'client.logs': ['submitter', 'reading a task\'s output'],
  'client.blobs.missing': ['submitter', 'submitting a job'],
  'client.submit.begin': ['submitter', 'submitting a job'],
  'client.submit.tasks': ['submitter', 'submitting a job'],
  'client.submit.block': ['submitter', 'submitting a job'],
  'client.submit.end': ['submitter', 'submitting a job'],
  'client.cancel': ['submitter', 'cancelling a job'],
  'client.hold': ['submitter', 'holding or releasing a job'],
  'client.drain': ['admin', 'draining an agent'],
  'client.invite': ['admin', 'inviting peers'],
  'client.access.add': ['admin', 'changing the access list'],
  'client.access.remove': ['admin', 'changing the access list']
}

/** Frames from peers that may not submit are small: nothing they may send needs more. */
const SMALL_FRAME_BYTES = 64 * 1024
const FIRST_FRAME_MS = 15_000

export interface ClientRequestDeps {
  node: MeshNode
  core: CoordinatorCore
  loop: CommitLoop
  store: Store
  acl: AccessList
  blobs: BlobStore
  feed: EventFeed
  logs: LogRelay
  invites: Invites
  /** The access list changed: tell the agents. */
  membersChanged: () => void
  dashboardCode?: (peerId: string, role: Role) => { url: string, code: string, expiresAt: number }
  log: (line: string) => void
}

export async function serveClientRequest (deps: ClientRequestDeps, stream: Stream, connection: Connection): Promise<void> {
  const peer = connection.remotePeer.toString()
  const maxFrameBytes = deps.acl.has(peer, 'submitter') ? MAX_FRAME_BYTES : SMALL_FRAME_BYTES
  const ch = new Channel<ClientRequest, ClientReply>(stream, { accept: CLIENT_REQUESTS, maxFrameBytes })
  try {
    const req = await withTimeout(ch.expect(), FIRST_FRAME_MS, 'no request')
    authorize(deps.acl, peer, req.t)
    await handle(deps, peer, req, ch)
  } catch (err) {
    const code = isMeshfarmError(err) ? err.code : 'REMOTE'
    if (code === 'FORBIDDEN') deps.log(`coordinator: refused ${peer.slice(-8)}: ${errorMessage(err)}`)
    try {
      await ch.write({ t: 'reply.error', code, message: errorMessage(err).slice(0, 4000) })
    } catch { /* the client is gone */ }
  } finally {
    await ch.close()
  }
}

function authorize (acl: AccessList, peer: string, type: ClientRequest['t']): void {
  const need = REQUIRED_ROLE[type]
  if (need === 'invite') {
    if (!acl.isInvite(peer)) throw new MeshfarmError('FORBIDDEN', 'joining needs an invite')
    return
  }
  if (acl.roles(peer).length === 0) throw new MeshfarmError('FORBIDDEN', `peer ${peer.slice(-8)} is not on this mesh's access list`)
  if (need !== 'member') acl.require(peer, need[0], need[1])
}

async function handle (deps: ClientRequestDeps, peer: string, req: ClientRequest, ch: Channel<ClientRequest, ClientReply>): Promise<void> {
  const { core, loop, acl, blobs } = deps
  const isAdmin = acl.has(peer, 'admin')
  switch (req.t) {
    case 'client.join': {
      const role = await loop.run(() => acl.redeem(peer, req.peerId, req.name, Date.now()))
      deps.log(`coordinator: ${req.name ?? req.peerId.slice(-8)} joined as ${role}`)
      deps.membersChanged()
      return await ch.write({ t: 'reply.joined', role })
    }
    case 'client.ping':
      return await ch.write({ t: 'reply.pong', peerId: deps.node.peerId.toString(), version: VERSION, time: Date.now() })
    case 'client.blobs.missing':
      return await ch.write({ t: 'reply.blobs.missing', hashes: req.hashes.filter(h => !blobs.has(h)) })
    case 'client.submit.begin':
      return await receiveSubmission(deps, peer, req, ch)
    case 'client.submit.tasks':
    case 'client.submit.block':
    case 'client.submit.end':
      throw new MeshfarmError('PROTOCOL', `${req.t} outside a submission`)
    case 'client.status':
      return await ch.write({ t: 'reply.status', jobs: req.jobId != null ? [core.jobSummary(req.jobId)] : core.jobSummaries() })
    case 'client.tasks':
      return await ch.write({ t: 'reply.tasks', ...core.tasks(req.jobId, req.after, req.limit, req.states) })
    case 'client.peers':
      return await ch.write({ t: 'reply.peers', agents: core.peers(Date.now()) })
    case 'client.cancel': {
      const tasks = await loop.run(() => core.cancelJob(req.jobId, peer, isAdmin, Date.now()))
      return await ch.write({ t: 'reply.cancelled', jobId: req.jobId, tasks })
    }
    case 'client.hold': {
      const tasks = await loop.run(() => core.hold(req.jobId, req.index, req.release, peer, isAdmin, Date.now()))
      if (req.release) loop.kick()
      return await ch.write({ t: 'reply.held', jobId: req.jobId, tasks })
    }
    case 'client.results':
      return await ch.write({ t: 'reply.results', ...core.results(req.jobId, req.after, req.limit) })
    case 'client.job':
      return await ch.write({ t: 'reply.job', job: core.jobHeader(req.jobId), summary: core.jobSummary(req.jobId) })
    case 'client.watch':
      return await serveWatch(deps, req.jobId, ch)
    case 'client.events':
      return await serveEvents(deps, req, ch)
    case 'client.logs':
      return await deps.logs.serve(req, async r => { await ch.write(r) }, () => ch.stream.status === 'open')
    case 'client.why':
      return await ch.write({ t: 'reply.why', reasons: whyWaiting(core, req.jobId, req.index, Date.now()) })
    case 'client.drain': {
      const peerId = await loop.run(() => core.drain(req.peerId, Date.now()))
      return await ch.write({ t: 'reply.drained', peerId })
    }
    case 'client.invite':
      return await ch.write({ t: 'reply.invite', ...await deps.invites.create(req.role, req.ttlMs, req.name) })
    case 'client.access.list':
      return await ch.write({ t: 'reply.access', peers: acl.list() })
    case 'client.access.add':
      acl.add(req.peerId, req.roles, req.name)
      deps.membersChanged()
      return await ch.write({ t: 'reply.ok' })
    case 'client.access.remove': {
      const target = core.peerIdOf(req.peerId) ?? req.peerId
      if (!acl.remove(target)) throw new MeshfarmError('NOT_FOUND', `${req.peerId} is not on the access list`)
      deps.log(`coordinator: ${target.slice(-8)} removed from the access list; closing its connections`)
      deps.membersChanged()
      await deps.node.hangUp(peerIdFromString(target)).catch(() => {})
      return await ch.write({ t: 'reply.ok' })
    }
    case 'client.dashboard': {
      if (deps.dashboardCode == null) throw new MeshfarmError('NOT_FOUND', 'this coordinator serves no dashboard (start it with --dashboard)')
      const role: Role = isAdmin ? 'admin' : acl.has(peer, 'submitter') ? 'submitter' : 'agent'
      return await ch.write({ t: 'reply.dashboard', ...deps.dashboardCode(peer, role) })
    }
  }
}
