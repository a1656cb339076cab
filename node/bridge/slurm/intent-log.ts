/**
 * The bridge's durable memory of what it asked Slurm for. An `intent` line is written and fsynced BEFORE each
 * sbatch, the Slurm job id AFTER it, `closed` once every task of the chunk is reported. After a crash,
 * `reconcile` (pure) decides per chunk from the log, one `squeue --me` and what is on disk: follow the known job,
 * adopt the job found under the chunk's label, wait for an sbatch still running, or submit again only when
 * nothing anywhere shows that the chunk ever reached Slurm. It never cancels what it finds.
 */
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, truncateSync, writeSync } from 'node:fs'
import { dirname } from 'node:path'
import { MeshfarmError } from '../../../shared/util/errors.ts'
import type { QueueEntry } from './batch-system.ts'
import { parseChunkLabel } from './script.ts'

export interface IntentEntry {
  /** The chunk's label, `mf:<bridge>:<job>:<chunk>`. */
  key: string
  chunkDir: string
  intendedAt: number
  /** The array's Slurm job id once sbatch answered; null before. */
  jobId: string | null
  closed: boolean
}

type LogLine =
  | { t: 'intent', key: string, chunkDir: string, at: number }
  | { t: 'submitted', key: string, jobId: string, at: number }
  | { t: 'closed', key: string, at: number }

function checkLine (v: unknown): LogLine | null {
  if (typeof v !== 'object' || v == null) return null
  const o = v as Record<string, unknown>
  if (typeof o.key !== 'string' || parseChunkLabel(o.key) == null || typeof o.at !== 'number') return null
  if (o.t === 'intent' && typeof o.chunkDir === 'string' && o.chunkDir.startsWith('/')) return o as LogLine
  if (o.t === 'submitted' && typeof o.jobId === 'string' && /^\d+$/.test(o.jobId)) return o as LogLine
  if (o.t === 'closed') return o as LogLine
  return null
}

/** The log's lines -> entries. A torn last line (killed mid-write) is dropped; a bad line elsewhere is an error. */
export function parseIntentLog (text: string, file: string): Map<string, IntentEntry> {
  const entries = new Map<string, IntentEntry>()
  const lines = text.split('\n')
  const last = lines.length - 1 - [...lines].reverse().findIndex(l => l.trim() !== '')
  lines.forEach((raw, i) => {
    if (raw.trim() === '') return
    let line: LogLine | null = null
    try { line = checkLine(JSON.parse(raw)) } catch { line = null }
    if (line == null) {
      if (i === last && !raw.endsWith('}')) return
      throw new MeshfarmError('PROTOCOL', `${file}: line ${i + 1}: not an intent record: ${JSON.stringify(raw.slice(0, 120))}`)
    }
    const e = entries.get(line.key)
    if (line.t === 'intent') {
      if (e == null) entries.set(line.key, { key: line.key, chunkDir: line.chunkDir, intendedAt: line.at, jobId: null, closed: false })
    } else if (e == null) {
      throw new MeshfarmError('PROTOCOL', `${file}: line ${i + 1}: ${line.t} for ${line.key} without an intent before it`)
    } else if (line.t === 'submitted') {
      e.jobId = line.jobId
    } else {
      e.closed = true
    }
  })
  return entries
}

/** Append-only, one fsync per record; compaction rewrites it with the open chunks only (tmp + rename + fsync). */
export class IntentLog {
  readonly path: string
  private fd: number
  private readonly entries: Map<string, IntentEntry>

  private constructor (path: string, fd: number, entries: Map<string, IntentEntry>) {
    this.path = path
    this.fd = fd
    this.entries = entries
  }

  static open (path: string): IntentLog {
    const text = existsSync(path) ? readFileSync(path, 'utf8') : ''
    const entries = parseIntentLog(text, path)
    // A line torn by a crash is cut off, so the next record starts on a line of its own.
    if (text !== '' && !text.endsWith('\n')) truncateSync(path, Buffer.byteLength(text.slice(0, text.lastIndexOf('\n') + 1)))
    const fd = openSync(path, 'a', 0o600)
    const log = new IntentLog(path, fd, entries)
    fsyncDir(dirname(path))
    return log
  }

  /** Open (not closed) chunks, in the order they were intended. */
  open (): IntentEntry[] {
    return [...this.entries.values()].filter(e => !e.closed).map(e => ({ ...e }))
  }

  /** Every chunk the log remembers, closed ones too (until compaction). */
  all (): IntentEntry[] {
    return [...this.entries.values()].map(e => ({ ...e }))
  }

  get (key: string): IntentEntry | undefined {
    const e = this.entries.get(key)
    return e == null ? undefined : { ...e }
  }

  /** Before sbatch: a crash after this line makes the restarted bridge look before it submits again. */
  intend (key: string, chunkDir: string, now: number): void {
    if (this.entries.has(key)) throw new MeshfarmError('PROTOCOL', `${this.path}: ${key} was already intended`)
    this.append({ t: 'intent', key, chunkDir, at: now })
    this.entries.set(key, { key, chunkDir, intendedAt: now, jobId: null, closed: false })
  }

