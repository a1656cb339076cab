/**
 * Rebuilds the core's memory from the store: the queues of active jobs (requeued tasks and new ones alike wait
 * in the queue), and the attempts still out on agents, which wait for their agents to come back and claim them.
 */
import { parseConstraintKey, type Store } from './store.ts'
import { TaskTable, emptyCounts, shapeKey, type JobRuntime } from './job-table.ts'
import { addAttempt, attemptsOf, emptyState, type CoreState } from './core-state.ts'
import { IN_FLIGHT } from './task-states.ts'
import { UsageBook } from './fair-share.ts'

export function recoverState (store: Store, now: number): { state: CoreState, stranded: Array<{ jobId: number, index: number }> } {
  const s = emptyState(store.nextJobId(), new UsageBook(undefined, store.loadUsage()))
  for (const job of store.loadJobs()) {
    const rt: JobRuntime = { ...job, counts: emptyCounts(), cancelRequested: job.state === 'cancelled' }
    s.jobs.set(job.id, rt)
    if (job.state === 'active') rt.tasks = new TaskTable(job.total)
    for (const row of store.loadTasks(job.id)) {
      rt.counts[row.state]++
      const t = rt.tasks
      if (t == null) continue
      t.setState(row.index, row.state)
      t.setCounts(row.index, row)
      t.setShape(row.index, { cores: row.cores, gpus: row.gpus, memoryMb: row.memoryMb, timeoutMs: row.timeoutMs, constraints: parseConstraintKey(row.constraints) },
        shapeKey(row.cores, row.gpus, row.memoryMb, row.timeoutMs, row.constraints))
      if (row.affinity != null) t.affinity.set(row.index, row.affinity)
      if (row.state === 'queued') t.enqueue(row.index, 'back')
    }
  }
  for (const a of store.loadActiveAttempts()) {
    const job = s.jobs.get(a.jobId)
    if (job?.tasks == null) {
      store.endAttempt(a.id)
      continue
    }
    // The agent has until agentLostMs from now to come back and claim it.
    addAttempt(s, { ...a, startedAt: a.startedAt })
    s.agents.ensure(a.agent, a.host, now).lastSeen = now
  }
  // Tasks in flight without a live attempt cannot happen with transactions; the core requeues any it is shown.
  const stranded: Array<{ jobId: number, index: number }> = []
  for (const job of s.jobs.values()) {
    const t = job.tasks
    if (t == null) continue
    for (let i = 0; i < job.total; i++) {
      if (IN_FLIGHT.has(t.state(i)) && attemptsOf(s, job.id, i).length === 0) stranded.push({ jobId: job.id, index: i })
    }
  }
  return { state: s, stranded }
}
