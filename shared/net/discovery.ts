/**
 * Finding the coordinator through the mesh, never through a typed address: every peer serves the roster
 * protocol and answers with the coordinator it knows (the coordinator answers with itself). A peer asks the
 * coordinator it found last time, its bootstrap peers, and the peers mDNS finds on the LAN, until one answers.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import type { PeerId, Stream } from '@libp2p/interface'
import { Channel } from '../protocol/codec.ts'
import { PROTOCOL_ROSTER } from '../protocol/constants.ts'
import { MeshfarmError } from '../util/errors.ts'
import { homePaths } from '../local/home.ts'
import type { MeshNode } from './mesh.ts'
import type { MeshConfig } from '../local/mesh-config.ts'
import type { RosterMessage } from '../protocol/messages.ts'
import { ROSTER_MESSAGES } from '../protocol/schema.ts'
import { openChannel } from './rpc.ts'

export interface CoordinatorAddress {
  peerId: string
  addrs: string[]
}

/** Answers roster queries with whatever `current()` knows. */
export function serveRoster (stream: Stream, current: () => CoordinatorAddress | null): void {
  const ch = new Channel<RosterMessage, RosterMessage>(stream, { accept: ROSTER_MESSAGES })
  void (async () => {
    try {
      await ch.expect()
      await ch.write({ t: 'roster.answer', coordinator: current() })
      await ch.close()
    } catch (err) {
      ch.abort(err as Error)
    }
  })()
}

export function rememberCoordinator (home: string, coord: CoordinatorAddress): void {
  try {
    writeFileSync(homePaths(home).knownCoordinator, JSON.stringify(coord) + '\n', { mode: 0o600 })
  } catch { /* only a hint */ }
}

function recalled (home: string): CoordinatorAddress | null {
  try {
    const c = JSON.parse(readFileSync(homePaths(home).knownCoordinator, 'utf8')) as CoordinatorAddress
    return typeof c.peerId === 'string' && Array.isArray(c.addrs) ? c : null
  } catch {
    return null
  }
}

async function ask (node: MeshNode, target: PeerId | Multiaddr[]): Promise<CoordinatorAddress | null> {
  const ch = await openChannel<RosterMessage, RosterMessage>(node, target, PROTOCOL_ROSTER, ROSTER_MESSAGES, AbortSignal.timeout(5000))
  try {
    await ch.write({ t: 'roster.query' })
    const reply = await ch.expect()
    if (reply.t !== 'roster.answer' || reply.coordinator == null) return null
    const c = reply.coordinator
    if (typeof c.peerId !== 'string' || !Array.isArray(c.addrs)) return null
    return { peerId: c.peerId, addrs: c.addrs.filter((a): a is string => typeof a === 'string') }
  } finally {
    await ch.close()
  }
}

/** Confirms that a roster answer really is the coordinator, by asking it. Returns its peer id. */
async function confirm (node: MeshNode, c: CoordinatorAddress, pinned?: string): Promise<PeerId | null> {
  // A mesh that knows its coordinator's identity trusts no other peer's claim to the role.
  if (pinned != null && c.peerId !== pinned) return null
  const id = peerIdFromString(c.peerId)
  if (id.equals(node.peerId)) return id
  const addrs = c.addrs.map(a => multiaddr(a))
  if (addrs.length > 0) await node.peerStore.merge(id, { multiaddrs: addrs })
  const self = await ask(node, id)
  return self?.peerId === c.peerId ? id : null
}

/** How often a known peer is asked again while the coordinator is being looked for. */
const PEER_RETRY_MS = 2000

/**
 * Finds the coordinator; throws NO_COORDINATOR with what was tried after `timeoutMs`.
 */
export async function findCoordinator (node: MeshNode, mesh: MeshConfig, timeoutMs = 10_000): Promise<PeerId> {
  const deadline = Date.now() + timeoutMs
  const tried = new Set<string>()
  const discovered: PeerId[] = []
  const onDiscovery = (evt: CustomEvent<{ id: PeerId }>): void => { discovered.push(evt.detail.id) }
  node.addEventListener('peer:discovery', onDiscovery as any)
  // Peers found before this call (libp2p announces a peer once) are asked too, and asked again now and then:
  // a peer that did not answer a moment ago (still starting, say) may answer now.
  const askedAt = new Map<string, number>()
  try {
    while (Date.now() < deadline) {
      for (const peer of await node.peerStore.all()) {
        const id = peer.id.toString()
        if (id === node.peerId.toString() || Date.now() - (askedAt.get(id) ?? 0) < PEER_RETRY_MS) continue
        askedAt.set(id, Date.now())
        tried.delete(id)
        discovered.push(peer.id)
      }
      const candidates: Array<() => Promise<CoordinatorAddress | null>> = []
      const known = recalled(mesh.home)
      if (known != null && !tried.has(`known:${known.peerId}`)) {
        tried.add(`known:${known.peerId}`)
        candidates.push(async () => known)
      }
      for (const addr of mesh.bootstrap) {
        if (tried.has(addr)) continue
        tried.add(addr)
        candidates.push(async () => ask(node, [multiaddr(addr)]))
      }
      for (const id of discovered.splice(0)) {
        if (tried.has(id.toString())) continue
        tried.add(id.toString())
        candidates.push(async () => ask(node, id))
      }
      for (const candidate of candidates) {
        try {
          const answer = await candidate()
          if (answer == null) continue
          const id = await confirm(node, answer, mesh.coordinator)
          if (id != null) {
            rememberCoordinator(mesh.home, answer)
            return id
          }
        } catch { /* that peer is not reachable; try the next */ }
      }
      // Nothing yet: the coordinator may be coming back (a restart), a bootstrap peer may come up, or mDNS may
      // find one. The remembered address and the bootstrap list are asked again every round.
      for (const addr of mesh.bootstrap) tried.delete(addr)
      if (known != null) tried.delete(`known:${known.peerId}`)
      await new Promise(resolve => setTimeout(resolve, 250))
    }
  } finally {
    node.removeEventListener('peer:discovery', onDiscovery as any)
  }
  const where = [mesh.bootstrap.length > 0 ? `${mesh.bootstrap.length} bootstrap peer(s)` : 'no bootstrap peers', mesh.mdns ? 'mDNS' : 'mDNS off'].join(', ')
  throw new MeshfarmError('NO_COORDINATOR', `no coordinator found on the mesh within ${Math.round(timeoutMs / 1000)} s (${where}); is 'meshfarm coordinator' running?`)
}
