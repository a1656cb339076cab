/**
 * The wire protocol: every message any meshfarm peer sends, as discriminated unions on `t`.
 * Names say the direction: `agent.*` agent -> coordinator, `coord.*` coordinator -> agent,
 * `client.*` client -> coordinator, `reply.*` coordinator -> client.
 */

/** A file known by content: the sha256 hex of its bytes, its size, and the name it takes in a task folder. */
export interface FileRef {
  name: string
  hash: string
  size: number
  /** Small files ride inline. */
  data?: Uint8Array
}

/** Resources a task asks for. memoryMb 0 means "no reservation". */
export interface Demand {
  cores: number
  gpus: number
  memoryMb: number
}

/** One task as submitted: everything an agent needs to run it, files referenced by hash. */
export interface TaskSpec extends Demand {
  /** Index in the job, 0..n-1. */
  index: number
  name: string
  commands: string[]
  env: Record<string, string>
  inputs: FileRef[]
  /** Output names or globs, relative to the task folder. */
  outputs: string[]
  timeoutMs: number
  /** Labels an agent must carry (key=value) to run this task. */
  constraints: Record<string, string>
  /** Tasks sharing an affinity key run on the same host. */
  affinity?: string
  /** Parameters of a sweep point, recorded in task.json. */
  params?: Record<string, string | number | boolean>
}

/** per-task: a folder per task; flat: all outputs in one folder; ictasks: `task_<id>/` folders as ictasks writes them. */
export type ResultLayout = 'per-task' | 'flat' | 'ictasks'

export interface JobHeader {
  name: string
  label?: string
  layout: ResultLayout
  /** Files staged once per machine into the job folder. */
  shared: FileRef[]
  /** Retries for tasks that exit non-zero (the agent's death is counted separately). */
  retries: number
  /** The job file as the user wrote it, kept in the results folder. */
  specText: string
  specFile: string
}

export type TaskState = 'queued' | 'staging' | 'running' | 'done' | 'failed' | 'cancelled'
export const TERMINAL_STATES: ReadonlySet<TaskState> = new Set(['done', 'failed', 'cancelled'])

export type JobState = 'active' | 'done' | 'failed' | 'cancelled'

/** Why an attempt did not succeed, as data. */
export interface Failure {
  kind: 'exit' | 'signal' | 'timeout' | 'staging' | 'spawn' | 'agent-lost' | 'cancelled' | 'crash-limit' | 'internal'
  message: string
  retryable: boolean
}

/** What an agent reports when an attempt ends. */
export interface AttemptResult {
  attemptId: number
  jobId: number
  index: number
  state: 'done' | 'failed' | 'cancelled'
  exitCode: number | null
  signal: string | null
  failure?: Failure
  startedAt: number
  endedAt: number
  stdout: FileRef
  stderr: FileRef
  outputs: FileRef[]
}

/** A committed result as the coordinator keeps it and a client fetches it: the body of task.json. */
export interface TaskRecord {
  jobId: number
  index: number
  id: string
  name: string
  commands: string[]
  params?: Record<string, string | number | boolean>
  state: TaskState
  host: string | null
  peerId: string | null
  resources: { cores: number, gpus: number[], memoryMb: number }
  start: string | null
  end: string | null
  durationMs: number | null
  exitCode: number | null
  signal: string | null
  attempts: number
  failure?: Failure
  stdout?: FileRef
  stderr?: FileRef
  outputs: FileRef[]
}

export interface AgentResources {
  hostname: string
  os: string
  cores: number
  physicalCores: number
  memoryMb: number
  slots: number
  gpus: GpuInfo[]
  labels: Record<string, string>
  runsAsRoot: boolean
}

export interface GpuInfo {
  index: number
  model: string
  memoryMb: number
}

/** One task placed on an agent. */
export interface Assignment {
  attemptId: number
  jobId: number
  index: number
  task: TaskSpec
  shared: FileRef[]
  gpuIds: number[]
  cores: number
}

// ---- agent <-> coordinator (PROTOCOL_AGENT, one long-lived stream per agent) ----

