/**
 * Tasklists: one shell command per line, as ictasks (`ictasks taskfarm --tasklist`) and most task farms read them.
 *
 * - Blank lines are skipped. `%TASKID%` is replaced by the line's ictasks number: its place among the file's
 *   non-blank lines, from 0 (ictasks.task.load_taskfile). ictasks runs a comment line as a task that does
 *   nothing, so a comment takes a number; meshfarm skips it but keeps the numbering, so task_<N> and
 *   %TASKID% are the same as under ictasks. A task is named `task-N` after that number.
 * - meshfarm extras: `#` lines are comments, a trailing `\` continues a command on the next line, `{index}` is
 *   the task's index in the job (0..n-1, comments and continuations not counted).
 * - Files per line: a trailing shell comment `# meshfarm: in=a.txt,data/b.txt out=*.dat cores=2` names the
 *   line's inputs (staged at the same relative path, so the command still finds them; an absolute path is
 *   staged by its base name) and outputs (names or globs in the task folder, brought back), and optionally
 *   `cores=`, `gpus=`, `memory=`, `timeout=`. It is an ordinary comment to the shell (and to ictasks), so the
 *   tasklist still runs unchanged elsewhere; `#` inside quotes or inside a word is not one.
 * - Job-level `submit --input/--output/--shared` (SpecDefaults) apply to every line.
 */
import { extname, basename, resolve } from 'node:path'
import { fill, parseDuration, parseMemory, relativeName, show, suggest, SpecContext } from './spec-fields.ts'
import type { ParsedJob } from './spec.ts'
import { mergeDefaults, readTask, stagedAtSamePath, type SpecDefaults } from './spec-task.ts'

/** A tasklist is a job without the YAML-only settings. */
export type TasklistJob = Pick<ParsedJob, 'name' | 'layout' | 'retries' | 'shared' | 'tasks' | 'specText' | 'specFile'>

interface Line { text: string, line: number, taskId: number }

/** Splits a tasklist into commands with the file line each starts on and its ictasks number. */
export function tasklistLines (text: string): Line[] {
  const out: Line[] = []
  let nonBlank = 0
  let pending: Line | null = null
  text.split(/\r?\n/).forEach((raw, i) => {
    const blank = raw.trim() === ''
    if (pending == null && blank) return
    const id = nonBlank
    if (!blank) nonBlank++
    if (pending == null && raw.trimStart().startsWith('#')) return
    const cur: Line = pending ?? { text: '', line: i + 1, taskId: id }
    if (raw.endsWith('\\')) {
      cur.text += raw.slice(0, -1) + ' '
      pending = cur
      return
    }
    cur.text = (cur.text + raw).trim()
    out.push(cur)
    pending = null
  })
  const last = pending as Line | null
  if (last != null && last.text.trim() !== '') out.push({ ...last, text: last.text.trim() })
  return out
}

/** Where an unquoted shell comment starts (a `#` at the start of a word), or -1. */
export function shellCommentStart (line: string): number {
  let quote: string | null = null
  for (let i = 0; i < line.length; i++) {
    const c = line[i]
    if (quote === "'") { if (c === "'") quote = null; continue }
    if (c === '\\') { i++; continue }
    if (quote === '"') { if (c === '"') quote = null; continue }
    if (c === "'" || c === '"') quote = c
    else if (c === '#' && (i === 0 || /\s/.test(line[i - 1]))) return i
  }
  return -1
}

const DIRECTIVE_KEYS = ['in', 'out', 'cores', 'gpus', 'memory', 'timeout']

export interface Directive { command: string, inputs: string[], outputs: string[], fields: Record<string, string> }

/** Splits `cmd # meshfarm: in=a,b out=c` into the command and its file lists; a line without one is all command. */
export function readDirective (ctx: SpecContext, line: string, field: string): Directive {
  const at = shellCommentStart(line)
  const m = at < 0 ? null : /^#\s*meshfarm:(.*)$/.exec(line.slice(at))
  if (m == null) return { command: line, inputs: [], outputs: [], fields: {} }
  const d: Directive = { command: line.slice(0, at).trim(), inputs: [], outputs: [], fields: {} }
  for (const word of m[1].trim().split(/\s+/).filter(w => w !== '')) {
    const eq = word.indexOf('=')
    const key = eq < 0 ? word : word.slice(0, eq)
    const value = eq < 0 ? '' : word.slice(eq + 1)
    if (!DIRECTIVE_KEYS.includes(key)) ctx.fail(`${field}: meshfarm: ${key}`, `unknown key${suggest(key, DIRECTIVE_KEYS)}; known: ${DIRECTIVE_KEYS.join(', ')}`)
    if (value === '') ctx.fail(`${field}: meshfarm: ${key}`, `needs a value, as in ${key}=...`)
    if (key === 'in') d.inputs.push(...value.split(',').filter(v => v !== ''))
    else if (key === 'out') d.outputs.push(...value.split(',').filter(v => v !== ''))
    else d.fields[key] = value
  }
  if (d.command === '') ctx.fail(field, 'has files but no command')
  return d
}

export function parseTasklist (text: string, file: string, baseDir: string, overrides: SpecDefaults = {}): TasklistJob {
  const ctx = new SpecContext(file, baseDir)
  const defaults = mergeDefaults(ctx, {}, overrides)
  const lines = tasklistLines(text)
  if (lines.length === 0) ctx.fail('line 1', 'the tasklist has no commands')
  const tasks = lines.map((l, index) => {
    const field = `line ${l.line}`
    // As ictasks: every %TASKID% on the line, before anything else reads it.
    const d = readDirective(ctx, l.text.replaceAll('%TASKID%', String(l.taskId)), field)
    const p = { index }
    const inputs = d.inputs.map(v => stagedAtSamePath(ctx, fill(ctx, v, p, `${field}: meshfarm: in`), baseDir, `${field}: meshfarm: in`))
    const outputs = d.outputs.map(v => relativeName(ctx, fill(ctx, v, p, `${field}: meshfarm: out`), `${field}: meshfarm: out`))
    const raw: Record<string, unknown> = { command: d.command, name: `task-${l.taskId}` }
    const num = (k: string): number => {
      const n = Number(d.fields[k])
      if (!Number.isInteger(n) || n < (k === 'cores' ? 1 : 0)) ctx.fail(`${field}: meshfarm: ${k}`, `must be a whole number >= ${k === 'cores' ? 1 : 0}, got ${show(d.fields[k])}`)
      return n
    }
    const task = readTask(ctx, raw, field, index, defaults, {}, { inputs, outputs })
    if (d.fields.cores != null) task.cores = num('cores')
    if (d.fields.gpus != null) task.gpus = num('gpus')
    if (d.fields.memory != null) task.memoryMb = parseMemory(d.fields.memory, `${file}: ${field}: meshfarm: memory`)
    if (d.fields.timeout != null) task.timeoutMs = parseDuration(d.fields.timeout, `${file}: ${field}: meshfarm: timeout`)
    return task
  })
  const flagDir = overrides.cwd ?? baseDir
  return {
    name: overrides.name ?? basename(file, extname(file)),
    layout: overrides.layout ?? 'per-task',
    retries: overrides.retries ?? 0,
    shared: (overrides.shared ?? []).map(s => stagedAtSamePath(ctx, s, flagDir, '--shared')),
    tasks,
    specText: text,
    specFile: resolve(file)
  }
}
