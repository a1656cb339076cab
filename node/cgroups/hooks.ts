/**
 * Every task gets what it asked for, and no more: the local backend's hooks (LocalTaskHooks) put each task in a
 * group of its own (cgroup v2, v1, or its process tree where no cgroup is usable) with its memory request as a
 * hard limit and its cores as CPU weight and quota; harvested tasks at the lowest CPU and I/O priority. Suspend
 * freezes the group (or stops the whole tree, double-forked children included); after the task, the group says
 * whether the kernel killed it for its memory and what its peak was, and what the task left running goes too.
 */
import type { BackendTask, TaskOutcome } from '../backend/backend.ts'
import type { LocalTaskHooks } from '../backend/local.ts'
import type { LauncherFeature, SpawnRequest } from '../launcher/client.ts'
import { errorMessage } from '../../shared/util/errors.ts'
import { launchSettings, openTaskGroups, type LaunchSettings, type TaskGroup, type TaskGroups, type TaskLimits } from './index.ts'
import { stopTree, continueTree } from './proctree.ts'
import { OursTracker } from '../harvest/ours.ts'

export type SpawnExtras = Pick<SpawnRequest, 'cgroupProcs' | 'nice' | 'ioprio' | 'rlimits'>

/** IOPRIO_CLASS_IDLE: the task gets the disk only when nobody else wants it. */
const IO_IDLE = { class: 3, level: 0 }
const MiB = 2 ** 20

/** What a task asks for, as group limits. Pure. */
export function taskLimits (t: Pick<BackendTask, 'memoryMb' | 'cores'>, harvested: boolean): TaskLimits {
  return { memoryBytes: t.memoryMb > 0 ? t.memoryMb * MiB : null, cores: Math.max(1, t.cores), harvested }
}

/** Launch settings -> what to ask this launcher for, and what it cannot do. Pure. */
export function spawnExtras (s: LaunchSettings, features: ReadonlySet<LauncherFeature>): { extras: SpawnExtras, missing: string[] } {
  const extras: SpawnExtras = {}
  const missing: string[] = []
  if (s.procFiles.length > 0) {
    if (features.has('cgroup')) extras.cgroupProcs = [...s.procFiles]
    else missing.push('cgroups')
  }
  if (s.nice !== 0) {
    if (features.has('nice')) extras.nice = s.nice
    else missing.push('nice')
  }
  if (s.ioIdle) {
    if (features.has('ioprio')) extras.ioprio = IO_IDLE
    else missing.push('I/O priority')
  }
  if (s.rlimitDataBytes != null) {
    if (features.has('rlimits')) extras.rlimits = { data: [s.rlimitDataBytes, s.rlimitDataBytes] }
    else missing.push('memory limits (RLIMIT_DATA)')
  }
  return { extras, missing }
}

/** The start log's lines: what is enforced, and what this launcher cannot do. Pure. */
export function controlLines (groups: Pick<TaskGroups, 'describe' | 'controllers' | 'kind'>, features: ReadonlySet<LauncherFeature>, harvested: boolean): string[] {
  const lines = [groups.describe]
  const probe: LaunchSettings = { procFiles: groups.kind === 'process-tree' ? [] : ['x'], nice: harvested ? 19 : 0, ioIdle: harvested, rlimitDataBytes: groups.controllers.has('memory') ? null : 1 }
  const { missing } = spawnExtras(probe, features)
  if (harvested) lines.push(`harvested tasks run at nice 19${missing.includes('I/O priority') ? '' : ' and idle I/O priority'}${groups.controllers.has('cpu') ? ', lowest CPU weight' : ''}`)
  if (missing.length > 0) lines.push(`this task launcher cannot set ${missing.join(', ')}: tasks run without them`)
  return lines
}

interface Live {
  task: BackendTask
  group: TaskGroup
  limits: TaskLimits
  /** Freeze and thaw in the order asked. */
  chain: Promise<void>
  oom: boolean
  startedAt: number
}

export interface TaskControlOptions {
  groups: TaskGroups
  features: ReadonlySet<LauncherFeature>
  /** A harvested desktop: tasks at the lowest CPU and I/O priority. */
  harvested: boolean
  log: (line: string) => void
  /** How often v1 groups are checked for an OOM kill (v2 groups kill all their processes themselves). */
  oomPollMs?: number
}

export class TaskControl {
  readonly hooks: LocalTaskHooks
  /** meshfarm's own task processes, for presence sources to leave out. */
  readonly tracker: OursTracker
  readonly lines: string[]
  private readonly o: TaskControlOptions
  private readonly live = new Map<number, Live>()
  private readonly timer: NodeJS.Timeout | null = null
  private watching = false

  constructor (o: TaskControlOptions) {
    this.o = o
    this.tracker = new OursTracker(o.groups)
    this.lines = controlLines(o.groups, o.features, o.harvested)
    this.hooks = {
      beforeStart: async t => await this.beforeStart(t),
      afterExit: async (t, out) => await this.afterExit(t, out),
      freeze: (t, frozen) => this.freeze(t, frozen)
    }
    // v1 has no memory.oom.group: the kernel kills one process (the largest), and the task may go on without it.
    if (o.groups.kind === 'cgroup-v1' && o.groups.controllers.has('memory')) {
      this.timer = setInterval(() => { void this.watchOom() }, o.oomPollMs ?? 500)
      this.timer.unref()
    }
  }

