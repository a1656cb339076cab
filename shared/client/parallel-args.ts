/**
 * `meshfarm parallel [options] COMMAND ::: a b c :::: argfile ...` read as GNU parallel (20221122) reads it:
 * options first, then the command's words (joined by spaces) up to the first `:::`, `::::`, `:::+` or `::::+`,
 * then the input sources. `:::` lists arguments, `::::` names files of one argument per line (`-a FILE` too),
 * a `+` links a source to the one before (arguments taken side by side, up to the shorter), and the sources are
 * combined as a product, the last varying fastest. With no source, arguments are lines of standard input.
 *
 * Options (GNU parallel's names): -j/--jobs N, --joblog FILE, --resume, --resume-failed, --bar, --return/--trc
 * PATTERN, --transfer and --cleanup (accepted: files are always staged and task folders removed), --halt SPEC,
 * --dry-run, -k/--keep-order, -a/--arg-file FILE, --timeout SECONDS, --retries N; and meshfarm's own --cores N,
 * --gpus N, --memory SIZE, --name NAME. Anything else is refused with one line naming it.
 * Pure: files and standard input come through the `io` the caller gives.
 */
import { MeshfarmError } from '../util/errors.ts'
import { parseDuration, parseMemory } from './spec-fields.ts'

export interface HaltSpec { when: 'now' | 'soon', on: 'fail' | 'success' | 'done', count?: number, percent?: number }

export interface ParallelOptions {
  /** -j N: at most N tasks at once per agent; -j N% (N <= 100): cores per task so that N% of an agent's cores are used. */
  perAgent?: number
  coresPerTask?: number
  joblog?: string
  resume: boolean
  resumeFailed: boolean
  bar: boolean
  dryRun: boolean
  keepOrder: boolean
  /** --return patterns, with replacement strings, as given. */
  returns: string[]
  timeoutMs?: number
  /** meshfarm's retries (parallel's --retries N is N tries in all). */
  retries?: number
  halt?: HaltSpec
  gpus?: number
  memoryMb?: number
  name?: string
}

export interface ParallelSource { values: string[], linked: boolean, from: string }

export interface ParallelArgv { options: ParallelOptions, command: string, sources: ParallelSource[] }

export interface ParallelIo {
  readArgFile: (path: string) => string
  readStdin: () => string
}

function bad (what: string): never {
  throw new MeshfarmError('BAD_ARGUMENT', `meshfarm parallel: ${what}`)
}

const SEPARATORS = new Set([':::', '::::', ':::+', '::::+'])
const FLAGS: Record<string, keyof ParallelOptions | 'transfer'> = {
  '--resume': 'resume', '--resume-failed': 'resumeFailed', '--bar': 'bar', '--dry-run': 'dryRun', '--dryrun': 'dryRun',
  '-k': 'keepOrder', '--keep-order': 'keepOrder', '--transfer': 'transfer', '--cleanup': 'transfer'
}
const VALUED = new Set(['-j', '--jobs', '-P', '--joblog', '--jl', '--return', '--ret', '--trc', '--halt', '-a', '--arg-file', '--timeout', '--retries', '--cores', '--gpus', '--memory', '--name'])
const SUPPORTED = '-j, --joblog, --resume, --resume-failed, --bar, --return, --trc, --transfer, --cleanup, --halt, --dry-run, -k, -a, --timeout, --retries, --cores, --gpus, --memory, --name'

function whole (flag: string, v: string, min: number): number {
  const n = Number(v)
  if (v.trim() === '' || !Number.isInteger(n) || n < min) bad(`${flag}: expected a whole number >= ${min}, got ${JSON.stringify(v)}`)
  return n
}

/** -j as parallel takes it, mapped onto a mesh (see ParallelOptions). */
export function readJobs (v: string, o: ParallelOptions): void {
  const pct = /^(\d+(?:\.\d+)?)%$/.exec(v)
  if (pct != null) {
    const p = Number(pct[1])
    if (p <= 0 || p > 100) bad(`-j ${v}: only percentages up to 100% map onto a mesh (cores per task = 100 / N)`)
    if (p < 100) o.coresPerTask = Math.round(100 / p)
    return
  }
  if (/^[+-]\d+$/.test(v)) bad(`-j ${v}: relative job counts have no meaning on a mesh of different machines: give -j N (tasks per agent) or -j N%`)
  const n = whole('-j', v, 0)
  if (n > 0) o.perAgent = n
}

