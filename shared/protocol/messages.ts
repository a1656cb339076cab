/**
 * The wire protocol: every message any meshfarm peer sends, one schema per message type (the check and the
 * type both come from it), grouped by protocol. Names say the direction: `agent.*` agent -> coordinator,
 * `coord.*` coordinator -> agent, `client.*` client -> coordinator, `reply.*` coordinator -> client.
 * Data shapes (tasks, files, resources) are in data.ts; schema.ts checks a decoded frame against these.
 */
import { OptionalKind, Type as T, type Static, type TObject } from '@sinclair/typebox'
import {
  AgentResources, AgentStatus, Assignment, AttemptResult, Count, FileRef, Hash, Id, IdList, JobHeader, Millis,
  PeerIdText, ShortText, TaskSpec, TaskState, Text
} from './data.ts'
import type { AgentSummary, JobState, JobSummary, TaskRecord } from './data.ts'
import type { MeshEvent } from './events.ts'

export * from './data.ts'

type Props = Record<string, import('@sinclair/typebox').TSchema>
/** A message schema: its type tag and its fields, no other fields allowed. */
function msg<const K extends string, P extends Props> (t: K, props: P): TObject<{ t: import('@sinclair/typebox').TLiteral<K> } & P> {
  return T.Object({ t: T.Literal(t), ...props }, { additionalProperties: false }) as any
}

/** Tasks of one shape waiting in the queue (timeoutMs 0: no time limit). */
const BacklogGroup = T.Object({
  tasks: T.Integer({ minimum: 1, maximum: 100_000_000 }),
  cores: T.Integer({ minimum: 1, maximum: 4096 }),
  memoryMb: T.Integer({ minimum: 0, maximum: 64 * 1024 * 1024 }),
  gpus: T.Integer({ minimum: 0, maximum: 64 }),
  timeoutMs: Millis
}, { additionalProperties: false })
export type BacklogGroupMsg = Static<typeof BacklogGroup>

/** A block of a job's tasks (task-blocks.ts): fields shared by all of them once, the others one value per task. */
const blockFields = ['name', 'commands', 'env', 'inputs', 'outputs', 'timeoutMs', 'constraints', 'cores', 'gpus', 'memoryMb', 'affinity', 'params'] as const
const fieldSchema = (f: typeof blockFields[number]): import('@sinclair/typebox').TSchema => {
  const { [OptionalKind]: _optional, ...schema } = TaskSpec.properties[f] as unknown as Record<string | symbol, unknown>
  return schema as unknown as import('@sinclair/typebox').TSchema
}
const BlockBase = T.Object(Object.fromEntries(blockFields.map(f => [f, T.Optional(fieldSchema(f))])), { additionalProperties: false })
/** null stands for an absent value of an optional field (affinity, params); required ones are checked in schema.ts. */
const BlockCols = T.Object(Object.fromEntries(blockFields.map(f => [f, T.Optional(T.Array(T.Union([fieldSchema(f), T.Null()]), { maxItems: 10_000 }))])), { additionalProperties: false })

const Role = T.Union([T.Literal('agent'), T.Literal('submitter'), T.Literal('admin')])
const MemberName = T.String({ minLength: 1, maxLength: 64 })
const Stream = T.Union([T.Literal('stdout'), T.Literal('stderr')])

// ---- agent <-> coordinator (PROTOCOL_AGENT, one long-lived stream per agent) ----

export const AGENT_MESSAGES = {
  /**
   * running: attempts it runs or holds; pending: finished, result not yet confirmed; crashed: attempts that were
   * running when this agent last stopped without warning (it restarted: they died with it).
   */
  'agent.hello': msg('agent.hello', { resources: AgentResources, running: IdList, pending: IdList, draining: T.Boolean(), status: T.Optional(AgentStatus), crashed: T.Optional(IdList) }),
  'agent.heartbeat': msg('agent.heartbeat', { running: IdList }),
  'agent.started': msg('agent.started', { attemptIds: IdList }),
  /** Each result is checked on its own (see schema.ts): one malformed result must not hold up the others. */
  'agent.results': msg('agent.results', { results: T.Array(T.Unknown(), { maxItems: 10_000 }) }),
  /** Resources changed (a bridge's capacity, a desktop lent or reclaimed) or the status did. */
  'agent.update': msg('agent.update', { resources: T.Optional(AgentResources), status: T.Optional(AgentStatus) }),
  /** Attempts frozen (owner came back) or thawed; they keep their place on this agent. */
  'agent.suspended': msg('agent.suspended', { attemptIds: IdList }),
  'agent.continued': msg('agent.continued', { attemptIds: IdList }),
  /**
   * Attempts stopped and handed back without counting against the task: `vacate` when the agent reclaims its
   * machine, drains or its allocation ends; `preempt` when a batch system took the task back.
   */
  'agent.vacated': msg('agent.vacated', { attemptIds: IdList, kind: T.Union([T.Literal('vacate'), T.Literal('preempt')]), reason: Text }),
  /** Answer to coord.logs: a piece of a running or finished attempt's stdout or stderr. */
  'agent.logs': msg('agent.logs', { requestId: Id, data: T.Uint8Array({ maxByteLength: 1 << 20 }), offset: Millis, eof: T.Boolean(), error: T.Optional(Text) })
}

