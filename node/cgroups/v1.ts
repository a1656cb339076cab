/**
 * cgroup v1 task groups (usable as root): one folder per hierarchy (memory, cpu, cpuacct, freezer, pids; cpu and
 * cpuacct are often one hierarchy), under the agent's own cgroup in each, so whatever limits the agent has
 * apply to its tasks too. The launcher writes the task's pid into every hierarchy's cgroup.procs.
 */
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { MemoryReport, TaskGroup, TaskGroups, TaskLimits } from './types.ts'
import type { CgroupLayout } from './detect.ts'
import { exists, get, makeGroupDir, parseKeyed, parseLimit, parsePids, put, removeDir, sleep, waitFor } from './fsutil.ts'

/** cpu.shares for `cores` (1024 per core), 2 (the kernel's minimum) for harvested tasks. Pure. */
export function v1Shares (limits: TaskLimits): number {
  return limits.harvested ? 2 : Math.min(262_144, Math.max(2, Math.round(1024 * limits.cores)))
}

class V1Group implements TaskGroup {
  readonly kind = 'cgroup-v1' as const
  readonly procFiles: string[]
  /** controller -> folder (shared folders when controllers share a hierarchy). */
  readonly id: string
  private readonly dirs: Map<string, string>

  constructor (id: string, dirs: Map<string, string>) {
    this.id = id
    this.dirs = dirs
    this.procFiles = [...new Set(dirs.values())].map(d => join(d, 'cgroup.procs'))
  }

  private dir (c: string): string | undefined { return this.dirs.get(c) }

  async pids (): Promise<number[]> {
    const all = new Set<number>()
    // Read at once: every file is a few thread-pool round trips, and a task's end waits for these.
    for (const text of await Promise.all(this.procFiles.map(get))) for (const p of parsePids(text)) all.add(p)
    return [...all].sort((a, b) => a - b)
  }

  private async freezerState (): Promise<string> {
    return (await get(join(this.dir('freezer')!, 'freezer.state')) ?? '').trim()
  }

  async freeze (timeoutMs = 1000): Promise<void> {
    const d = this.dir('freezer')
    if (d == null) throw new Error('cgroups v1: no freezer hierarchy')
    await put(join(d, 'freezer.state'), 'FROZEN')
    // FREEZING until every task has stopped; writing FROZEN again retries the ones that were in the kernel.
    await waitFor(async () => {
      const s = await this.freezerState()
      if (s === 'FREEZING') await put(join(d, 'freezer.state'), 'FROZEN').catch(() => {})
      return s === 'FROZEN'
    }, timeoutMs, async () => `${d}: ${await this.freezerState()} after ${timeoutMs} ms`)
  }

  async thaw (timeoutMs = 1000): Promise<void> {
    const d = this.dir('freezer')
    if (d == null) throw new Error('cgroups v1: no freezer hierarchy')
    await put(join(d, 'freezer.state'), 'THAWED')
    await waitFor(async () => await this.freezerState() === 'THAWED', timeoutMs, async () => `${d}: ${await this.freezerState()} after ${timeoutMs} ms`)
  }

  async memory (): Promise<MemoryReport> {
    const d = this.dir('memory')
    if (d == null) return { oomKilled: false, oomKills: 0, peakBytes: null, limitBytes: null }
    // oom_kill in memory.oom_control counts kills in this group (Linux 4.13+); failcnt only counts hits of the limit.
    const [oom, memsw, max, limit] = await Promise.all(['memory.oom_control', 'memory.memsw.max_usage_in_bytes', 'memory.max_usage_in_bytes', 'memory.limit_in_bytes'].map(async f => await get(join(d, f))))
    const kills = parseKeyed(oom ?? '').get('oom_kill') ?? 0
    return { oomKilled: kills > 0, oomKills: kills, peakBytes: parseLimit(memsw) ?? parseLimit(max), limitBytes: parseLimit(limit) }
  }

  async cpuSec (): Promise<number | null> {
    const d = this.dir('cpuacct')
    const ns = d == null ? null : parseLimit(await get(join(d, 'cpuacct.usage')))
    return ns == null ? null : ns / 1e9
  }

  /** Freeze, SIGKILL everything, thaw, until empty: no fork slips out between reading the list and killing. */
  async kill (timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    const frozen = this.dir('freezer') != null
    for (;;) {
      if (frozen) await this.freeze(Math.max(100, deadline - Date.now())).catch(() => {})
      const pids = await this.pids()
      for (const p of pids) { try { process.kill(p, 'SIGKILL') } catch {} }
      if (frozen) await put(join(this.dir('freezer')!, 'freezer.state'), 'THAWED').catch(() => {})
      if (pids.length === 0) return
      if (Date.now() >= deadline) throw new Error(`${this.procFiles[0]}: ${pids.length} processes left after kill`)
      await sleep(20)
    }
  }

