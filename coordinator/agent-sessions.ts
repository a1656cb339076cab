/**
 * One long-lived session per agent (PROTOCOL_AGENT): the agent says hello, then heartbeats, started notices,
 * results and the rest; the coordinator welcomes it, sends the mesh's members (its connection gate) and then
 * assignments, cancels and acks. Every message is checked against its schema before it reaches the core (the
 * Channel does that), each result on its own: a malformed result fails its task with the reason instead of
 * holding the agent's queue forever. Messages of one session are handled in the order they came.
 */
import type { Connection, Stream } from '@libp2p/interface'
import { Channel } from '../shared/protocol/codec.ts'
import type { AgentMessage, AttemptResult, CoordMessage } from '../shared/protocol/messages.ts'
import { AGENT_MESSAGES, checkAttemptResult } from '../shared/protocol/schema.ts'
import { SerialWriter } from '../shared/net/serial-writer.ts'
import { MeshfarmError, errorMessage } from '../shared/util/errors.ts'
import type { BlobStore } from '../shared/files/blob-store.ts'
import type { CommitLoop } from './commit-loop.ts'
import type { CoordinatorCore } from './core.ts'
import type { AccessList } from './access.ts'
import type { LogRelay } from './log-relay.ts'

const EMPTY_HASH = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
/** Time an agent has to say hello once its session stream is open. */
const HELLO_TIMEOUT_MS = 15_000

export interface AgentSessionDeps {
  core: CoordinatorCore
  loop: CommitLoop
  acl: AccessList
  blobs: BlobStore
  logs: LogRelay
  heartbeatMs: number
  log: (line: string) => void
}

export class AgentSessions {
  private readonly deps: AgentSessionDeps
  private readonly writers = new Map<string, SerialWriter<CoordMessage>>()

  constructor (deps: AgentSessionDeps) {
    this.deps = deps
  }

  /** Sends to an agent's live session; a message for an agent without one is dropped (it reconciles on hello). */
  deliver (agentId: string, msg: CoordMessage): void {
    this.writers.get(agentId)?.send(msg)
  }

  /** Tells every connected agent who may connect to it (after the access list changed). */
  broadcastMembers (): void {
    const msg: CoordMessage = { t: 'coord.members', peerIds: this.deps.acl.memberIds() }
    for (const w of this.writers.values()) w.send(msg)
  }

  closeAll (): void {
    for (const w of this.writers.values()) w.close()
    this.writers.clear()
  }

  async serve (stream: Stream, connection: Connection): Promise<void> {
    const { core, loop, acl, log } = this.deps
    const agentId = connection.remotePeer.toString()
    const ch = new Channel<AgentMessage, CoordMessage>(stream, { accept: AGENT_MESSAGES })
    const writer = new SerialWriter(ch)
    try {
      acl.require(agentId, 'agent', 'running tasks')
      const hello = await withTimeout(ch.expect(), HELLO_TIMEOUT_MS, 'no agent.hello')
      if (hello.t !== 'agent.hello') throw new MeshfarmError('PROTOCOL', 'an agent session starts with agent.hello')
      const previous = this.writers.get(agentId)
      this.writers.set(agentId, writer)
      previous?.close()
      writer.send({ t: 'coord.welcome', heartbeatMs: this.deps.heartbeatMs })
      writer.send({ t: 'coord.members', peerIds: acl.memberIds() })
      await loop.run(() => { core.onAgentHello(agentId, hello.resources, hello.running, hello.pending, hello.draining, [connection.remoteAddr.toString()], Date.now(), hello.status, hello.crashed) })
      log(`coordinator: agent ${hello.resources.hostname} (${agentId.slice(-8)}) joined with ${hello.resources.slots} slots`)
      while (true) {
        const msg = await ch.read()
        if (msg == null) break
        await this.onMessage(agentId, msg, writer)
      }
    } catch (err) {
      log(`coordinator: agent ${agentId.slice(-8)}: ${errorMessage(err)}`)
      ch.abort(err as Error)
    } finally {
      if (this.writers.get(agentId) === writer) {
        this.writers.delete(agentId)
        core.onAgentDisconnected(agentId)
      }
    }
  }

