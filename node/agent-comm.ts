/**
 * The agent reactor's interface to the world (AgentComm), its options and its lifecycle: what node/agent.ts
 * implements around the reactor, and what tests replace with a recorder.
 */
import type { AgentMessage, AgentResources, AgentStatus, Assignment, AttemptResult, CoordMessage } from '../shared/protocol/messages.ts'
import type { OutboxEntry, ResultEntry } from './results.ts'

/**
 * starting -> connecting <-> running; either -> draining (coord.drain) or stopping (stop); draining -> stopping
 * once every task is finished and delivered; stopping -> stopped once the loop has shut down.
 */
export type AgentLifecycle = 'starting' | 'connecting' | 'running' | 'draining' | 'stopping' | 'stopped'

/** The lifecycle's legal moves; any other is a bug and throws. */
export const LIFECYCLE_NEXT: Record<AgentLifecycle, readonly AgentLifecycle[]> = {
  starting: ['connecting', 'stopping'],
  connecting: ['running', 'draining', 'stopping'],
  running: ['connecting', 'draining', 'stopping'],
  draining: ['stopping'],
  stopping: ['stopped'],
  stopped: []
}

export interface LogRequest {
  requestId: number
  attemptId: number
  stream: 'stdout' | 'stderr'
  offset: number
  maxBytes: number
  /** The attempt has ended: a read that reaches the end of the file is the end. */
  final: boolean
}

/** Everything the reactor does to the world. */
export interface AgentComm {
  /** A message to the coordinator; called only while a session is up. */
  send: (msg: AgentMessage) => void
  /** Asks for flush() on the next turn of the loop (started notices and results go out in batches). */
  requestFlush: () => void
  /** Fetches and places an assignment's files; answers staged() or stageFailed(). */
  stage: (a: Assignment) => void
  abortStaging: (attemptId: number) => void
  /** Runs a staged attempt in a slot; answers taskStarted() and taskExited(). */
  run: (a: Assignment, slot: number) => void
  /** SIGTERM, then SIGKILL after the backend's grace. */
  stop: (attemptId: number) => void
  suspend: (attemptId: number) => void
  resume: (attemptId: number) => void
  /** Reads a finished run's files into its result (stdout, stderr, outputs); answers resultReady(). */
  collect: (skeleton: AttemptResult, skipOutputs: boolean) => void
  /** Removes the folders and files of an attempt that leaves no result. */
  discard: (attemptId: number) => void
  /** Keeps a result or vacate notice until acknowledged; on disk at once, or within a second for short tasks. */
  keep: (entry: OutboxEntry, persistNow: boolean) => void
  /** The session ended: whatever waits only in memory goes to disk. */
  persistPending: () => void
  /** Uploads large files, inlines small ones and sends agent.results; answers delivered() or deliveryFailed(). */
  deliver: (results: ResultEntry[], token: number) => void
  /** The coordinator has these (or refused them): their entries and files go. */
  settle: (attemptIds: number[]) => void
  /** Answers a coord.logs request with agent.logs. */
  readLogs: (req: LogRequest) => void
  /** The peers allowed to connect to this agent besides the coordinator. */
  setMembers: (peerIds: string[]) => void
  /** Drained (every task finished and delivered) or stopped: the loop may shut down. */
  finished: (why: 'drained' | 'stopped') => void
}

export interface ReactorOptions {
  resources: AgentResources
  status?: AgentStatus
  /** Results of attempts that ran at least this long are on disk at once; shorter ones may wait for their ack. */
  longTaskMs: number
  /** Results per agent.results message, and inline bytes per message (larger files go as blobs). */
  resultBatch: number
  inlineBudgetBytes: number
  inlineMaxBytes: number
  /** Largest piece of a log sent in one agent.logs. */
  logPieceBytes: number
}

/** What to read for a coord.logs request (pure): a checked, capped piece; null if the attempt never ran here. */
export function logRead (req: Extract<CoordMessage, { t: 'coord.logs' }>, ran: boolean, finished: boolean, pieceBytes: number): LogRequest | null {
  if (!ran) return null
  const offset = Number.isInteger(req.offset) && req.offset > 0 ? req.offset : 0
  const maxBytes = Math.max(0, Math.min(Number.isInteger(req.maxBytes) ? req.maxBytes : 0, pieceBytes))
  return { requestId: req.requestId, attemptId: req.attemptId, stream: req.stream === 'stderr' ? 'stderr' : 'stdout', offset, maxBytes, final: finished }
}