  /** When a live task's group was made (its start, for status --here); null once it ended. */
  startedAt (attemptId: number): number | null { return this.live.get(attemptId)?.startedAt ?? null }

  private async beforeStart (task: BackendTask): Promise<SpawnExtras> {
    const { groups, features, harvested } = this.o
    const limits = taskLimits(task, harvested)
    // No group, no task: running it without its limits would break the promise made to the machine's owner.
    const group = await groups.create(String(task.attemptId), limits).catch((err: unknown) => { throw new Error(`task group: ${errorMessage(err)}`) })
    this.live.set(task.attemptId, { task, group, limits, chain: Promise.resolve(), oom: false, startedAt: Date.now() })
    this.tracker.add(String(task.attemptId), group)
    return spawnExtras(launchSettings(groups, group, limits), features).extras
  }

  private freeze (task: BackendTask, frozen: boolean): boolean {
    const l = this.live.get(task.attemptId)
    if (l == null) return false
    const freezer = this.o.groups.kind === 'process-tree' || this.o.groups.controllers.has('freezer') || this.o.groups.controllers.has('freeze')
    l.chain = l.chain.then(async () => {
      if (freezer) await (frozen ? l.group.freeze(1000) : l.group.thaw(1000))
      else if (frozen) await stopTree(async () => await l.group.pids(), 1000)
      else await continueTree(async () => await l.group.pids())
    }).catch(err => { this.o.log(`agent: task ${task.jobId}.${task.index}: ${frozen ? 'suspend' : 'continue'} failed: ${errorMessage(err)}`) })
    return true
  }

  private async afterExit (task: BackendTask, outcome: TaskOutcome): Promise<Partial<TaskOutcome>> {
    const l = this.live.get(task.attemptId)
    if (l == null) return {}
    this.live.delete(task.attemptId)
    this.tracker.remove(String(task.attemptId))
    await l.chain
    const mem = await l.group.memory().catch(() => null)
    // What the task left running (a daemon it started) goes with it; a process tree is left to the launcher.
    if (l.group.kind !== 'process-tree') {
      try {
        if ((await l.group.pids()).length > 0) await l.group.kill(5000)
      } catch (err) {
        this.o.log(`agent: task ${task.jobId}.${task.index}: ${errorMessage(err)}`)
      }
    }
    void l.group.remove().catch(err => { this.o.log(`agent: task ${task.jobId}.${task.index}: ${errorMessage(err)}`) })
    const counted = l.limits.memoryBytes != null && this.o.groups.controllers.has('memory')
    return {
      overMemoryLimit: l.oom || mem?.oomKilled === true ? true : counted ? false : null,
      peakMemoryBytes: mem?.peakBytes ?? outcome.peakMemoryBytes,
      memoryLimitBytes: counted ? mem?.limitBytes ?? l.limits.memoryBytes : null
    }
  }

  /** A v1 group whose OOM counter moved: the whole task is stopped, as v2's memory.oom.group does. */
  private async watchOom (): Promise<void> {
    if (this.watching) return
    this.watching = true
    try {
      for (const l of this.live.values()) {
        if (l.oom || l.limits.memoryBytes == null) continue
        const m = await l.group.memory().catch(() => null)
        if (m?.oomKilled !== true) continue
        l.oom = true
        await l.group.kill(5000).catch(err => { this.o.log(`agent: task ${l.task.jobId}.${l.task.index}: ${errorMessage(err)}`) })
      }
    } finally {
      this.watching = false
    }
  }

  /** Kills what is left of every task (the launcher kills only what it knows) and removes the agent's groups. */
  async close (): Promise<void> {
    if (this.timer != null) clearInterval(this.timer)
    for (const l of this.live.values()) {
      await l.group.kill(5000).catch(() => {})
      await l.group.remove().catch(() => {})
    }
    this.live.clear()
    await this.o.groups.close()
  }
}

export interface OpenTaskControlOptions extends Omit<TaskControlOptions, 'groups'> {
  /** 'none': --no-cgroups. */
  prefer: 'auto' | 'none'
  /** The agent's groups' folder name: the same across restarts of one agent, so leftovers are found. */
  name: string
}

/** Opens this machine's task groups; groups a dead agent of this state folder left are killed and removed. */
export async function openTaskControl (o: OpenTaskControlOptions): Promise<TaskControl> {
  const groups = await openTaskGroups({ name: o.name, prefer: o.prefer })
  const left = await groups.leftovers().catch(() => [] as string[])
  for (const id of left) {
    const g = groups.reopen(id)
    await g.kill(5000).catch(() => {})
    await g.remove().catch(() => {})
  }
  if (left.length > 0) o.log(`agent: killed and removed ${left.length} task group(s) left by this agent's last run`)
  return new TaskControl({ ...o, groups })
}
