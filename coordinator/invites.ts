/**
 * Invites: a one-time identity the coordinator admits only to redeem itself, once, before it expires; the
 * invite line carries the swarm key, the coordinator's identity and its addresses as other machines can reach
 * them (never loopback: another machine's 127.0.0.1 is itself).
 */
import { generateKeyPair, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { encodeInvite } from '../shared/local/invite.ts'
import type { MeshConfig } from '../shared/local/mesh-config.ts'
import type { Role } from '../shared/protocol/data.ts'
import type { AccessList } from './access.ts'

export interface Invites {
  create: (role: Role, ttlMs: number, name?: string) => Promise<{ invite: string, expiresAt: number }>
}

export function createInvites (mesh: MeshConfig, acl: AccessList, self: () => { peerId: string, addrs: string[] }): Invites {
  return {
    create: async (role, ttlMs, name) => {
      const key = await generateKeyPair('Ed25519')
      const now = Date.now()
      acl.addInvite(peerIdFromPrivateKey(key).toString(), role, ttlMs, now, name)
      const invite = encodeInvite({ swarmKey: mesh.swarmKey, coordinator: self(), key: privateKeyToProtobuf(key), role, expiresAt: now + ttlMs, mdns: mesh.mdns })
      return { invite, expiresAt: now + ttlMs }
    }
  }
}
