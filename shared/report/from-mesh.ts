/**
 * What `meshfarm report JOB` needs, fetched from the coordinator through the client: the job's committed
 * records (paged `client.results`), its events (earlier attempts), the agents' declared slots, and the end of
 * each failed task's stderr (`client.logs`). The summary and the pictures are then made as from a folder.
 */
import type { MeshClient } from '../client/client.ts'
import type { JobState, TaskRecord } from '../protocol/messages.ts'
import type { MeshEvent } from '../protocol/events.ts'
import { request } from '../net/rpc.ts'
import { runLimited } from '../util/limit.ts'
import { earlierAttemptBars } from './attempts.ts'
import type { TimelineBar } from './timeline-svg.ts'

export interface MeshReportInput {
  name: string
  state: JobState
  /** Tasks of the job in all, committed or not. */
  total: number
  records: TaskRecord[]
  earlier: TimelineBar[]
  slots: Record<string, number>
  stderr: Map<number, Uint8Array>
}

export interface MeshReportOptions {
  /** Failed tasks whose stderr is fetched at most (default 50); the rest are listed without it. */
  maxStderr?: number
  /** Bytes read from the end of each stderr (default 16 KiB). */
  tailBytes?: number
}

const PAGE = 5000

export async function reportInputFromMesh (client: MeshClient, jobId: number, opts: MeshReportOptions = {}): Promise<MeshReportInput> {
  const { job, summary } = await client.job(jobId)
  const records: TaskRecord[] = []
  let after = 0
  while (true) {
    const page = await request(client.node, client.coordinator, { t: 'client.results', jobId, after, limit: PAGE }, 'reply.results')
    records.push(...page.records)
    if (!page.more || page.records.length === 0) break
    after = page.next
  }
  records.sort((a, b) => a.index - b.index)

  const events: MeshEvent[] = []
  await client.events({ after: 0, jobId, follow: false }, batch => { events.push(...batch) })
  const names = new Map(records.map(r => [r.index, r.name]))
  const earlier = earlierAttemptBars(events, i => names.get(i) ?? `task ${i}`)

  const slots: Record<string, number> = {}
  for (const a of await client.peers()) slots[a.hostname] = a.slots

  const stderr = new Map<number, Uint8Array>()
  const tailBytes = opts.tailBytes ?? 16 * 1024
  const failed = records.filter(r => r.state === 'failed' && (r.stderr?.size ?? 0) > 0).slice(0, opts.maxStderr ?? 50)
  await runLimited(failed, 4, async r => {
    const chunks: Uint8Array[] = []
    const offset = Math.max(0, (r.stderr?.size ?? 0) - tailBytes)
    // A missing log is reported without its tail rather than failing the whole report.
    await client.logs(jobId, r.index, { stream: 'stderr', offset }, d => { chunks.push(d) }).catch(() => 0)
    if (chunks.length > 0) stderr.set(r.index, Buffer.concat(chunks))
  })
  return { name: job.name, state: summary.state, total: summary.total, records, earlier, slots, stderr }
}