  submitted (key: string, jobId: string, now: number): void {
    const e = this.entries.get(key)
    if (e == null) throw new MeshfarmError('PROTOCOL', `${this.path}: ${key}: job id without an intent`)
    this.append({ t: 'submitted', key, jobId, at: now })
    e.jobId = jobId
  }

  closed (key: string, now: number): void {
    const e = this.entries.get(key)
    if (e == null || e.closed) return
    this.append({ t: 'closed', key, at: now })
    e.closed = true
  }

  /** Drops closed chunks from the file. */
  compact (now: number): void {
    const tmp = `${this.path}.tmp`
    const fd = openSync(tmp, 'w', 0o600)
    for (const e of this.entries.values()) {
      if (e.closed) continue
      writeSync(fd, JSON.stringify({ t: 'intent', key: e.key, chunkDir: e.chunkDir, at: e.intendedAt }) + '\n')
      if (e.jobId != null) writeSync(fd, JSON.stringify({ t: 'submitted', key: e.key, jobId: e.jobId, at: now }) + '\n')
    }
    fsyncSync(fd)
    closeSync(fd)
    renameSync(tmp, this.path)
    fsyncDir(dirname(this.path))
    closeSync(this.fd)
    this.fd = openSync(this.path, 'a', 0o600)
    for (const [k, e] of this.entries) if (e.closed) this.entries.delete(k)
  }

  close (): void {
    closeSync(this.fd)
  }

  private append (line: LogLine): void {
    writeSync(this.fd, JSON.stringify(line) + '\n')
    fsyncSync(this.fd)
  }
}

function fsyncDir (dir: string): void {
  const fd = openSync(dir, 'r')
  try { fsyncSync(fd) } finally { closeSync(fd) }
}

/** What the disk says about one chunk without a job id (probeChunk in chunk-files.ts reads it). */
export interface ChunkProbe {
  /** An sbatch for this chunk is still running (a crashed bridge's orphan, found by its working folder). */
  submitterRunning: boolean
  /** The array id from `out/<id>_<index>.out` files: the chunk ran, Slurm may have forgotten it since. */
  tracedJobId: string | null
}

export type ReconcileAction =
  | { kind: 'follow', key: string, jobId: string, why: string }
  | { kind: 'adopt', key: string, jobId: string, why: string }
  | { kind: 'wait', key: string, why: string }
  | { kind: 'resubmit', key: string, why: string }
  | { kind: 'leave', jobId: string, label: string, why: string }

/**
 * After a restart: one action per open chunk of the log (closed ones are known, not acted on), plus `leave` for jobs under this bridge's labels that the log does
 * not know (logged, never cancelled). `adopt` also means: record the id in the log.
 */
export function reconcile (bridgeId: string, entries: IntentEntry[], queue: ReadonlyMap<string, QueueEntry>, probes: ReadonlyMap<string, ChunkProbe>): ReconcileAction[] {
  // Array ids found per label; the name is set by us, the comment too (either one is enough).
  const found = new Map<string, Set<string>>()
  for (const q of queue.values()) {
    for (const label of new Set([q.name, q.comment])) {
      const l = parseChunkLabel(label)
      if (l == null || l.bridgeId !== bridgeId) continue
      const ids = found.get(label) ?? new Set<string>()
      ids.add(q.arrayJobId)
      found.set(label, ids)
    }
  }
  const actions: ReconcileAction[] = []
  const known = new Set(entries.flatMap(e => e.jobId != null ? [e.jobId] : []))
  for (const e of entries) {
    if (e.closed) continue
    const ids = [...(found.get(e.key) ?? [])].sort((a, b) => Number(a) - Number(b))
    if (e.jobId != null) {
      known.add(e.jobId)
      actions.push({ kind: 'follow', key: e.key, jobId: e.jobId, why: ids.includes(e.jobId) ? 'in the log and in squeue' : 'in the log; Slurm has forgotten it, its status files tell' })
      continue
    }
    if (ids.length > 0) {
      ids.forEach(id => known.add(id))
      actions.push({ kind: 'adopt', key: e.key, jobId: ids[0], why: `sbatch answered but its id was not logged: found as ${ids.join(', ')} in squeue` })
      continue
    }
    const p = probes.get(e.key) ?? { submitterRunning: false, tracedJobId: null }
    if (p.submitterRunning) {
      actions.push({ kind: 'wait', key: e.key, why: 'an sbatch for it is still running' })
    } else if (p.tracedJobId != null) {
      known.add(p.tracedJobId)
      actions.push({ kind: 'adopt', key: e.key, jobId: p.tracedJobId, why: `ran as ${p.tracedJobId} (its output files say) and Slurm has forgotten it` })
    } else {
      actions.push({ kind: 'resubmit', key: e.key, why: 'intended but never reached Slurm: not in squeue, no sbatch running, no output' })
    }
  }
  for (const [label, ids] of found) {
    for (const id of ids) if (!known.has(id)) actions.push({ kind: 'leave', jobId: id, label, why: 'carries this bridge\'s label but the log does not know it: left alone' })
  }
  return actions
}
