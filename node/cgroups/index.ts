/**
 * Entry point for task groups: picks cgroup v2, v1 or the process-tree fallback for this machine, says which at
 * start, and tells the launcher what to do in the child before exec (join the cgroup, rlimits, nice, ioprio).
 */
import { readLayout, type CgroupLayout } from './detect.ts'
import { openV1 } from './v1.ts'
import { openV2 } from './v2.ts'
import { openProcessTree } from './fallback.ts'
import type { MemoryReport, TaskGroup, TaskGroups, TaskLimits } from './types.ts'
import { memoryMessage } from '../results.ts'

export type { TaskGroup, TaskGroups, TaskLimits, MemoryReport } from './types.ts'

export interface OpenTaskGroupsOptions {
  /** Names the agent's folder (several agents may share a machine), e.g. "agent-<pid>" or a state-folder hash. */
  name: string
  /** 'none' turns cgroups off (`--no-cgroups`); 'v1'/'v2' force a hierarchy. */
  prefer?: 'auto' | 'v1' | 'v2' | 'none'
  layout?: CgroupLayout
}

const errText = (err: unknown): string => (err as Error).message?.split('\n')[0] ?? String(err)

export async function openTaskGroups (o: OpenTaskGroupsOptions): Promise<TaskGroups> {
  const prefer = o.prefer ?? 'auto'
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(o.name) || o.name.startsWith('.')) throw new Error(`cgroups: bad agent name ${JSON.stringify(o.name)}`)
  if (prefer === 'none') return openProcessTree('turned off')
  const layout = o.layout ?? await readLayout()
  const v2First = prefer === 'v2' || (prefer === 'auto' && layout.pureV2)
  const tries: Array<() => Promise<TaskGroups>> = []
  if (layout.v2 != null && v2First) tries.push(async () => await openV2({ mount: layout.v2!.mount.mountPoint, ownPath: layout.v2!.ownPath, name: o.name }))
  if (layout.v1.size > 0 && prefer !== 'v2') tries.push(async () => await openV1({ layout, name: o.name }))
  if (tries.length === 0) return openProcessTree(layout.v2 == null && layout.v1.size === 0 ? 'no cgroup hierarchy mounted' : `no ${prefer} hierarchy`)
  const why: string[] = []
  for (const t of tries) {
    try { return await t() } catch (err) { why.push(errText(err)) }
  }
  const hint = process.getuid?.() !== 0 && layout.pureV2 ? '; run the agent as a systemd service with Delegate=yes' : ''
  return openProcessTree(why.join('; ') + hint)
}

/** What the launcher does in the task's child process, before exec. */
export interface LaunchSettings {
  /** Write the child's pid (or "0") into each, in order; any failure fails the task ("cgroup: <file>: <errno>"). */
  procFiles: string[]
  /** setpriority(PRIO_PROCESS, 0, nice). */
  nice: number
  /** ioprio_set(IOPRIO_WHO_PROCESS, 0, IOPRIO_PRIO_VALUE(IOPRIO_CLASS_IDLE, 0)). */
  ioIdle: boolean
  /** setrlimit(RLIMIT_DATA) when no memory cgroup enforces the request; null otherwise. */
  rlimitDataBytes: number | null
}

/**
 * Settings for one task. RLIMIT_AS is not used: CUDA, the JVM and Go reserve far more address space than they
 * touch, so it would kill well-behaved tasks; RLIMIT_DATA (heap and private mappings) is the closest honest cap.
 */
export function launchSettings (groups: TaskGroups, group: TaskGroup, limits: TaskLimits): LaunchSettings {
  return {
    procFiles: [...group.procFiles],
    nice: limits.harvested ? 19 : 0,
    ioIdle: limits.harvested,
    rlimitDataBytes: limits.memoryBytes != null && !groups.controllers.has('memory') ? limits.memoryBytes : null
  }
}

const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`

/**
 * The same settings as a POSIX sh script around `command`, for the Node launcher (which cannot run code between
 * fork and exec): the shell joins the cgroup itself ("echo 0"), sets the rlimit, then execs through nice/ionice.
 * Exit 125 when the cgroup cannot be joined. `ionice` tells whether util-linux's ionice is on PATH.
 */
export function wrapShellCommand (s: LaunchSettings, command: string, tools: { ionice: boolean } = { ionice: true }): string {
  const lines: string[] = []
  for (const f of s.procFiles) lines.push(`echo 0 > ${quote(f)} || { echo "meshfarm: cannot join cgroup ${f.replace(/["`$\\]/g, '')}" >&2; exit 125; }`)
  if (s.rlimitDataBytes != null) lines.push(`ulimit -d ${Math.max(1, Math.floor(s.rlimitDataBytes / 1024))} || exit 125`)
  const prefix = [...(s.nice !== 0 ? [`nice -n ${s.nice}`] : []), ...(s.ioIdle && tools.ionice ? ['ionice -c 3'] : [])]
  lines.push(`exec ${[...prefix, '/bin/sh', '-c', quote(command)].join(' ')}`)
  return lines.join('\n')
}

/** A task killed for its memory, as the failure the agent reports: kind "memory", not a crash (see results.ts). */
export function memoryFailure (m: MemoryReport, requestBytes: number | null): { kind: 'memory', message: string, retryable: false } {
  return { kind: 'memory', message: memoryMessage(m.peakBytes, m.limitBytes ?? requestBytes), retryable: false }
}
