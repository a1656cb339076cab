/**
 * `meshfarm join`: turns an invite into a state folder on this workstation: the swarm key, the coordinator's
 * identity and addresses (bootstrap), a fresh identity of its own, and a place on the access list, which the
 * coordinator grants once per invite, before it expires.
 */
import { hostname } from 'node:os'
import { privateKeyFromProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { MeshfarmError, errorMessage, isMeshfarmError } from '../util/errors.ts'
import { loadOrCreateIdentity } from './identity.ts'
import { meshExists, writeMesh, loadMeshConfig } from './mesh-config.ts'
import { createMeshNode } from '../net/mesh.ts'
import type { Invite } from './invite.ts'
import { request } from '../net/rpc.ts'

export async function joinMesh (home: string, invite: Invite, now = Date.now()): Promise<string> {
  if (invite.expiresAt <= now) throw new MeshfarmError('FORBIDDEN', 'this invite has expired: ask for a new one')
  if (meshExists(home)) throw new MeshfarmError('BAD_ARGUMENT', `${home} already belongs to a mesh; use another --home (or MESHFARM_HOME)`)
  const own = peerIdFromPrivateKey(await loadOrCreateIdentity(home)).toString()
  const coordinator = peerIdFromString(invite.coordinator.peerId)
  const bootstrap = invite.coordinator.addrs.filter(a => a.includes('/p2p/'))
  const mesh = { home, swarmKey: invite.swarmKey, bootstrap, mdns: true, coordinator: invite.coordinator.peerId }
  // The invite's one-time identity is the only one the coordinator admits before we are on its list.
  const node = await createMeshNode({ mesh, listen: [], privateKey: privateKeyFromProtobuf(invite.key) })
  try {
    await node.peerStore.merge(coordinator, { multiaddrs: invite.coordinator.addrs.map(a => multiaddr(a.replace(/\/p2p\/.*$/, ''))) })
    let role: string
    try {
      role = (await request(node, coordinator, { t: 'client.join', peerId: own, name: hostname() }, 'reply.joined')).role
    } catch (err) {
      if (isMeshfarmError(err)) throw err
      throw new MeshfarmError('FORBIDDEN', `the coordinator refused this invite: it was already used, withdrawn or has expired (${errorMessage(err).split('\n')[0]})`)
    }
    writeMesh(home, invite.swarmKey, { bootstrap, mdns: true, coordinator: invite.coordinator.peerId })
    loadMeshConfig(home)
    return role
  } finally {
    await node.stop()
  }
}
