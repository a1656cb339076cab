/**
 * The chunk's folder on the cluster's file system and the one path that submits it: files first, then the
 * intent (fsynced), then sbatch, then the id. Also what a restarted bridge reads there: status files, and whether
 * an orphaned sbatch of a crashed bridge is still at work on the chunk.
 */
import { mkdirSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { BatchSystem, SlurmResult } from './batch-system.ts'
import type { ChunkProbe, IntentLog } from './intent-log.ts'
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
 * leaves the intent open: the caller decides (retry a transient error with the same key, or close it).
 */
export async function submitChunk (batch: BatchSystem, log: IntentLog, spec: ChunkSpec, now: () => number): Promise<SlurmResult<string>> {
  const key = chunkLabel(spec.bridgeId, spec.meshJobId, spec.chunk)
  const script = prepareChunk(spec)
  if (log.get(key) == null) log.intend(key, spec.chunkDir, now())
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

/**
 * For a chunk with an intent but no id: an sbatch still running in its folder (found through /proc, on this
 * machine), and the array id its output files carry if it ran.
 */
export function probeChunk (chunkDir: string): ChunkProbe {
  let submitterRunning = false
  let pids: string[] = []
  try { pids = readdirSync('/proc').filter(p => /^\d+$/.test(p)) } catch {}
  for (const pid of pids) {
    try {
      if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== 'sbatch') continue
      if (readlinkSync(`/proc/${pid}/cwd`) === chunkDir) { submitterRunning = true; break }
    } catch {} // gone meanwhile, or not ours to read
  }
  let tracedJobId: string | null = null
  try {
    for (const n of readdirSync(join(chunkDir, 'out'))) {
      const m = /^(\d+)_\d+\.(out|err)$/.exec(n)
      if (m != null) { tracedJobId = m[1]; break }
    }
  } catch {}
  return { submitterRunning, tracedJobId }
}
