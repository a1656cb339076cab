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
