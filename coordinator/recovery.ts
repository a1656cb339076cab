/**
 * Rebuilds the core's memory from the store: the queues of active jobs (from their blocks of tasks, with the rows
 * of the tasks that moved: requeued, held, committed), and the attempts still out on agents, which wait for their
 * agents to come back and claim them. A task out on an agent has no row saying so: its live attempt does.
 */
import type { Store } from './store.ts'
import { TaskTable, addBlock, emptyCounts, type JobRuntime } from './job-table.ts'
import { addAttempt, attemptsOf, emptyState, type CoreState } from './core-state.ts'
import { IN_FLIGHT } from './task-states.ts'
import { TERMINAL_STATES } from '../shared/protocol/data.ts'
import { UsageBook } from './fair-share.ts'
import { InputWait } from './input-wait.ts'

export function recoverState (store: Store, now: number, hasBlob?: (hash: string) => boolean): { state: CoreState, stranded: Array<{ jobId: number, index: number }> } {
  const s = emptyState(store.nextJobId(), new UsageBook(undefined, store.loadUsage()))
  for (const job of store.loadJobs()) {
    const rt: JobRuntime = { ...job, counts: emptyCounts(), cancelRequested: job.state === 'cancelled' }
    s.jobs.set(job.id, rt)
    if (job.state !== 'active') {
      // An ended job's tasks all have their row.
      for (const [state, n] of store.tasks.stateCounts(job.id)) rt.counts[state] += n
      continue
    }
    const t = rt.tasks = new TaskTable(job.total)
    const blocks = [...store.tasks.blocks(job.id)]
    for (const b of blocks) addBlock(t, b)
    // Files the submitter was still uploading when the coordinator stopped: those tasks wait for them again.
    const inputs = job.header.inputsToFollow === true && hasBlob != null ? InputWait.of(job.header, blocks, hasBlob) : null
    if (inputs != null) rt.inputs = inputs
    for (const row of store.tasks.states(job.id)) {
      t.setState(row.index, row.state)
      t.setCounts(row.index, row)
    }
  }
  for (const a of store.loadActiveAttempts()) {
    const job = s.jobs.get(a.jobId)
    // An attempt of a task already committed ended with it (it is marked inactive in bulk, later).
    if (job?.tasks == null || TERMINAL_STATES.has(job.tasks.state(a.index))) {
      store.endAttempt(a.id)
      continue
    }
    // The agent has until agentLostMs from now to come back and claim it.
    addAttempt(s, { ...a, startedAt: a.startedAt })
    s.agents.ensure(a.agent, a.host, now).lastSeen = now
  }
  // Tasks out on agents: in flight as their attempts say. A row in flight without a live attempt cannot happen with
  // transactions; the core requeues any it is shown.
  const stranded: Array<{ jobId: number, index: number }> = []
  for (const job of s.jobs.values()) {
    const t = job.tasks
    if (t == null) continue
    for (let i = 0; i < job.total; i++) {
      const state = t.state(i)
      const live = attemptsOf(s, job.id, i)
      if (state === 'queued' && live.some(a => !a.orphan)) {
        t.setState(i, live.some(a => a.running) ? 'running' : 'staging')
        // Its placement came after the row was last written (if it has one): counted here.
        t.bump(i, 'attempts')
      } else if (IN_FLIGHT.has(state) && live.length === 0) {
        stranded.push({ jobId: job.id, index: i })
      }
      job.counts[t.state(i)]++
    }
  }
  return { state: s, stranded }
}