  async remove (): Promise<void> {
    for (const d of new Set(this.dirs.values())) await removeDir(d)
  }
}

export interface V1Options { layout: CgroupLayout, name: string }

export async function openV1 (o: V1Options): Promise<TaskGroups> {
  // controller -> the agent's parent folder in that controller's hierarchy.
  const parents = new Map<string, string>()
  const failed: string[] = []
  for (const c of ['memory', 'cpu', 'cpuacct', 'freezer', 'pids']) {
    const h = o.layout.v1.get(c)
    if (h == null) continue
    const dir = join(h.ownDir, 'meshfarm', o.name)
    try {
      await makeGroupDir(dir, 1)
      parents.set(c, dir)
    } catch (err) {
      failed.push(`${c} (${(err as NodeJS.ErrnoException).code})`)
    }
  }
  if (parents.size === 0) throw new Error(`cgroups v1: no hierarchy writable${failed.length > 0 ? `: ${failed.join(', ')}` : ''}`)
  const controllers = new Set(parents.keys())
  const memParent = parents.get('memory')
  const swap = memParent != null && await exists(join(memParent, 'memory.memsw.limit_in_bytes'))
  const hasIdle = parents.has('cpu') && await exists(join(parents.get('cpu')!, 'cpu.idle'))
  // A task's CPU quota is in units of a new group's period (the kernel's default): read from the first group made.
  let cfsPeriod: number | null = null
  const dirsFor = (id: string): Map<string, string> => new Map([...parents].map(([c, p]) => [c, join(p, id)]))
  const names = [...controllers].map(c => c === 'memory' && swap ? 'memory (swap too)' : c).join(', ')
  const enforced = controllers.has('memory') ? 'tasks get hard memory limits' : 'no memory hierarchy: memory limits fall back to RLIMIT_DATA'
  return {
    kind: 'cgroup-v1',
    controllers,
    describe: `cgroups v1: ${names}; ${enforced}${controllers.has('freezer') ? '' : '; no freezer: suspend by SIGSTOP'}${failed.length > 0 ? `; not writable: ${failed.join(', ')}` : ''}`,
    create: async (id, limits) => {
      const dirs = dirsFor(id)
      // The hierarchies are independent: their folders, then their limits, are made at once (a task's start waits
      // for them, and each file is a few thread-pool round trips).
      await Promise.all([...new Set(dirs.values())].map(async d => { await makeGroupDir(d) }))
      const writes: Array<Promise<void>> = []
      const mem = dirs.get('memory')
      if (mem != null && limits.memoryBytes != null) {
        // memsw (memory + swap) at the same value, after memory's own (the kernel wants memsw >= memory): the
        // limit cannot be dodged by swapping.
        writes.push(put(join(mem, 'memory.limit_in_bytes'), String(limits.memoryBytes))
          .then(async () => { await (swap ? put(join(mem, 'memory.memsw.limit_in_bytes'), String(limits.memoryBytes)) : put(join(mem, 'memory.swappiness'), '0').catch(() => {})) }))
      }
      const cpu = dirs.get('cpu')
      if (cpu != null) {
        writes.push(put(join(cpu, 'cpu.shares'), String(v1Shares(limits))))
        cfsPeriod ??= Number((await get(join(cpu, 'cpu.cfs_period_us')) ?? '100000').trim()) || 100_000
        writes.push(put(join(cpu, 'cpu.cfs_quota_us'), String(Math.max(1000, Math.round(limits.cores * cfsPeriod)))))
        if (limits.harvested && hasIdle) writes.push(put(join(cpu, 'cpu.idle'), '1'))
      }
      const pids = dirs.get('pids')
      if (pids != null && limits.pidsMax != null) writes.push(put(join(pids, 'pids.max'), String(limits.pidsMax)))
      await Promise.all(writes)
      return new V1Group(id, dirs)
    },
    tasksCpuSec: async () => {
      const p = parents.get('cpuacct')
      const ns = p == null ? null : parseLimit(await get(join(p, 'cpuacct.usage')))
      return ns == null ? null : ns / 1e9
    },
    leftovers: async () => {
      const first = [...parents.values()][0]
      return (await readdir(first, { withFileTypes: true })).filter(d => d.isDirectory()).map(d => d.name)
    },
    reopen: id => new V1Group(id, dirsFor(id)),
    close: async () => {
      for (const p of new Set(parents.values())) {
        await removeDir(p).catch(() => {})
        await removeDir(join(p, '..'), 0).catch(() => {}) // the shared "meshfarm" folder, once no agent uses it
      }
    }
  }
}
