/**
 * Checks every message that arrives from the network against its schema (messages.ts), nested fields
 * included, before any handler sees it. A hostile or buggy peer may send any msgpack value: anything that does
 * not match is refused with one PROTOCOL error naming the message and the field, e.g.
 * `agent.hello: resources.slots: must be at most 4096, got 1000000000000`.
 *
 * Checks that a schema cannot express (a file name that would escape its folder, inline data whose length
 * differs from its size, a task out of order) are the `check*` functions below, used where those values are.
 */
import type { TObject, TSchema } from '@sinclair/typebox'
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler'
import { MeshfarmError } from '../util/errors.ts'
import { checkRelativeName } from '../files/safe-path.ts'
import {
  AGENT_MESSAGES as AGENT, BLOB_REPLIES as BLOB_OUT, BLOB_REQUESTS as BLOB_IN, CLIENT_REPLIES as REPLIES,
  CLIENT_REQUESTS as REQUESTS, COORD_MESSAGES as COORD, ROSTER_MESSAGES as ROSTER,
  AttemptResultSchema, FileRefSchema, TaskSpecSchema,
  type AttemptResult, type FileRef, type TaskSpec
} from './messages.ts'
import { REQUIRED_FIELDS, type BlockField, type TaskBlock } from './task-blocks.ts'

/** The message types one end of a protocol accepts, each with its compiled check. */
export interface MessageSet {
  readonly types: ReadonlySet<string>
  /** Throws PROTOCOL with one line naming the message and field; returns the message typed. */
  check: <T>(msg: unknown) => T
}

function show (v: unknown): string {
  let s: string
  try {
    s = v instanceof Uint8Array ? `${v.byteLength} bytes` : (JSON.stringify(v) ?? String(v))
  } catch {
    s = String(v)
  }
  return s.length > 60 ? `${s.slice(0, 57)}...` : s
}