/** --halt as parallel takes it: never, now|soon,fail|success|done=N or N%, N% (soon,fail=N%), and the old -2..2 forms. */
export function readHalt (given: string): HaltSpec | undefined {
  const OLD: Record<string, string> = { 0: 'never', 1: 'soon,fail=1', 2: 'now,fail=1', '-1': 'soon,success=1', '-2': 'now,success=1' }
  const v = OLD[given] ?? given.replace(/^(\d+)%$/, 'soon,fail=$1%')
  if (v === 'never') return undefined
  const m = /^(now|soon),(fail|success|done)=(\d+)(%?)$/.exec(v)
  if (m == null) bad(`--halt ${v}: expected never, now|soon,fail|success|done=N or N% (e.g. now,fail=1)`)
  const n = Number(m[3])
  if (m[4] === '%') {
    if (n <= 0 || n > 100) bad(`--halt ${v}: the percentage must be 1-100`)
    return { when: m[1] as HaltSpec['when'], on: m[2] as HaltSpec['on'], percent: n }
  }
  if (n < 1) bad(`--halt ${v}: the count must be 1 or more`)
  return { when: m[1] as HaltSpec['when'], on: m[2] as HaltSpec['on'], count: n }
}

/** Lines of an argument file as parallel reads them: one argument per line, an empty line is an empty argument. */
export function argLines (text: string): string[] {
  if (text === '') return []
  const lines = text.split('\n')
  if (lines[lines.length - 1] === '') lines.pop()
  return lines
}

export function parseParallelArgv (argv: string[], io: ParallelIo): ParallelArgv {
  const o: ParallelOptions = { resume: false, resumeFailed: false, bar: false, dryRun: false, keepOrder: false, returns: [] }
  const sources: ParallelSource[] = []
  const argFile = (path: string, linked: boolean, flag: string): void => {
    let text: string
    try {
      text = io.readArgFile(path)
    } catch (err) {
      throw new MeshfarmError('FILE_MISSING', `meshfarm parallel: ${flag} ${path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : 'cannot be read'}`)
    }
    sources.push({ values: argLines(text), linked, from: `${flag} ${path}` })
  }
  let i = 0
  for (; i < argv.length; i++) {
    const word = argv[i]
    if (!word.startsWith('-') || word === '-' || SEPARATORS.has(word)) break
    const eq = word.startsWith('--') ? word.indexOf('=') : -1
    let flag = eq > 0 ? word.slice(0, eq) : word
    let value: string | undefined = eq > 0 ? word.slice(eq + 1) : undefined
    if (/^-[jP]\d/.test(flag)) { value = flag.slice(2); flag = flag.slice(0, 2) } // -j4
    const boolKey = FLAGS[flag]
    if (boolKey != null) {
      if (value != null) bad(`${flag} takes no value`)
      if (boolKey !== 'transfer') (o as unknown as Record<string, boolean>)[boolKey] = true
      continue
    }
    if (!VALUED.has(flag)) bad(`${flag}: not supported (supported: ${SUPPORTED})`)
    if (value == null) {
      if (i + 1 >= argv.length) bad(`${flag} needs a value`)
      value = argv[++i]
    }
    switch (flag) {
      case '-j': case '--jobs': case '-P': readJobs(value, o); break
      case '--joblog': case '--jl': o.joblog = value; break
      case '--return': case '--ret': case '--trc': o.returns.push(value); break
      case '--halt': o.halt = readHalt(value); break
      case '-a': case '--arg-file': argFile(value, false, flag); break
      case '--timeout':
        if (value.endsWith('%')) bad(`--timeout ${value}: a percentage of the median run time is not supported: give seconds`)
        o.timeoutMs = parseDuration(/^\d+(\.\d+)?$/.test(value) ? Number(value) : value, 'meshfarm parallel: --timeout')
        break
      case '--retries': o.retries = Math.max(0, whole('--retries', value, 0) - 1); break
      case '--cores': o.coresPerTask = whole('--cores', value, 1); break
      case '--gpus': o.gpus = whole('--gpus', value, 0); break
      case '--memory': o.memoryMb = parseMemory(value, 'meshfarm parallel: --memory'); break
      case '--name': o.name = value; break
    }
  }
  const words: string[] = []
  for (; i < argv.length && !SEPARATORS.has(argv[i]); i++) words.push(argv[i])
  while (i < argv.length) {
    const sep = argv[i++]
    const values: string[] = []
    for (; i < argv.length && !SEPARATORS.has(argv[i]); i++) values.push(argv[i])
    const linked = sep.endsWith('+')
    if (linked && sources.length === 0) bad(`${sep} links a source to the one before, but there is none`)
    if (sep.startsWith('::::')) {
      if (values.length === 0) bad(`${sep} needs a file name`)
      values.forEach((f, k) => argFile(f, linked && k === 0, sep))
    } else {
      sources.push({ values, linked, from: sep })
    }
  }
  if (o.resume && o.resumeFailed) bad('give --resume or --resume-failed, not both')
  if ((o.resume || o.resumeFailed) && o.joblog == null) bad('--resume and --resume-failed need --joblog FILE')
  if (sources.length === 0) sources.push({ values: argLines(io.readStdin()), linked: false, from: 'standard input' })
  return { options: o, command: words.join(' '), sources }
}
