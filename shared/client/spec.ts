/**
 * Job specifications, as ictasks users know them: a YAML job file, a tasklist (one command per line, see
 * tasklist.ts), an ictasks config (see ictasks.ts), or the TypeScript API. Everything is validated before anything
 * is submitted; each problem is one line naming the file, the field and what is wrong, e.g.
 * `sweep.yaml: tasks[3].cores: must be a whole number >= 1, got "two"`.
 *
 * YAML job file:
 *   name: sweep-demo               # default: the file's base name (ictasks: job_id)
 *   label: free text
 *   layout: per-task | flat | ictasks   # results folder layout (ictasks configs default to ictasks)
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
 *   task_distribution: { cores_per_task: 2, gpus_per_task: 1, cores_per_node: 8, ... }   # ictasks, see ictasks.ts
 * Placeholders `{name}` (and `{index}`) are filled in names, commands, env values, inputs, outputs and affinity;
 * `{{` and `}}` are literal braces.
 */
import { existsSync, readFileSync, statSync, globSync } from 'node:fs'
import { basename, dirname, extname, resolve } from 'node:path'
import { parseDocument } from 'yaml'
import type { ResultLayout } from '../protocol/messages.ts'
import { MeshfarmError } from '../util/errors.ts'
import { checkKeys, isMap, show, wholeNumber, SpecContext, type Params } from './spec-fields.ts'
import { mergeDefaults, readDefaults, readInput, readTask, stagedAtSamePath, type LocalInput, type ParsedTask, type SpecDefaults, type TaskDefaults } from './spec-task.ts'
import { ICTASKS_TOP_KEYS, looksLikeIctasks, readIctasksSettings } from './ictasks.ts'
import { parseTasklist } from './tasklist.ts'

export { parseDuration, parseMemory } from './spec-fields.ts'
export { parseTasklist } from './tasklist.ts'
export type { LocalInput, ParsedTask, SpecDefaults } from './spec-task.ts'

export interface ParsedJob {
  name: string
  label?: string
  layout: ResultLayout
  retries: number
  shared: LocalInput[]
  tasks: ParsedTask[]
  specText: string
  specFile: string
  /** At most this many of the job's tasks at once on one agent (ictasks' per-node limits, `parallel -j N`). */
  perAgent?: number
  /** ictasks' stdout_filename/stderr_filename, for the ictasks layout. */
  logNames?: { stdout: string, stderr: string }
}

const LAYOUTS: ResultLayout[] = ['per-task', 'flat', 'ictasks']
const TOP_KEYS = ['name', 'label', 'layout', 'retries', 'defaults', 'shared', 'tasks', 'sweep', ...ICTASKS_TOP_KEYS]
const SWEEP_KEYS = ['mode', 'parameters', 'task']

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

/** A job file: YAML by its extension (.yaml, .yml), else a tasklist, unless `format` says which. */
export function parseJobFile (path: string, overrides: SpecDefaults = {}, format?: 'yaml' | 'tasklist'): ParsedJob {
  if (!existsSync(path) || !statSync(path).isFile()) throw new MeshfarmError('FILE_MISSING', `${path}: no such file`)
  const text = readFileSync(path, 'utf8')
  const baseDir = dirname(resolve(path))
  const ext = extname(path).toLowerCase()
  const yaml = format != null ? format === 'yaml' : ext === '.yaml' || ext === '.yml'
  return yaml ? parseJobYaml(text, path, baseDir, overrides) : parseTasklist(text, path, baseDir, overrides)
}

/**
 * A job from text that has no file name to tell its kind (`meshfarm submit -` reads standard input): YAML when
 * the first line that is not blank or a comment starts with a job-file key (`name:`, `tasks:`, `job_id:`, ...),
 * which no shell command does; else a tasklist. `display` names it in errors; files are relative to baseDir.
 */
export function parseJobText (text: string, display: string, baseDir: string, overrides: SpecDefaults = {}, format?: 'yaml' | 'tasklist'): ParsedJob {
  const first = text.split(/\r?\n/).find(l => l.trim() !== '' && !l.trimStart().startsWith('#')) ?? ''
  const key = /^([A-Za-z_][A-Za-z0-9_]*):(\s|$)/.exec(first)?.[1]
  const yaml = format != null ? format === 'yaml' : (key != null && TOP_KEYS.includes(key)) || first === '---'
  return yaml ? parseJobYaml(text, display, baseDir, overrides) : parseTasklist(text, display, baseDir, overrides)
}

function readTaskList (ctx: SpecContext, raw: unknown): unknown[] {
  if (isMap(raw)) {
    checkKeys(ctx, raw, ['items'], 'tasks')
    if (!Array.isArray(raw.items)) ctx.fail('tasks.items', 'must be a list of tasks')
    return raw.items
  }
  if (!Array.isArray(raw)) ctx.fail('tasks', 'must be a list of tasks')
  return raw
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
  const ictasks = readIctasksSettings(ctx, raw)
  const fromFile = readDefaults(ctx, raw.defaults)
  for (const k of ['cores', 'gpus'] as const) {
    const td = ictasks[k]
    if (td == null) continue
    if (fromFile[k] != null && fromFile[k] !== td) ctx.fail(`task_distribution.${k}_per_task`, `says ${td} but defaults.${k} says ${String(fromFile[k])}: give it once`)
    fromFile[k] = td
  }
  const defaults = mergeDefaults(ctx, fromFile, overrides)
  const tasks: ParsedTask[] = []
  if (raw.tasks != null) {
    const ids = new Map<string, number>()
    readTaskList(ctx, raw.tasks).forEach((t, i) => {
      const task = readTask(ctx, t, `tasks[${i}]`, i, defaults, {})
      const seen = ids.get(task.name)
      if (seen != null) ctx.fail(`tasks[${i}]`, `${isMap(t) && t.id != null ? 'id' : 'name'} ${show(task.name)} is also tasks[${seen}]'s: each task needs its own (it names its results folder)`)
      ids.set(task.name, i)
      tasks.push(task)
    })
  }
  if (raw.sweep != null) tasks.push(...readSweep(ctx, raw.sweep, defaults, tasks.length))
  if (tasks.length === 0) ctx.fail('tasks', 'the job has no tasks: give tasks or a sweep')
  const sharedRaw = raw.shared ?? []
  if (!Array.isArray(sharedRaw)) ctx.fail('shared', 'must be a list of files')
  const shared = sharedRaw.map((v, i) => readInput(ctx, v, `shared[${i}]`, {}))
  for (const s of overrides.shared ?? []) shared.push(stagedAtSamePath(ctx, s, overrides.cwd ?? baseDir, '--shared'))
  const layout = overrides.layout ?? raw.layout ?? (looksLikeIctasks(raw) ? 'ictasks' : 'per-task')
  if (!LAYOUTS.includes(layout as ResultLayout)) ctx.fail('layout', `must be per-task, flat or ictasks, got ${show(layout)}`)
  const retries = overrides.retries ?? (raw.retries != null ? wholeNumber(ctx, raw.retries, 'retries', 0) : 0)
  const name = overrides.name ?? (raw.name ?? raw.job_id ?? basename(file, extname(file)))
  const job: ParsedJob = {
    name: String(name),
    label: raw.label != null ? String(raw.label) : undefined,
    layout: layout as ResultLayout,
    retries,
    shared,
    tasks,
    specText: text,
    specFile: resolve(file)
  }
  if (ictasks.perAgent != null) job.perAgent = ictasks.perAgent
  if (ictasks.logNames != null) job.logNames = ictasks.logNames
  return job
}

