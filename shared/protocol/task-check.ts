/**
 * Checks a task or file reference that arrived over the network before anyone acts on it. The submitter's own
 * parser (spec.ts) already validated the job; these checks are for peers that skip it.
 */
import type { FileRef, TaskSpec } from './messages.ts'
import { MeshfarmError } from '../util/errors.ts'
import { checkRelativeName } from '../files/safe-path.ts'
import { isFiniteInt, isHash } from './schema.ts'

function fail (where: string, what: string): never {
  throw new MeshfarmError('PROTOCOL', `${where}: ${what}`)
}

function stringMap (v: unknown, where: string): Record<string, string> {
  if (v == null) return {}
  if (typeof v !== 'object' || Array.isArray(v)) fail(where, 'expected a map of strings')
  const out: Record<string, string> = {}
  for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
    if (typeof val !== 'string' || k.includes('\u0000') || val.includes('\u0000')) fail(`${where}.${k}`, 'expected a string without NUL')
    out[k] = val
  }
  return out
}

export function checkFileRef (v: unknown, where: string): FileRef {
  const ref = v as FileRef
  if (ref == null || typeof ref !== 'object') fail(where, 'expected a file reference')
  if (!isHash(ref.hash)) fail(`${where}.hash`, 'not a sha256 hex digest')
  if (!isFiniteInt(ref.size)) fail(`${where}.size`, 'not a size')
  const name = checkRelativeName(String(ref.name), `${where}.name`)
  if (ref.data != null && (!(ref.data instanceof Uint8Array) || ref.data.byteLength !== ref.size)) fail(`${where}.data`, 'inline data does not match its size')
  return { name, hash: ref.hash, size: ref.size, ...(ref.data != null ? { data: ref.data } : {}) }
}

export function checkTaskSpec (v: unknown, index: number): TaskSpec {
  const where = `task ${index}`
  const t = v as Record<string, unknown>
  if (t == null || typeof t !== 'object') fail(where, 'not an object')
  if (t.index !== index) fail(where, `index ${String(t.index)} out of order`)
  const commands = t.commands
  if (!Array.isArray(commands) || commands.length === 0 || commands.some(c => typeof c !== 'string' || c === '' || c.includes('\u0000'))) fail(`${where}.commands`, 'expected a non-empty list of commands')
  if (!isFiniteInt(t.cores, 1)) fail(`${where}.cores`, 'expected a whole number >= 1')
  if (!isFiniteInt(t.gpus)) fail(`${where}.gpus`, 'expected a whole number >= 0')
  if (!isFiniteInt(t.memoryMb)) fail(`${where}.memoryMb`, 'expected a whole number >= 0')
  if (!isFiniteInt(t.timeoutMs)) fail(`${where}.timeoutMs`, 'expected a whole number >= 0')
  if (!Array.isArray(t.inputs)) fail(`${where}.inputs`, 'expected a list')
  if (!Array.isArray(t.outputs) || t.outputs.some(o => typeof o !== 'string')) fail(`${where}.outputs`, 'expected a list of names')
  const outputs = (t.outputs as string[]).map((o, i) => checkRelativeName(o, `${where}.outputs[${i}]`))
  const name = typeof t.name === 'string' && t.name !== '' ? t.name : `task-${index}`
  return {
    index,
    name,
    commands: commands as string[],
    cores: t.cores as number,
    gpus: t.gpus as number,
    memoryMb: t.memoryMb as number,
    timeoutMs: t.timeoutMs as number,
    env: stringMap(t.env, `${where}.env`),
    constraints: stringMap(t.constraints, `${where}.constraints`),
    inputs: (t.inputs as unknown[]).map((f, i) => checkFileRef(f, `${where}.inputs[${i}]`)),
    outputs,
    ...(typeof t.affinity === 'string' && t.affinity !== '' ? { affinity: t.affinity } : {}),
    ...(t.params != null && typeof t.params === 'object' ? { params: t.params as TaskSpec['params'] } : {})
  }
}
