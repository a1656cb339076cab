/**
 * GPU use by processes that are not meshfarm's tasks, from nvidia-smi's compute-app list. No nvidia-smi: the
 * source is unavailable and the policy knows nothing about the GPUs (their tasks are not stopped for it).
 * In a container nvidia-smi may show host pids, which then all look foreign: safe, if cautious.
 */
import { execFile } from 'node:child_process'
import type { PresenceSource, Probe, ReadContext, Reading } from '../types.ts'

export interface GpuApp { pid: number, usedMb: number }

const QUERY = ['--query-compute-apps=pid,used_memory', '--format=csv,noheader,nounits']
const TIMEOUT_MS = 5000

/** `nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader[,nounits]` -> apps. Pure. */
export function parseComputeApps (csv: string): GpuApp[] {
  const out: GpuApp[] = []
  for (const line of csv.split(/\r?\n/)) {
    const [pid, mem] = line.split(',').map(f => f.trim())
    if (pid == null || !/^\d+$/.test(pid)) continue // "No running processes found", warnings
    const mb = Number((mem ?? '').replace(/\s*MiB$/i, ''))
    out.push({ pid: Number(pid), usedMb: Number.isFinite(mb) ? mb : 0 })
  }
  return out
}

/** Apps whose pid is not one of our tasks' -> the reading. Pure. */
export function gpuReading (apps: GpuApp[], ours: ReadonlySet<number>): Reading {
  const foreign = apps.filter(a => !ours.has(a.pid))
  const memoryMb = foreign.reduce((n, a) => n + a.usedMb, 0)
  const detail = foreign.length === 0
    ? `gpu: no other process on the GPUs${apps.length > 0 ? ` (${apps.length} of meshfarm's)` : ''}`
    : `gpu: ${foreign.length} other process${foreign.length === 1 ? '' : 'es'} (pid ${foreign.slice(0, 3).map(a => a.pid).join(', ')}${foreign.length > 3 ? ', ...' : ''}) using ${memoryMb} MiB`
  return { source: 'gpu', foreignGpu: { processes: foreign.length, memoryMb, pids: foreign.map(a => a.pid) }, detail }
}

type Run = (args: string[]) => Promise<string>

const runSmi: Run = args => new Promise((resolve, reject) => {
  execFile('nvidia-smi', args, { timeout: TIMEOUT_MS, encoding: 'utf8' }, (err, stdout) => {
    if ((err as NodeJS.ErrnoException | null)?.code === 'ENOENT') reject(new Error('no nvidia-smi'))
    else if (err != null) reject(new Error(`nvidia-smi: ${(stdout.trim().split('\n')[0] || err.message).slice(0, 200)}`))
    else resolve(stdout)
  })
})

export class GpuSource implements PresenceSource {
  readonly name = 'gpu'
  private readonly run: Run

  constructor (run: Run = runSmi) {
    this.run = run
  }

  async probe (): Promise<Probe> {
    try {
      const gpus = (await this.run(['-L'])).split('\n').filter(l => /^GPU \d+/.test(l)).length
      return gpus > 0 ? { available: true, why: `${gpus} GPU${gpus === 1 ? '' : 's'}` } : { available: false, why: 'nvidia-smi lists no GPU' }
    } catch (err) {
      return { available: false, why: (err as Error).message }
    }
  }

  async read (ctx: ReadContext): Promise<Reading> {
    try {
      return gpuReading(parseComputeApps(await this.run(QUERY)), ctx.ours.pids)
    } catch (err) {
      return { source: this.name, foreignGpu: null, detail: `gpu: ${(err as Error).message}`, error: (err as Error).message }
    }
  }
}
