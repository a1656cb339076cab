/**
 * The state folder of one meshfarm peer (default ~/.meshfarm, MESHFARM_HOME overrides it so several peers can
 * share a machine). Everything a peer keeps on disk lives here.
 */
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import { mkdirSync, statSync } from 'node:fs'
import { MeshfarmError } from '../util/errors.ts'

export interface HomePaths {
  root: string
  identity: string
  swarmKey: string
  meshConfig: string
  coordinatorDir: string
  agentDir: string
  knownCoordinator: string
}

export function resolveHome (explicit?: string, env: NodeJS.ProcessEnv = process.env): string {
  return resolve(explicit ?? env.MESHFARM_HOME ?? join(homedir(), '.meshfarm'))
}

export function homePaths (root: string): HomePaths {
  return {
    root,
    identity: join(root, 'identity.key'),
    swarmKey: join(root, 'swarm.key'),
    meshConfig: join(root, 'mesh.json'),
    coordinatorDir: join(root, 'coordinator'),
    agentDir: join(root, 'agent'),
    knownCoordinator: join(root, 'known-coordinator.json')
  }
}

export function ensurePrivateDir (dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 })
}

/**
 * Key and state files readable by others are refused: anyone who can read the identity can impersonate this peer,
 * and anyone who can read the swarm key can join the mesh.
 */
export function assertPrivateFile (path: string): void {
  const st = statSync(path)
  if ((st.mode & 0o077) !== 0) {
    const mode = (st.mode & 0o777).toString(8).padStart(3, '0')
    throw new MeshfarmError('INSECURE_FILE', `${path} is readable by other users (mode ${mode}): run chmod 600 ${path}`)
  }
}
