/**
 * Invites: one line that carries everything a new workstation needs to join the mesh: the swarm key, the
 * coordinator's identity and addresses, and a one-time identity that the coordinator admits only to redeem the
 * invite, once, before it expires.
 */
import { Packr } from 'msgpackr'
import { MeshfarmError } from '../util/errors.ts'

const PREFIX = 'meshfarm-invite:'
const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true })

export interface Invite {
  swarmKey: Uint8Array
  coordinator: { peerId: string, addrs: string[] }
  /** Protobuf of the one-time Ed25519 key. */
  key: Uint8Array
  role: string
  expiresAt: number
  /** Whether the mesh looks for peers on the LAN (mDNS); a joined workstation keeps the mesh's setting. */
  mdns: boolean
}

export function encodeInvite (invite: Invite): string {
  return PREFIX + Buffer.from(packr.pack({ v: 1, ...invite })).toString('base64url')
}

export function decodeInvite (text: string): Invite {
  const trimmed = text.trim()
  if (!trimmed.startsWith(PREFIX)) throw new MeshfarmError('BAD_ARGUMENT', `not a meshfarm invite (it starts with ${JSON.stringify(PREFIX)})`)
  try {
    const raw = packr.unpack(Buffer.from(trimmed.slice(PREFIX.length), 'base64url')) as Invite & { v: number }
    if (raw.v !== 1 || !(raw.swarmKey instanceof Uint8Array) || !(raw.key instanceof Uint8Array) || typeof raw.coordinator?.peerId !== 'string') throw new Error('fields missing')
    return {
      swarmKey: raw.swarmKey,
      coordinator: { peerId: raw.coordinator.peerId, addrs: (raw.coordinator.addrs ?? []).map(String) },
      key: raw.key,
      role: String(raw.role),
      expiresAt: Number(raw.expiresAt),
      mdns: raw.mdns !== false
    }
  } catch (err) {
    throw new MeshfarmError('BAD_ARGUMENT', `the invite is damaged (${(err as Error).message}); copy it again in one piece`)
  }
}