export type AgentMessage =
  | { t: 'agent.hello', resources: AgentResources, running: number[], pending: number[], draining: boolean }
  | { t: 'agent.heartbeat', running: number[] }
  | { t: 'agent.started', attemptIds: number[] }
  | { t: 'agent.results', results: AttemptResult[] }

export type CoordMessage =
  | { t: 'coord.welcome', heartbeatMs: number }
  | { t: 'coord.assign', assignments: Assignment[] }
  | { t: 'coord.cancel', attemptIds: number[], reason: string }
  | { t: 'coord.ack', attemptIds: number[], refused: number[] }
  | { t: 'coord.drain' }

// ---- client <-> coordinator (PROTOCOL_CLIENT, one stream per request) ----

export interface JobSummary {
  jobId: number
  name: string
  label?: string
  owner: string
  state: JobState
  submittedAt: number
  counts: Record<TaskState, number>
  total: number
}

export interface AgentSummary {
  peerId: string
  hostname: string
  addrs: string[]
  state: 'up' | 'draining' | 'lost'
  cores: number
  memoryMb: number
  gpus: GpuInfo[]
  slots: number
  running: number
  labels: Record<string, string>
  runsAsRoot: boolean
  lastSeen: number
}

export type ClientRequest =
  | { t: 'client.ping' }
  | { t: 'client.blobs.missing', hashes: string[] }
  | { t: 'client.submit.begin', job: JobHeader, total: number }
  | { t: 'client.submit.tasks', tasks: TaskSpec[] }
  | { t: 'client.submit.end' }
  | { t: 'client.status', jobId?: number }
  | { t: 'client.tasks', jobId: number, after: number, limit: number, states?: TaskState[] }
  | { t: 'client.peers' }
  | { t: 'client.cancel', jobId: number }
  | { t: 'client.results', jobId: number, after: number, limit: number }
  | { t: 'client.job', jobId: number }
  | { t: 'client.watch', jobId: number }
  | { t: 'client.drain', peerId: string }
  | { t: 'client.invite', role: string, ttlMs: number }
  | { t: 'client.join', peerId: string, name?: string }
  | { t: 'client.access.list' }
  | { t: 'client.access.add', peerId: string, roles: string[], name?: string }
  | { t: 'client.access.remove', peerId: string }

export type ClientReply =
  | { t: 'reply.pong', peerId: string, version: string, time: number }
  | { t: 'reply.blobs.missing', hashes: string[] }
  | { t: 'reply.submitted', jobId: number, total: number }
  | { t: 'reply.status', jobs: JobSummary[] }
  | { t: 'reply.tasks', tasks: TaskRecord[], next: number | null }
  | { t: 'reply.peers', agents: AgentSummary[] }
  | { t: 'reply.cancelled', jobId: number, tasks: number }
  | { t: 'reply.results', records: TaskRecord[], next: number, more: boolean, jobState: JobState }
  | { t: 'reply.job', job: JobHeader, summary: JobSummary }
  | { t: 'reply.progress', summary: JobSummary }
  | { t: 'reply.drained', peerId: string }
  | { t: 'reply.invite', invite: string, expiresAt: number }
  | { t: 'reply.joined', role: string }
  | { t: 'reply.access', peers: Array<{ peerId: string, roles: string[], name?: string, addedAt: number }> }
  | { t: 'reply.error', code: string, message: string }
  | { t: 'reply.ok' }

// ---- blobs (PROTOCOL_BLOB, one stream per transfer) ----

export type BlobRequest =
  | { t: 'blob.get', hash: string, offset: number }
  | { t: 'blob.put', hash: string, size: number }

export type BlobReply =
  | { t: 'blob.header', size: number, offset: number }
  | { t: 'blob.stored', hash: string }
  | { t: 'blob.error', code: string, message: string }

// ---- roster (PROTOCOL_ROSTER): any peer tells who the coordinator is ----

export type RosterMessage =
  | { t: 'roster.query' }
  | { t: 'roster.answer', coordinator: { peerId: string, addrs: string[] } | null }

export type AnyMessage = AgentMessage | CoordMessage | ClientRequest | ClientReply | BlobRequest | BlobReply | RosterMessage

export function taskId (jobId: number, index: number): string {
  return `${jobId}.${index}`
}
