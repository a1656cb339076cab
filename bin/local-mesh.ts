/**
 * A whole mesh on this machine's loopback: a coordinator and agents as separate processes, each with its own
 * state folder and its own 127.0.0.x address, all sharing one swarm key. The demo, the integration tests, the
 * benchmark and the chaos soak are built on it.
 */
import { mkdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { initMesh, writeMesh } from '../shared/local/mesh-config.ts'
import { loadOrCreateIdentity } from '../shared/local/identity.ts'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { homePaths } from '../shared/local/home.ts'
import { freePort, startMeshfarm, type MeshProcess } from './processes.ts'
import { AccessList, type Role } from '../coordinator/access.ts'

export interface LocalAgentSpec {
  ip: string
  hostname: string
  slots?: number
  cores?: number
  gpus?: string
  labels?: string[]
  extraArgs?: string[]
  /** Laid over the mesh's environment for this agent alone. */
  env?: NodeJS.ProcessEnv
  /** Run through this command first (`ip netns exec <host>`: a host of a simulated LAN). */
  wrap?: string[]
}

export interface LocalMeshOptions {
  dir: string
  coordinatorIp?: string
  coordinatorArgs?: string[]
  /** A fixed port (where the coordinator's address is not this namespace's to probe); default: a free one. */
  coordinatorPort?: number
  coordinatorWrap?: string[]
  /** Run the coordinator from this build of the CLI (the bundle) instead of the sources. */
  coordinatorEntry?: string
  agents: LocalAgentSpec[]
  env?: NodeJS.ProcessEnv
}

export interface LocalMesh {
  dir: string
  coordinator: MeshProcess
  agents: MeshProcess[]
  /** A state folder that knows only the mesh (swarm key + bootstrap list), for clients; submitter and admin. */
  clientHome: string
  coordinatorHome: string
  bootstrap: string
  /** A new peer's state folder, on the access list with `roles` (none: a peer the coordinator refuses). */
  newHome: (name: string, opts?: { bootstrap?: string[], roles?: Role[] }) => Promise<string>
  startCoordinator: () => Promise<MeshProcess>
  startAgent: (spec: LocalAgentSpec) => Promise<MeshProcess>
  stop: () => Promise<void>
}

export async function startLocalMesh (opts: LocalMeshOptions): Promise<LocalMesh> {
  mkdirSync(opts.dir, { recursive: true })
  const coordinatorHome = join(opts.dir, 'coordinator')
  const coordId = peerIdFromPrivateKey(await loadOrCreateIdentity(coordinatorHome))
  initMesh(coordinatorHome, { mdns: false, coordinator: coordId.toString() })
  const swarmKey = readFileSync(homePaths(coordinatorHome).swarmKey)
  mkdirSync(homePaths(coordinatorHome).coordinatorDir, { recursive: true, mode: 0o700 })
  const access = new AccessList(join(homePaths(coordinatorHome).coordinatorDir, 'access.json'), coordId.toString())
  const ip = opts.coordinatorIp ?? '127.0.0.1'
  const port = opts.coordinatorPort ?? await freePort(ip)
  const bootstrap = `/ip4/${ip}/tcp/${port}/p2p/${coordId.toString()}`
  const newHome = async (name: string, o: { bootstrap?: string[], roles?: Role[] } = {}): Promise<string> => {
    const home = join(opts.dir, name)
    writeMesh(home, swarmKey, { bootstrap: o.bootstrap ?? [bootstrap], mdns: false, coordinator: coordId.toString() })
    const id = peerIdFromPrivateKey(await loadOrCreateIdentity(home)).toString()
    const roles = o.roles ?? ['submitter']
    if (roles.length > 0) access.add(id, roles, name)
    return home
  }
  const clientHome = await newHome('client', { roles: ['submitter', 'admin'] })
  const agents: MeshProcess[] = []
  const mesh: LocalMesh = {
    dir: opts.dir,
    coordinator: undefined as unknown as MeshProcess,
    agents,
    clientHome,
    coordinatorHome,
    bootstrap,
    newHome,
    startCoordinator: async () => {
      const p = startMeshfarm(['coordinator', '--listen', `/ip4/${ip}/tcp/${port}`, ...(opts.coordinatorArgs ?? [])], {
        home: coordinatorHome, env: opts.env, logFile: join(opts.dir, 'coordinator.log'), wrap: opts.coordinatorWrap, entry: opts.coordinatorEntry
      })
      await readyOrKilled(p, /coordinator: ready/)
      mesh.coordinator = p
      return p
    },
    startAgent: async (spec: LocalAgentSpec) => {
      const home = await newHome(`agent-${spec.hostname}`, { roles: ['agent'] })
      const args = ['agent', '--listen', `/ip4/${spec.ip}/tcp/0`, '--hostname', spec.hostname]
      if (spec.slots != null) args.push('--slots', String(spec.slots))
      if (spec.cores != null) args.push('--cores', String(spec.cores))
      if (spec.gpus != null) args.push('--gpus', spec.gpus)
      for (const l of spec.labels ?? []) args.push('--label', l)
      if (process.getuid?.() === 0) args.push('--allow-root')
      args.push(...(spec.extraArgs ?? []))
      const p = startMeshfarm(args, { home, env: { ...opts.env, ...spec.env }, logFile: join(opts.dir, `agent-${spec.hostname}.log`), wrap: spec.wrap })
      await readyOrKilled(p, /agent: connected to coordinator/)
      agents.push(p)
      return p
    },
    stop: async () => {
      await Promise.all(agents.map(async a => await a.stop()))
      await mesh.coordinator?.stop()
    }
  }
  await mesh.startCoordinator()
  // One agent that does not come up must not leave the coordinator and the other agents running unowned.
  const started = await Promise.allSettled(opts.agents.map(async a => await mesh.startAgent(a)))
  const failed = started.find(r => r.status === 'rejected')
  if (failed != null) {
    await mesh.stop()
    throw failed.reason
  }
  return mesh
}

/** Waits for a child's ready line; a child that never says it is killed, not left running with no owner. */
async function readyOrKilled (p: MeshProcess, pattern: RegExp): Promise<void> {
  try {
    await p.waitFor(pattern, 60_000)
  } catch (err) {
    await p.stop('SIGKILL')
    throw err
  }
}
