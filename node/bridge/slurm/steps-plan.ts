/**
 * Tasks as srun steps inside allocations, the decisions, pure: what an allocation holds (from scontrol's TRES),
 * which node a step goes to, what the allocations can still offer (maxTaskMs shrinks as their ends approach), and
 * which tasks to hand back when an allocation drains before its end.
 */
import type { JobDetails } from './batch-system.ts'
import { expandHostlist } from './hostlist.ts'

export interface StepNode { name: string, cpus: number }

export interface AllocationShape {
  jobId: string
  partition: string
  nodes: StepNode[]
  /** Memory per node, MB (0: unknown: steps then ask for none and share). */
  memoryMbPerNode: number
  gpusPerNode: number
  /** Epoch ms; null: no time limit. */
  endsAt: number | null
}

/** `cpu=4,mem=2G,node=2,billing=4,gres/gpu=2` -> its parts (memory in MB). */
export function parseTres (tres: string): { cpus: number, memoryMb: number, nodes: number, gpus: number } {
  const out = { cpus: 0, memoryMb: 0, nodes: 0, gpus: 0 }
  for (const item of tres.split(',')) {
    const [k, v] = item.split('=')
    if (v == null) continue
    if (k === 'cpu') out.cpus = Number(v) || 0
    else if (k === 'node') out.nodes = Number(v) || 0
    else if (k === 'gres/gpu') out.gpus = Number(v) || 0
    else if (k === 'mem') {
      const m = /^(\d+(?:\.\d+)?)([KMGT]?)$/.exec(v)
      if (m != null) out.memoryMb = Math.floor(Number(m[1]) * ({ K: 1 / 1024, M: 1, G: 1024, T: 1024 * 1024 }[m[2] === '' ? 'M' : m[2]] ?? 1))
    }
  }
  return out
}

/** An allocation's shape from `scontrol show job` (its nodes, CPUs per node, memory, GPUs, end). */
export function allocationShape (d: JobDetails): AllocationShape {
  const names = expandHostlist(d.nodes)
  if (names.length === 0) throw new Error(`scontrol show job ${d.jobId}: no nodes (is it running?)`)
  const tres = parseTres(d.fields.TRES ?? d.fields.AllocTRES ?? '')
  // scontrol gives the total; spread evenly (inside an allocation, SLURM_JOB_CPUS_PER_NODE says it exactly).
  const total = tres.cpus > 0 ? tres.cpus : Number(d.fields.NumCPUs ?? names.length)
  const perNode = names.map((_, i) => Math.floor(total / names.length) + (i < total % names.length ? 1 : 0))
  return {
    jobId: d.arrayJobId != null && d.arrayIndex != null ? d.fields.JobId ?? d.jobId : d.jobId,
    partition: d.fields.Partition ?? '',
    nodes: names.map((name, i) => ({ name, cpus: Math.max(1, perNode[i]) })),
    memoryMbPerNode: Math.floor(tres.memoryMb / names.length),
    gpusPerNode: Math.floor(tres.gpus / names.length),
    endsAt: d.timeLimitMs == null ? null : d.endAt
  }
}

export interface NodeUse {
  allocation: string
  node: string
  freeCpus: number
  freeMemoryMb: number
  freeGpus: number
  endsAt: number | null
}

export interface StepRequest { cores: number, memoryMb: number, gpus: number, timeoutMs: number }

/** Time a task may still start with in an allocation: until drainBefore its end; Infinity without an end. */
export function timeLeft (endsAt: number | null, now: number, drainBeforeMs: number): number {
  return endsAt == null ? Infinity : endsAt - drainBeforeMs - now
}

/**
 * The node a step goes to, or null for none now: enough free CPUs, memory and GPUs, and time for the task's limit
 * before the allocation drains (a task without a limit needs only time left). Among those, the fullest node, so
 * that other allocations empty out and can be released.
 */
export function chooseNode (nodes: readonly NodeUse[], r: StepRequest, now: number, drainBeforeMs: number): NodeUse | null {
  let best: NodeUse | null = null
  for (const n of nodes) {
    if (n.freeCpus < r.cores || n.freeGpus < r.gpus) continue
    if (r.memoryMb > 0 && n.freeMemoryMb < r.memoryMb) continue
    const left = timeLeft(n.endsAt, now, drainBeforeMs)
    if (left <= 0 || (r.timeoutMs > 0 && r.timeoutMs > left)) continue
    if (best == null || n.freeCpus < best.freeCpus || (n.freeCpus === best.freeCpus && n.node < best.node)) best = n
  }
  return best
}

/** The step's memory: what the task asked for, or its cores' share of the node's (a step without --mem takes all). */
export function stepMemoryMb (asked: number, cores: number, node: { cpus: number }, memoryMbPerNode: number): number {
  if (asked > 0) return asked
  if (memoryMbPerNode <= 0) return 0
  return Math.max(1, Math.floor(memoryMbPerNode * cores / node.cpus))
}

/** The longest task limit any allocation can still honour; null when one has no end, 0 when none is held. */
export function offeredMaxTaskMs (allocations: ReadonlyArray<{ endsAt: number | null, draining: boolean }>, now: number, drainBeforeMs: number): number | null {
  let best = 0
  for (const a of allocations) {
    if (a.draining) continue
    if (a.endsAt == null) return null
    best = Math.max(best, timeLeft(a.endsAt, now, drainBeforeMs))
  }
  return Math.max(0, Math.floor(best))
}

export interface RunningStepView { attemptId: number, allocation: string, startedAt: number, timeoutMs: number }

/**
 * At an allocation's drain (drainBefore its end, or Slurm's USR1): which running tasks cannot finish before the
 * end and go back to the mesh. A task whose limit ends before the allocation does (with `marginMs` to spare)
 * finishes; one without a limit cannot be known to, and goes back.
 */
export function tasksToVacate (running: readonly RunningStepView[], endsAt: ReadonlyMap<string, number | null>, draining: ReadonlySet<string>, marginMs: number): number[] {
  return running.filter(r => {
    if (!draining.has(r.allocation)) return false
    const end = endsAt.get(r.allocation) ?? null
    if (end == null) return false
    return r.timeoutMs <= 0 || r.startedAt + r.timeoutMs > end - marginMs
  }).map(r => r.attemptId)
}
