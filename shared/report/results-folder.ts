/**
 * A job's task records read back from a results folder (`meshfarm fetch`, `submit --wait`): `job.json` and
 * one `task.json` per task (per-task layout) or `<name>.task.json` (flat layout), with each task's stderr
 * beside it. Every file is checked: a bad one gives `file: field: what`.
 */
import { open, readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { TASK_STATES, type JobSummary, type TaskRecord, type TaskState } from '../protocol/messages.ts'
import { MeshfarmError } from '../util/errors.ts'

const STATES: readonly TaskState[] = TASK_STATES

export interface ResultsFolder {
  job: Pick<JobSummary, 'jobId' | 'name'> | null
  records: TaskRecord[]
  /** The last bytes of a task's stderr file, read when asked. */
  stderr: Map<number, string>
}

function bad (file: string, field: string, what: string): MeshfarmError {
  return new MeshfarmError('BAD_ARGUMENT', `${file}: ${field}: ${what}`)
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v != null && !Array.isArray(v)

/** A task.json's content as a TaskRecord, checked field by field (only what a report reads). */
export function checkRecord (v: unknown, file: string): TaskRecord {
  if (!isObj(v)) throw bad(file, '(top)', 'not a JSON object')
  const int = (k: string, nullable = false): void => {
    const x = v[k]
    if (nullable && x == null) return
    if (typeof x !== 'number' || !Number.isSafeInteger(x)) throw bad(file, k, `expected an integer, got ${JSON.stringify(x)?.slice(0, 40)}`)
  }
  const str = (k: string, nullable = false): void => {
    const x = v[k]
    if (nullable && x == null) return
    if (typeof x !== 'string') throw bad(file, k, `expected a string, got ${JSON.stringify(x)?.slice(0, 40)}`)
  }
  int('jobId'); int('index'); str('name'); str('host', true); int('exitCode', true); str('signal', true); int('attempts')
  if (!STATES.includes(v.state as TaskState)) throw bad(file, 'state', `expected one of ${STATES.join(', ')}`)
  for (const k of ['start', 'end']) {
    str(k, true)
    if (v[k] != null && !Number.isFinite(Date.parse(v[k] as string))) throw bad(file, k, 'not a date')
  }
  if (v.durationMs != null && (typeof v.durationMs !== 'number' || !(v.durationMs >= 0))) throw bad(file, 'durationMs', 'expected a duration in ms')
  if (v.missingOutputs != null && (!Array.isArray(v.missingOutputs) || !v.missingOutputs.every(x => typeof x === 'string'))) {
    throw bad(file, 'missingOutputs', 'expected a list of names')
  }
  if (v.failure != null && (!isObj(v.failure) || typeof v.failure.kind !== 'string' || typeof v.failure.message !== 'string')) {
    throw bad(file, 'failure', 'expected { kind, message }')
  }
  // Inline file data is not trusted from disk: the stderr file itself is read instead.
  const { stdout, stderr, outputs, ...rest } = v
  void stdout; void stderr; void outputs
  return { commands: [], resources: { cores: 0, gpus: [], memoryMb: 0 }, id: '', peerId: null, ...rest, outputs: [] } as unknown as TaskRecord
}

async function tail (path: string, bytes = 16_384): Promise<string | null> {
  const fh = await open(path, 'r').catch(() => null)
  if (fh == null) return null
  try {
    const { size } = await fh.stat()
    const n = Math.min(size, bytes)
    const buf = Buffer.alloc(n)
    await fh.read(buf, 0, n, size - n)
    return buf.toString('utf8')
  } finally {
    await fh.close()
  }
}

export async function readResultsFolder (dir: string): Promise<ResultsFolder> {
  const top = await readdir(dir, { withFileTypes: true }).catch(() => {
    throw new MeshfarmError('FILE_MISSING', `${dir}: not a results folder (cannot list it)`)
  })
  let job: ResultsFolder['job'] = null
  const found: Array<{ json: string, stderr: string }> = []
  for (const e of top) {
    if (e.isFile() && e.name === 'job.json') {
      const file = join(dir, e.name)
      const v = parse(await readFile(file, 'utf8'), file)
      if (isObj(v) && typeof v.jobId === 'number' && typeof v.name === 'string') job = { jobId: v.jobId, name: v.name }
    } else if (e.isFile() && e.name.endsWith('.task.json')) {
      found.push({ json: join(dir, e.name), stderr: join(dir, `${e.name.slice(0, -'.task.json'.length)}.stderr`) })
    } else if (e.isDirectory()) {
      const inner = join(dir, e.name)
      const names = await readdir(inner).catch((): string[] => [])
      if (names.includes('task.json')) found.push({ json: join(inner, 'task.json'), stderr: join(inner, 'stderr') })
    }
  }
  if (found.length === 0) throw new MeshfarmError('FILE_MISSING', `${dir}: no task.json files: not a results folder`)
  const records: TaskRecord[] = []
  const stderr = new Map<number, string>()
  for (const f of found) {
    const r = checkRecord(parse(await readFile(f.json, 'utf8'), f.json), f.json)
    records.push(r)
    if (r.state === 'failed') {
      const t = await tail(f.stderr)
      if (t != null) stderr.set(r.index, t)
    }
  }
  records.sort((a, b) => a.index - b.index)
  return { job, records, stderr }
}

function parse (text: string, file: string): unknown {
  try {
    return JSON.parse(text)
  } catch (err) {
    throw bad(file, '(top)', `not JSON (${err instanceof Error ? err.message : String(err)})`)
  }
}
