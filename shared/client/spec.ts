/**
 * Job specifications, as ictasks users know them: a YAML job file, a tasklist (one command per line), or the
 * TypeScript API. Everything is validated before anything is submitted; each problem is one line naming the
 * file, the field and what is wrong, e.g. `sweep.yaml: tasks[3].cores: must be a whole number >= 1, got "two"`.
 *
 * YAML job file:
 *   name: sweep-demo               # default: the file's base name
 *   label: free text
 *   layout: per-task | flat        # results folder layout
 *   retries: 1                     # retries for tasks that exit non-zero
 *   defaults: { cores, gpus, memory: 512M, timeout: 10m, env: {}, constraints: {os: linux}, affinity: "{chip}" }
 *   shared: [data/model.bin]       # staged once per machine into the job folder
 *   tasks:                         # explicit tasks (or the ictasks form: tasks: { items: [{id, launch_cmd}] })
 *     - name: first
 *       command: "echo hi > out.txt"        # or commands: [a, b] run in sequence
 *       inputs: [a.txt, {src: data/b.txt, as: b.txt}]
 *       outputs: [out.txt, "*.dat"]
 *   sweep:                         # a parameter sweep expanded into one task per point
 *     mode: product | zip
 *     parameters: { x: [1, 2, 3], y: { range: [0, 10, 2] }, f: { glob: "inputs/*.txt" } }
 *     task: { name: "run-{x}-{y}", command: "sim --x {x} --y {y}", inputs: [...], outputs: [...] }
 * Placeholders `{name}` (and `{index}`) are filled in names, commands, env values, inputs, outputs and affinity;
 * `{{` and `}}` are literal braces.
 */
import { existsSync, readFileSync, statSync, globSync } from 'node:fs'
import { basename, dirname, extname, isAbsolute, resolve } from 'node:path'
import { parseDocument } from 'yaml'
import type { ResultLayout, TaskSpec } from '../protocol/messages.ts'
import { MeshfarmError } from '../util/errors.ts'
import { parseDuration, parseSizeMb } from '../util/units.ts'

export interface LocalInput { src: string, name: string }
export interface ParsedTask extends Omit<TaskSpec, 'inputs'> { inputs: LocalInput[] }
export interface ParsedJob {
  name: string
  label?: string
  layout: ResultLayout
  retries: number
  shared: LocalInput[]
  tasks: ParsedTask[]
  specText: string
  specFile: string
}
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
}

type Params = Record<string, string | number | boolean>

const TOP_KEYS = ['name', 'label', 'layout', 'retries', 'defaults', 'shared', 'tasks', 'sweep', 'job_id', 'task_distribution']
const TASK_KEYS = ['name', 'command', 'commands', 'inputs', 'outputs', 'cores', 'gpus', 'memory', 'timeout', 'env', 'constraints', 'affinity', 'id', 'launch_cmd']
const DEFAULT_KEYS = ['cores', 'gpus', 'memory', 'timeout', 'env', 'constraints', 'affinity']
const SWEEP_KEYS = ['mode', 'parameters', 'task']

class SpecContext {
  readonly file: string
  readonly baseDir: string
  constructor (file: string, baseDir: string) {
    this.file = file
    this.baseDir = baseDir
  }

  fail (field: string, what: string): never {
    throw new MeshfarmError('SPEC_INVALID', `${this.file}: ${field}: ${what}`.replace(/\s*\n\s*/g, ' '))
  }
}

function show (v: unknown): string {
  const s = JSON.stringify(v) ?? String(v)
  return s.length > 60 ? `${s.slice(0, 57)}...` : s
}

function isMap (v: unknown): v is Record<string, unknown> {
  return v != null && typeof v === 'object' && !Array.isArray(v)
}

/** The closest known key, for "did you mean" hints. */
function suggest (key: string, known: string[]): string {
  let best = ''
  let bestDist = 3
  for (const k of known) {
    const d = distance(key, k)
    if (d < bestDist) { best = k; bestDist = d }
  }
  return best !== '' ? ` (did you mean '${best}'?)` : ''
}