export const COORD_MESSAGES = {
  'coord.welcome': msg('coord.welcome', { heartbeatMs: T.Integer({ minimum: 100, maximum: 3_600_000 }) }),
  'coord.assign': msg('coord.assign', { assignments: T.Array(Assignment, { maxItems: 10_000 }) }),
  'coord.cancel': msg('coord.cancel', { attemptIds: IdList, reason: Text }),
  'coord.ack': msg('coord.ack', { attemptIds: IdList, refused: IdList }),
  'coord.drain': msg('coord.drain', {}),
  /** The peers an agent may accept connections from besides the coordinator (the access list's members). */
  'coord.members': msg('coord.members', { peerIds: T.Array(PeerIdText, { maxItems: 100_000 }) }),
  /** Asks for up to maxBytes of an attempt's stdout or stderr from offset (logs, logs -f). */
  'coord.logs': msg('coord.logs', { requestId: Id, attemptId: Id, stream: Stream, offset: Millis, maxBytes: T.Integer({ minimum: 1, maximum: 1 << 20 }) }),
  /**
   * To a batch-system bridge (resources.backend not 'local'), when it changed: the queued tasks no agent took in
   * the last scheduling pass whose constraints its labels meet, grouped by shape (its auto-allocation sizes
   * allocations on it). `truncated`: the queue was longer than the coordinator looked.
   */
  'coord.backlog': msg('coord.backlog', { groups: T.Array(BacklogGroup, { maxItems: 64 }), truncated: T.Boolean() })
}

// ---- client <-> coordinator (PROTOCOL_CLIENT, one stream per request) ----

const JobId = T.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER })
const Page = { after: Millis, limit: T.Integer({ minimum: 1, maximum: 100_000 }) }

export const CLIENT_REQUESTS = {
  'client.ping': msg('client.ping', {}),
  'client.blobs.missing': msg('client.blobs.missing', { hashes: T.Array(Hash, { maxItems: 100_000 }) }),
  'client.submit.begin': msg('client.submit.begin', { job: JobHeader, total: T.Integer({ minimum: 1, maximum: 10_000_000 }) }),
  'client.submit.tasks': msg('client.submit.tasks', { tasks: T.Array(T.Unknown(), { maxItems: 10_000 }) }),
  /** Tasks first..first+count-1 as a block (task-blocks.ts): what they share once, what differs as columns. */
  'client.submit.block': msg('client.submit.block', { first: Count, count: T.Integer({ minimum: 1, maximum: 10_000 }), base: BlockBase, cols: BlockCols }),
  'client.submit.end': msg('client.submit.end', {}),
  'client.status': msg('client.status', { jobId: T.Optional(JobId) }),
  'client.tasks': msg('client.tasks', { jobId: JobId, ...Page, states: T.Optional(T.Array(TaskState, { maxItems: 8 })) }),
  'client.peers': msg('client.peers', {}),
  'client.cancel': msg('client.cancel', { jobId: JobId }),
  'client.results': msg('client.results', { jobId: JobId, ...Page }),
  'client.job': msg('client.job', { jobId: JobId }),
  'client.watch': msg('client.watch', { jobId: JobId }),
  /** Follows the event stream after `after` (0: from the oldest kept; beyond the newest: from now); live until closed. */
  'client.events': msg('client.events', { after: Millis, jobId: T.Optional(JobId), follow: T.Boolean() }),
  'client.logs': msg('client.logs', { jobId: JobId, index: Count, stream: Stream, offset: Millis, follow: T.Boolean() }),
  'client.why': msg('client.why', { jobId: JobId, index: T.Optional(Count) }),
  'client.hold': msg('client.hold', { jobId: JobId, index: T.Optional(Count), release: T.Boolean() }),
  'client.drain': msg('client.drain', { peerId: ShortText }),
  'client.invite': msg('client.invite', { role: Role, ttlMs: T.Integer({ minimum: 1000, maximum: 30 * 86_400_000 }), name: T.Optional(MemberName) }),
  'client.join': msg('client.join', { peerId: PeerIdText, name: T.Optional(MemberName) }),
  'client.access.list': msg('client.access.list', {}),
  'client.access.add': msg('client.access.add', { peerId: PeerIdText, roles: T.Array(Role, { minItems: 1, maxItems: 3 }), name: T.Optional(MemberName) }),
  'client.access.remove': msg('client.access.remove', { peerId: ShortText }),
  /** A one-time code for the dashboard's login form, for the person asking. */
  'client.dashboard': msg('client.dashboard', {})
}

