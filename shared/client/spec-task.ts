/**
 * One task of a job file, read and checked: its command(s), resources, env, inputs and outputs, with `{name}`
 * placeholders filled. Shared by the YAML parser, the tasklist parser and the ictasks config reader.
 */
import { existsSync, statSync } from 'node:fs'
import { basename, isAbsolute, relative, resolve } from 'node:path'
import type { ResultLayout, TaskSpec } from '../protocol/messages.ts'
import { MeshfarmError } from '../util/errors.ts'
import { checkKeys, fill, isMap, parseDuration, parseMemory, relativeName, show, stringMap, wholeNumber, type Params, type SpecContext } from './spec-fields.ts'

export interface LocalInput { src: string, name: string }
export interface ParsedTask extends Omit<TaskSpec, 'inputs'> { inputs: LocalInput[] }

/** What the command line (or the API caller) sets for every task; flags win over the file. */
export interface SpecDefaults {
  cores?: number
  gpus?: number
  memoryMb?: number
  timeoutMs?: number
  env?: Record<string, string>
  constraints?: Record<string, string>
  name?: string
  layout?: ResultLayout
  retries?: number
  /** Files staged into every task's folder (`submit --input`), at the same relative path. */
  inputs?: string[]
  /** Names or globs brought back from every task (`submit --output`). */
  outputs?: string[]
  /** Files staged once per machine (`submit --shared`). */
  shared?: string[]
  /** The folder the paths above are relative to (the CLI passes its working folder); default: the job file's. */
  cwd?: string
}

export const TASK_KEYS = ['name', 'command', 'commands', 'inputs', 'outputs', 'cores', 'gpus', 'memory', 'timeout', 'env', 'constraints', 'affinity', 'id', 'launch_cmd']
const DEFAULT_KEYS = ['cores', 'gpus', 'memory', 'timeout', 'env', 'constraints', 'affinity']

export interface TaskDefaults {
  cores: number
  gpus: number
  memoryMb: number
  timeoutMs: number
  env: Record<string, string>
  constraints: Record<string, string>
  affinity?: string
  /** Job-level inputs and outputs, added to every task. */
  inputs: LocalInput[]
  outputs: string[]
}

export function readDefaults (ctx: SpecContext, raw: unknown): Partial<TaskDefaults> {
  if (raw == null) return {}
  if (!isMap(raw)) ctx.fail('defaults', `must be a map, got ${show(raw)}`)
  checkKeys(ctx, raw, DEFAULT_KEYS, 'defaults')
  const d: Partial<TaskDefaults> = {}
  if (raw.cores != null) d.cores = wholeNumber(ctx, raw.cores, 'defaults.cores', 1)
  if (raw.gpus != null) d.gpus = wholeNumber(ctx, raw.gpus, 'defaults.gpus', 0)
  if (raw.memory != null) d.memoryMb = parseMemory(raw.memory, `${ctx.file}: defaults.memory`)
  if (raw.timeout != null) d.timeoutMs = parseDuration(raw.timeout, `${ctx.file}: defaults.timeout`)
  if (raw.env != null) d.env = stringMap(ctx, raw.env, 'defaults.env')
  if (raw.constraints != null) d.constraints = stringMap(ctx, raw.constraints, 'defaults.constraints')
  if (raw.affinity != null) d.affinity = String(raw.affinity)
  return d
}

/** Flags over the file over built-in defaults; job-level files from flags are found and checked here, once. */
export function mergeDefaults (ctx: SpecContext, fromFile: Partial<TaskDefaults>, overrides: SpecDefaults): TaskDefaults {
  const flagDir = overrides.cwd ?? ctx.baseDir
  return {
    cores: overrides.cores ?? fromFile.cores ?? 1,
    gpus: overrides.gpus ?? fromFile.gpus ?? 0,
    memoryMb: overrides.memoryMb ?? fromFile.memoryMb ?? 0,
    timeoutMs: overrides.timeoutMs ?? fromFile.timeoutMs ?? 0,
    env: { ...fromFile.env, ...overrides.env },
    constraints: { ...fromFile.constraints, ...overrides.constraints },
    affinity: fromFile.affinity,
    inputs: (overrides.inputs ?? []).map(p => stagedAtSamePath(ctx, p, flagDir, '--input')),
    outputs: (overrides.outputs ?? []).map(p => relativeName(ctx, p, '--output'))
  }
}

/** A file the user names as a command would: staged at the same relative path, or by its base name when absolute or outside. */
export function stagedAtSamePath (ctx: SpecContext, given: string, dir: string, field: string): LocalInput {
  const path = resolve(dir, given)
  if (!existsSync(path) || !statSync(path).isFile()) throw new MeshfarmError('FILE_MISSING', `${ctx.file}: ${field}: no such file ${show(given)}`)
  const rel = relative(dir, path)
  const inside = !isAbsolute(given) && rel !== '' && !rel.split('/').includes('..')
  return { src: path, name: relativeName(ctx, inside ? rel : basename(path), field) }
}

