/**
 * The agent process: the network loop around the reactor. It finds the coordinator through the mesh, holds a
 * session with it (hello, welcome, heartbeats), reconnects with back-off, and feeds the reactor every message and
 * local event; the reactor decides (node/reactor.ts), AgentIO acts (node/agent-io.ts). Tasks keep running while
 * the coordinator is away, and their results arrive when it returns.
 */
import { chmodSync, existsSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { INLINE_BLOB_BYTES, PROTOCOL_BLOB, PROTOCOL_ROSTER } from '../shared/protocol/constants.ts'
import { MeshfarmError, errorMessage } from '../shared/util/errors.ts'
import { homePaths } from '../shared/local/home.ts'
import { identityFor, loadOrCreateIdentity } from '../shared/local/identity.ts'
import { createMeshNode, STREAM_LIMITS, type MeshNode } from '../shared/net/mesh.ts'
import type { MeshConfig } from '../shared/local/mesh-config.ts'
import type { AgentResources } from '../shared/protocol/messages.ts'
import { BlobStore } from '../shared/files/blob-store.ts'
import { serveRoster } from '../shared/net/discovery.ts'
import { AgentReactor, type AgentLifecycle } from './reactor.ts'
import { AgentIO } from './agent-io.ts'
import { CoordinatorLink } from './coordinator-link.ts'
import { fetchBlob } from './blob-fetch.ts'
import { BlobPeer } from './blob-peer.ts'
import { Outbox } from './outbox.ts'
import { Stager } from './staging.ts'
import { MemberGate } from './gate.ts'
import { lockAgentDir } from './agent-lock.ts'
import { LauncherPool } from './launcher/pool.ts'
import { NODE_LAUNCHER } from './launcher/client.ts'
import { nativeLauncher } from './launcher/native.ts'
import { LocalBackend, type LocalTaskHooks } from './backend/local.ts'
import type { Isolation } from './backend/launch-plan.ts'
import { describeIsolation, type IsolationChoice } from './isolation.ts'
import { chooseIsolation, traversableLayout } from './isolation-probe.ts'
import { entryId } from './results.ts'
import { agentPaths, checkWorkDir, prepareDirs, realHome, type AgentPaths } from './work-dir.ts'
import { findBwrap } from './bwrap.ts'
import { remoteIsolation, type RemoteRunner } from './backend/remote.ts'
import { DEFAULT_MACHINE, openMachine, type Machine, type MachineSettings } from './harvest/agent-harvest.ts'

export type { AgentLifecycle } from './reactor.ts'

export interface AgentOptions {
  mesh: MeshConfig
  listen: string[]
  resources: AgentResources
  /** --isolation (default auto); parse it with parseIsolationFlag. */
  isolation?: IsolationChoice
  /** --work-dir: where task and job folders go (default /var/tmp/meshfarm-<uid>/<id>); never the state folder. */
  workDir?: string
  /** Between SIGTERM and SIGKILL for a task being stopped (default 5 s). */
  killGraceMs?: number
  /** How long stop() waits for tasks to end and their vacate notices to be acknowledged (default 5 s). */
  stopGraceMs?: number
  /** Each task's cgroup and limits, and desktop harvesting (node/harvest/agent-harvest.ts); default: cgroups where usable. */
  machine?: MachineSettings
  /** Replaces the machine's task hooks (tests). */
  hooks?: LocalTaskHooks
  /** Tasks run elsewhere (a Slurm bridge): this backend instead of the local launchers and their sandbox. */
  runner?: RemoteRunner
  /** 'js': the Node launcher even where the native one could be built (MESHFARM_LAUNCHER=js); cc builds it. */
  launcher?: { kind: 'auto' | 'js', cc: string }
  log?: (line: string) => void
}

export interface AgentService {
  node: MeshNode
  state: () => AgentLifecycle
  isolation: Isolation
  /** Policies (harvesting, a batch bridge) act through the reactor: suspend, resume, vacate, updateResources. */
  reactor: AgentReactor
  /** Resolves when a drain has finished and the agent stopped taking work by itself. */
  drained: Promise<void>
  stop: () => Promise<void>
}

const LONG_TASK_MS = 1000
const RESULT_BATCH = 256
/** Inline file bytes per agent.results message: well under the frame limit, whatever else the message holds. */
const INLINE_BUDGET_BYTES = 4 * 1024 * 1024
const LOG_PIECE_BYTES = 1024 * 1024
const ROSTER_TIMEOUT_MS = 5000

export async function startAgent (opts: AgentOptions): Promise<AgentService> {
  // Everything this process creates is its own alone (tasks get the usual 022 from the launcher).
  process.umask(0o077)
  const log = opts.log ?? ((line: string) => { console.log(line) })
  const home = realHome(opts.mesh.home)
  const paths = agentPaths(home, { workDir: opts.workDir, uid: process.getuid?.() ?? 0 })
  checkWorkDir(paths)
  prepareDirs(paths, { traversable: false })
  tightenState(paths)
  const unlock = lockAgentDir(paths.state)
  const native = opts.runner != null || opts.launcher?.kind === 'js' ? null : nativeLauncher(paths.bin, log, opts.launcher?.cc)
  const pool = opts.runner != null ? null : new LauncherPool(LauncherPool.sizeFor(opts.resources.slots, opts.resources.cores), native ?? NODE_LAUNCHER)
  try {
    return await startWithLock(opts, log, paths, pool, unlock)
  } catch (err) {
    await pool?.close()
    unlock()
    throw err
  }
}

async function startWithLock (opts: AgentOptions, log: (line: string) => void, paths: AgentPaths, pool: LauncherPool | null, unlock: () => void): Promise<AgentService> {
  const own = peerIdFromPrivateKey(await loadOrCreateIdentity(paths.home)).toString()
  const sharesCoordinatorState = opts.mesh.coordinator === own || existsSync(homePaths(paths.home).coordinatorDir)
  const isolation = await isolationFor(opts, paths, pool, sharesCoordinatorState, log)
  const resources: AgentResources = { ...opts.resources, isolation: isolation.mode }

  const cache = new BlobStore(paths.cache)
  const outbox = new Outbox(paths.outbox, { persistAfterMs: LONG_TASK_MS })
  const { entries, broken } = await outbox.load()
  if (broken > 0) log(`agent: ${broken} unreadable result file(s) from before the restart were removed`)
  if (entries.length > 0) log(`agent: ${entries.length} finished result(s) from before the restart wait for delivery`)

  const gate = new MemberGate(join(paths.state, 'members.json'), opts.mesh.coordinator)
  const node = await createMeshNode({
    mesh: opts.mesh, listen: opts.listen, log, privateKey: await identityFor(opts.mesh.home, opts.mesh.coordinator, 'agent'),
    allowInbound: peer => gate.allows(peer.toString())
  })
  // Peers fetch the chunks of shared inputs this agent holds or is fetching (blob-peer.ts).
  const blobPeer = new BlobPeer({ node, cache, admits: peer => gate.allows(peer), listen: opts.listen, log })
  await blobPeer.start()
  await node.handle(PROTOCOL_BLOB, blobPeer.handler, STREAM_LIMITS.blob)

  // Downloads wait for a session of the link, which is made below, once the reactor exists to run it.
  const fetch = async (hash: string, signal: AbortSignal): Promise<void> => {
    await fetchBlob({
      node, cache, nextCoordinator: async (sig: AbortSignal) => (await link.nextSession(sig))?.coordinator ?? null,
      download: async (coordinator, h, tmp, sig) => { await blobPeer.fetch(coordinator, h, tmp, sig) }
    }, hash, signal)
  }

  const stager = new Stager({ paths, cache, isolation, fetch })
  // A remote backend's tasks may outlive this process: those it finds again are adopted, not crashes.
  const remote = opts.runner != null ? await opts.runner.create({ paths, peerId: node.peerId.toString(), pending: new Set(entries.map(entryId)), log }) : null
  const keep = new Set([...entries.map(entryId), ...(remote?.adopted ?? []).map(a => a.attemptId)])
  const crashed = await stager.launchedWithoutResult(keep)
  if (crashed.length > 0) log(`agent: ${crashed.length} task(s) were running when this agent last stopped without warning; the coordinator counts them as crashes`)
  await stager.clean(keep)
  // A remote backend's tasks run elsewhere: no machine of ours around them (no cgroups, no harvesting).
  const machine: Machine = remote != null ? { hooks: {}, attach: () => {}, close: async () => {} } : await openMachine(opts.machine ?? DEFAULT_MACHINE, { stateDir: paths.state, features: await pool!.features(), log })
  const backend = remote?.backend ?? new LocalBackend({
    launcher: pool!, isolation, killGraceMs: opts.killGraceMs ?? 5000, agentHasGpus: resources.gpus.length > 0, agentPid: process.pid, hooks: opts.hooks ?? machine.hooks
  })
  let finish!: (why: 'drained' | 'stopped') => void
  const finished = new Promise<'drained' | 'stopped'>(resolve => { finish = resolve })
  const io = new AgentIO({
    paths, isolation, stager, backend, outbox, gate, session: () => link.session, log,
    inlineMaxBytes: INLINE_BLOB_BYTES, inlineBudgetBytes: INLINE_BUDGET_BYTES, onFinished: why => { finish(why) }
  })
  const reactor = new AgentReactor(io, {
    resources, longTaskMs: LONG_TASK_MS, resultBatch: RESULT_BATCH, inlineBudgetBytes: INLINE_BUDGET_BYTES,
    inlineMaxBytes: INLINE_BLOB_BYTES, logPieceBytes: LOG_PIECE_BYTES
  })
  io.reactor = reactor
  reactor.start(entries, crashed)
  if (remote != null) reactor.adopt(remote.adopted)
  machine.attach(reactor, resources)

  const link = new CoordinatorLink({ node, mesh: opts.mesh, gate, reactor, onMessage: opts.runner?.onMessage, log })
  // The agent's own protocol: a few streams per peer, each answered or dropped within seconds.
  await node.handle(PROTOCOL_ROSTER, (stream) => {
    const timer = setTimeout(() => { stream.abort(new MeshfarmError('TIMEOUT', 'roster query too slow')) }, ROSTER_TIMEOUT_MS)
    stream.addEventListener('close', () => { clearTimeout(timer) }, { once: true })
    serveRoster(stream, () => link.known)
  }, { maxInboundStreams: 4, maxOutboundStreams: 4 })

  log(`agent: ${resources.hostname} ${node.peerId.toString()} with ${resources.slots} slots, ${resources.cores} cores, ${resources.memoryMb} MB, GPUs [${resources.gpus.map(g => g.index).join(',')}]${resources.runsAsRoot ? ' (running as root)' : ''}`)
  log(`agent: listening on ${node.getMultiaddrs().map(String).join(' ')}`)

  const drained = finished.then(why => {
    if (why === 'drained') log('agent: drained: all tasks finished and delivered; stopping')
  })
  let stopping: Promise<void> | null = null
  const stop = async (): Promise<void> => {
    stopping ??= (async () => {
      // Unfinished attempts are stopped and reported vacated, so the coordinator requeues them at once, without
      // counting them against the tasks; the stop waits for that (or its grace), not for a polling loop.
      const held = reactor.heldIds().length
      if (held > 0) log(`agent: stopping: ${held} unfinished attempt(s) handed back to the coordinator`)
      reactor.stop(Date.now())
      const deadline = setTimeout(() => { reactor.stopDeadline(Date.now()) }, opts.stopGraceMs ?? 5000)
      await finished
      clearTimeout(deadline)
      link.stopReconnecting()
      // Whatever is not yet acknowledged waits on disk for the next start.
      await outbox.persistAll().catch(err => { log(`agent: cannot keep results on disk: ${errorMessage(err)}`) })
      await outbox.idle()
      link.close()
      await backend.close()
      await machine.close().catch(err => { log(`agent: ${errorMessage(err)}`) })
      await stager.close(new Set(reactor.pendingIds())).catch(err => { log(`agent: cleaning the work folder failed: ${errorMessage(err)}`) })
      await blobPeer.close()
      await node.stop()
      await link.ended
      reactor.closed()
      unlock()
    })()
    await stopping
  }
  return { node, state: () => reactor.state, isolation, reactor, drained, stop }
}

/** How this agent's tasks are kept from the mesh's keys: chosen once at start, and said in the log. */
async function isolationFor (opts: AgentOptions, paths: AgentPaths, pool: LauncherPool | null, sharesCoordinatorState: boolean, log: (line: string) => void): Promise<Isolation> {
  if (opts.runner != null || pool == null) {
    log(`agent: ${opts.runner?.isolationLine ?? 'isolation: none'}`)
    return remoteIsolation(sharesCoordinatorState, paths.home)
  }
  const features = await pool.features()
  const bwrap = findBwrap()
  const chosen = await chooseIsolation({
    choice: opts.isolation ?? 'auto',
    facts: { root: process.getuid?.() === 0, nativeSandbox: features.has('sandbox'), canSwitchUser: features.has('user'), bwrap: bwrap != null },
    paths, slots: opts.resources.slots, bwrap, launcher: pool, log, sharesCoordinatorState,
    prepare: traversable => { prepareDirs(paths, { traversable }) }
  })
  const { decision } = chosen
  if (!decision.ok || chosen.isolation == null) throw new MeshfarmError('FORBIDDEN', decision.ok ? 'no isolation' : decision.message)
  prepareDirs(paths, { traversable: traversableLayout(decision.candidate) })
  for (const note of decision.notes) log(`agent: isolation: could not use ${note}`)
  log(`agent: ${describeIsolation(decision.candidate, chosen.isolation.hide)}`)
  return chosen.isolation
}

/** State folders 0700 and the files in them 0600, whatever an older version left (the cache's blobs stay 0444). */
function tightenState (p: AgentPaths): void {
  for (const dir of [p.state, p.outbox, p.capture, p.cache, p.bin]) {
    if ((statSync(dir).mode & 0o777) !== 0o700) chmodSync(dir, 0o700)
  }
  for (const dir of [p.outbox, p.capture]) {
    for (const name of readdirSync(dir)) {
      const f = join(dir, name)
      if ((statSync(f).mode & 0o077) !== 0) chmodSync(f, 0o600)
    }
  }
  for (const name of ['members.json', 'agent.pid']) {
    const f = join(p.state, name)
    if (existsSync(f) && (statSync(f).mode & 0o077) !== 0) chmodSync(f, 0o600)
  }
}
