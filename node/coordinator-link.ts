/**
 * The agent's link to the coordinator: finds it through the mesh, holds one session at a time (hello, welcome,
 * heartbeats, then every message to the reactor), and reconnects with back-off when the session ends. Other parts
 * wait for a session with `nextSession` (a blob download while the coordinator restarts). Stopping is an event:
 * a back-off sleep wakes at once.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { PeerId } from '@libp2p/interface'
import { encodeMessage, type Channel } from '../shared/protocol/codec.ts'
import { MAX_FRAME_BYTES, PROTOCOL_AGENT } from '../shared/protocol/constants.ts'
import { MeshfarmError, errorMessage, isMeshfarmError } from '../shared/util/errors.ts'
import type { MeshNode } from '../shared/net/mesh.ts'
import type { MeshConfig } from '../shared/local/mesh-config.ts'
import type { AgentMessage, CoordMessage } from '../shared/protocol/messages.ts'
import { COORD_MESSAGES } from '../shared/protocol/schema.ts'
import { uploadBlob } from '../shared/net/blob-protocol.ts'
import { findCoordinator, type CoordinatorAddress } from '../shared/net/discovery.ts'
import { SerialWriter } from '../shared/net/serial-writer.ts'
import { openChannel } from '../shared/net/rpc.ts'
import type { AgentReactor } from './reactor.ts'
import type { Session } from './agent-io.ts'
import { checkAssignments } from './assignment-check.ts'
import type { MemberGate } from './gate.ts'

export type LiveSession = Session & { coordinator: PeerId }

export interface LinkDeps {
  node: MeshNode
  mesh: MeshConfig
  gate: MemberGate
  reactor: AgentReactor
  /** A backend that hears coordinator messages too (a Slurm bridge's backlog). */
  onMessage?: (msg: CoordMessage) => void
  log: (line: string) => void
}

const FIND_TIMEOUT_MS = 5000
const MIN_BACKOFF_MS = 250
const MAX_BACKOFF_MS = 5000

export class CoordinatorLink {
  private readonly deps: LinkDeps
  private live: LiveSession | null = null
  private channel: Channel<CoordMessage, AgentMessage> | null = null
  private readonly waiters: Array<() => void> = []
  private coordinatorAddress: CoordinatorAddress | null = null
  private readonly stopping = new AbortController()
  /** Settles when the reconnect loop has ended (after stopReconnecting and the session's end). */
  readonly ended: Promise<void>

  constructor (deps: LinkDeps) {
    this.deps = deps
    this.ended = this.reconnectLoop()
  }

  get session (): LiveSession | null { return this.live }
  /** Where the coordinator was last found, for the roster this agent serves to others. */
  get known (): CoordinatorAddress | null { return this.coordinatorAddress }

  /** The session now, or the next one; null when the link closes first. Rejects when `signal` aborts. */
  async nextSession (signal: AbortSignal): Promise<LiveSession | null> {
    signal.throwIfAborted()
    if (this.live != null) return this.live
    return await new Promise<LiveSession | null>((resolve, reject) => {
      const onAbort = (): void => { reject(signal.reason) }
      signal.addEventListener('abort', onAbort, { once: true })
      this.waiters.push(() => { signal.removeEventListener('abort', onAbort); resolve(this.live) })
    })
  }

  /** No new session after this one. */
  stopReconnecting (): void {
    this.stopping.abort()
  }

  /** Ends the session now and releases whoever waits for one. */
  close (): void {
    this.stopping.abort()
    this.channel?.abort(new Error('agent stopping'))
    this.wake()
  }

  private wake (): void {
    for (const wake of this.waiters.splice(0)) wake()
  }

  private async reconnectLoop (): Promise<void> {
    const { node, mesh, gate, log } = this.deps
    let backoff = MIN_BACKOFF_MS
    while (!this.stopping.signal.aborted) {
      try {
        const coord = await findCoordinator(node, mesh, FIND_TIMEOUT_MS)
        gate.setCoordinator(coord.toString())
        this.coordinatorAddress = { peerId: coord.toString(), addrs: (await node.peerStore.get(coord)).addresses.map(a => a.multiaddr.toString()) }
        backoff = MIN_BACKOFF_MS
        await this.runSession(coord)
        if (!this.stopping.signal.aborted) log('agent: coordinator went away; reconnecting')
      } catch (err) {
        if (this.stopping.signal.aborted) break
        if (!isMeshfarmError(err) || err.code !== 'NO_COORDINATOR') log(`agent: session ended: ${errorMessage(err)}`)
        await sleep(backoff, undefined, { signal: this.stopping.signal }).catch(() => {})
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS)
      }
    }
  }

  /** One session with the coordinator; returns when the stream ends. */
  private async runSession (coord: PeerId): Promise<void> {
    const { node, reactor, log } = this.deps
    const ch = await openChannel<CoordMessage, AgentMessage>(node, coord, PROTOCOL_AGENT, COORD_MESSAGES)
    this.channel = ch
    const writer = new SerialWriter(ch)
    const send = (msg: AgentMessage): boolean => {
      const frame = encodeMessage(msg)
      if (frame.byteLength - 4 > MAX_FRAME_BYTES) return false
      writer.sendFrame(frame)
      return true
    }
    let heartbeat: NodeJS.Timeout | undefined
    try {
      send(reactor.hello())
      const welcome = await ch.expect()
      if (welcome.t !== 'coord.welcome') throw new MeshfarmError('PROTOCOL', `expected coord.welcome, got ${welcome.t}`)
      this.live = { coordinator: coord, send, upload: async (ref, path) => { await uploadBlob(node, coord, ref.hash, ref.size, path) } }
      this.wake()
      reactor.sessionUp()
      log(`agent: connected to coordinator ${coord.toString().slice(-8)}`)
      heartbeat = setInterval(() => { reactor.heartbeat() }, Math.max(100, welcome.heartbeatMs))
      while (true) {
        const msg = await ch.read()
        if (msg == null) break
        if (msg.t === 'coord.assign') msg.assignments = checkAssignments(msg.assignments, line => { log(`agent: ${line}`) })
        this.deps.onMessage?.(msg)
        reactor.message(msg, Date.now())
      }
    } finally {
      clearInterval(heartbeat)
      writer.close()
      this.channel = null
      if (this.live != null) {
        this.live = null
        reactor.sessionDown()
      }
    }
  }
}
