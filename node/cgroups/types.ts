/**
 * One interface for holding a task's processes, whatever the machine offers: a cgroup v2 or v1 group, or the
 * process tree when no cgroup is usable. The agent's backend calls these; the launcher only needs `procFiles`.
 */

export interface TaskLimits {
  /** Hard memory limit in bytes (the task's memory request); null: none. */
  memoryBytes: number | null
  /** Cores asked for: CPU weight and quota. */
  cores: number
  /** Harvested desktop: lowest CPU weight (SCHED_IDLE group where the kernel has cpu.idle) and idle I/O. */
  harvested: boolean
  /** Most processes the task may have; null: no limit. */
  pidsMax?: number | null
}

export interface MemoryReport {
  /** The kernel's OOM killer killed something in the group. */
  oomKilled: boolean
  oomKills: number
  /** Highest memory use seen (bytes); null where the kernel does not keep it. */
  peakBytes: number | null
  limitBytes: number | null
}

export type GroupKind = 'cgroup-v2' | 'cgroup-v1' | 'process-tree'

export interface TaskGroup {
  readonly id: string
  readonly kind: GroupKind
  /** Files the launcher writes the task's pid into (or "0": itself), in the child, before exec. [] without cgroups. */
  readonly procFiles: string[]
  /** Live processes of the task. */
  pids: () => Promise<number[]>
  /** Resolves once every process is frozen (cgroup) or in state T (process tree); throws after timeoutMs. */
  freeze: (timeoutMs?: number) => Promise<void>
  thaw: (timeoutMs?: number) => Promise<void>
  memory: () => Promise<MemoryReport>
  /** CPU seconds used by the group; null where not counted. */
  cpuSec: () => Promise<number | null>
  /** Kills every process of the task and waits until none is left. */
  kill: (timeoutMs?: number) => Promise<void>
  /** Removes the (empty) group. */
  remove: () => Promise<void>
}

export interface TaskGroups {
  readonly kind: GroupKind
  /** What is enforced, for the agent's start log: "cgroups v1: memory (swap too), cpu, freezer; ...". */
  readonly describe: string
  /** Controllers usable for tasks (memory, cpu, cpuacct, freezer, pids, io, freeze, kill). */
  readonly controllers: ReadonlySet<string>
  /** `rootPid`: the task's first process when known (process-tree groups follow its descendants). */
  create: (id: string, limits: TaskLimits, rootPid?: number) => Promise<TaskGroup>
  /** CPU seconds of all tasks run through these groups, alive or ended; null where not counted. */
  tasksCpuSec: () => Promise<number | null>
  /** Groups left by an agent that died (ids), to kill and remove at start. */
  leftovers: () => Promise<string[]>
  /** A handle on a leftover group. */
  reopen: (id: string) => TaskGroup
  /** Removes the agent's (empty) parent groups. */
  close: () => Promise<void>
}
