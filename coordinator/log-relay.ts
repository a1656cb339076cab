/**
 * `meshfarm logs JOB TASK [-f]`: a task's stdout or stderr from whichever agent runs it, and from the blob store
 * once it has ended. The coordinator relays: it asks the agent for a piece (coord.logs) and passes the answer on;
 * following a running task, it asks again when the last piece was empty, twice a second, until the task ends.
 */
import type { AgentMessage, ClientReply, CoordMessage, TaskState } from '../shared/protocol/messages.ts'
import { TERMINAL_STATES } from '../shared/protocol/data.ts'
import type { BlobStore } from '../shared/files/blob-store.ts'
import { MeshfarmError } from '../shared/util/errors.ts'
import type { CoordinatorCore } from './core.ts'
import type { Store } from './store.ts'

const PIECE_BYTES = 256 * 1024
const AGENT_ANSWER_MS = 10_000
const IDLE_POLL_MS = 500

type LogAnswer = Extract<AgentMessage, { t: 'agent.logs' }>

export interface LogRelayDeps {
  core: CoordinatorCore
  store: Store
  blobs: BlobStore
  deliver: (agentId: string, msg: CoordMessage) => void
}

export class LogRelay {
  private readonly deps: LogRelayDeps
  private readonly waiting = new Map<number, { agentId: string, resolve: (a: LogAnswer) => void }>()
  private nextRequest = 1

  constructor (deps: LogRelayDeps) {
    this.deps = deps
  }

  /** An agent's answer to one of our requests; answers nobody asked that agent for are ignored. */
  answer (agentId: string, msg: LogAnswer): void {
    const w = this.waiting.get(msg.requestId)
    if (w == null || w.agentId !== agentId) return
    this.waiting.delete(msg.requestId)
    w.resolve(msg)
  }

  private async ask (agentId: string, attemptId: number, stream: 'stdout' | 'stderr', offset: number): Promise<LogAnswer> {
    const requestId = this.nextRequest++
    return await new Promise<LogAnswer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(requestId)
        reject(new MeshfarmError('TIMEOUT', 'the agent running the task did not answer for its log'))
      }, AGENT_ANSWER_MS)
      this.waiting.set(requestId, { agentId, resolve: a => { clearTimeout(timer); resolve(a) } })
      this.deps.deliver(agentId, { t: 'coord.logs', requestId, attemptId, stream, offset, maxBytes: PIECE_BYTES })
    })
  }

  /** Writes pieces of the log from `offset` until the end (and, with follow, until the task has ended). */
  async serve (req: { jobId: number, index: number, stream: 'stdout' | 'stderr', offset: number, follow: boolean },
    write: (r: Extract<ClientReply, { t: 'reply.logs' }>) => Promise<void>, isOpen: () => boolean): Promise<void> {
    const { core } = this.deps
    const job = core.getJob(req.jobId)
    if (req.index >= job.total) throw new MeshfarmError('NOT_FOUND', `job ${req.jobId} has no task ${req.index}`)
    let offset = req.offset
    while (isOpen()) {
      const state = this.stateOf(req.jobId, req.index)
      if (TERMINAL_STATES.has(state)) {
        await this.fromStore(req, offset, state, write)
        return
      }
      const a = core.attemptOf(req.jobId, req.index)
      if (a == null) {
        if (!req.follow) return await write({ t: 'reply.logs', data: new Uint8Array(0), offset, eof: true, state })
        await sleep(IDLE_POLL_MS)
        continue
      }
      let piece: LogAnswer
      try {
        piece = await this.ask(a.agent, a.id, req.stream, offset)
      } catch (err) {
        if (!req.follow) throw err
        await sleep(IDLE_POLL_MS)
        continue
      }
      if (piece.error != null && !req.follow) throw new MeshfarmError('NOT_FOUND', piece.error)
      if (piece.data.byteLength > 0 || !req.follow) {
        await write({ t: 'reply.logs', data: piece.data, offset, eof: !req.follow && piece.data.byteLength === 0, state })
        offset += piece.data.byteLength
        if (!req.follow && piece.data.byteLength === 0) return
        continue
      }
      await sleep(IDLE_POLL_MS)
    }
  }

  private stateOf (jobId: number, index: number): TaskState {
    const t = this.deps.core.getJob(jobId).tasks
    return t != null ? t.state(index) : (this.deps.store.taskRecord(jobId, index)?.state ?? 'cancelled')
  }

  /** The committed log, from the blob store. */
  private async fromStore (req: { jobId: number, index: number, stream: 'stdout' | 'stderr' }, offset: number, state: TaskState,
    write: (r: Extract<ClientReply, { t: 'reply.logs' }>) => Promise<void>): Promise<void> {
    const ref = this.deps.store.taskRecord(req.jobId, req.index)?.[req.stream]
    if (ref == null || ref.size === 0 || offset >= ref.size || !this.deps.blobs.has(ref.hash)) {
      await write({ t: 'reply.logs', data: new Uint8Array(0), offset, eof: true, state })
      return
    }
    for await (const chunk of this.deps.blobs.read(ref.hash, offset)) {
      const data = chunk as Uint8Array
      await write({ t: 'reply.logs', data, offset, eof: false, state })
      offset += data.byteLength
    }
    await write({ t: 'reply.logs', data: new Uint8Array(0), offset, eof: true, state })
  }
}

async function sleep (ms: number): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms))
}
