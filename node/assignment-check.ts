/** Assignments are checked like any input from the network; a malformed one is dropped with one line. */
import type { Assignment } from '../shared/protocol/messages.ts'
import { checkFileRef, checkTaskSpec } from '../shared/protocol/schema.ts'
import { errorMessage } from '../shared/util/errors.ts'

export function checkAssignment (raw: Assignment): Assignment {
  if (raw == null || typeof raw !== 'object') throw new Error('not an object')
  if (!Number.isInteger(raw.attemptId) || !Number.isInteger(raw.jobId) || !Number.isInteger(raw.index)) throw new Error('attemptId, jobId and index must be integers')
  return {
    attemptId: raw.attemptId,
    jobId: raw.jobId,
    index: raw.index,
    task: checkTaskSpec(raw.task, raw.index),
    shared: (Array.isArray(raw.shared) ? raw.shared : []).map((f, i) => checkFileRef(f, `shared[${i}]`)),
    gpuIds: Array.isArray(raw.gpuIds) ? raw.gpuIds.filter(Number.isInteger) : [],
    cores: Number.isInteger(raw.cores) && raw.cores > 0 ? raw.cores : 1,
    ...(typeof raw.owner === 'string' && /^[^\u0000-\u001f\u007f]{1,256}$/.test(raw.owner) ? { owner: raw.owner } : {})
  }
}

export function checkAssignments (raw: unknown, log: (line: string) => void): Assignment[] {
  if (!Array.isArray(raw)) return []
  const out: Assignment[] = []
  for (const a of raw as Assignment[]) {
    try {
      out.push(checkAssignment(a))
    } catch (err) {
      log(`assignment ${String((a as Partial<Assignment> | null)?.attemptId)} refused: ${errorMessage(err)}`)
    }
  }
  return out
}
