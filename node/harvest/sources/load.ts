/**
 * The owner's CPU load: all CPU time the machine spent (/proc/stat) less the CPU time of meshfarm's own tasks
 * (their cgroups' counter, or the sum over their process trees), per second of wall time, in cores. Two samples
 * make one value; the arithmetic is a pure function.
 */
import { readFile } from 'node:fs/promises'
import type { PresenceSource, Probe, ReadContext, Reading } from '../types.ts'
import { USER_HZ } from '../../cgroups/proctree.ts'

export interface CpuSample {
  /** Wall clock, ms. */
  at: number
  /** Busy CPU seconds of the whole machine since boot (all but idle and iowait). */
  busySec: number
  /** CPU seconds of meshfarm's tasks (any origin, only differences matter). */
  oursSec: number
}

/**
 * The `cpu` line of /proc/stat -> busy seconds. user and nice already include guest time, so guest columns are
 * not added again; idle and iowait are not busy. Null when the line is not there.
 */
export function parseProcStatCpu (text: string): number | null {
  const line = text.split('\n').find(l => l.startsWith('cpu '))
  if (line == null) return null
  const f = line.trim().split(/\s+/).slice(1).map(Number)
  if (f.length < 4 || f.some(x => !Number.isFinite(x))) return null
  const [user, nice, system, , , irq = 0, softirq = 0, steal = 0] = f
  return (user + nice + system + irq + softirq + steal) / USER_HZ
}

/**
 * Cores busy with work that is not meshfarm's between two samples; null when the samples cannot tell (same
 * instant, time going backwards, counters reset). Never negative: our counter and the machine's are read at
 * slightly different moments. Pure.
 */
export function loadNotOurs (prev: CpuSample, cur: CpuSample): number | null {
  const wall = (cur.at - prev.at) / 1000
  const busy = cur.busySec - prev.busySec
  if (wall <= 0 || busy < 0) return null
  const ours = Math.max(0, cur.oursSec - prev.oursSec)
  return Math.max(0, (busy - ours) / wall)
}

export class LoadSource implements PresenceSource {
  readonly name = 'load'
  private prev: CpuSample | null = null

  private readonly statFile: string

  constructor (statFile: string = '/proc/stat') {
    this.statFile = statFile
  }

  async probe (): Promise<Probe> {
    const busy = parseProcStatCpu(await readFile(this.statFile, 'utf8').catch(() => ''))
    return busy == null ? { available: false, why: `no cpu line in ${this.statFile}` } : { available: true, why: 'all CPU time less the tasks\'' }
  }

  async read (ctx: ReadContext): Promise<Reading> {
    const busySec = parseProcStatCpu(await readFile(this.statFile, 'utf8').catch(() => ''))
    if (busySec == null) return { source: this.name, loadNotOurs: null, detail: `load: cannot read ${this.statFile}`, error: `cannot read ${this.statFile}` }
    const cur: CpuSample = { at: ctx.now, busySec, oursSec: ctx.ours.cpuSec }
    const load = this.prev == null ? null : loadNotOurs(this.prev, cur)
    // Keep the older sample when this one came too soon to say anything (a burst of reads).
    if (this.prev == null || cur.at - this.prev.at >= 500) this.prev = cur
    return { source: this.name, loadNotOurs: load, detail: load == null ? 'load: first sample' : `load: not ours ${load.toFixed(2)} cores` }
  }
}
