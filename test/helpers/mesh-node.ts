/** A bare mesh node for a state folder, pointed at a local mesh's coordinator: tests that speak a protocol by hand. */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import type { PeerId } from '@libp2p/interface'
import { createMeshNode, type MeshNode } from '../../shared/net/mesh.ts'
import { loadMeshConfig } from '../../shared/local/mesh-config.ts'
import type { LocalMesh } from '../../bin/local-mesh.ts'

/** The coordinator's peer id, from the mesh's bootstrap address. */
export function coordinatorOf (mesh: LocalMesh): PeerId {
  return peerIdFromString(mesh.bootstrap.split('/p2p/')[1])
}

export async function nodeFor (mesh: LocalMesh, home: string): Promise<MeshNode> {
  const node = await createMeshNode({ mesh: loadMeshConfig(home), listen: [] })
  await node.peerStore.merge(coordinatorOf(mesh), { multiaddrs: [multiaddr(mesh.bootstrap.split('/p2p/')[0])] })
  return node
}

/** What the coordinator of a local mesh in `dir` has logged so far. */
export function coordinatorLog (dir: string): string {
  return readFileSync(join(dir, 'coordinator.log'), 'utf8')
}
