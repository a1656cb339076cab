/**
 * The libp2p node every meshfarm process runs: TCP, the mesh's pre-shared key (no key, no connection), Noise
 * encryption proving each peer's identity, Yamux streams, identify (peers learn each other's roles from the
 * protocols they serve), mDNS on every LAN interface (lan-discovery.ts) and a bootstrap list.
 */
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { bootstrap } from '@libp2p/bootstrap'
import { privateNetwork } from './private-network.ts'
import { lanDiscovery } from './lan-discovery.ts'
import type { ConnectionGater, PeerDiscovery, ComponentLogger, PeerId, PrivateKey } from '@libp2p/interface'
import type { Identify } from '@libp2p/identify'
import { loadOrCreateIdentity } from '../local/identity.ts'
import type { MeshConfig } from '../local/mesh-config.ts'

export type MeshNode = Libp2p<{ identify: Identify }>

export interface MeshNodeOptions {
  mesh: MeshConfig
  /** Multiaddrs to listen on; empty for a client that only dials. */
  listen: string[]
  /** Extra gate on encrypted connections (the access list). */
  allowPeer?: (peer: PeerId) => boolean
  /** Gate on inbound encrypted connections only (an agent: the coordinator and the mesh's members). */
  allowInbound?: (peer: PeerId) => boolean
  /** Use this identity instead of the state folder's (joining with an invite's one-time key). */
  privateKey?: PrivateKey
  /** Where the node says what it cannot do (LAN discovery without a usable interface, say). */
  log?: (line: string) => void
}

export async function createMeshNode (opts: MeshNodeOptions): Promise<MeshNode> {
  const privateKey = opts.privateKey ?? await loadOrCreateIdentity(opts.mesh.home)
  const peerDiscovery: Array<(components: { logger: ComponentLogger } & any) => PeerDiscovery> = []
  if (opts.mesh.bootstrap.length > 0) peerDiscovery.push(bootstrap({ list: opts.mesh.bootstrap, timeout: 0 }))
  // Peers that only dial (a CLI call) ask on the LAN too, but have no addresses to answer with.
  if (opts.mesh.mdns) peerDiscovery.push(lanDiscovery({ intervalMs: 10_000, log: opts.log }))
  const allow = opts.allowPeer
  const inbound = opts.allowInbound
  const connectionGater: ConnectionGater = {
    // Loopback and private addresses are where lab machines live: allow dialing them.
    denyDialMultiaddr: () => false,
    denyInboundEncryptedConnection: (peer) => (allow != null && !allow(peer)) || (inbound != null && !inbound(peer)),
    denyOutboundEncryptedConnection: (peer) => allow != null && !allow(peer)
  }
  const node = await createLibp2p({
    privateKey,
    addresses: { listen: opts.listen },
    transports: [tcp()],
    connectionProtector: privateNetwork(opts.mesh.swarmKey),
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    peerDiscovery,
    connectionGater,
    // A lab's agents all reconnect at once after a coordinator restart, and a login node or a test machine
    // connects many peers from one address: libp2p's defaults (5 per second per host, 10 pending) would reset them.
    connectionManager: { maxConnections: 1024, inboundConnectionThreshold: 50, maxIncomingPendingConnections: 128 },
    services: { identify: identify() },
    start: false
  })
  await node.start()
  return node
}

/**
 * Streams one connection may hold open per protocol. Each stream's first frame is small unless its peer may
 * submit, and must arrive in time, so a hostile member can make a peer hold at most a bounded amount.
 */
export const STREAM_LIMITS = {
  /** One session per agent (two while a new one replaces the old). */
  agent: { maxInboundStreams: 2, maxOutboundStreams: 2 },
  /** A client's requests: a submission, a watch, a fetch's pages, logs. */
  client: { maxInboundStreams: 32, maxOutboundStreams: 32 },
  /** Concurrent uploads and downloads (a submission uploads 16 at once, a fetch downloads 8). */
  blob: { maxInboundStreams: 64, maxOutboundStreams: 64 },
  roster: { maxInboundStreams: 8, maxOutboundStreams: 8 }
} as const
