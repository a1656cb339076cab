/**
 * The data the wire protocol carries, as schemas (TypeBox) from which both the checks and the TypeScript types
 * come: one place says what a task, a file reference or an agent's resources look like, and how large any part
 * of them may be. Limits are plausibility bounds: a hostile or buggy peer cannot make a peer hold more than they
 * allow (10^12 slots, a million-entry label map), while any real lab machine and job fits well inside them.
 */
import { Type as T, type Static } from '@sinclair/typebox'

/** Whole numbers that stay exact in a JavaScript number (and in SQLite). */
export const Id = T.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER })
export const Count = T.Integer({ minimum: 0, maximum: 2 ** 31 - 1 })
export const Millis = T.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER })
/** Attempt ids in one message: a batch never holds more than an agent can run. */
export const IdList = T.Array(Id, { maxItems: 100_000 })
export const ShortText = T.String({ maxLength: 256 })
export const Text = T.String({ maxLength: 4096 })
/** Peer ids are base58btc (Ed25519: 52 characters); anything else is refused before it is looked up. */
export const PeerIdText = T.String({ minLength: 1, maxLength: 128, pattern: '^[1-9A-HJ-NP-Za-km-z]+$' })
export const Hash = T.String({ pattern: '^[0-9a-f]{64}$' })
const Labels = T.Record(T.String({ maxLength: 64 }), T.String({ maxLength: 256 }), { maxProperties: 64 })

/** A file known by content: the sha256 hex of its bytes, its size, and the name it takes in a task folder. */
export const FileRef = T.Object({
  name: T.String({ minLength: 1, maxLength: 4096 }),
  hash: Hash,
  size: T.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }),
  /** Small files ride inline. */
  data: T.Optional(T.Uint8Array({ maxByteLength: 8 * 1024 * 1024 }))
}, { additionalProperties: false })
export type FileRef = Static<typeof FileRef>

/** One task as submitted: everything an agent needs to run it, files referenced by hash. memoryMb 0: no reservation. */
export const TaskSpec = T.Object({
  /** Index in the job, 0..n-1. */
  index: Count,
  name: T.String({ maxLength: 1000 }),
  commands: T.Array(T.String({ minLength: 1, maxLength: 256 * 1024 }), { minItems: 1, maxItems: 1000 }),
  env: T.Record(T.String({ maxLength: 256 }), T.String({ maxLength: 64 * 1024 }), { maxProperties: 1000 }),
  inputs: T.Array(FileRef, { maxItems: 100_000 }),
  /** Output names or globs, relative to the task folder. */
  outputs: T.Array(T.String({ minLength: 1, maxLength: 4096 }), { maxItems: 10_000 }),
  timeoutMs: Millis,
  /** Labels an agent must carry (key=value) to run this task. */
  constraints: Labels,
  cores: T.Integer({ minimum: 1, maximum: 4096 }),
  gpus: T.Integer({ minimum: 0, maximum: 64 }),
  memoryMb: T.Integer({ minimum: 0, maximum: 64 * 1024 * 1024 }),
  /** Tasks sharing an affinity key run on the same host. */
  affinity: T.Optional(T.String({ maxLength: 1000 })),
  /** Parameters of a sweep point, recorded in task.json. */
  params: T.Optional(T.Record(T.String({ maxLength: 256 }), T.Union([T.String({ maxLength: 4096 }), T.Number(), T.Boolean()]), { maxProperties: 256 }))
}, { additionalProperties: false })
export type TaskSpec = Static<typeof TaskSpec>
export type Demand = Pick<TaskSpec, 'cores' | 'gpus' | 'memoryMb'>

export const ResultLayout = T.Union([T.Literal('per-task'), T.Literal('flat'), T.Literal('ictasks')])
export type ResultLayout = Static<typeof ResultLayout>

/** A plain file name (no folder, not . or ..), for a task folder. */
const LogName = T.String({ minLength: 1, maxLength: 255, pattern: '^(?!\\.\\.?$)[^/\\\\\\u0000-\\u001f]+$' })

