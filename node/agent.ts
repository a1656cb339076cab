/**
 * The agent process: finds the coordinator through the mesh, registers its resources, heartbeats, runs the
 * tasks it is given and delivers their results. Tasks keep running while the coordinator is away; the agent
 * reconnects by itself and delivers what finished meanwhile.
 */
import { join } from 'node:path'
import type { PeerId } from '@libp2p/interface'
import { Channel } from '../shared/protocol/codec.ts'
import { PROTOCOL_AGENT, PROTOCOL_ROSTER } from '../shared/protocol/constants.ts'
import { MeshfarmError, errorMessage } from '../shared/util/errors.ts'
import { ensurePrivateDir, homePaths } from '../shared/local/home.ts'
import { identityFor } from '../shared/local/identity.ts'
import { createMeshNode, HANDLER_OPTIONS, type MeshNode } from '../shared/net/mesh.ts'
import type { MeshConfig } from '../shared/local/mesh-config.ts'
import type { AgentMessage, AgentResources, AttemptResult, CoordMessage } from '../shared/protocol/messages.ts'
import { COORD_MESSAGES } from '../shared/protocol/schema.ts'
import { BlobStore } from '../shared/files/blob-store.ts'
import { downloadBlob, uploadBlob } from '../shared/net/blob-protocol.ts'
import { findCoordinator, serveRoster, type CoordinatorAddress } from '../shared/net/discovery.ts'
import { SerialWriter } from '../shared/net/serial-writer.ts'
import { openChannel } from '../shared/net/rpc.ts'
import { checkTaskSpec, checkFileRef } from '../shared/protocol/schema.ts'
import type { Assignment } from '../shared/protocol/messages.ts'
import { Executor } from './executor.ts'
import { Outbox } from './outbox.ts'
import { lockAgentDir } from './agent-lock.ts'
import { LauncherPool } from './launcher-pool.ts'
import { nativeLauncher } from './native-launcher.ts'
import { stat } from 'node:fs/promises'

export type AgentState = 'starting' | 'running' | 'draining' | 'stopped'

export interface AgentOptions {
  mesh: MeshConfig
  listen: string[]
  resources: AgentResources
  log?: (line: string) => void
}

export interface AgentService {
  node: MeshNode
  state: () => AgentState
  /** Resolves when a drain has finished and the agent stopped by itself. */
  drained: Promise<void>
  stop: () => Promise<void>
}

const RESULT_BATCH = 256