function distance (a: string, b: string): number {
  const dp = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)])
  for (let j = 1; j <= b.length; j++) dp[0][j] = j
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      dp[i][j] = Math.min(dp[i - 1][j] + 1, dp[i][j - 1] + 1, dp[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
  }
  return dp[a.length][b.length]
}

function checkKeys (ctx: SpecContext, obj: Record<string, unknown>, known: string[], where: string): void {
  for (const k of Object.keys(obj)) {
    if (!known.includes(k)) ctx.fail(where === '' ? k : `${where}.${k}`, `unknown key${suggest(k, known)}`)
  }
}

// ---- scalar fields ----

const SPEC = { code: 'SPEC_INVALID' } as const

function wholeNumber (ctx: SpecContext, v: unknown, field: string, min: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) ctx.fail(field, `must be a whole number >= ${min}, got ${show(v)}`)
  return v
}

function stringMap (ctx: SpecContext, v: unknown, field: string): Record<string, string> {
  if (!isMap(v)) ctx.fail(field, `must be a map of names to values, got ${show(v)}`)
  const out: Record<string, string> = {}
  for (const [k, val] of Object.entries(v)) {
    if (typeof val === 'string' || typeof val === 'number' || typeof val === 'boolean') out[k] = String(val)
    else ctx.fail(`${field}.${k}`, `must be a string, number or boolean, got ${show(val)}`)
  }
  return out
}

function relativeName (ctx: SpecContext, v: string, field: string): string {
  if (v === '' || v.includes('\u0000')) ctx.fail(field, 'must be a non-empty name')
  if (isAbsolute(v) || v.split('/').includes('..') || v.includes('\\')) ctx.fail(field, `must be a relative name inside the task folder, got ${show(v)}`)
  return v.split('/').filter(s => s !== '' && s !== '.').join('/')
}

// ---- placeholders ----

/**
 * Fills `{name}` placeholders. Only a bare name in braces is one: shell syntax such as `${HOME}`, `{a,b}` or
 * awk's `'{print $1}'` passes through as written, and `{{`/`}}` give literal braces.
 */
function fill (ctx: SpecContext, template: string, params: Params, field: string): string {
  return template.replace(/\{\{|\}\}|(\$?)\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}/g, (whole, dollar: string | undefined, name: string | undefined) => {
    if (whole === '{{') return '{'
    if (whole === '}}') return '}'
    if (dollar === '$') return whole
    const key = name ?? ''
    if (!(key in params)) ctx.fail(field, `unknown placeholder {${key}}${suggest(key, Object.keys(params))}`)
    return String(params[key])
  })
}

// ---- tasks ----

interface TaskDefaults {
  cores: number
  gpus: number
  memoryMb: number
  timeoutMs: number
  env: Record<string, string>
  constraints: Record<string, string>
  affinity?: string
}

function readDefaults (ctx: SpecContext, raw: unknown): Partial<TaskDefaults> {
  if (raw == null) return {}
  if (!isMap(raw)) ctx.fail('defaults', `must be a map, got ${show(raw)}`)
  checkKeys(ctx, raw, DEFAULT_KEYS, 'defaults')
  const d: Partial<TaskDefaults> = {}
  if (raw.cores != null) d.cores = wholeNumber(ctx, raw.cores, 'defaults.cores', 1)
  if (raw.gpus != null) d.gpus = wholeNumber(ctx, raw.gpus, 'defaults.gpus', 0)
  if (raw.memory != null) d.memoryMb = parseSizeMb(raw.memory, `${ctx.file}: defaults.memory`, SPEC)
  if (raw.timeout != null) d.timeoutMs = parseDuration(raw.timeout, `${ctx.file}: defaults.timeout`, SPEC)
  if (raw.env != null) d.env = stringMap(ctx, raw.env, 'defaults.env')
  if (raw.constraints != null) d.constraints = stringMap(ctx, raw.constraints, 'defaults.constraints')
  if (raw.affinity != null) d.affinity = String(raw.affinity)
  return d
}

