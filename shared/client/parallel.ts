/**
 * GNU parallel's jobs on a mesh: the arguments combined into job lines, replacement strings filled as parallel
 * fills them, and the result a ParsedJob that submits like any other.
 *
 * Replacement strings: {} {.} {/} {//} {/.} {#}, positional {n} {n.} {n/} {n//} {n/.} (and {-n} from the end).
 * With several sources {} is all arguments, each transformed, joined by spaces. Every substituted value is
 * shell-quoted as parallel quotes it; a command with no replacement string gets ` {}` appended; no command at all
 * runs the arguments themselves. {#} is the job's sequence number (1..n, the joblog's Seq). {%} (job slot) has no
 * meaning on a mesh, where each task runs alone in its own folder on one of many machines: it is refused, as are
 * perl expressions {= =}.
 *
 * Files: an argument naming an existing regular file by a relative path (inside this folder) is staged into the
 * task's folder at the same relative path, so the command finds it where it would here. An absolute path is left
 * as it is, for a file system shared by the lab's machines. What comes back: the --return patterns (parallel's
 * replacement strings, e.g. `--return {}.xz`), or by default every new or changed file at the top of the task
 * folder and beside each staged input (`*`, `dir/*`); results land at the same relative path here, beside the
 * originals, as if parallel had run the command in this folder. stdout/stderr go to the terminal (the CLI).
 */
import { dirname, isAbsolute, join, normalize, resolve } from 'node:path'
import type { FileRef, TaskRecord } from '../protocol/messages.ts'
import { MeshfarmError } from '../util/errors.ts'
import { checkRelativeName } from '../files/safe-path.ts'
import type { ParsedJob, ParsedTask } from './spec.ts'
import type { LocalInput } from './spec-task.ts'
import type { ParallelArgv } from './parallel-args.ts'
import type { Placement } from './fetch.ts'

export interface ParallelLine { seq: number, args: string[], command: string }

function bad (what: string): never {
  throw new MeshfarmError('BAD_ARGUMENT', `meshfarm parallel: ${what}`)
}

/** parallel's shell quoting (shell_quote_scalar_default): quoted only when needed, ' as '"'"'. */
export function shellQuote (s: string): string {
  if (s === '') return "''"
  if (!/[^-_.+a-zA-Z0-9/]/.test(s)) return s
  return `'${s.replaceAll("'", "'\"'\"'")}'`.replace(/^''/, '').replace(/''$/, '')
}