export const JobHeader = T.Object({
  name: T.String({ minLength: 1, maxLength: 200 }),
  label: T.Optional(T.String({ maxLength: 200 })),
  layout: ResultLayout,
  /** Files staged once per machine into the job folder. */
  shared: T.Array(FileRef, { maxItems: 10_000 }),
  /** Retries for tasks that exit non-zero (the agent's death is counted separately). */
  retries: T.Integer({ minimum: 0, maximum: 100 }),
  /** Order among the same person's jobs: higher first (fair share decides between people). */
  priority: T.Optional(T.Integer({ minimum: -1000, maximum: 1000 })),
  /** Keep tasks no agent of the mesh could run today, for agents yet to come. */
  allowUnplaceable: T.Optional(T.Boolean()),
  /** The submitter uploads the job's files after storing it: each task waits only for its own files. */
  inputsToFollow: T.Optional(T.Boolean()),
  /** At most this many of the job's tasks at once on one agent (ictasks' workers per node, `parallel -j N`). */
  perAgent: T.Optional(T.Integer({ minimum: 1, maximum: 4096 })),
  /** The names a task's stdout and stderr take in the ictasks results layout (ictasks' stdout_filename/stderr_filename). */
  logNames: T.Optional(T.Object({ stdout: LogName, stderr: LogName }, { additionalProperties: false })),
  /** The job file as the user wrote it, kept in the results folder. */
  specText: T.String({ maxLength: 1 << 20 }),
  specFile: T.String({ minLength: 1, maxLength: 255 })
}, { additionalProperties: false })
export type JobHeader = Static<typeof JobHeader>

/** Task states; the transitions between them are coordinator/task-states.ts's table. */
export const TaskState = T.Union(['queued', 'held', 'staging', 'running', 'suspended', 'done', 'failed', 'cancelled'].map(s => T.Literal(s as TaskStateName)))
type TaskStateName = 'queued' | 'held' | 'staging' | 'running' | 'suspended' | 'done' | 'failed' | 'cancelled'
export type TaskState = TaskStateName
export const TASK_STATES: readonly TaskState[] = ['queued', 'held', 'staging', 'running', 'suspended', 'done', 'failed', 'cancelled']
export const TERMINAL_STATES: ReadonlySet<TaskState> = new Set(['done', 'failed', 'cancelled'])

export type JobState = 'active' | 'done' | 'failed' | 'cancelled'
export const JobState = T.Union([T.Literal('active'), T.Literal('done'), T.Literal('failed'), T.Literal('cancelled')])

export const FAILURE_KINDS = [
  'exit', 'signal', 'timeout', 'memory', 'staging', 'spawn', 'output', 'agent-lost', 'cancelled', 'crash-limit',
  'node-fail', 'preempted', 'batch', 'internal'
] as const
export type FailureKind = typeof FAILURE_KINDS[number]

/** Why an attempt did not succeed, as data. */
export const Failure = T.Object({
  kind: T.Union(FAILURE_KINDS.map(k => T.Literal(k))),
  message: Text,
  retryable: T.Boolean(),
  /** The words of the system that ended it, kept as they were (a Slurm state such as NODE_FAIL, say). */
  detail: T.Optional(ShortText)
}, { additionalProperties: false })
export type Failure = Static<typeof Failure> & { kind: FailureKind }

/** Where an attempt ran when it ran through a batch system (recorded in task.json). */
export const BackendInfo = T.Object({
  system: ShortText,
  jobId: T.Optional(ShortText),
  arrayIndex: T.Optional(Count),
  node: T.Optional(ShortText)
}, { additionalProperties: false })
export type BackendInfo = Static<typeof BackendInfo>

/** A stretch of time an attempt spent frozen because the machine's owner came back. */
export const Suspension = T.Object({ from: Millis, to: T.Union([Millis, T.Null()]) }, { additionalProperties: false })
export type Suspension = Static<typeof Suspension>

/** What an agent reports when an attempt ends. */
export const AttemptResult = T.Object({
  attemptId: Id,
  jobId: Id,
  index: Count,
  state: T.Union([T.Literal('done'), T.Literal('failed'), T.Literal('cancelled')]),
  exitCode: T.Union([T.Integer({ minimum: -(2 ** 31), maximum: 2 ** 32 }), T.Null()]),
  signal: T.Union([T.String({ maxLength: 32 }), T.Null()]),
  failure: T.Optional(Failure),
  startedAt: Millis,
  endedAt: Millis,
  stdout: FileRef,
  stderr: FileRef,
  outputs: T.Array(FileRef, { maxItems: 10_000 }),
  /** Declared output names (not globs) that the task never wrote. */
  missingOutputs: T.Optional(T.Array(T.String({ maxLength: 4096 }), { maxItems: 10_000 })),
  peakMemoryBytes: T.Optional(T.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER })),
  suspensions: T.Optional(T.Array(Suspension, { maxItems: 10_000 })),
  backend: T.Optional(BackendInfo)
}, { additionalProperties: false })
export type AttemptResult = Static<typeof AttemptResult> & { failure?: Failure }

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
  /** Who submitted the job: the member's name on the access list, or the end of its peer id. */
  owner?: string
  missingOutputs?: string[]
  peakMemoryBytes?: number
  suspensions?: Suspension[]
  /** Times the task was handed back without counting against it (owner returned, allocation ended). */
  vacates?: number
  backend?: BackendInfo
  /** Why a waiting task is not running, in plain words (live records only). */
  why?: string
}