  private async onMessage (agentId: string, msg: AgentMessage, writer: SerialWriter<CoordMessage>): Promise<void> {
    const { core, loop } = this.deps
    const now = Date.now
    // Handlers are queued in order; only results wait (for their files), so nothing overtakes them.
    const fire = (handler: () => void): void => { loop.run(handler).catch(err => { this.deps.log(`coordinator: agent ${agentId.slice(-8)}: ${errorMessage(err)}`) }) }
    switch (msg.t) {
      case 'agent.heartbeat':
        // Most heartbeats only say the agent is alive: no transaction, no scheduling pass for them.
        if (core.heartbeatOnly(agentId, msg.running, now())) return
        return fire(() => { core.onHeartbeat(agentId, msg.running, now()) })
      case 'agent.started': return fire(() => { core.onStarted(agentId, msg.attemptIds, now()) })
      case 'agent.suspended': return fire(() => { core.onSuspended(agentId, msg.attemptIds, now()) })
      case 'agent.continued': return fire(() => { core.onContinued(agentId, msg.attemptIds, now()) })
      case 'agent.vacated':
        // The agent keeps its notice until it is acknowledged, after the commit.
        loop.run(() => core.onVacated(agentId, msg.attemptIds, msg.kind, msg.reason, now())).then(({ acked, refused }) => {
          writer.send({ t: 'coord.ack', attemptIds: acked, refused })
        }, err => { this.deps.log(`coordinator: vacate notice of ${agentId.slice(-8)} not committed: ${errorMessage(err)}`) })
        return
      case 'agent.update': return fire(() => { core.onAgentUpdate(agentId, msg.resources, msg.status, now()) })
      case 'agent.logs': this.deps.logs.answer(agentId, msg); return
      case 'agent.results': {
        const results = await this.storeOutputs(msg.results)
        loop.run(() => core.onResults(agentId, results, now())).then(({ acked, refused }) => {
          writer.send({ t: 'coord.ack', attemptIds: acked, refused })
        }, err => { this.deps.log(`coordinator: results of ${agentId.slice(-8)} not committed: ${errorMessage(err)}`) })
        return
      }
      case 'agent.hello':
        throw new MeshfarmError('PROTOCOL', 'agent.hello sent twice')
    }
  }

  /**
   * Checks each result and stores its inline outputs (a result is committed only once its files are in the
   * blob store). A result whose body is malformed becomes a failed result naming why; one whose large files
   * are missing waits for the agent to send it again.
   */
  private async storeOutputs (raw: unknown[]): Promise<AttemptResult[]> {
    const out: AttemptResult[] = []
    for (const item of raw) {
      const checked = checkAttemptResult(item)
      if (checked == null) continue
      if ('refused' in checked) {
        out.push(refusedResult(checked.refused))
        continue
      }
      const r = checked.ok
      let complete = true
      for (const f of [r.stdout, r.stderr, ...r.outputs]) {
        // An empty file is nothing to keep (its hash says so): most tasks' stdout and stderr.
        if (f.size === 0) continue
        if (f.data != null) await this.deps.blobs.putBytes(f.hash, f.data)
        else if (!this.deps.blobs.has(f.hash)) complete = false
      }
      if (complete) out.push(r)
    }
    return out
  }
}

/** A result the coordinator cannot take as sent: the task fails, and says why. */
function refusedResult (r: { attemptId: number, jobId: number, index: number, why: string }): AttemptResult {
  const now = Date.now()
  const empty = { name: 'stdout', hash: EMPTY_HASH, size: 0 }
  return {
    attemptId: r.attemptId, jobId: r.jobId, index: r.index, state: 'failed', exitCode: null, signal: null,
    failure: { kind: 'output', message: `result refused by the coordinator: ${r.why}`, retryable: false },
    startedAt: now, endedAt: now, stdout: empty, stderr: { ...empty, name: 'stderr' }, outputs: []
  }
}

async function withTimeout<T> (p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([p, new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new MeshfarmError('TIMEOUT', `${what} within ${ms / 1000} s`)) }, ms) })])
  } finally {
    clearTimeout(timer)
  }
}

export { withTimeout }
