/**
 * What a batch-system bridge hears of the queue (coord.backlog): the queued tasks no agent took in the last
 * scheduling pass whose constraints its labels meet, grouped by shape. Its auto-allocation decides from that
 * whether to ask its cluster for an allocation (node/bridge/slurm/autoalloc.ts). Pure.
 */
import type { AgentResources } from '../shared/protocol/data.ts'
import type { BacklogGroupMsg } from '../shared/protocol/messages.ts'
import type { SchedTask } from './scheduler.ts'

export interface Backlog { groups: BacklogGroupMsg[], truncated: boolean }

/** Queued tasks looked at per bridge and pass (the scheduler's own scan limit). */
export const BACKLOG_SCAN = 100_000
const MAX_GROUPS = 64

/** A batch-system bridge: its tasks run in a cluster's queue, and it may allocate more on a backlog. */
export function isBridge (r: Pick<AgentResources, 'backend'>): boolean {
  return r.backend != null && r.backend !== 'local'
}

export function backlogFor (queue: Iterable<SchedTask>, labels: Readonly<Record<string, string>>, maxScan = BACKLOG_SCAN): Backlog {
  const groups = new Map<string, BacklogGroupMsg>()
  let scanned = 0
  let truncated = false
  for (const t of queue) {
    if (scanned++ >= maxScan) { truncated = true; break }
    if (!Object.entries(t.constraints).every(([k, v]) => labels[k] === v)) continue
    const timeoutMs = t.timeoutMs ?? 0
    const key = `${t.cores}/${t.memoryMb}/${t.gpus}/${timeoutMs}`
    const g = groups.get(key)
    if (g != null) g.tasks++
    else if (groups.size < MAX_GROUPS) groups.set(key, { tasks: 1, cores: t.cores, memoryMb: t.memoryMb, gpus: t.gpus, timeoutMs })
    else truncated = true
  }
  return { groups: [...groups.values()], truncated }
}
