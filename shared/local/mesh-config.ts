/**
 * The mesh a peer belongs to: its swarm key (libp2p private network: no key, no connection) and where to look
 * for other peers. Written by `meshfarm init` or `meshfarm join`, read by every command.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { generateKey } from '@libp2p/pnet'
import { assertPrivateFile, ensurePrivateDir, homePaths } from './home.ts'
import { MeshfarmError } from '../util/errors.ts'

export interface MeshConfig {
  home: string
  swarmKey: Uint8Array
  /** Multiaddrs of peers to dial at start. */
  bootstrap: string[]
  /** LAN discovery. */
  mdns: boolean
  /** The coordinator's peer id: agents and clients talk to no other (a leaked swarm key cannot redirect them). */
  coordinator?: string
}

interface MeshFile {
  version: 1
  bootstrap: string[]
  mdns: boolean
  coordinator?: string
}

export function meshExists (home: string): boolean {
  return existsSync(homePaths(home).swarmKey)
}

export function loadMeshConfig (home: string, env: NodeJS.ProcessEnv = process.env): MeshConfig {
  const paths = homePaths(home)
  if (!existsSync(paths.swarmKey)) {
    throw new MeshfarmError('NO_MESH', `no mesh in ${home}: run 'meshfarm init' to create one, or 'meshfarm join invite.txt' with an invite from the mesh's admin`)
  }
  assertPrivateFile(paths.swarmKey)
  if (existsSync(paths.identity)) assertPrivateFile(paths.identity)
  const swarmKey = readFileSync(paths.swarmKey)
  let file: MeshFile = { version: 1, bootstrap: [], mdns: true }
  if (existsSync(paths.meshConfig)) {
    try {
      file = { ...file, ...JSON.parse(readFileSync(paths.meshConfig, 'utf8')) }
    } catch (err) {
      throw new MeshfarmError('BAD_ARGUMENT', `${paths.meshConfig}: not valid JSON: ${(err as Error).message}`)
    }
  }
  const extra = (env.MESHFARM_BOOTSTRAP ?? '').split(',').map(s => s.trim()).filter(Boolean)
  const mdns = env.MESHFARM_MDNS != null ? env.MESHFARM_MDNS !== '0' : file.mdns
  return Object.freeze({ home, swarmKey, bootstrap: [...new Set([...file.bootstrap, ...extra])], mdns, coordinator: file.coordinator })
}

/** Creates a new mesh: a fresh swarm key. Refuses to overwrite an existing one. */
export function initMesh (home: string, opts: { bootstrap?: string[], mdns?: boolean, coordinator?: string } = {}): void {
  const paths = homePaths(home)
  ensurePrivateDir(home)
  if (existsSync(paths.swarmKey)) throw new MeshfarmError('BAD_ARGUMENT', `${home} already belongs to a mesh (${paths.swarmKey} exists)`)
  const key = new Uint8Array(95)
  generateKey(key)
  writeFileSync(paths.swarmKey, key, { mode: 0o600, flag: 'wx' })
  saveMeshFile(home, { version: 1, bootstrap: opts.bootstrap ?? [], mdns: opts.mdns ?? true, coordinator: opts.coordinator })
}

/** Joins an existing mesh with its swarm key (used by join and by the demo to give each agent its own home). */
export function writeMesh (home: string, swarmKey: Uint8Array, opts: { bootstrap: string[], mdns: boolean, coordinator?: string }): void {
  const paths = homePaths(home)
  ensurePrivateDir(home)
  writeFileSync(paths.swarmKey, swarmKey, { mode: 0o600 })
  saveMeshFile(home, { version: 1, bootstrap: opts.bootstrap, mdns: opts.mdns, coordinator: opts.coordinator })
}

function saveMeshFile (home: string, file: MeshFile): void {
  writeFileSync(homePaths(home).meshConfig, JSON.stringify(file, null, 2) + '\n', { mode: 0o600 })
}