export async function startAgent (opts: AgentOptions): Promise<AgentService> {
  const log = opts.log ?? ((line: string) => { console.log(line) })
  const paths = homePaths(opts.mesh.home)
  const workDir = join(paths.agentDir, 'work')
  const jobsDir = join(paths.agentDir, 'jobs')
  ensurePrivateDir(workDir)
  ensurePrivateDir(jobsDir)
  const unlock = lockAgentDir(paths.agentDir)
  const cache = new BlobStore(join(paths.agentDir, 'cache'))
  const outbox = new Outbox(workDir)
  const recovered = await outbox.load()
  if (recovered > 0) log(`agent: ${recovered} finished result(s) from before the restart wait for delivery`)
  const launcher = new LauncherPool(LauncherPool.sizeFor(opts.resources.slots, opts.resources.cores), nativeLauncher(join(paths.agentDir, 'bin'), log) ?? undefined)
  const node = await createMeshNode({ mesh: opts.mesh, listen: opts.listen, privateKey: await identityFor(opts.mesh.home, opts.mesh.coordinator, 'agent') })
  let state: AgentState = 'starting'
  let coordinator: PeerId | null = null
  let known: CoordinatorAddress | null = null
  let writer: SerialWriter<AgentMessage> | null = null
  let session: Channel<CoordMessage, AgentMessage> | null = null
  let stopping = false
  let resolveDrained!: () => void
  const drained = new Promise<void>(resolve => { resolveDrained = resolve })

  await node.handle(PROTOCOL_ROSTER, (stream) => { serveRoster(stream, () => known) }, HANDLER_OPTIONS)

  const executor = new Executor({
    workDir,
    jobsDir,
    cache,
    launcher,
    resources: opts.resources,
    log,
    fetchToCache: async (hash) => {
      if (coordinator == null) throw new MeshfarmError('NO_COORDINATOR', 'no coordinator to fetch inputs from')
      // A partial download from an earlier try resumes where it stopped.
      const tmp = cache.downloadPath(hash)
      await downloadBlob(node, coordinator, hash, tmp, await fileSize(tmp))
      await cache.adopt(hash, tmp)
    },
    onStarted: (attemptId) => { startedBuffer.push(attemptId); scheduleFlush() },
    onFinished: (result: AttemptResult, dir: string) => {
      void outbox.add(result, dir, writer != null).then(scheduleFlush, err => { log(`agent: cannot keep result of attempt ${result.attemptId}: ${errorMessage(err)}`) })
    }
  })

  // Started notices and results are batched: one message per turn of the loop, not one per task.
  const startedBuffer: number[] = []
  let flushQueued = false
  let flushing = false
  function scheduleFlush (): void {
    if (flushQueued) return
    flushQueued = true
    setImmediate(() => { flushQueued = false; void flush() })
  }

  async function flush (): Promise<void> {
    const w = writer
    if (w == null || coordinator == null) return
    // A task that already finished needs no started notice: its result says it all (short tasks: half the messages).
    const started = startedBuffer.splice(0).filter(id => !outbox.has(id))
    if (started.length > 0) w.send({ t: 'agent.started', attemptIds: started })
    if (flushing) return
    flushing = true
    try {
      while (outbox.waiting > 0 && writer === w) {
        const coord = coordinator
        const batch = await outbox.takeBatch(RESULT_BATCH, async (ref, path) => {
          await uploadBlob(node, coord, ref.hash, ref.size, path)
        })
        if (batch.length === 0) break
        w.send({ t: 'agent.results', results: batch })
      }
    } catch (err) {
      log(`agent: delivering results failed: ${errorMessage(err)}`)
    } finally {
      flushing = false
    }
    maybeFinishDrain()
  }

  function maybeFinishDrain (): void {
    if (state === 'draining' && executor.busy === 0 && outbox.size === 0) {
      log('agent: drained: all tasks finished and delivered; stopping')
      resolveDrained()
    }
  }

  function onCoordMessage (msg: CoordMessage): void {
    switch (msg.t) {
      case 'coord.assign':
        for (const raw of msg.assignments) {
          const a = checkAssignment(raw)
          if (a == null) continue
          if (state === 'draining') {
            executor.cancel([a.attemptId], 'agent is draining')
            continue
          }
          executor.accept(a)
        }
        break
      case 'coord.cancel':
        executor.cancel(msg.attemptIds.filter(Number.isInteger), msg.reason)
        break
      case 'coord.ack':
        void outbox.settle([...msg.attemptIds, ...msg.refused].filter(Number.isInteger)).then(maybeFinishDrain)
        break
      case 'coord.drain':
        state = 'draining'
        log('agent: draining: finishing running tasks, taking no new ones')
        maybeFinishDrain()
        break
      case 'coord.welcome':
        break
    }
  }

  /** One session with the coordinator; returns when the stream ends. */
  async function runSession (coord: PeerId): Promise<void> {
    const ch = await openChannel<CoordMessage, AgentMessage>(node, coord, PROTOCOL_AGENT, COORD_MESSAGES)
    session = ch
    const w = new SerialWriter(ch)
    w.send({ t: 'agent.hello', resources: opts.resources, running: executor.held(), pending: outbox.ids(), draining: state === 'draining' })
    const welcome = await ch.expect()
    if (welcome.t !== 'coord.welcome') throw new MeshfarmError('PROTOCOL', `expected coord.welcome, got ${welcome.t}`)
    coordinator = coord
    writer = w
    if (state === 'starting') state = 'running'
    log(`agent: connected to coordinator ${coord.toString().slice(-8)}`)
    const heartbeat = setInterval(() => { w.send({ t: 'agent.heartbeat', running: executor.held() }) }, welcome.heartbeatMs)
    scheduleFlush()
    try {
      while (true) {
        const msg = await ch.read()
        if (msg == null) break
        onCoordMessage(msg)
      }
    } finally {
      clearInterval(heartbeat)
      writer = null
      session = null
      outbox.requeueInFlight()
    }
  }

  // The connection loop: find the coordinator, hold a session, and start over when it ends.
  const loop = (async () => {
    let backoff = 250
    while (!stopping) {
      try {
        const coord = await findCoordinator(node, opts.mesh, 5000)
        known = { peerId: coord.toString(), addrs: (await node.peerStore.get(coord)).addresses.map(a => a.multiaddr.toString()) }
        backoff = 250
        await runSession(coord)
        if (!stopping) log('agent: coordinator went away; reconnecting')
      } catch (err) {
        if (stopping) break
        if ((err as MeshfarmError).code !== 'NO_COORDINATOR') log(`agent: session ended: ${errorMessage(err)}`)
        await new Promise(resolve => setTimeout(resolve, backoff))
        backoff = Math.min(backoff * 2, 5000)
      }
    }
  })()

  log(`agent: ${opts.resources.hostname} ${node.peerId.toString()} with ${opts.resources.slots} slots, ${opts.resources.cores} cores, ${opts.resources.memoryMb} MB, GPUs [${opts.resources.gpus.map(g => g.index).join(',')}]${opts.resources.runsAsRoot ? ' (running as root)' : ''}`)
  log(`agent: listening on ${node.getMultiaddrs().map(String).join(' ')}`)

  return {
    node,
    state: () => state,
    drained,
    stop: async () => {
      // Running tasks are stopped and reported as cancelled, so the coordinator requeues them at once
      // instead of waiting for this agent to be declared lost.
      executor.stopAll('agent stopped')
      const deadline = Date.now() + 5000
      while ((executor.busy > 0 || outbox.waiting > 0) && writer != null && Date.now() < deadline) {
        scheduleFlush()
        await new Promise(resolve => setTimeout(resolve, 50))
      }
      // Results not yet confirmed wait on disk for the next start.
      await outbox.persistAll()
      stopping = true
      state = 'stopped'
      session?.abort(new Error('agent stopping'))
      await launcher.close()
      await node.stop()
      await loop.catch(() => {})
      unlock()
    }
  }
}

/** Assignments are checked like any input from the network; a malformed one is dropped. */
function checkAssignment (raw: Assignment): Assignment | null {
  try {
    if (!Number.isInteger(raw.attemptId) || !Number.isInteger(raw.jobId) || !Number.isInteger(raw.index)) return null
    return {
      attemptId: raw.attemptId,
      jobId: raw.jobId,
      index: raw.index,
      task: checkTaskSpec(raw.task, raw.index),
      shared: (Array.isArray(raw.shared) ? raw.shared : []).map((f, i) => checkFileRef(f, `shared[${i}]`)),
      gpuIds: Array.isArray(raw.gpuIds) ? raw.gpuIds.filter(Number.isInteger) : [],
      cores: Number.isInteger(raw.cores) && raw.cores > 0 ? raw.cores : 1
    }
  } catch {
    return null
  }
}

async function fileSize (path: string): Promise<number> {
  return (await stat(path).catch(() => null))?.size ?? 0
}
