/**
 * What the coordinator committed, read from its database (read-only, beside the running coordinator: SQLite's WAL
 * lets a reader in). Counting commits here, where they happen, sees a task committed twice; a view that shows one
 * row per task (`status --tasks`) would hide it.
 */
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'

/** How many times each task of the job was committed, by task index. */
export function commitCounts (coordinatorHome: string, jobId: number): number[] {
  const db = new DatabaseSync(join(coordinatorHome, 'coordinator', 'state.db'), { readOnly: true })
  try {
    return (db.prepare('SELECT commits FROM tasks WHERE job_id = ? ORDER BY idx').all(jobId) as Array<{ commits: number }>).map(r => r.commits)
  } finally {
    db.close()
  }
}

/** Asserts-ready summary: the indexes committed other than exactly once. */
export function notCommittedOnce (coordinatorHome: string, jobId: number): Array<{ index: number, commits: number }> {
  return commitCounts(coordinatorHome, jobId).map((commits, index) => ({ index, commits })).filter(c => c.commits !== 1)
}
