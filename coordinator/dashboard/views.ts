/**
 * What the page receives, made from the source's records (pure): file contents are never sent, only their
 * names and sizes, and a failed task's stderr tail as cleaned text.
 */
import type { FileRef, TaskRecord } from '../../shared/protocol/messages.ts'
import { stderrTail } from '../../shared/report/summary.ts'

export type PageFile = Omit<FileRef, 'data'>

export type PageTask = Omit<TaskRecord, 'stdout' | 'stderr' | 'outputs'> & {
  stdout?: PageFile
  stderr?: PageFile
  outputs: PageFile[]
  /** The end of stderr for a failed task whose stderr is small enough to ride in the record. */
  stderrTail?: string
}

const plain = (f: FileRef): PageFile => ({ name: f.name, hash: f.hash, size: f.size })

export function pageTask (r: TaskRecord): PageTask {
  const { stdout, stderr, outputs, ...rest } = r
  const out: PageTask = { ...rest, outputs: outputs.map(plain) }
  if (stdout != null) out.stdout = plain(stdout)
  if (stderr != null) out.stderr = plain(stderr)
  if (r.state === 'failed' && stderr?.data != null) {
    const tail = stderrTail(stderr.data)
    if (tail !== '') out.stderrTail = tail
  }
  return out
}
