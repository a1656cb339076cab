/**
 * The chunk's folder on the cluster's file system and the one path that submits it: files first, then the
 * intent (fsynced), then sbatch, then the id. Also what a restarted bridge reads there (status files, output
 * names, an orphaned sbatch of a crashed bridge still at work on a chunk) and `recover`, which acts on it.
 */
import { copyFileSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { BatchSystem, SlurmResult } from './batch-system.ts'
import { reconcile, type ChunkProbe, type IntentLog, type ReconcileAction } from './intent-log.ts'
import { buildArrayScript, buildManifest, chunkLabel, parseWrapperStatus, type ChunkSpec, type WrapperStatus } from './script.ts'

/** Writes manifest.tsv and job.sh, makes status/ and out/; returns the script. Idempotent. */
export function prepareChunk (spec: ChunkSpec): string {
  const script = buildArrayScript(spec)
  mkdirSync(join(spec.chunkDir, 'status'), { recursive: true })
  mkdirSync(join(spec.chunkDir, 'out'), { recursive: true })
  writeFileSync(join(spec.chunkDir, 'manifest.tsv'), buildManifest(spec.tasks))
  writeFileSync(join(spec.chunkDir, 'job.sh'), script, { mode: 0o755 })
  return script
}

/**
 * Submits one chunk: prepare, intent, sbatch, id. A crash anywhere leaves what `reconcile` needs. A failed sbatch
 * leaves the intent open and the caller may call again with the same spec (a transient error) or close it.
 * Calling again first looks for the chunk's label in squeue: an sbatch that said "Socket timed out" may have
 * created the job all the same (seen on 22.05 with a controller that answered late), and it is adopted, not doubled.
 */
export async function submitChunk (batch: BatchSystem, log: IntentLog, spec: ChunkSpec, now: () => number): Promise<SlurmResult<string>> {
  const key = chunkLabel(spec.bridgeId, spec.meshJobId, spec.chunk)
  const prior = log.get(key)
  if (prior?.jobId != null) return { ok: true, value: prior.jobId }
  if (prior != null) {
    const q = await batch.queue()
    if (!q.ok) return q
    const found = [...q.value.values()].filter(e => e.name === key || e.comment === key).map(e => Number(e.arrayJobId)).sort((a, b) => a - b)
    if (found.length > 0) {
      log.submitted(key, String(found[0]), now())
      return { ok: true, value: String(found[0]) }
    }
  }
  const script = prepareChunk(spec)
  if (prior == null) log.intend(key, spec.chunkDir, now())
  const r = await batch.submit({ script, cwd: spec.chunkDir })
  if (r.ok) log.submitted(key, r.value, now())
  return r
}

/** The wrapper's status for index i, or null when it has written none (or a torn one: it writes tmp + rename). */
export function readStatus (chunkDir: string, index: number): WrapperStatus | null {
  let text: string
  try { text = readFileSync(join(chunkDir, 'status', `${index}.json`), 'utf8') } catch { return null }
  return parseWrapperStatus(text)
}

/** All status files of a chunk, by index (one readdir, then only the files that are there). */
export function readStatuses (chunkDir: string): Map<number, WrapperStatus> {
  const out = new Map<number, WrapperStatus>()
  let names: string[]
  try { names = readdirSync(join(chunkDir, 'status')) } catch { return out }
  for (const n of names) {
    const m = /^(\d+)\.json$/.exec(n)
    if (m == null) continue
    const s = readStatus(chunkDir, Number(m[1]))
    if (s != null) out.set(Number(m[1]), s)
  }
  return out
}

/** The task's stdout and stderr files (Slurm's %A_%a names). */
export function outputFiles (chunkDir: string, arrayJobId: string, index: number): { stdout: string, stderr: string } {
  return { stdout: join(chunkDir, 'out', `${arrayJobId}_${index}.out`), stderr: join(chunkDir, 'out', `${arrayJobId}_${index}.err`) }
}

/** Chunk folders in which an sbatch is running now (a crashed bridge's orphan), found through /proc on this machine. */
export function sbatchRunningIn (): Set<string> {
  const dirs = new Set<string>()
  let pids: string[] = []
  try { pids = readdirSync('/proc').filter(p => /^\d+$/.test(p)) } catch {}
  for (const pid of pids) {
    try {
      if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'sbatch') dirs.add(readlinkSync(`/proc/${pid}/cwd`))
    } catch {} // gone meanwhile, or not ours to read
  }
  return dirs
}

/** The array id the chunk's output files carry (`out/<id>_<index>.out`) if it ran; null if it never did. */
export function tracedJobId (chunkDir: string): string | null {
  try {
    for (const n of readdirSync(join(chunkDir, 'out'))) {
      const m = /^(\d+)_\d+\.(out|err)$/.exec(n)
      if (m != null) return m[1]
    }
  } catch {}
  return null
}

/**
 * After a restart: looks (running sbatch first, then squeue, then output files, so that a submission finishing
 * meanwhile is always seen by one of them), reconciles, records adopted ids, and submits again the job.sh of
 * chunks that never reached Slurm. Cancels nothing.
 */
export async function recover (batch: BatchSystem, log: IntentLog, bridgeId: string, now: () => number): Promise<SlurmResult<ReconcileAction[]>> {
  const open = log.open()
  const running = sbatchRunningIn()
  const q = await batch.queue()
  if (!q.ok) return q
  const probes = new Map<string, ChunkProbe>(open.map(e => [e.key, { submitterRunning: running.has(e.chunkDir), tracedJobId: tracedJobId(e.chunkDir) }]))
  const actions = reconcile(bridgeId, log.all(), q.value, probes)
  for (const a of actions) {
    if (a.kind === 'adopt') log.submitted(a.key, a.jobId, now())
    if (a.kind !== 'resubmit') continue
    const e = log.get(a.key)!
    const r = await batch.submit({ script: readFileSync(join(e.chunkDir, 'job.sh'), 'utf8'), cwd: e.chunkDir })
    if (!r.ok) return r
    log.submitted(a.key, r.value, now())
  }
  return { ok: true, value: actions }
}

/** Indexes that have a status file, from one readdir (a pending element has none). */
export function statusIndexes (dir: string): number[] {
  try {
    return readdirSync(join(dir, 'status')).flatMap(n => /^\d+\.json$/.test(n) ? [Number(n.slice(0, -5))] : [])
  } catch {
    return []
  }
}

/** The element's output file as the task's capture file; a missing one (never started) leaves it empty. */
export function copyOrEmpty (from: string, to: string): void {
  // The live link goes first: copying onto a link to the source itself would empty it.
  rmSync(to, { force: true })
  try {
    copyFileSync(from, to)
  } catch {
    try { writeFileSync(to, '') } catch {}
  }
}
