/**
 * `meshfarm join`: turns an invite into a state folder on this workstation: the swarm key, the coordinator's
 * identity and addresses (bootstrap), the mesh's LAN-discovery setting, a fresh identity of its own, and a
 * place on the access list, which the coordinator grants once per invite, before it expires. Nothing is written
 * unless the coordinator accepted: a refused invite leaves no half-made home behind.
 */
import { existsSync, rmSync } from 'node:fs'
import { hostname } from 'node:os'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { MeshfarmError, errorMessage, isMeshfarmError } from '../util/errors.ts'
import { loadOrCreateIdentity, writeIdentity } from './identity.ts'
import { homePaths } from './home.ts'
import { meshExists, writeMesh, loadMeshConfig } from './mesh-config.ts'
import { createMeshNode } from '../net/mesh.ts'
import type { Invite } from './invite.ts'
import { request } from '../net/rpc.ts'

export async function joinMesh (home: string, invite: Invite, opts: { name?: string, now?: number } = {}): Promise<string> {
  if (invite.expiresAt <= (opts.now ?? Date.now())) throw new MeshfarmError('FORBIDDEN', 'this invite has expired: ask the mesh\'s admin for a new one')
  if (meshExists(home)) throw new MeshfarmError('BAD_ARGUMENT', `${home} already belongs to a mesh; use another --home (or MESHFARM_HOME)`)
  const identityExisted = existsSync(homePaths(home).identity)
  const own = identityExisted ? await loadOrCreateIdentity(home) : await generateKeyPair('Ed25519')
  const coordinator = peerIdFromString(invite.coordinator.peerId)
  const bootstrap = invite.coordinator.addrs.filter(a => a.includes('/p2p/'))
  const mesh = { home, swarmKey: invite.swarmKey, bootstrap, mdns: invite.mdns, coordinator: invite.coordinator.peerId }
  // The invite's one-time identity is the only one the coordinator admits before we are on its list.
  const node = await createMeshNode({ mesh, listen: [], privateKey: privateKeyFromProtobuf(invite.key) })
  let role: string
  try {
    await node.peerStore.merge(coordinator, { multiaddrs: invite.coordinator.addrs.map(a => multiaddr(a.replace(/\/p2p\/.*$/, ''))) })
    try {
      role = (await request(node, coordinator, { t: 'client.join', peerId: peerIdFromPrivateKey(own).toString(), name: opts.name ?? hostname().slice(0, 64) }, 'reply.joined')).role
    } catch (err) {
      if (isMeshfarmError(err) && err.code !== 'PROTOCOL' && err.code !== 'TIMEOUT') throw err
      // The coordinator drops a used or expired invite's connection before any reply, so all we see is its end.
      throw new MeshfarmError('FORBIDDEN', `the coordinator did not accept this invite: it was already used, withdrawn or has expired, or the coordinator is unreachable (${errorMessage(err)}); nothing was written to ${home}`)
    }
  } finally {
    await node.stop()
  }
  try {
    if (!identityExisted) writeIdentity(home, privateKeyToProtobuf(own))
    writeMesh(home, invite.swarmKey, { bootstrap, mdns: invite.mdns, coordinator: invite.coordinator.peerId })
    loadMeshConfig(home)
  } catch (err) {
    if (!identityExisted) rmSync(homePaths(home).identity, { force: true })
    throw err
  }
  return role
}