/** Perl's File::Basename::dirname on Unix, which parallel's {//} uses. */
export function perlDirname (path: string): string {
  const strip = (d: string): string => d.replace(/(.)\/*$/s, '$1')
  const split = (p: string): [string, string] => {
    const at = p.lastIndexOf('/')
    return at < 0 ? ['./', p] : [p.slice(0, at + 1), p.slice(at + 1)]
  }
  let [dir, base] = split(path)
  dir = strip(dir)
  if (base === '') {
    [dir] = split(dir)
    dir = strip(dir)
  }
  return dir
}

const TRANSFORMS: Record<string, (s: string) => string> = {
  '': s => s,
  '.': s => s.replace(/\.[^/.]*$/, ''),
  '/': s => s.replace(/^.*\//, ''),
  '//': perlDirname,
  '/.': s => s.replace(/^.*\//, '').replace(/\.[^/.]*$/, '')
}

// {}, {.}, {/}, {//}, {/.}, {#}, {%}, {n...}, {-n...}, and {= ... =} to refuse.
const RPL = /\{(-?\d+)?(|\.|\/|\/\/|\/\.)\}|\{#\}|\{%\}|\{-?\d*=.*?=\}/g

/** Fills one command (or --return pattern) for a job line; quote=false for --return (file names, not shell). */
export function replace (template: string, args: string[], seq: number, quote = true): { text: string, used: boolean } {
  let used = false
  const q = quote ? shellQuote : (s: string) => s
  const text = template.replace(RPL, (whole: string, pos: string | undefined, t: string | undefined) => {
    used = true
    if (whole === '{#}') return String(seq)
    if (whole === '{%}') bad('{%} (the job slot) has no meaning on a mesh, where every task runs alone in its own folder: use {#}')
    if (whole.includes('=')) bad(`${whole}: perl expressions are not supported`)
    const f = TRANSFORMS[t ?? '']
    if (pos == null) return args.map(a => q(f(a))).join(' ')
    const n = Number(pos)
    const k = n < 0 ? args.length + n : n - 1
    if (n === 0 || k < 0 || k >= args.length) bad(`${whole}: there ${args.length === 1 ? 'is 1 input source' : `are ${args.length} input sources`}`)
    return q(f(args[k]))
  })
  return { text, used }
}

/** Job lines in parallel's order: linked sources side by side (up to the shortest), groups as a product. */
export function combine (sources: ParallelArgv['sources']): string[][] {
  const groups: string[][][] = [] // each group: rows of values, one per linked source
  for (const s of sources) {
    if (s.linked && groups.length > 0) {
      const g = groups[groups.length - 1]
      const n = Math.min(g.length, s.values.length)
      groups[groups.length - 1] = g.slice(0, n).map((row, i) => [...row, s.values[i]])
    } else {
      groups.push(s.values.map(v => [v]))
    }
  }
  const total = groups.reduce((n, g) => n * g.length, 1)
  if (total > 10_000_000) bad(`the sources make ${total.toLocaleString('en-US')} jobs, more than 10,000,000`)
  let rows: string[][] = [[]]
  for (const g of groups) rows = rows.flatMap(r => g.map(x => [...r, ...x]))
  return groups.length === 0 ? [] : rows
}

/** Every job line, with {#} from 1. */
export function jobLines (argv: ParallelArgv): ParallelLine[] {
  const rows = combine(argv.sources)
  const template = argv.command
  return rows.map((args, i) => {
    const seq = i + 1
    if (template.trim() === '') return { seq, args, command: args.join(' ') } // the arguments are the commands
    const r = replace(template, args, seq)
    return { seq, args, command: r.used ? r.text : `${template} ${args.map(shellQuote).join(' ')}` }
  })
}

export interface ParallelJobIo {
  cwd: string
  isFile: (path: string) => boolean
}

export interface ParallelPlan {
  job: ParsedJob
  /** The job's lines, all of them (a resumed run skips some). */
  lines: ParallelLine[]
  /** parallel's Seq of each task, by task index. */
  seqOf: number[]
}

/** A file argument staged at its relative path; absolute paths and non-files are left to the command. */
function stagedInput (arg: string, io: ParallelJobIo): LocalInput | null {
  if (arg === '' || isAbsolute(arg) || arg.includes('\u0000')) return null
  const path = resolve(io.cwd, arg)
  if (!io.isFile(path)) return null
  const name = normalize(arg).replace(/\/+$/, '')
  if (name.split('/').includes('..')) bad(`${arg}: names a file outside this folder; meshfarm stages files at the same relative path, so run from a folder that holds it (or give an absolute path on a shared file system)`)
  return { src: path, name: checkRelativeName(name, 'argument') }
}

export function buildParallelJob (argv: ParallelArgv, io: ParallelJobIo, skip: ReadonlySet<number> = new Set()): ParallelPlan {
  const o = argv.options
  const lines = jobLines(argv)
  if (lines.length === 0) bad('no arguments: nothing to run')
  const tasks: ParsedTask[] = []
  const seqOf: number[] = []
  for (const line of lines) {
    if (skip.has(line.seq)) continue
    const inputs: LocalInput[] = []
    for (const a of line.args) {
      const inp = stagedInput(a, io)
      if (inp != null && !inputs.some(i => i.name === inp.name)) inputs.push(inp)
    }
    const outputs = o.returns.length > 0
      ? o.returns.map(r => checkReturn(replace(r, line.args, line.seq, false).text, r))
      : [...new Set(['*', ...inputs.map(i => dirname(i.name)).filter(d => d !== '.').map(d => `${d}/*`)])]
    const index = tasks.length
    seqOf.push(line.seq)
    tasks.push({
      index, name: `seq-${line.seq}`, commands: [line.command], cores: o.coresPerTask ?? 1, gpus: o.gpus ?? 0,
      memoryMb: o.memoryMb ?? 0, timeoutMs: o.timeoutMs ?? 0, env: {}, constraints: {}, inputs, outputs
    })
  }
  const spec = ['parallel', argv.command, ...argv.sources.map(s => `${s.from} (${s.values.length})`)].join(' ')
  const job: ParsedJob = {
    name: o.name ?? 'parallel', layout: 'flat', retries: o.retries ?? 0, shared: [], tasks,
    specText: `# meshfarm parallel: ${spec}\n${lines.map(l => l.command).join('\n')}\n`, specFile: join(io.cwd, 'parallel.tasks')
  }
  if (o.perAgent != null) job.perAgent = o.perAgent
  return { job, lines, seqOf }
}

function checkReturn (name: string, pattern: string): string {
  try {
    return checkRelativeName(name, '--return')
  } catch {
    return bad(`--return ${pattern}: ${JSON.stringify(name)} is not a relative path inside this folder`)
  }
}

/**
 * Where a parallel task's files go (fetch's `place` option): returned files at their relative path under cwd,
 * beside the originals, as if parallel had run the command here; stdout, stderr and the task's record in
 * metaDir (`seq-N.stdout`, ...), for the CLI to print and keep. `same` tells an output identical to the file
 * already there (a staged input sent back unchanged): it is not downloaded again.
 */
export function placeParallelRecord (cwd: string, metaDir: string, record: TaskRecord, same: (path: string, ref: FileRef) => boolean): Placement {
  const name = checkRelativeName(record.name, 'task name')
  const targets: Placement['targets'] = []
  if (record.stdout != null) targets.push({ ref: record.stdout, path: join(metaDir, `${name}.stdout`) })
  if (record.stderr != null) targets.push({ ref: record.stderr, path: join(metaDir, `${name}.stderr`) })
  for (const o of record.outputs) {
    const path = join(cwd, checkRelativeName(o.name, 'output'))
    if (!same(path, o)) targets.push({ ref: o, path })
  }
  return { folder: metaDir, jsonPath: join(metaDir, `${name}.task.json`), json: JSON.stringify(record, null, 2) + '\n', targets }
}

/** parallel's exit status: 0, the number of failed jobs up to 100, or 101 for more. */
export function parallelExitCode (failed: number): number {
  return Math.min(failed, 101)
}