/** Replies are checked shallowly: the client trusts its pinned coordinator's records, but not their framing. */
const Records = T.Array(T.Unsafe<TaskRecord>(T.Object({ jobId: Id, index: Count, state: TaskState })), { maxItems: 100_000 })
const Summary = T.Unsafe<JobSummary>(T.Object({ jobId: Id, name: T.String(), state: T.String(), total: Count }))

export const CLIENT_REPLIES = {
  'reply.pong': msg('reply.pong', { peerId: T.String(), version: T.String(), time: Millis }),
  'reply.blobs.missing': msg('reply.blobs.missing', { hashes: T.Array(Hash) }),
  'reply.submitted': msg('reply.submitted', { jobId: Id, total: Count }),
  'reply.status': msg('reply.status', { jobs: T.Array(Summary) }),
  'reply.tasks': msg('reply.tasks', { tasks: Records, next: T.Union([Count, T.Null()]) }),
  'reply.peers': msg('reply.peers', { agents: T.Array(T.Unsafe<AgentSummary>(T.Object({ peerId: T.String(), hostname: T.String() }))) }),
  'reply.cancelled': msg('reply.cancelled', { jobId: Id, tasks: Count }),
  'reply.results': msg('reply.results', { records: Records, next: Millis, more: T.Boolean(), jobState: T.Unsafe<JobState>(T.String()) }),
  'reply.job': msg('reply.job', { job: T.Unsafe<JobHeader>(T.Object({ name: T.String() })), summary: Summary }),
  'reply.progress': msg('reply.progress', { summary: Summary }),
  /** `from`: the sequence number the stream continues after (the first reply says where "now" was). */
  'reply.events': msg('reply.events', { from: T.Optional(Millis), events: T.Array(T.Unsafe<MeshEvent>(T.Object({ seq: Millis, time: Millis, type: T.String() })), { maxItems: 10_000 }) }),
  'reply.logs': msg('reply.logs', { data: T.Uint8Array(), offset: Millis, eof: T.Boolean(), state: T.Unsafe<import('./data.ts').TaskState>(T.String()) }),
  'reply.why': msg('reply.why', { reasons: T.Array(T.Object({ index: T.Optional(Count), name: T.Optional(T.String()), state: T.String(), reason: T.String() })) }),
  'reply.held': msg('reply.held', { jobId: Id, tasks: Count }),
  'reply.drained': msg('reply.drained', { peerId: T.String() }),
  'reply.invite': msg('reply.invite', { invite: T.String(), expiresAt: Millis }),
  'reply.joined': msg('reply.joined', { role: T.String() }),
  'reply.access': msg('reply.access', { peers: T.Array(T.Object({ peerId: T.String(), roles: T.Array(T.String()), name: T.Optional(T.String()), addedAt: Millis })) }),
  'reply.dashboard': msg('reply.dashboard', { url: T.String(), code: T.String(), expiresAt: Millis }),
  'reply.error': msg('reply.error', { code: ShortText, message: Text }),
  'reply.ok': msg('reply.ok', {})
}

// ---- blobs (PROTOCOL_BLOB, one stream per transfer; the coordinator serves them, agents serve chunks to peers) ----

