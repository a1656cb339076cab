/** Task records for report and timeline tests, written as a timeline: `rec(index, host, startS, endS, ...)`. */
import type { TaskRecord } from '../../shared/protocol/messages.ts'

export const T0 = Date.parse('2026-11-22T10:00:00Z')

export function rec (index: number, host: string | null, startS: number | null, endS: number | null, o: Partial<TaskRecord> = {}): TaskRecord {
  const start = startS != null ? new Date(T0 + startS * 1000).toISOString() : null
  const end = endS != null ? new Date(T0 + endS * 1000).toISOString() : null
  return {
    jobId: 7,
    index,
    id: `7.${index}`,
    name: `task-${index}`,
    commands: ['true'],
    state: 'done',
    host,
    peerId: host != null ? `peer-${host}` : null,
    resources: { cores: 1, gpus: [], memoryMb: 0 },
    start,
    end,
    durationMs: startS != null && endS != null ? (endS - startS) * 1000 : null,
    exitCode: 0,
    signal: null,
    attempts: 1,
    outputs: [],
    ...o
  }
}

/** One finished ictasks-like task record (job 7, task 3 on ws-12, with an output and logs), for layout tests. */
export function ictasksRecord (over: Partial<TaskRecord> = {}): TaskRecord {
  return {
    jobId: 7, index: 3, id: '7.3', name: 'task-3', commands: ['./sim 3'], state: 'done', host: 'ws-12', peerId: 'peer',
    resources: { cores: 2, gpus: [], memoryMb: 0 }, start: '2026-01-02T03:04:05.250Z', end: '2026-01-02T03:04:07.750Z',
    durationMs: 2500, exitCode: 0, signal: null, attempts: 1, outputs: [{ name: 'out.txt', hash: 'h1', size: 3 }],
    stdout: { name: '.meshfarm/stdout', hash: 'h2', size: 5 }, stderr: { name: '.meshfarm/stderr', hash: 'h3', size: 0 }, ...over
  }
}