/** The first thing wrong with a value, as `field.path: what, got X`. */
function firstError (check: TypeCheck<TSchema>, value: unknown): string {
  const first = check.Errors(value).First()
  if (first == null) return 'not valid'
  // A hostile key may hold anything: control characters are shown escaped, so the error stays one line.
  const field = first.path.replace(/^\//, '').replaceAll('/', '.').replace(/[\u0000-\u001f\u007f]/g, c => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).slice(0, 200)
  const what = first.message.replace(/^Expected/, 'expected').replace(/^Unexpected property/, 'unknown field')
  return `${field === '' ? '' : `${field}: `}${what}${first.value !== undefined ? `, got ${show(first.value)}` : ''}`
}

const compiled = new Map<TSchema, TypeCheck<TSchema>>()
function compile (schema: TSchema): TypeCheck<TSchema> {
  let c = compiled.get(schema)
  if (c == null) compiled.set(schema, c = TypeCompiler.Compile(schema))
  return c
}

function messageSet (table: Record<string, TObject>): MessageSet {
  const checks = new Map(Object.entries(table).map(([type, schema]) => [type, compile(schema)]))
  return {
    types: new Set(checks.keys()),
    check: <T>(msg: unknown): T => {
      if (msg == null || typeof msg !== 'object' || Array.isArray(msg)) throw new MeshfarmError('PROTOCOL', 'frame is not a message object')
      const type = (msg as { t?: unknown }).t
      if (typeof type !== 'string') throw new MeshfarmError('PROTOCOL', 'message has no type')
      const check = checks.get(type)
      if (check == null) throw new MeshfarmError('PROTOCOL', `unexpected message type ${JSON.stringify(type.slice(0, 64))}`)
      if (!check.Check(msg)) throw new MeshfarmError('PROTOCOL', `${type}: ${firstError(check, msg)}`)
      return msg as T
    }
  }
}

export const AGENT_MESSAGES = messageSet(AGENT)
export const COORD_MESSAGES = messageSet(COORD)
export const CLIENT_REQUESTS = messageSet(REQUESTS)
export const CLIENT_REPLIES = messageSet(REPLIES)
export const BLOB_REQUESTS = messageSet(BLOB_IN)
export const BLOB_REPLIES = messageSet(BLOB_OUT)
export const ROSTER_MESSAGES = messageSet(ROSTER)

export function validateMessage<T> (msg: unknown, allowed: MessageSet): T {
  return allowed.check<T>(msg)
}

// ---- checks a schema cannot express ----

function refuse (where: string, what: string): never {
  throw new MeshfarmError('PROTOCOL', `${where}: ${what}`)
}

const fileRefCheck = compile(FileRefSchema)
const taskSpecCheck = compile(TaskSpecSchema)
const resultCheck = compile(AttemptResultSchema)

/** A file reference from the network: its shape, a name that stays inside its folder, inline data of its size. */
export function checkFileRef (v: unknown, where: string): FileRef {
  if (!fileRefCheck.Check(v)) refuse(where, firstError(fileRefCheck, v))
  return refineFileRef(v as FileRef, where)
}

function refineFileRef (ref: FileRef, where: string): FileRef {
  const name = checkRelativeName(ref.name, `${where}.name`)
  if (ref.data != null && ref.data.byteLength !== ref.size) refuse(`${where}.data`, `inline data of ${ref.data.byteLength} bytes for a file of ${ref.size}`)
  return name === ref.name ? ref : { ...ref, name }
}

/** A task from the network, at its place in the job. */
export function checkTaskSpec (v: unknown, index: number): TaskSpec {
  const where = `task ${index}`
  if (!taskSpecCheck.Check(v)) refuse(where, firstError(taskSpecCheck, v))
  const t = v as TaskSpec
  if (t.index !== index) refuse(where, `index ${t.index} out of order`)
  if (hasNul(t.commands) || hasNul(Object.values(t.env)) || hasNul(Object.keys(t.env))) refuse(where, 'a command or variable holds a NUL byte')
  return {
    ...t,
    name: t.name !== '' ? t.name : `task-${index}`,
    inputs: t.inputs.map((f, i) => refineFileRef(f, `${where}.inputs[${i}]`)),
    outputs: t.outputs.map((o, i) => checkRelativeName(o, `${where}.outputs[${i}]`))
  }
}

/**
 * A block of tasks from the network (client.submit.block, its shape already checked), at its place in the job:
 * columns of its length, every required field given, and per task what checkTaskSpec checks. Refused whole, with
 * one line naming the first bad task and field. File and output names come back normalized.
 */
export function checkTaskBlock (b: TaskBlock, expectedFirst: number, total: number): TaskBlock {
  const last = b.first + b.count - 1
  if (b.first !== expectedFirst) refuse(`tasks ${b.first}-${last}`, `expected task ${expectedFirst} next`)
  if (b.first + b.count > total) refuse(`tasks ${b.first}-${last}`, `more tasks than the announced ${total}`)
  for (const [f, col] of Object.entries(b.cols) as Array<[BlockField, unknown[]]>) {
    if (col.length !== b.count) refuse(`tasks ${b.first}-${last}`, `${f}: ${col.length} values for ${b.count} tasks`)
    if (f in b.base) refuse(`tasks ${b.first}-${last}`, `${f}: given for the block and for each task`)
  }
  for (const f of REQUIRED_FIELDS) {
    const col = b.cols[f]
    if (col == null && !(f in b.base)) refuse(`tasks ${b.first}-${last}`, `${f}: missing`)
    const k = col?.indexOf(null) ?? -1
    if (k >= 0) refuse(`task ${b.first + k}`, `${f}: missing`)
  }
  // What a schema cannot say, for the block's value and each task's own.
  const each = <T>(f: BlockField, check: (v: T, where: string) => T): void => {
    if (f in b.base) (b.base as Record<string, unknown>)[f] = check((b.base as Record<string, T>)[f], `tasks ${b.first}-${last}`)
    const col = b.cols[f] as T[] | undefined
    if (col != null) for (let k = 0; k < col.length; k++) if (col[k] != null) col[k] = check(col[k], `task ${b.first + k}`)
  }
  each<string[]>('commands', (v, where) => { if (hasNul(v)) refuse(where, 'a command holds a NUL byte'); return v })
  each<Record<string, string>>('env', (v, where) => { if (hasNul(Object.values(v)) || hasNul(Object.keys(v))) refuse(where, 'a variable holds a NUL byte'); return v })
  each<FileRef[]>('inputs', (v, where) => v.map((f, i) => refineFileRef(f, `${where}.inputs[${i}]`)))
  each<string[]>('outputs', (v, where) => v.map((o, i) => checkRelativeName(o, `${where}.outputs[${i}]`)))
  return b
}

function hasNul (values: string[]): boolean {
  return values.some(s => s.includes('\u0000'))
}

/**
 * One result of an agent.results message. Returns the result, or, when only its body is malformed, the ids it
 * names and why (the task then fails with that reason rather than waiting forever); null when not even the ids
 * can be read.
 */
export function checkAttemptResult (v: unknown): { ok: AttemptResult } | { refused: { attemptId: number, jobId: number, index: number, why: string } } | null {
  const why = resultCheck.Check(v) ? refineResult(v as AttemptResult) : firstError(resultCheck, v)
  if (typeof why !== 'string') return { ok: why }
  const r = v as Partial<Record<'attemptId' | 'jobId' | 'index', unknown>> | null
  const id = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0
  if (r == null || typeof r !== 'object' || !id(r.attemptId) || !id(r.jobId) || !id(r.index)) return null
  return { refused: { attemptId: r.attemptId, jobId: r.jobId, index: r.index, why } }
}

function refineResult (r: AttemptResult): AttemptResult | string {
  try {
    return {
      ...r,
      stdout: refineFileRef(r.stdout, 'stdout'),
      stderr: refineFileRef(r.stderr, 'stderr'),
      outputs: r.outputs.map((o, i) => refineFileRef(o, `outputs[${i}]`))
    }
  } catch (err) {
    return (err as Error).message
  }
}

/** Checks used on nested values from the network. */
export function isFiniteInt (v: unknown, min = 0): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= min
}

export function isHash (v: unknown): v is string {
  return typeof v === 'string' && /^[0-9a-f]{64}$/.test(v)
}
