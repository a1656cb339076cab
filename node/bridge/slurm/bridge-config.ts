/**
 * `meshfarm bridge slurm` flags compiled once into a frozen configuration, pure: each bad flag is one line that
 * names it. Three modes: forward (tasks become job-array elements in --partition), allocation (--in-allocation:
 * tasks run as srun steps inside the allocation this process runs in) and auto (--auto-alloc: the bridge asks for
 * allocations itself when the mesh has a backlog, and runs tasks into them as steps).
 */
import { isAbsolute, resolve } from 'node:path'
import { MeshfarmError } from '../../../shared/util/errors.ts'
import { parseDuration, parseWholeNumber } from '../../../shared/util/units.ts'
import { parseLabels } from '../../resources.ts'
import { parseAutoAllocSpec, type AutoAllocLimits } from './autoalloc.ts'
import { checkSbatchArgs } from './script.ts'
import { MIN_POLL_MS, DEFAULT_POLL_MS } from './follow.ts'

export type BridgeMode = 'forward' | 'allocation' | 'auto'

export interface BridgeFlags {
  partition?: string
  account?: string
  maxJobs?: string
  sbatchArg?: string[]
  poll?: string
  workDir?: string
  throttle?: string
  inAllocation?: boolean
  autoAlloc?: string
  drainBefore?: string
  label?: string[]
  hostname?: string
}

export interface BridgeConfig {
  mode: BridgeMode
  /** Forward and auto: the partition; allocation: null (the allocation's own). */
  partition: string | null
  account: string | null
  /** Forward: elements in Slurm at once, running or pending (the bridge's slots); null: DEFAULT_MAX_JOBS. */
  maxJobs: number | null
  sbatchArgs: readonly string[]
  pollMs: number
  /** Task and chunk folders: must be on a file system the cluster's nodes see. */
  workDir: string
  throttle: number | null
  /** Allocation and auto: tasks that cannot finish this long before an allocation's end are handed back. */
  drainBeforeMs: number
  autoAlloc: AutoAllocLimits | null
  labels: Readonly<Record<string, string>>
  hostname: string | null
}

export const DEFAULT_DRAIN_BEFORE_MS = 120_000
/** Paths go into #SBATCH lines and Slurm's %-patterns: plain characters only. */
const PLAIN_PATH = /^\/[A-Za-z0-9_./+@=,-]*$/
const NAME = /^[A-Za-z0-9_.-]{1,64}$/

const bad = (m: string): MeshfarmError => new MeshfarmError('BAD_ARGUMENT', m)

export function compileBridge (f: BridgeFlags, home: { userHome: string }): BridgeConfig {
  if (f.inAllocation === true && f.autoAlloc != null) throw bad('--in-allocation and --auto-alloc: give one of them (auto-alloc runs its own allocations)')
  const mode: BridgeMode = f.inAllocation === true ? 'allocation' : f.autoAlloc != null ? 'auto' : 'forward'
  if (mode === 'allocation' && f.partition != null) throw bad('--partition: not with --in-allocation (the allocation has its partition)')
  if (mode !== 'allocation' && (f.partition == null || f.partition === '')) throw bad('--partition: required (the Slurm partition to send tasks to, e.g. --partition debug)')
  if (f.partition != null && !NAME.test(f.partition)) throw bad(`--partition: ${JSON.stringify(f.partition)}: letters, digits, _ . - only`)
  if (f.account != null && !NAME.test(f.account)) throw bad(`--account: ${JSON.stringify(f.account)}: letters, digits, _ . - only`)
  if (mode !== 'forward' && f.maxJobs != null) throw bad('--max-jobs: only in forward mode (allocations are sized by --auto-alloc or by salloc)')
  if (mode !== 'forward' && f.throttle != null) throw bad('--throttle: only in forward mode (it limits a job array)')
  if (mode === 'forward' && f.drainBefore != null) throw bad('--drain-before: only with --in-allocation or --auto-alloc')
  const pollMs = f.poll != null ? parseDuration(f.poll, '--poll') : DEFAULT_POLL_MS
  if (pollMs < MIN_POLL_MS) throw bad(`--poll: ${f.poll ?? ''}: at least ${MIN_POLL_MS / 1000} s (a login node is shared)`)
  const workDir = resolve(f.workDir ?? `${home.userHome}/meshfarm-work`)
  if (!isAbsolute(workDir) || !PLAIN_PATH.test(workDir)) throw bad(`--work-dir: ${JSON.stringify(workDir)}: a path of plain characters (no spaces, quotes or %), on a file system the cluster's nodes see`)
  const labels = parseLabels(f.label ?? [])
  for (const k of ['site', 'partition']) if (labels[k] != null) throw bad(`--label: ${k} is set by the bridge itself`)
  return Object.freeze({
    mode,
    partition: f.partition ?? null,
    account: f.account ?? null,
    maxJobs: f.maxJobs != null ? parseWholeNumber(f.maxJobs, '--max-jobs', 1, 4096) : null,
    sbatchArgs: Object.freeze(checkSbatchArgs(f.sbatchArg ?? [])),
    pollMs,
    workDir,
    throttle: f.throttle != null ? parseWholeNumber(f.throttle, '--throttle', 1, 1_000_000) : null,
    drainBeforeMs: f.drainBefore != null ? parseDuration(f.drainBefore, '--drain-before') : DEFAULT_DRAIN_BEFORE_MS,
    autoAlloc: f.autoAlloc != null ? parseAutoAllocSpec(f.autoAlloc) : null,
    labels: Object.freeze(labels),
    hostname: f.hostname ?? null
  })
}