const Bytes32 = T.Uint8Array({ minByteLength: 32, maxByteLength: 32 })
/** A peer that holds a blob or chunks of it, with the addresses the coordinator knows for it. */
const BlobPeer = T.Object({
  peerId: PeerIdText,
  addrs: T.Array(T.String({ maxLength: 512 }), { maxItems: 16 })
}, { additionalProperties: false })

export const BLOB_REQUESTS = {
  /** Bytes from `offset` (to the end, or `length` of them); `bulk`: the asker can take them over the bulk channel. */
  'blob.get': msg('blob.get', { hash: Hash, offset: Millis, length: T.Optional(Millis), bulk: T.Optional(T.Boolean()) }),
  'blob.put': msg('blob.put', { hash: Hash, size: Millis, bulk: T.Optional(T.Boolean()) }),
  /** To the coordinator: who else holds or is fetching this blob; the asker is recorded as one of them. */
  'blob.sources': msg('blob.sources', { hash: Hash }),
  /** To a peer: which chunks of this blob it can serve now. */
  'blob.have': msg('blob.have', { hash: Hash })
}

export const BLOB_REPLIES = {
  'blob.header': msg('blob.header', { size: Millis, offset: Millis, length: T.Optional(Millis) }),
  /**
   * A one-time bulk transfer instead of bytes on this stream: connect to `port` at this connection's address,
   * present `token`; records are sealed under a key derived from `key` (shared/net/bulk/records.ts).
   */
  'blob.bulk': msg('blob.bulk', { size: Millis, offset: Millis, length: Millis, port: T.Integer({ minimum: 1, maximum: 65535 }), token: Bytes32, key: Bytes32 }),
  'blob.stored': msg('blob.stored', { hash: Hash }),
  'blob.error': msg('blob.error', { code: ShortText, message: Text }),
  /**
   * Peers to fetch chunks from, where in the blob this asker starts, and the chunk manifest
   * (shared/files/manifest.ts) when the blob is spread (without one: fetch it whole from the coordinator).
   */
  'blob.sources.reply': msg('blob.sources.reply', {
    size: Millis, start: Count, peers: T.Array(BlobPeer, { maxItems: 64 }), manifest: T.Optional(T.Uint8Array({ maxByteLength: 20 + 4096 * 32 }))
  }),
  /** One bit per chunk held (bit i of byte i >> 3, lowest first), or `complete`; `coming`: those on their way. */
  'blob.have.reply': msg('blob.have.reply', { size: Millis, complete: T.Boolean(), chunks: T.Uint8Array({ maxByteLength: 512 }), coming: T.Optional(T.Uint8Array({ maxByteLength: 512 })) })
}

// ---- roster (PROTOCOL_ROSTER): any peer tells who the coordinator is ----

export const ROSTER_MESSAGES = {
  'roster.query': msg('roster.query', {}),
  'roster.answer': msg('roster.answer', {
    coordinator: T.Union([T.Object({ peerId: PeerIdText, addrs: T.Array(T.String({ maxLength: 512 }), { maxItems: 64 }) }), T.Null()])
  })
}

type Union<S extends Record<string, TObject>> = { [K in keyof S]: Static<S[K]> }[keyof S]

/** agent.results carries AttemptResults, checked one by one at the edge. */
export type AgentMessage = Exclude<Union<typeof AGENT_MESSAGES>, { t: 'agent.results' }> | { t: 'agent.results', results: AttemptResult[] }
export type CoordMessage = Union<typeof COORD_MESSAGES>
/** client.submit.tasks carries TaskSpecs, checked one by one at the edge (with their place in the job); a block is checked whole. */
export type ClientRequest = Exclude<Union<typeof CLIENT_REQUESTS>, { t: 'client.submit.tasks' | 'client.submit.block' }> | { t: 'client.submit.tasks', tasks: TaskSpec[] }
  | ({ t: 'client.submit.block' } & import('./task-blocks.ts').TaskBlock)
export type ClientReply = Union<typeof CLIENT_REPLIES>
export type BlobRequest = Union<typeof BLOB_REQUESTS>
export type BlobReply = Union<typeof BLOB_REPLIES>
export type RosterMessage = Union<typeof ROSTER_MESSAGES>
export type AnyMessage = AgentMessage | CoordMessage | ClientRequest | ClientReply | BlobRequest | BlobReply | RosterMessage

// Used by the schema table's per-item checks.
export { AttemptResult as AttemptResultSchema, TaskSpec as TaskSpecSchema, FileRef as FileRefSchema, Count, Millis }
