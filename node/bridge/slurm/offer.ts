/**
 * What a bridge offers the mesh, pure: a partition's capacity (forward mode), an allocation's (allocation and
 * auto modes), as AgentResources with `backend: 'slurm'`, labels jobs can ask for (`site: cluster`,
 * `partition: <name>`) and `maxTaskMs` (the partition's MaxTime, or the time left in an allocation).
 */
import type { AgentResources, GpuInfo } from '../../../shared/protocol/messages.ts'
import type { PartitionInfo } from './batch-system.ts'
import type { PartitionLimits } from './forward-plan.ts'
import { shortDuration } from './hostlist.ts'

export interface OfferBase {
  hostname: string
  slurmVersion: string
  labels: Readonly<Record<string, string>>
  runsAsRoot: boolean
}

const clamp = (n: number, lo: number, hi: number): number => Math.max(lo, Math.min(hi, Math.floor(n)))

/** GPUs of a batch system are counted, not named: the scheduler hands out indexes, Slurm picks the devices. */
function gpuList (n: number): GpuInfo[] {
  return Array.from({ length: clamp(n, 0, 64) }, (_, index) => ({ index, model: 'Slurm GRES gpu', memoryMb: 0 }))
}

function base (o: OfferBase, partition: string, extra: Record<string, string> = {}): Pick<AgentResources, 'hostname' | 'os' | 'physicalCores' | 'labels' | 'runsAsRoot' | 'backend'> {
  return { hostname: o.hostname, os: `Slurm ${o.slurmVersion}`.trim(), physicalCores: 0, labels: { ...o.labels, site: 'cluster', partition, ...extra }, runsAsRoot: o.runsAsRoot, backend: 'slurm' }
}

/** Nodes that can take work (not down, drained or failing). */
function usable (p: PartitionInfo): PartitionInfo['nodes'] {
  return p.nodes.filter(n => !/^(down|drain|drained|draining|fail|failing|future|inval|maint|reboot|unknown|not_responding)/.test(n.state.replace(/[*~#!%$@^-]+$/, '')))
}

export function partitionLimits (p: PartitionInfo): PartitionLimits {
  const nodes = p.nodes.length > 0 ? p.nodes : [{ name: '', cpus: 1, memoryMb: 0, gpus: 0, state: 'unknown' }]
  return {
    name: p.name,
    cpusPerNode: Math.max(...nodes.map(n => n.cpus)),
    memoryMbPerNode: Math.max(...nodes.map(n => n.memoryMb)),
    gpusPerNode: Math.max(...nodes.map(n => n.gpus)),
    maxTimeMs: p.maxTimeMs
  }
}

/** Forward mode: tasks in Slurm at once when --max-jobs is not given (Slurm queues what does not run yet). */
export const DEFAULT_MAX_JOBS = 1000

/**
 * Forward mode: what the bridge takes at once, not what runs at once. Slurm queues what its nodes cannot run yet
 * (that is its job), so the offer is `maxJobs` tasks with room for each to be as large as the partition's
 * largest node; the nodes' real sums are in the start line. A partition that is not UP offers no slots until it is.
 */
export function partitionOffer (p: PartitionInfo, maxJobs: number | null, o: OfferBase): AgentResources {
  const nodes = usable(p)
  const lim = partitionLimits(p)
  const up = p.state === 'UP' && nodes.length > 0
  const slots = clamp(maxJobs ?? DEFAULT_MAX_JOBS, 1, 4096)
  return {
    ...base(o, p.name),
    cores: clamp(Math.max(nodes.reduce((n, x) => n + x.cpus, 0), slots * lim.cpusPerNode), 1, 4096),
    memoryMb: clamp(Math.max(nodes.reduce((n, x) => n + x.memoryMb, 0), slots * lim.memoryMbPerNode), 0, 64 * 1024 * 1024),
    slots: up ? slots : 0,
    gpus: gpuList(nodes.reduce((n, x) => n + x.gpus, 0)),
    ...(p.maxTimeMs != null ? { maxTaskMs: p.maxTimeMs } : {})
  }
}

/** The partition's real size, for the start line. */
export function describePartition (p: PartitionInfo): string {
  const nodes = usable(p)
  return `partition ${p.name} (${p.state}): ${nodes.length}/${p.nodes.length} nodes usable, ${nodes.reduce((n, x) => n + x.cpus, 0)} CPUs, ${nodes.reduce((n, x) => n + x.memoryMb, 0)} MB, ${nodes.reduce((n, x) => n + x.gpus, 0)} GPUs, MaxTime ${p.maxTimeMs == null ? 'UNLIMITED' : `${Math.round(p.maxTimeMs / 60_000)} min`}`
}

export interface AllocationCapacity {
  partition: string
  cpus: number
  memoryMb: number
  gpus: number
  /** The longest task it can still finish (time to its end less the drain margin); null: no end. */
  maxTaskMs: number | null
}

/** Allocation and auto modes: what the allocations hold now; none held offers no slots (and 1 core, as the schema wants). */
export function allocationOffer (c: AllocationCapacity, o: OfferBase, extra: Record<string, string> = {}): AgentResources {
  return {
    ...base(o, c.partition, extra),
    cores: clamp(c.cpus, 1, 4096),
    memoryMb: clamp(c.memoryMb, 0, 64 * 1024 * 1024),
    slots: clamp(c.cpus, 0, 4096),
    gpus: gpuList(c.gpus),
    ...(c.maxTaskMs != null ? { maxTaskMs: Math.max(0, Math.floor(c.maxTaskMs)) } : {})
  }
}

/** The start line: what the bridge offers and where tasks go. */
export function describeOffer (r: AgentResources, how: string): string {
  const time = r.maxTaskMs != null ? `, tasks up to ${shortDuration(r.maxTaskMs)}` : ''
  return `bridge: ${how}; takes ${r.slots} tasks at once${time}; labels ${Object.entries(r.labels).map(([k, v]) => `${k}=${v}`).join(' ')}`
}