function mergeDefaults (fromFile: Partial<TaskDefaults>, overrides: SpecDefaults): TaskDefaults {
  return {
    cores: overrides.cores ?? fromFile.cores ?? 1,
    gpus: overrides.gpus ?? fromFile.gpus ?? 0,
    memoryMb: overrides.memoryMb ?? fromFile.memoryMb ?? 0,
    timeoutMs: overrides.timeoutMs ?? fromFile.timeoutMs ?? 0,
    env: { ...fromFile.env, ...overrides.env },
    constraints: { ...fromFile.constraints, ...overrides.constraints },
    affinity: fromFile.affinity
  }
}

function readInput (ctx: SpecContext, v: unknown, field: string, params: Params): LocalInput {
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

function readTask (ctx: SpecContext, raw: unknown, field: string, index: number, defaults: TaskDefaults, params: Params): ParsedTask {
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
  const inputs = list(raw.inputs, 'inputs').map((v, i) => readInput(ctx, v, `${field}.inputs[${i}]`, p))
  const seen = new Set<string>()
  inputs.forEach((inp, i) => {
    if (seen.has(inp.name)) ctx.fail(`${field}.inputs[${i}]`, `two inputs are named ${show(inp.name)}`)
    seen.add(inp.name)
  })
  const outputs = list(raw.outputs, 'outputs').map((v, i) => {
    if (typeof v !== 'string') ctx.fail(`${field}.outputs[${i}]`, `must be a name or glob, got ${show(v)}`)
    return relativeName(ctx, fill(ctx, v, p, `${field}.outputs[${i}]`), `${field}.outputs[${i}]`)
  })
  const env = { ...defaults.env, ...(raw.env != null ? stringMap(ctx, raw.env, `${field}.env`) : {}) }
  for (const k of Object.keys(env)) env[k] = fill(ctx, env[k], p, `${field}.env.${k}`)
  const affinityTemplate = raw.affinity != null ? String(raw.affinity) : defaults.affinity
  const task: ParsedTask = {
    index,
    name: name != null ? fill(ctx, String(name), p, `${field}.name`) : `task-${index}`,
    commands: commands.map((c, i) => fill(ctx, c, p, raw.commands != null ? `${field}.commands[${i}]` : `${field}.command`)),
    cores: raw.cores != null ? wholeNumber(ctx, raw.cores, `${field}.cores`, 1) : defaults.cores,
    gpus: raw.gpus != null ? wholeNumber(ctx, raw.gpus, `${field}.gpus`, 0) : defaults.gpus,
    memoryMb: raw.memory != null ? parseSizeMb(raw.memory, `${ctx.file}: ${field}.memory`, SPEC) : defaults.memoryMb,
    timeoutMs: raw.timeout != null ? parseDuration(raw.timeout, `${ctx.file}: ${field}.timeout`, SPEC) : defaults.timeoutMs,
    env,
    constraints: { ...defaults.constraints, ...(raw.constraints != null ? stringMap(ctx, raw.constraints, `${field}.constraints`) : {}) },
    inputs,
    outputs
  }
  if (affinityTemplate != null) task.affinity = fill(ctx, affinityTemplate, p, `${field}.affinity`)
  if (Object.keys(params).length > 0) task.params = { ...params }
  return task
}

// ---- sweeps ----

function parameterValues (ctx: SpecContext, raw: unknown, field: string): Array<string | number | boolean> {
  if (Array.isArray(raw)) {
    if (raw.length === 0) ctx.fail(field, 'must list at least one value')
    return raw.map((v, i) => {
      if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return v
      return ctx.fail(`${field}[${i}]`, `must be a string, number or boolean, got ${show(v)}`)
    })
  }
  if (isMap(raw) && Array.isArray(raw.range)) {
    const [start, stop, step = 1] = raw.range as number[]
    if (![start, stop, step].every(n => typeof n === 'number' && Number.isFinite(n)) || step === 0) ctx.fail(`${field}.range`, 'must be [start, stop, step] numbers with a non-zero step')
    if ((stop - start) / step > 10_000_000) ctx.fail(`${field}.range`, 'more than 10,000,000 values') // before building them
    const out: number[] = []
    for (let v = start; step > 0 ? v < stop : v > stop; v = +(v + step).toPrecision(12)) {
      out.push(v)
      if (out.length > 10_000_000) ctx.fail(`${field}.range`, 'more than 10,000,000 values')
    }
    if (out.length === 0) ctx.fail(`${field}.range`, 'is empty')
    return out
  }
  if (isMap(raw) && typeof raw.glob === 'string') {
    const found = globSync(raw.glob, { cwd: ctx.baseDir }).map(String).sort()
    if (found.length === 0) ctx.fail(`${field}.glob`, `matches no file: ${show(raw.glob)}`)
    return found
  }
  return ctx.fail(field, 'must be a list, {range: [start, stop, step]} or {glob: pattern}')
}

/** All points of a sweep: the cartesian product, or the lists side by side (zip). */
export function expandSweep (values: Record<string, Array<string | number | boolean>>, mode: 'product' | 'zip'): Params[] {
  const names = Object.keys(values)
  if (mode === 'zip') {
    const n = names.length === 0 ? 0 : values[names[0]].length
    return Array.from({ length: n }, (_, i) => Object.fromEntries(names.map(k => [k, values[k][i]])))
  }
  let points: Params[] = [{}]
  for (const k of names) points = points.flatMap(p => values[k].map(v => ({ ...p, [k]: v })))
  return names.length === 0 ? [] : points
}

function readSweep (ctx: SpecContext, raw: unknown, defaults: TaskDefaults, first: number): ParsedTask[] {
  if (!isMap(raw)) ctx.fail('sweep', `must be a map with parameters and task, got ${show(raw)}`)
  checkKeys(ctx, raw, SWEEP_KEYS, 'sweep')
  const mode = raw.mode ?? 'product'
  if (mode !== 'product' && mode !== 'zip') ctx.fail('sweep.mode', `must be product or zip, got ${show(mode)}`)
  if (!isMap(raw.parameters) || Object.keys(raw.parameters).length === 0) ctx.fail('sweep.parameters', 'must map each parameter name to its values')
  const values: Record<string, Array<string | number | boolean>> = {}
  for (const [k, v] of Object.entries(raw.parameters)) {
    if (k === 'index') ctx.fail(`sweep.parameters.${k}`, "'index' is reserved for the task index")
    values[k] = parameterValues(ctx, v, `sweep.parameters.${k}`)
  }
  if (mode === 'zip') {
    const lengths = new Set(Object.values(values).map(v => v.length))
    if (lengths.size > 1) ctx.fail('sweep.parameters', 'zip needs lists of the same length')
  }
  if (raw.task == null) ctx.fail('sweep.task', 'is missing: give the task template')
  const points = mode === 'zip' ? Object.values(values)[0].length : Object.values(values).reduce((n, v) => n * v.length, 1)
  if (points > 10_000_000) ctx.fail('sweep.parameters', `the sweep has ${points.toLocaleString('en-US')} points, more than 10,000,000`)
  return expandSweep(values, mode).map((params, i) => readTask(ctx, raw.task, 'sweep.task', first + i, defaults, params))
}

// ---- entry points ----

export function parseJobFile (path: string, overrides: SpecDefaults = {}): ParsedJob {
  if (!existsSync(path) || !statSync(path).isFile()) throw new MeshfarmError('FILE_MISSING', `${path}: no such file`)
  const text = readFileSync(path, 'utf8')
  const baseDir = dirname(resolve(path))
  const ext = extname(path).toLowerCase()
  return ext === '.yaml' || ext === '.yml' ? parseJobYaml(text, path, baseDir, overrides) : parseTasklist(text, path, baseDir, overrides)
}

export function parseJobYaml (text: string, file: string, baseDir: string, overrides: SpecDefaults = {}): ParsedJob {
  const ctx: SpecContext = new SpecContext(file, baseDir)
  // prettyErrors computes the line of each error; the message's first line, less its "at line" tail, is the what.
  const doc = parseDocument(text, { prettyErrors: true })
  if (doc.errors.length > 0) {
    const err = doc.errors[0]
    const line = err.linePos?.[0]?.line
    const what = err.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '')
    throw new MeshfarmError('SPEC_INVALID', `${file}: ${line != null ? `line ${line}` : 'YAML'}: ${what}`)
  }
  const raw = doc.toJS() as unknown
  if (!isMap(raw)) ctx.fail('(top)', 'a job file is a map with name, tasks and/or sweep')
  checkKeys(ctx, raw, TOP_KEYS, '')
  const defaults = mergeDefaults(readDefaults(ctx, raw.defaults), overrides)
  const tasks: ParsedTask[] = []
  if (raw.tasks != null) {
    const list = isMap(raw.tasks) && Array.isArray(raw.tasks.items) ? raw.tasks.items : raw.tasks
    if (!Array.isArray(list)) ctx.fail('tasks', 'must be a list of tasks')
    list.forEach((t, i) => tasks.push(readTask(ctx, t, `tasks[${i}]`, i, defaults, {})))
  }
  if (raw.sweep != null) tasks.push(...readSweep(ctx, raw.sweep, defaults, tasks.length))
  if (tasks.length === 0) ctx.fail('tasks', 'the job has no tasks: give tasks or a sweep')
  const sharedRaw = raw.shared ?? []
  if (!Array.isArray(sharedRaw)) ctx.fail('shared', 'must be a list of files')
  const shared = sharedRaw.map((v, i) => readInput(ctx, v, `shared[${i}]`, {}))
  const layout = overrides.layout ?? raw.layout ?? 'per-task'
  if (layout !== 'per-task' && layout !== 'flat') ctx.fail('layout', `must be per-task or flat, got ${show(layout)}`)
  const retries = overrides.retries ?? (raw.retries != null ? wholeNumber(ctx, raw.retries, 'retries', 0) : 0)
  const name = overrides.name ?? (raw.name ?? raw.job_id ?? basename(file, extname(file)))
  return {
    name: String(name),
    label: raw.label != null ? String(raw.label) : undefined,
    layout,
    retries,
    shared,
    tasks,
    specText: text,
    specFile: resolve(file)
  }
}

