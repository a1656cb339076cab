/**
 * cgroup v2 task groups. The agent needs a folder it may write whose children can have controllers: its own
 * cgroup when systemd delegated it (Delegate=yes), or a new one at the top when it runs as root in the root
 * cgroup. v2 forbids processes in a cgroup whose children have controllers, so the agent first moves its own
 * processes into `<own>/agent` and puts tasks under `<own>/tasks` (what systemd's DelegateSubgroup= does).
 */
import { chmod, mkdir, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { MemoryReport, TaskGroup, TaskGroups, TaskLimits } from './types.ts'
import { exists, get, makeGroupDir, parseKeyed, parseLimit, parsePids, put, removeDir, waitFor } from './fsutil.ts'
import { killTree, readStat } from './proctree.ts'

const WANTED = ['memory', 'cpu', 'io', 'pids']
const PERIOD_US = 100_000

/** Turns on the wanted controllers for `dir`'s children, one by one (one refused is not all refused). */
async function enable (dir: string, wanted: string[]): Promise<Set<string>> {
  const available = new Set((await get(join(dir, 'cgroup.controllers')) ?? '').trim().split(/\s+/).filter(Boolean))
  for (const c of wanted) if (available.has(c)) await put(join(dir, 'cgroup.subtree_control'), `+${c}`).catch(() => {})
  return new Set((await get(join(dir, 'cgroup.subtree_control')) ?? '').trim().split(/\s+/).filter(Boolean))
}

/** CPU weight for `cores` (100 per core, as systemd's CPUWeight), 1 for harvested tasks. Pure. */
export function v2CpuWeight (limits: TaskLimits): number {
  return limits.harvested ? 1 : Math.min(10_000, Math.max(1, Math.round(100 * limits.cores)))
}

export function v2CpuMax (cores: number): string {
  return `${Math.max(1000, Math.round(cores * PERIOD_US))} ${PERIOD_US}`
}

class V2Group implements TaskGroup {
  readonly kind = 'cgroup-v2' as const
  readonly procFiles: string[]
  readonly id: string
  readonly dir: string
  private readonly hasKill: boolean

  constructor (id: string, dir: string, hasKill: boolean) {
    this.id = id
    this.dir = dir
    this.hasKill = hasKill
    this.procFiles = [join(dir, 'cgroup.procs')]
  }

  async pids (): Promise<number[]> { return parsePids(await get(join(this.dir, 'cgroup.procs'))) }

  private async events (): Promise<Map<string, number>> { return parseKeyed(await get(join(this.dir, 'cgroup.events')) ?? '') }

  async freeze (timeoutMs = 1000): Promise<void> {
    await put(join(this.dir, 'cgroup.freeze'), '1')
    await waitFor(async () => (await this.events()).get('frozen') === 1, timeoutMs, () => `${this.dir}: not frozen after ${timeoutMs} ms`)
  }

  async thaw (timeoutMs = 1000): Promise<void> {
    await put(join(this.dir, 'cgroup.freeze'), '0')
    await waitFor(async () => (await this.events()).get('frozen') !== 1, timeoutMs, () => `${this.dir}: still frozen after ${timeoutMs} ms`)
  }

  async memory (): Promise<MemoryReport> {
    const ev = parseKeyed(await get(join(this.dir, 'memory.events')) ?? '')
    const kills = ev.get('oom_kill') ?? 0
    return { oomKilled: kills > 0, oomKills: kills, peakBytes: parseLimit(await get(join(this.dir, 'memory.peak'))), limitBytes: parseLimit(await get(join(this.dir, 'memory.max'))) }
  }

  async cpuSec (): Promise<number | null> {
    const usec = parseKeyed(await get(join(this.dir, 'cpu.stat')) ?? '').get('usage_usec')
    return usec == null ? null : usec / 1e6
  }

  async kill (timeoutMs = 5000): Promise<void> {
    if (this.hasKill) await put(join(this.dir, 'cgroup.kill'), '1')
    else await killTree(() => this.pids(), timeoutMs)
    // A frozen group's processes die only once thawed.
    await put(join(this.dir, 'cgroup.freeze'), '0').catch(() => {})
    await waitFor(async () => (await this.events()).get('populated') === 0, timeoutMs, async () => `${this.dir}: ${(await this.pids()).length} processes left after kill`)
  }

  async remove (): Promise<void> { await removeDir(this.dir) }
}

export interface V2Options {
  /** The unified mount, e.g. /sys/fs/cgroup. */
  mount: string
  /** This process's cgroup path ("/" or "/system.slice/meshfarm.service"). */
  ownPath: string
  /** Names the agent's folder when it must create one at the top (several agents may share a machine). */
  name: string
}

/** Sets up the agent's task parent; throws one line when the hierarchy is not writable for us. */
export async function openV2 (o: V2Options): Promise<TaskGroups> {
  let parent: string
  let where: string
  // The real root cgroup has no cgroup.freeze; a container's namespace root does, and obeys the v2 rules.
  const realRoot = o.ownPath === '/' && !(await exists(join(o.mount, 'cgroup.freeze')))
  if (realRoot) {
    // Root in the root cgroup: a folder of our own at the top.
    await enable(o.mount, WANTED)
    await mkdir(join(o.mount, 'meshfarm'), { recursive: true })
    await chmod(join(o.mount, 'meshfarm'), 0o755)
    await enable(join(o.mount, 'meshfarm'), WANTED)
    parent = join(o.mount, 'meshfarm', o.name)
    where = `created ${parent}`
  } else {
    // Only the agent and its own children move: anything else in this cgroup is not ours to touch (then the
    // controllers stay off, and freeze and kill, which need none, still work).
    const own = join(o.mount, o.ownPath)
    const agentDir = join(own, 'agent')
    await mkdir(agentDir, { recursive: true })
    for (const pid of parsePids(await get(join(own, 'cgroup.procs')))) {
      const st = pid === process.pid ? null : await readStat(pid)
      if (pid === process.pid || st?.ppid === process.pid) await put(join(agentDir, 'cgroup.procs'), String(pid)).catch(() => {})
    }
    await enable(own, WANTED)
    parent = join(own, 'tasks')
    where = `delegated ${o.ownPath}`
  }
  await mkdir(parent, { recursive: true })
  await chmod(parent, 0o755)
  const controllers = await enable(parent, WANTED)
  const hasKill = await exists(join(parent, 'cgroup.kill'))
  if (await exists(join(parent, 'cgroup.freeze'))) controllers.add('freeze')
  if (hasKill) controllers.add('kill')
  const usable = [...controllers].sort()
  const enforced = controllers.has('memory') ? 'tasks get hard memory limits' : 'no memory controller: memory limits fall back to RLIMIT_DATA'
  return {
    kind: 'cgroup-v2',
    controllers,
    describe: `cgroups v2 (${where}): ${usable.join(', ') || 'no controllers'}; ${enforced}${controllers.has('freeze') ? '' : '; no freezer: suspend by SIGSTOP'}`,
    create: async (id, limits) => {
      const dir = join(parent, id)
      await makeGroupDir(dir)
      const set = async (file: string, value: string, required: boolean): Promise<void> => {
        if (await exists(join(dir, file))) await put(join(dir, file), value)
        else if (required) throw new Error(`${join(dir, file)}: missing`)
      }
      if (limits.memoryBytes != null && controllers.has('memory')) {
        await set('memory.max', String(limits.memoryBytes), true)
        await set('memory.swap.max', '0', false)
        await set('memory.oom.group', '1', false) // an OOM kill takes the whole task, not one random child
      }
      if (controllers.has('cpu')) {
        await set('cpu.weight', String(v2CpuWeight(limits)), true)
        await set('cpu.max', v2CpuMax(limits.cores), true)
        if (limits.harvested) await set('cpu.idle', '1', false)
      }
      if (limits.harvested && controllers.has('io')) {
        await set('io.weight', 'default 1', false).catch(() => {}) // only with an I/O cost model; ioprio covers the rest
        await set('io.bfq.weight', '1', false).catch(() => {})
      }
      if (limits.pidsMax != null && controllers.has('pids')) await set('pids.max', String(limits.pidsMax), true)
      return new V2Group(id, dir, hasKill)
    },
    tasksCpuSec: async () => {
      const usec = parseKeyed(await get(join(parent, 'cpu.stat')) ?? '').get('usage_usec')
      return usec == null ? null : usec / 1e6
    },
    leftovers: async () => (await readdir(parent, { withFileTypes: true })).filter(d => d.isDirectory()).map(d => d.name),
    reopen: id => new V2Group(id, join(parent, id), hasKill),
    close: async () => {
      await removeDir(parent).catch(() => {})
      if (realRoot) await removeDir(join(parent, '..'), 0).catch(() => {}) // the shared "meshfarm" folder, once empty
    }
  }
}