export const GpuInfo = T.Object({
  index: T.Integer({ minimum: 0, maximum: 1023 }),
  model: ShortText,
  memoryMb: T.Integer({ minimum: 0, maximum: 64 * 1024 * 1024 })
}, { additionalProperties: false })
export type GpuInfo = Static<typeof GpuInfo>

export const ISOLATION_MODES = ['slot-users', 'namespace', 'bubblewrap', 'none'] as const

export const AgentResources = T.Object({
  hostname: T.String({ minLength: 1, maxLength: 255 }),
  os: ShortText,
  cores: T.Integer({ minimum: 1, maximum: 4096 }),
  physicalCores: T.Integer({ minimum: 0, maximum: 4096 }),
  memoryMb: T.Integer({ minimum: 0, maximum: 64 * 1024 * 1024 }),
  /** 0 while the agent is stopping or lends nothing: it takes no tasks. */
  slots: T.Integer({ minimum: 0, maximum: 4096 }),
  gpus: T.Array(GpuInfo, { maxItems: 64 }),
  labels: Labels,
  runsAsRoot: T.Boolean(),
  /** The longest task time limit this agent can still honour (an allocation ending, say); absent: no limit. */
  maxTaskMs: T.Optional(Millis),
  /** Which task isolation is in force. */
  isolation: T.Optional(T.Union(ISOLATION_MODES.map(m => T.Literal(m)))),
  /** What runs tasks here: 'local', or a batch system such as 'slurm'. */
  backend: T.Optional(T.String({ maxLength: 32 }))
}, { additionalProperties: false })
export type AgentResources = Static<typeof AgentResources>

/** What the agent tells the coordinator about its owner and its backend, shown in peers and why. */
export const AgentStatus = T.Object({
  /** Desktop harvesting: is the machine lent now, and why (plain words). */
  harvest: T.Optional(T.Object({
    lending: T.Boolean(),
    ownerPresent: T.Union([T.Boolean(), T.Null()]),
    idleSinceMs: T.Optional(T.Union([Millis, T.Null()])),
    lendingUntil: T.Optional(T.Union([Millis, T.Null()])),
    reason: Text
  }, { additionalProperties: false })),
  /** Lines about the backend (a Slurm bridge's allocations and decisions), newest first. */
  notes: T.Optional(T.Array(Text, { maxItems: 20 }))
}, { additionalProperties: false })
export type AgentStatus = Static<typeof AgentStatus>

/** One task placed on an agent. */
export const Assignment = T.Object({
  attemptId: Id,
  jobId: Id,
  index: Count,
  task: TaskSpec,
  shared: T.Array(FileRef, { maxItems: 10_000 }),
  gpuIds: T.Array(T.Integer({ minimum: 0, maximum: 1023 }), { maxItems: 64 }),
  cores: T.Integer({ minimum: 1, maximum: 4096 }),
  /** Who submitted the job, by the coordinator's name for them (shown on the machine by `status --here`). */
  owner: T.Optional(ShortText)
}, { additionalProperties: false })
export type Assignment = Static<typeof Assignment>

export interface JobSummary {
  jobId: number
  name: string
  label?: string
  /** The submitter's peer id, and its name on the access list when it has one. */
  owner: string
  ownerName?: string
  state: JobState
  submittedAt: number
  counts: Record<TaskState, number>
  total: number
  priority?: number
  /** Failed tasks of a finished job (the first few): what failed, with what, and the end of its stderr. */
  failures?: Array<{ index: number, name: string, exitCode: number | null, message: string }>
  /** Tasks of a finished job whose declared outputs were never written (the first few). */
  missingOutputs?: Array<{ index: number, name: string, missing: string[] }>
}

export interface AgentSummary {
  peerId: string
  hostname: string
  addrs: string[]
  /** 'disconnected': its connection is gone but it is not yet declared lost. */
  state: 'up' | 'draining' | 'disconnected' | 'lost'
  cores: number
  memoryMb: number
  gpus: GpuInfo[]
  slots: number
  running: number
  suspended?: number
  labels: Record<string, string>
  runsAsRoot: boolean
  lastSeen: number
  isolation?: string
  backend?: string
  maxTaskMs?: number
  status?: AgentStatus
  /** The member's name on the access list, when it has one. */
  name?: string
}

export function taskId (jobId: number, index: number): string {
  return `${jobId}.${index}`
}

export { ROLES, isRole, type Role } from './roles.ts'