export function parseTasklist (text: string, file: string, baseDir: string, overrides: SpecDefaults = {}): ParsedJob {
  const ctx: SpecContext = new SpecContext(file, baseDir)
  const defaults = mergeDefaults({}, overrides)
  const commands: string[] = []
  const lineOf: number[] = [] // the file line each command starts on, for error messages
  let pending = ''
  text.split(/\r?\n/).forEach((line, i) => {
    if (pending === '' && (line.trim() === '' || line.trimStart().startsWith('#'))) return
    if (pending === '') lineOf.push(i + 1)
    if (line.endsWith('\\')) {
      pending += line.slice(0, -1) + ' '
      return
    }
    commands.push((pending + line).trim())
    pending = ''
  })
  if (pending.trim() !== '') commands.push(pending.trim())
  else if (pending !== '') lineOf.pop()
  if (commands.length === 0) ctx.fail('line 1', 'the tasklist has no commands')
  const tasks = commands.map((command, index) => readTask(ctx, { command }, `line ${lineOf[index]}`, index, defaults, {}))
  return {
    name: overrides.name ?? basename(file, extname(file)),
    layout: overrides.layout ?? 'per-task',
    retries: overrides.retries ?? 0,
    shared: [],
    tasks,
    specText: text,
    specFile: resolve(file)
  }
}
