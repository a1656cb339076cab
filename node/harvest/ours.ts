/**
 * meshfarm's own task processes, so presence sources can leave them out: their pids (GPU use), their terminals
 * (tty activity) and their CPU time (owner load). With cgroups the groups say it exactly; without, one /proc scan
 * finds every process marked by this agent, and CPU time is summed per process between scans (a process that
 * ends between two scans loses its last interval: the owner's load then reads a little high, never low).
 */
import { readFile } from 'node:fs/promises'
import type { TaskGroup, TaskGroups } from '../cgroups/types.ts'
import { groupTasks, readStat, scanProcesses, USER_HZ, type ProcStat } from '../cgroups/proctree.ts'
import type { OursSnapshot } from './types.ts'

async function uptimeTicks (): Promise<number> {
  const t = await readFile('/proc/uptime', 'utf8').catch(() => '0')
  return Math.floor(Number(t.split(' ')[0]) * USER_HZ)
}

export class OursTracker {
  private readonly tasks = new Map<string, { group: TaskGroup, rootPid?: number }>()
  private seen = new Map<number, { cpuTicks: number, startTicks: number }>()
  private lastUptime = 0
  private treeCpuSec = 0

  private readonly groups: TaskGroups
  private readonly agentPid: number

  constructor (groups: TaskGroups, agentPid: number = process.pid) {
    this.groups = groups
    this.agentPid = agentPid
  }

  add (id: string, group: TaskGroup, rootPid?: number): void { this.tasks.set(id, { group, rootPid }) }
  remove (id: string): void { this.tasks.delete(id) }

  async snapshot (): Promise<OursSnapshot> {
    let stats: ProcStat[]
    if (this.groups.kind === 'process-tree') {
      const entries = await scanProcesses()
      const roots = new Map([...this.tasks].filter(([, t]) => t.rootPid != null).map(([id, t]) => [id, t.rootPid!]))
      const mine = new Set([...groupTasks(entries, this.agentPid, roots).values()].flat())
      stats = entries.filter(e => mine.has(e.stat.pid)).map(e => e.stat)
    } else {
      const pids = new Set((await Promise.all([...this.tasks.values()].map(t => t.group.pids().catch(() => [])))).flat())
      stats = (await Promise.all([...pids].map(readStat))).filter((s): s is ProcStat => s != null)
    }
    const counted = await this.groups.tasksCpuSec().catch(() => null)
    return {
      pids: new Set(stats.map(s => s.pid)),
      ttys: new Set(stats.map(s => s.ttyNr).filter(t => t !== 0)),
      cpuSec: counted ?? await this.sumTrees(stats)
    }
  }

  /** Per-process CPU deltas since the last scan; processes started since then count in full. */
  private async sumTrees (stats: ProcStat[]): Promise<number> {
    const now = await uptimeTicks()
    const next = new Map<number, { cpuTicks: number, startTicks: number }>()
    for (const s of stats) {
      const prev = this.seen.get(s.pid)
      const same = prev != null && prev.startTicks === s.startTicks // not a reused pid
      const delta = same ? s.cpuTicks - prev.cpuTicks : s.startTicks >= this.lastUptime ? s.cpuTicks : 0
      this.treeCpuSec += Math.max(0, delta) / USER_HZ
      next.set(s.pid, { cpuTicks: s.cpuTicks, startTicks: s.startTicks })
    }
    this.seen = next
    this.lastUptime = now
    return this.treeCpuSec
  }
}
