/**
 * What `meshfarm report` says about a job, computed from its task records alone (pure): task durations,
 * per-host throughput and utilisation, failures with their exit codes and stderr tails.
 * Utilisation is busy time / (span x slots): the job's span from its first start to its last end, the host's
 * slots as its agent declared them when known, else the most attempts seen running on it at once.
 */
import type { TaskRecord, TaskState } from '../protocol/messages.ts'
import { assignLanes, barsFromRecords, type TimelineBar } from './timeline-svg.ts'

export interface HostSummary {
  host: string
  /** Attempts that ended on this host (any outcome). */
  tasks: number
  done: number
  failed: number
  busySeconds: number
  slots: number
  slotsFrom: 'agent' | 'observed'
  /** Attempts ended per second of the job's span. */
  tasksPerSecond: number
  /** busy / (span x slots), 0..1. */
  utilisation: number
}

export interface FailureSummary {
  index: number
  name: string
  state: TaskState
  host: string | null
  exitCode: number | null
  signal: string | null
  kind: string | null
  message: string | null
  attempts: number
  stderrTail: string | null
}

/** Declared outputs a task never wrote (reported, not silently skipped). */
export interface MissingOutputs {
  index: number
  name: string
  state: TaskState
  outputs: string[]
}

export interface JobReport {
  jobId: number | null
  name: string | null
  tasks: number
  states: Partial<Record<TaskState, number>>
  start: string | null
  end: string | null
  spanSeconds: number
  /** Over finished attempts with a duration (earlier attempts included); null when none. */
  durations: { count: number, minSeconds: number, medianSeconds: number, maxSeconds: number } | null
  hosts: HostSummary[]
  failures: FailureSummary[]
  missingOutputs: MissingOutputs[]
}

export interface SummarizeOptions {
  jobId?: number
  name?: string
  /** Slots per host name as agents declared them. */
  slots?: Readonly<Record<string, number>>
  /** A task's stderr when it is not inline in the record (a results folder's file, say). */
  stderrOf?: (r: TaskRecord) => Uint8Array | string | null | undefined
  /** Lines of stderr kept per failure (default 5). */
  tailLines?: number
  /** Earlier attempts of the tasks (attempts.ts): they count in durations and in their hosts' busy time. */
  earlier?: readonly TimelineBar[]
}

export function median (sorted: readonly number[]): number {
  if (sorted.length === 0) return NaN
  const m = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[m] : (sorted[m - 1] + sorted[m]) / 2
}

/**
 * The last lines of a task's stderr as safe text for a terminal or a page: undecodable bytes replaced,
 * control characters (terminal escapes included) dropped, at most 2000 characters.
 */
export function stderrTail (data: Uint8Array | string, lines = 5): string {
  const text = typeof data === 'string' ? data : new TextDecoder('utf-8', { fatal: false }).decode(data.subarray(Math.max(0, data.length - 16_384)))
  const clean = text.replace(/\r\n?/g, '\n').replace(/[\u0000-\u0008\u000B-\u001F\u007F-\u009F]/g, '')
  const kept = clean.replace(/\n+$/, '').split('\n').slice(-lines).join('\n')
  return kept.length > 2000 ? '…' + kept.slice(-1999) : kept
}

const round = (n: number, digits = 3): number => Math.round(n * 10 ** digits) / 10 ** digits

export function summarizeJob (records: readonly TaskRecord[], opts: SummarizeOptions = {}): JobReport {
  const states: Partial<Record<TaskState, number>> = {}
  for (const r of records) states[r.state] = (states[r.state] ?? 0) + 1

  const bars = [...barsFromRecords(records), ...(opts.earlier ?? [])].filter(b => b.end != null)
  const t0 = bars.length > 0 ? Math.min(...bars.map(b => b.start)) : null
  const t1 = bars.length > 0 ? Math.max(...bars.map(b => b.end!)) : null
  const spanMs = t0 != null && t1 != null ? t1 - t0 : 0

  const durations = bars.map(b => b.end! - b.start).sort((a, b) => a - b)

  const byHost = new Map<string, typeof bars>()
  for (const b of bars) byHost.set(b.host, [...(byHost.get(b.host) ?? []), b])
  const hosts: HostSummary[] = [...byHost.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([host, hb]) => {
    const busyMs = hb.reduce((s, b) => s + (b.end! - b.start), 0)
    const declared = opts.slots?.[host]
    const slots = declared != null && declared > 0 ? declared : Math.max(1, assignLanes(hb.map(b => ({ start: b.start, end: b.end! }))).lanes)
    return {
      host,
      tasks: hb.length,
      done: hb.filter(b => b.outcome === 'done').length,
      failed: hb.filter(b => b.outcome === 'failed' || b.outcome === 'lost').length,
      busySeconds: round(busyMs / 1000),
      slots,
      slotsFrom: declared != null && declared > 0 ? 'agent' : 'observed',
      tasksPerSecond: spanMs > 0 ? round(hb.length / (spanMs / 1000)) : 0,
      utilisation: spanMs > 0 ? round(Math.min(1, busyMs / (spanMs * slots))) : 0
    }
  })

  const failures: FailureSummary[] = records.filter(r => r.state === 'failed').map(r => {
    const raw = opts.stderrOf?.(r) ?? r.stderr?.data ?? null
    const tail = raw != null ? stderrTail(raw, opts.tailLines) : null
    return {
      index: r.index,
      name: r.name,
      state: r.state,
      host: r.host,
      exitCode: r.exitCode,
      signal: r.signal,
      kind: r.failure?.kind ?? null,
      message: r.failure?.message ?? null,
      attempts: r.attempts,
      stderrTail: tail === '' ? null : tail
    }
  })

  const missingOutputs: MissingOutputs[] = records.filter(r => (r.missingOutputs?.length ?? 0) > 0)
    .map(r => ({ index: r.index, name: r.name, state: r.state, outputs: [...r.missingOutputs!] }))

  return {
    jobId: opts.jobId ?? records[0]?.jobId ?? null,
    name: opts.name ?? null,
    tasks: records.length,
    states,
    start: t0 != null ? new Date(t0).toISOString() : null,
    end: t1 != null ? new Date(t1).toISOString() : null,
    spanSeconds: round(spanMs / 1000),
    durations: durations.length === 0
      ? null
      : { count: durations.length, minSeconds: round(durations[0] / 1000), medianSeconds: round(median(durations) / 1000), maxSeconds: round(durations[durations.length - 1] / 1000) },
    hosts,
    failures,
    missingOutputs
  }
}
