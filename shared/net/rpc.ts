/** Opening typed channels to peers, and one-shot client requests to the coordinator. */
import type { PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { Channel } from '../protocol/codec.ts'
import { PROTOCOL_CLIENT } from '../protocol/constants.ts'
import { MeshfarmError, isMeshfarmError, type ErrorCode } from '../util/errors.ts'
import type { MeshNode } from './mesh.ts'
import type { ClientReply, ClientRequest } from '../protocol/messages.ts'
import { CLIENT_REPLIES, type MessageSet } from '../protocol/schema.ts'

export async function openChannel<In extends { t: string }, Out extends object> (
  node: MeshNode, peer: PeerId | Multiaddr | Multiaddr[], protocol: string, accept: MessageSet, signal?: AbortSignal
): Promise<Channel<In, Out>> {
  // The time limit covers opening the stream only: libp2p may keep the dial's signal until the protocol is
  // confirmed by the first reply, and a long submission (a million tasks) must not be cut off by it.
  const opening = new AbortController()
  const timer = setTimeout(() => { opening.abort(new MeshfarmError('TIMEOUT', `opening ${protocol} timed out`)) }, 15_000)
  try {
    const stream = await node.dialProtocol(peer, protocol, { signal: signal ?? opening.signal })
    return new Channel<In, Out>(stream, { accept })
  } finally {
    clearTimeout(timer)
  }
}

/** Turns a reply.error into the same MeshfarmError the coordinator raised. */
export function raiseIfError (reply: ClientReply): void {
  if (reply.t === 'reply.error') throw new MeshfarmError(reply.code as ErrorCode, reply.message)
}

export async function openClientChannel (node: MeshNode, coordinator: PeerId): Promise<Channel<ClientReply, ClientRequest>> {
  return openChannel<ClientReply, ClientRequest>(node, coordinator, PROTOCOL_CLIENT, CLIENT_REPLIES)
}

export async function request<T extends ClientReply['t']> (node: MeshNode, coordinator: PeerId, req: ClientRequest, expect: T): Promise<Extract<ClientReply, { t: T }>> {
  const ch = await openClientChannel(node, coordinator)
  try {
    await ch.write(req)
    const reply = await ch.expect()
    raiseIfError(reply)
    if (reply.t !== expect) throw new MeshfarmError('PROTOCOL', `expected ${expect}, got ${reply.t}`)
    return reply as Extract<ClientReply, { t: T }>
  } finally {
    await ch.close()
  }
}

/**
 * Retries `fn` while the coordinator is unreachable (restarting, say), for up to `maxAwayMs`. Errors the
 * coordinator itself answered with (not found, forbidden, ...) are not retried.
 */
export async function withReconnect<T> (fn: () => Promise<T>, maxAwayMs = 120_000): Promise<T> {
  const since = Date.now()
  while (true) {
    try {
      return await fn()
    } catch (err) {
      // Network errors (and streams cut mid-answer) are transient; what the coordinator answered is not.
      const transient = !isMeshfarmError(err) || err.code === 'PROTOCOL'
      if (!transient || Date.now() - since > maxAwayMs) throw err
      await new Promise(resolve => setTimeout(resolve, 1000))
    }
  }
}
