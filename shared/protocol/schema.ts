/**
 * Shape checks for every message that arrives from the network. A hostile or buggy peer may send any msgpack
 * value; anything that does not match the message's schema is refused with one PROTOCOL error, before any
 * handler sees it. Checks are shallow on purpose: handlers check the nested values they use.
 */
import { MeshfarmError } from '../util/errors.ts'

type FieldType = 'string' | 'number' | 'boolean' | 'array' | 'object' | 'bytes' | 'any'
/** A trailing '?' marks an optional field. */
type Schema = Record<string, `${FieldType}` | `${FieldType}?`>

const SCHEMAS: Record<string, Schema> = {
  'agent.hello': { resources: 'object', running: 'array', pending: 'array', draining: 'boolean', status: 'object?' },
  'agent.heartbeat': { running: 'array' },
  'agent.started': { attemptIds: 'array' },
  'agent.results': { results: 'array' },
  'agent.update': { resources: 'object?', status: 'object?' },
  'agent.suspended': { attemptIds: 'array' },
  'agent.continued': { attemptIds: 'array' },
  'agent.vacated': { attemptIds: 'array', kind: 'string', reason: 'string' },
  'agent.logs': { requestId: 'number', data: 'bytes', offset: 'number', eof: 'boolean', error: 'string?' },
  'coord.welcome': { heartbeatMs: 'number' },
  'coord.assign': { assignments: 'array' },
  'coord.cancel': { attemptIds: 'array', reason: 'string' },
  'coord.ack': { attemptIds: 'array', refused: 'array' },
  'coord.drain': {},
  'coord.members': { peerIds: 'array' },
  'coord.logs': { requestId: 'number', attemptId: 'number', stream: 'string', offset: 'number', maxBytes: 'number' },
  'client.ping': {},
  'client.blobs.missing': { hashes: 'array' },
  'client.submit.begin': { job: 'object', total: 'number' },
  'client.submit.tasks': { tasks: 'array' },
  'client.submit.end': {},
  'client.status': { jobId: 'number?' },
  'client.tasks': { jobId: 'number', after: 'number', limit: 'number', states: 'array?' },
  'client.peers': {},
  'client.cancel': { jobId: 'number' },
  'client.results': { jobId: 'number', after: 'number', limit: 'number' },
  'client.job': { jobId: 'number' },
  'client.watch': { jobId: 'number' },
  'client.drain': { peerId: 'string' },
  'client.invite': { role: 'string', ttlMs: 'number' },
  'client.join': { peerId: 'string', name: 'string?' },
  'client.access.list': {},
  'client.access.add': { peerId: 'string', roles: 'array', name: 'string?' },
  'client.access.remove': { peerId: 'string' },
  'reply.invite': { invite: 'string', expiresAt: 'number' },
  'reply.joined': { role: 'string' },
  'reply.access': { peers: 'array' },
  'reply.pong': { peerId: 'string', version: 'string', time: 'number' },
  'reply.blobs.missing': { hashes: 'array' },
  'reply.submitted': { jobId: 'number', total: 'number' },
  'reply.status': { jobs: 'array' },
  'reply.tasks': { tasks: 'array', next: 'any' },
  'reply.peers': { agents: 'array' },
  'reply.cancelled': { jobId: 'number', tasks: 'number' },
  'reply.results': { records: 'array', next: 'number', more: 'boolean', jobState: 'string' },
  'reply.job': { job: 'object', summary: 'object' },
  'reply.progress': { summary: 'object' },
  'reply.drained': { peerId: 'string' },
  'reply.error': { code: 'string', message: 'string' },
  'reply.ok': {},
  'blob.get': { hash: 'string', offset: 'number' },
  'blob.put': { hash: 'string', size: 'number' },
  'blob.header': { size: 'number', offset: 'number' },
  'blob.stored': { hash: 'string' },
  'blob.error': { code: 'string', message: 'string' },
  'roster.query': {},
  'roster.answer': { coordinator: 'any' }
}

export const AGENT_MESSAGES: ReadonlySet<string> = typesWithPrefix('agent.')
export const COORD_MESSAGES: ReadonlySet<string> = typesWithPrefix('coord.')
export const CLIENT_REQUESTS: ReadonlySet<string> = typesWithPrefix('client.')
export const CLIENT_REPLIES: ReadonlySet<string> = typesWithPrefix('reply.')
export const BLOB_REQUESTS: ReadonlySet<string> = new Set(['blob.get', 'blob.put'])
export const BLOB_REPLIES: ReadonlySet<string> = new Set(['blob.header', 'blob.stored', 'blob.error'])
export const ROSTER_MESSAGES: ReadonlySet<string> = typesWithPrefix('roster.')

function typesWithPrefix (prefix: string): ReadonlySet<string> {
  return new Set(Object.keys(SCHEMAS).filter(t => t.startsWith(prefix)))
}

function typeOf (value: unknown): FieldType {
  if (Array.isArray(value)) return 'array'
  if (value instanceof Uint8Array) return 'bytes'
  if (value === null) return 'any'
  const t = typeof value
  if (t === 'string' || t === 'number' || t === 'boolean') return t
  return t === 'object' ? 'object' : 'any'
}

export function validateMessage<T> (msg: unknown, allowed: ReadonlySet<string>): T {
  if (typeOf(msg) !== 'object') throw new MeshfarmError('PROTOCOL', 'frame is not a message object')
  const type = (msg as { t?: unknown }).t
  if (typeof type !== 'string') throw new MeshfarmError('PROTOCOL', 'message has no type')
  if (!allowed.has(type)) throw new MeshfarmError('PROTOCOL', `unexpected message type ${JSON.stringify(type.slice(0, 64))}`)
  const schema = SCHEMAS[type]
  for (const [field, spec] of Object.entries(schema)) {
    const optional = spec.endsWith('?')
    const want = (optional ? spec.slice(0, -1) : spec) as FieldType
    const value = (msg as Record<string, unknown>)[field]
    if (value === undefined) {
      if (optional || want === 'any') continue
      throw new MeshfarmError('PROTOCOL', `${type}: missing field ${field}`)
    }
    if (want === 'any') continue
    if (want === 'number' && !Number.isFinite(value)) throw new MeshfarmError('PROTOCOL', `${type}.${field}: expected a finite number`)
    if (typeOf(value) !== want) throw new MeshfarmError('PROTOCOL', `${type}.${field}: expected ${want}, got ${typeOf(value)}`)
  }
  return msg as T
}

/** Checks used by handlers on nested values from the network. */
export function isFiniteInt (v: unknown, min = 0): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= min
}

export function isHash (v: unknown): v is string {
  return typeof v === 'string' && /^[0-9a-f]{64}$/.test(v)
}
