/**
 * What waits to be scheduled, as the scheduler reads it: one queue per member, with the member's load for fair
 * share. Pure reads of the core's state; the tasks come lazily, so a million-task job costs only what is read.
 */
import type { OwnerQueue, SchedTask } from './scheduler.ts'
import type { JobRuntime } from './job-table.ts'
import { runningCores, taskKey, type CoreState } from './core-state.ts'

/**
 * One queue per member: their active, unheld jobs by priority (higher first), then in submission order, each
 * job's tasks in its queue order (requeued ones first); with the member's load for fair share.
 */
export function memberQueues (s: CoreState, now: number): OwnerQueue[] {
  const byOwner = new Map<string, JobRuntime[]>()
  for (const job of s.jobs.values()) {
    if (job.tasks == null || job.held || job.counts.queued === 0) continue
    const list = byOwner.get(job.owner)
    if (list == null) byOwner.set(job.owner, [job])
    else list.push(job)
  }
  const running = runningCores(s)
  return [...byOwner.entries()].map(([owner, jobs]) => {
    jobs.sort((a, b) => (b.header.priority ?? 0) - (a.header.priority ?? 0) || a.id - b.id)
    return { owner, load: s.usage.load(owner, running.get(owner) ?? 0, now), tasks: queuedTasks(jobs) }
  })
}

/** The queued tasks of these jobs, in order, lazily. */
export function * queuedTasks (jobs: JobRuntime[]): Generator<SchedTask> {
  for (const job of jobs) {
    const t = job.tasks
    if (t == null || job.counts.queued === 0) continue
    const inputs = job.inputs
    for (const index of t.queued()) {
      if (inputs?.waits(index) === true) continue
      const shape = t.shape(index)
      const affinity = t.affinity.get(index)
      yield {
        key: taskKey(job.id, index),
        cores: shape.cores,
        gpus: shape.gpus,
        memoryMb: shape.memoryMb,
        timeoutMs: shape.timeoutMs,
        constraints: shape.constraints,
        affinity: affinity != null ? `${job.id}\u0000${affinity}` : undefined,
        group: job.id
      }
    }
  }
}

export function hasQueued (s: CoreState): boolean {
  for (const job of s.jobs.values()) if (job.counts.queued > 0 && !job.held) return true
  return false
}