export function readInput (ctx: SpecContext, v: unknown, field: string, params: Params): LocalInput {
  let src: string
  let as: string | undefined
  if (typeof v === 'string') src = v
  else if (isMap(v) && typeof v.src === 'string') {
    checkKeys(ctx, v, ['src', 'as'], field)
    src = v.src
    if (v.as != null) as = String(v.as)
  } else ctx.fail(field, `must be a file name or {src, as}, got ${show(v)}`)
  src = fill(ctx, src, params, field)
  const path = resolve(ctx.baseDir, src)
  if (!existsSync(path) || !statSync(path).isFile()) {
    throw new MeshfarmError('FILE_MISSING', `${ctx.file}: ${field}: no such file ${show(src)}`)
  }
  const name = as != null ? fill(ctx, as, params, `${field}.as`) : basename(src)
  return { src: path, name: relativeName(ctx, name, field) }
}

/** Adds job-level inputs to a task's own, refusing two files under one name. */
function withJobInputs (ctx: SpecContext, own: LocalInput[], job: LocalInput[], field: string): LocalInput[] {
  const all = [...own, ...job.filter(j => !own.some(o => o.name === j.name && o.src === j.src))]
  const seen = new Set<string>()
  all.forEach((inp, i) => {
    if (seen.has(inp.name)) ctx.fail(i < own.length ? `${field}.inputs[${i}]` : field, `two inputs are named ${show(inp.name)}`)
    seen.add(inp.name)
  })
  return all
}

export function readTask (ctx: SpecContext, raw: unknown, field: string, index: number, defaults: TaskDefaults, params: Params, extra: { inputs?: LocalInput[], outputs?: string[] } = {}): ParsedTask {
  if (!isMap(raw)) ctx.fail(field, `must be a map with a command, got ${show(raw)}`)
  checkKeys(ctx, raw, TASK_KEYS, field)
  const p: Params = { ...params, index }
  let commands: string[]
  const command = raw.command ?? raw.launch_cmd
  if (command != null && raw.commands != null) ctx.fail(field, "give either 'command' or 'commands', not both")
  if (command != null) {
    if (typeof command !== 'string' || command.trim() === '') ctx.fail(`${field}.command`, `must be a non-empty string, got ${show(command)}`)
    commands = [command]
  } else if (raw.commands != null) {
    if (!Array.isArray(raw.commands) || raw.commands.length === 0) ctx.fail(`${field}.commands`, 'must be a non-empty list of commands')
    commands = raw.commands.map((c, i) => {
      if (typeof c !== 'string' || c.trim() === '') ctx.fail(`${field}.commands[${i}]`, `must be a non-empty string, got ${show(c)}`)
      return c
    })
  } else ctx.fail(field, "needs a 'command' (or 'commands')")
  const name = raw.name ?? raw.id
  const list = (v: unknown, key: string): unknown[] => {
    if (v == null) return []
    if (!Array.isArray(v)) ctx.fail(`${field}.${key}`, `must be a list, got ${show(v)}`)
    return v
  }
  const own = [...list(raw.inputs, 'inputs').map((v, i) => readInput(ctx, v, `${field}.inputs[${i}]`, p)), ...(extra.inputs ?? [])]
  const inputs = withJobInputs(ctx, own, defaults.inputs, field)
  const outputs = [...list(raw.outputs, 'outputs').map((v, i) => {
    if (typeof v !== 'string') ctx.fail(`${field}.outputs[${i}]`, `must be a name or glob, got ${show(v)}`)
    return relativeName(ctx, fill(ctx, v, p, `${field}.outputs[${i}]`), `${field}.outputs[${i}]`)
  }), ...(extra.outputs ?? [])]
  for (const o of defaults.outputs) if (!outputs.includes(o)) outputs.push(o)
  const env = { ...defaults.env, ...(raw.env != null ? stringMap(ctx, raw.env, `${field}.env`) : {}) }
  for (const k of Object.keys(env)) env[k] = fill(ctx, env[k], p, `${field}.env.${k}`)
  const affinityTemplate = raw.affinity != null ? String(raw.affinity) : defaults.affinity
  const task: ParsedTask = {
    index,
    name: name != null ? fill(ctx, String(name), p, `${field}.name`) : `task-${index}`,
    commands: commands.map((c, i) => fill(ctx, c, p, raw.commands != null ? `${field}.commands[${i}]` : `${field}.command`)),
    cores: raw.cores != null ? wholeNumber(ctx, raw.cores, `${field}.cores`, 1) : defaults.cores,
    gpus: raw.gpus != null ? wholeNumber(ctx, raw.gpus, `${field}.gpus`, 0) : defaults.gpus,
    memoryMb: raw.memory != null ? parseMemory(raw.memory, `${ctx.file}: ${field}.memory`) : defaults.memoryMb,
    timeoutMs: raw.timeout != null ? parseDuration(raw.timeout, `${ctx.file}: ${field}.timeout`) : defaults.timeoutMs,
    env,
    constraints: { ...defaults.constraints, ...(raw.constraints != null ? stringMap(ctx, raw.constraints, `${field}.constraints`) : {}) },
    inputs,
    outputs
  }
  if (affinityTemplate != null) task.affinity = fill(ctx, affinityTemplate, p, `${field}.affinity`)
  if (Object.keys(params).length > 0) task.params = { ...params }
  return task
}
