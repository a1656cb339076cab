/**
 * What clients ask the coordinator: job summaries, task lists, committed results and the agents. Read-only
 * functions over the core's memory and the store.
 */
import type { AgentSummary, JobState, JobSummary, TaskRecord, TaskState } from '../shared/protocol/data.ts'
import { TERMINAL_STATES, taskId } from '../shared/protocol/data.ts'
import { MeshfarmError } from '../shared/util/errors.ts'
import type { Store } from './store.ts'
import type { JobRuntime } from './job-table.ts'
import { attemptsOf, displayName, type CoreOptions, type CoreState } from './core-state.ts'

/** Failed tasks named in a finished job's summary. */
const SUMMARY_FAILURES = 5

export function getJob (s: CoreState, jobId: number): JobRuntime {
  const job = s.jobs.get(jobId)
  if (job == null) throw new MeshfarmError('NOT_FOUND', `no job ${jobId}`)
  return job
}

export function jobSummary (s: CoreState, store: Store, opts: CoreOptions, jobId: number): JobSummary {
  const j = getJob(s, jobId)
  const summary: JobSummary = {
    jobId: j.id, name: j.header.name, label: j.header.label, owner: j.owner, ownerName: displayName(opts, j.owner), state: j.state,
    submittedAt: j.submittedAt, counts: { ...j.counts }, total: j.total, priority: j.header.priority ?? 0
  }
  if (j.state !== 'active') Object.assign(summary, endNotesOf(store, j))
  return summary
}

/** A finished job's notes never change: read once, kept while the job is in memory. */
const notesOf = new WeakMap<JobRuntime, Pick<JobSummary, 'failures' | 'missingOutputs'>>()
function endNotesOf (store: Store, job: JobRuntime): Pick<JobSummary, 'failures' | 'missingOutputs'> {
  let notes = notesOf.get(job)
  if (notes == null) {
    // Gathered as the job's tasks were committed, or read back once from its records (a job from before a restart).
    const live = job.notes
    notes = live != null ? { ...(live.failures.length > 0 ? { failures: live.failures } : {}), ...(live.missingOutputs.length > 0 ? { missingOutputs: live.missingOutputs } : {}) } : endNotes(store, job, SUMMARY_FAILURES)
    notesOf.set(job, notes)
  }
  return notes
}

/**
 * What a finished job's summary names: its first failed tasks, and tasks whose declared outputs were never written
 * (reported, not silently skipped). Reads the committed records once.
 */
function endNotes (store: Store, job: JobRuntime, max: number): Pick<JobSummary, 'failures' | 'missingOutputs'> {
  const failures: NonNullable<JobSummary['failures']> = []
  const missing: NonNullable<JobSummary['missingOutputs']> = []
  let after = 0
  while (true) {
    const page = store.committedRecords(job.id, after, 1000)
    for (const r of page.records) {
      if (r.state === 'failed' && failures.length < max) failures.push({ index: r.index, name: r.name, exitCode: r.exitCode, message: r.failure?.message ?? 'failed' })
      if ((r.missingOutputs?.length ?? 0) > 0 && missing.length < max) missing.push({ index: r.index, name: r.name, missing: r.missingOutputs!.slice(0, 10) })
    }
    if (!page.more) break
    after = page.next
  }
  return { ...(failures.length > 0 ? { failures } : {}), ...(missing.length > 0 ? { missingOutputs: missing } : {}) }
}

export function results (s: CoreState, store: Store, jobId: number, after: number, limit: number): { records: TaskRecord[], next: number, more: boolean, jobState: JobState } {
  // The job's state is read first: if it has ended, the page below holds everything it committed.
  const jobState = getJob(s, jobId).state
  return { ...store.committedRecords(jobId, after, Math.max(1, Math.min(limit, 5000))), jobState }
}

/** Task records of a job: committed ones from the store, live ones from memory. */
export function tasks (s: CoreState, store: Store, opts: CoreOptions, jobId: number, after: number, limit: number, states?: TaskState[]): { tasks: TaskRecord[], next: number | null } {
  const job = getJob(s, jobId)
  const want = states != null && states.length > 0 ? new Set(states) : null
  const out: TaskRecord[] = []
  let i = Math.max(0, after)
  for (; i < job.total && out.length < Math.min(limit, 5000); i++) {
    const state = job.tasks != null ? job.tasks.state(i) : null
    if (state != null && want != null && !want.has(state)) continue
    if (state == null || TERMINAL_STATES.has(state)) {
      const committed = store.taskRecord(jobId, i)
      if (committed != null && (want == null || want.has(committed.state))) out.push(committed)
      continue
    }
    const spec = store.taskSpec(jobId, i)
    const a = attemptsOf(s, jobId, i).find(x => !x.orphan)
    out.push({
      jobId, index: i, id: taskId(jobId, i), name: spec.name, commands: spec.commands, params: spec.params,
      state, host: a?.host ?? null, peerId: a?.agent ?? null,
      resources: { cores: a?.cores ?? spec.cores, gpus: a?.gpuIds ?? [], memoryMb: a?.memoryMb ?? spec.memoryMb },
      start: a != null ? new Date(a.startedAt).toISOString() : null, end: null, durationMs: null, exitCode: null, signal: null,
      attempts: job.tasks?.counts(i).attempts ?? 0, outputs: [], owner: displayName(opts, job.owner)
    })
  }
  return { tasks: out, next: i < job.total ? i : null }
}

export function peers (s: CoreState, opts: CoreOptions, now: number): AgentSummary[] {
  return [...s.agents.all()].filter(a => a.state !== 'left').map(a => {
    let running = 0
    let suspended = 0
    for (const id of a.attempts) {
      const att = s.attempts.get(id)
      if (att == null || !att.running || att.orphan) continue
      const st = s.jobs.get(att.jobId)?.tasks?.state(att.index)
      if (st === 'suspended') suspended++
      else running++
    }
    return {
      peerId: a.id,
      hostname: a.resources.hostname,
      addrs: a.addrs,
      state: a.state === 'up' && !a.connected ? 'disconnected' : a.state === 'left' ? 'lost' : a.state,
      cores: a.resources.cores,
      memoryMb: a.resources.memoryMb,
      gpus: a.resources.gpus,
      slots: a.resources.slots,
      running,
      suspended,
      labels: a.resources.labels,
      runsAsRoot: a.resources.runsAsRoot,
      lastSeen: now - a.lastSeen,
      isolation: a.resources.isolation,
      backend: a.resources.backend,
      maxTaskMs: a.resources.maxTaskMs,
      status: a.status,
      name: opts.nameOf?.(a.id)
    }
  })
}
