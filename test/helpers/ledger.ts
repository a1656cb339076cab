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
    // A task gets a task_state row once something durable happens to it; one with no row was never committed.
    const job = db.prepare('SELECT total FROM jobs WHERE id = ?').get(jobId) as { total: number } | undefined
    const counts = new Array<number>(job?.total ?? 0).fill(0)
    for (const r of db.prepare('SELECT idx, commits FROM task_state WHERE job_id = ?').all(jobId) as Array<{ idx: number, commits: number }>) counts[r.idx] = r.commits
    return counts
  } finally {
    db.close()
  }
}

/** Asserts-ready summary: the indexes committed other than exactly once. */
export function notCommittedOnce (coordinatorHome: string, jobId: number): Array<{ index: number, commits: number }> {
  return commitCounts(coordinatorHome, jobId).map((commits, index) => ({ index, commits })).filter(c => c.commits !== 1)
}
