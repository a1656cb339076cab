/**
 * A job's tasks in the coordinator's database. What was submitted is stored as blocks (`task_blocks`, one row per
 * block of up to 10,000 tasks: what they share once, what differs as columns, shared/protocol/task-blocks.ts); a
 * task gets a row of its own (`task_state`) only once something happens to it that must survive a restart: its
 * result is committed, it goes back to the queue, it is held, a crash is counted. A queued task, or one out on
 * an agent (its attempt is in `attempts`), has none. A million-task sweep is a hundred rows at submission.
 */
import type { DatabaseSync, StatementSync } from 'node:sqlite'
import { Packr } from 'msgpackr'
import type { TaskRecord, TaskSpec, TaskState } from '../shared/protocol/data.ts'
import { specAt, toBlocks, type TaskBlock } from '../shared/protocol/task-blocks.ts'
import { MeshfarmError } from '../shared/util/errors.ts'

const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true, int64AsType: 'number' })

/** Per-task counters, kept with the task's state. */
export interface TaskCounters {
  /** Attempts placed. */
  attempts: number
  /** Attempts that died with their agent while running. */
  crashes: number
  /** Times handed back without counting against the task (owner returned, drain, preemption). */
  vacates: number
  /** Retries of the job used (the task exited non-zero, timed out, ...). */
  retriesUsed: number
  /** Attempts whose inputs could not be staged. */
  stagingFails: number
}

/** A task's row: its state as last written, with its counters. */
export interface TaskStateRow extends TaskCounters {
  index: number
  state: TaskState
}

export const TASK_SCHEMA = `
CREATE TABLE IF NOT EXISTS task_blocks (
  job_id INTEGER NOT NULL, first INTEGER NOT NULL, count INTEGER NOT NULL, data BLOB NOT NULL,
  PRIMARY KEY (job_id, first)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS task_state (
  job_id INTEGER NOT NULL, idx INTEGER NOT NULL, state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0, crashes INTEGER NOT NULL DEFAULT 0, vacates INTEGER NOT NULL DEFAULT 0,
  retries_used INTEGER NOT NULL DEFAULT 0, staging_fails INTEGER NOT NULL DEFAULT 0,
  seq INTEGER, record BLOB, commits INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (job_id, idx)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS task_state_by_commit ON task_state (job_id, seq) WHERE seq IS NOT NULL;
`

/** Decoded blocks kept in memory: placement reads them in order, so a few suffice. */
const CACHED_BLOCKS = 64

export class TaskStore {
  private readonly db: DatabaseSync
  private readonly stmts: Record<string, StatementSync>
  private seq: number
  /** Each job's block starts, ascending (loaded on first use). */
  private readonly starts = new Map<number, number[]>()
  private readonly cache = new Map<string, TaskBlock>()

  constructor (db: DatabaseSync) {
    this.db = db
    this.migrateRowPerTask()
    this.stmts = {
      insertBlock: db.prepare('INSERT INTO task_blocks (job_id, first, count, data) VALUES (?, ?, ?, ?)'),
      block: db.prepare('SELECT count, data FROM task_blocks WHERE job_id = ? AND first = ?'),
      blockStarts: db.prepare('SELECT first FROM task_blocks WHERE job_id = ? ORDER BY first'),
      blocks: db.prepare('SELECT first, count, data FROM task_blocks WHERE job_id = ? ORDER BY first'),
      setState: db.prepare(`INSERT INTO task_state (job_id, idx, state, attempts, crashes, vacates, retries_used, staging_fails) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (job_id, idx) DO UPDATE SET state = excluded.state, attempts = excluded.attempts, crashes = excluded.crashes,
        vacates = excluded.vacates, retries_used = excluded.retries_used, staging_fails = excluded.staging_fails`),
      commit: db.prepare(`INSERT INTO task_state (job_id, idx, state, attempts, crashes, vacates, retries_used, staging_fails, seq, record, commits) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)
        ON CONFLICT (job_id, idx) DO UPDATE SET state = excluded.state, attempts = excluded.attempts, crashes = excluded.crashes,
        vacates = excluded.vacates, retries_used = excluded.retries_used, staging_fails = excluded.staging_fails,
        seq = excluded.seq, record = excluded.record, commits = commits + 1`),
      withdrawCrash: db.prepare('UPDATE task_state SET crashes = MAX(0, crashes - 1) WHERE job_id = ? AND idx = ?'),
      states: db.prepare('SELECT idx, state, attempts, crashes, vacates, retries_used, staging_fails FROM task_state WHERE job_id = ?'),
      stateCounts: db.prepare('SELECT state, COUNT(*) AS n FROM task_state WHERE job_id = ? GROUP BY state'),
      records: db.prepare('SELECT seq, record FROM task_state WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?'),
      record: db.prepare('SELECT record FROM task_state WHERE job_id = ? AND idx = ?'),
      commits: db.prepare('SELECT idx, commits FROM task_state WHERE job_id = ?'),
      maxSeq: db.prepare('SELECT COALESCE(MAX(seq), 0) AS v FROM task_state')
    }
    this.seq = (this.stmts.maxSeq.get() as { v: number }).v
  }

  // ---- what was submitted ----

  insertBlock (jobId: number, b: TaskBlock): void {
    this.stmts.insertBlock.run(jobId, b.first, b.count, packr.pack({ base: b.base, cols: b.cols }))
    this.starts.delete(jobId)
  }

  /** The block holding task `index` of the job. */
  blockOf (jobId: number, index: number): TaskBlock {
    let starts = this.starts.get(jobId)
    if (starts == null) {
      starts = (this.stmts.blockStarts.all(jobId) as Array<{ first: number }>).map(r => r.first)
      this.starts.set(jobId, starts)
    }
    let lo = 0
    let hi = starts.length - 1
    if (hi < 0 || index < starts[0]) throw new MeshfarmError('NOT_FOUND', `no task ${jobId}.${index}`)
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1
      if (starts[mid] <= index) lo = mid
      else hi = mid - 1
    }
    const key = `${jobId}:${starts[lo]}`
    let b = this.cache.get(key)
    if (b == null) {
      const row = this.stmts.block.get(jobId, starts[lo]) as { count: number, data: Uint8Array }
      b = { first: starts[lo], count: row.count, ...packr.unpack(row.data) as Pick<TaskBlock, 'base' | 'cols'> }
      if (this.cache.size >= CACHED_BLOCKS) this.cache.delete(this.cache.keys().next().value!)
    } else {
      this.cache.delete(key)
    }
    this.cache.set(key, b)
    if (index >= b.first + b.count) throw new MeshfarmError('NOT_FOUND', `no task ${jobId}.${index}`)
    return b
  }

  spec (jobId: number, index: number): TaskSpec {
    return specAt(this.blockOf(jobId, index), index)
  }

  /** Every block of a job, in order (recovery builds the queue from them). */
  * blocks (jobId: number): Generator<TaskBlock> {
    for (const r of this.stmts.blocks.iterate(jobId) as Iterable<{ first: number, count: number, data: Uint8Array }>) {
      yield { first: r.first, count: r.count, ...packr.unpack(r.data) as Pick<TaskBlock, 'base' | 'cols'> }
    }
  }

  // ---- what happened to tasks ----

  setState (jobId: number, index: number, state: TaskState, c: TaskCounters): void {
    this.stmts.setState.run(jobId, index, state, c.attempts, c.crashes, c.vacates, c.retriesUsed, c.stagingFails)
  }

  /** Commits a terminal task with its result; returns the commit sequence number. */
  commit (record: TaskRecord, c: TaskCounters): number {
    const seq = ++this.seq
    this.stmts.commit.run(record.jobId, record.index, record.state, c.attempts, c.crashes, c.vacates, c.retriesUsed, c.stagingFails, seq, packr.pack(record))
    return seq
  }

  withdrawCrash (jobId: number, index: number): void {
    this.stmts.withdrawCrash.run(jobId, index)
  }

  /** Rows of a job's tasks (those that have one). */
  * states (jobId: number): Generator<TaskStateRow> {
    for (const r of this.stmts.states.iterate(jobId) as Iterable<Record<string, any>>) {
      yield { index: r.idx, state: r.state, attempts: r.attempts, crashes: r.crashes, vacates: r.vacates, retriesUsed: r.retries_used, stagingFails: r.staging_fails }
    }
  }

  /** How many of a job's tasks have a row in each state (an ended job: all of them). */
  stateCounts (jobId: number): Array<[TaskState, number]> {
    return (this.stmts.stateCounts.all(jobId) as Array<{ state: TaskState, n: number }>).map(r => [r.state, r.n])
  }

  record (jobId: number, index: number): TaskRecord | null {
    const row = this.stmts.record.get(jobId, index) as { record: Uint8Array | null } | undefined
    return row?.record != null ? packr.unpack(row.record) as TaskRecord : null
  }

  /** Committed results of a job in commit order, after the cursor. */
  committedRecords (jobId: number, after: number, limit: number): { records: TaskRecord[], next: number, more: boolean } {
    const rows = this.stmts.records.all(jobId, after, limit) as Array<{ seq: number, record: Uint8Array }>
    const records = rows.map(r => packr.unpack(r.record) as TaskRecord)
    return { records, next: rows.length > 0 ? rows[rows.length - 1].seq : after, more: rows.length === limit }
  }

  /** How many times each of the job's `total` tasks was committed (exactly once for a finished task). */
  commitCounts (jobId: number, total: number): number[] {
    const out = new Array<number>(total).fill(0)
    for (const r of this.stmts.commits.all(jobId) as Array<{ idx: number, commits: number }>) out[r.idx] = r.commits
    return out
  }

  /**
   * Databases of earlier versions kept a `tasks` row per task, spec included: their tasks become blocks and
   * task_state rows once, in one transaction, and the old table goes.
   */
  private migrateRowPerTask (): void {
    const old = this.db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'tasks'").get()
    if (old == null) return
    const jobs = (this.db.prepare('SELECT DISTINCT job_id FROM tasks ORDER BY job_id').all() as Array<{ job_id: number }>).map(r => r.job_id)
    const insertBlock = this.db.prepare('INSERT OR REPLACE INTO task_blocks (job_id, first, count, data) VALUES (?, ?, ?, ?)')
    const insertState = this.db.prepare(`INSERT OR REPLACE INTO task_state (job_id, idx, state, attempts, crashes, vacates, retries_used, staging_fails, seq, record, commits)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
    const rows = this.db.prepare('SELECT * FROM tasks WHERE job_id = ? ORDER BY idx')
    this.db.exec('BEGIN IMMEDIATE')
    try {
      for (const jobId of jobs) {
        const specs: TaskSpec[] = []
        for (const r of rows.iterate(jobId) as Iterable<Record<string, any>>) {
          specs.push(packr.unpack(r.spec) as TaskSpec)
          const moved = r.state !== 'queued' || r.attempts > 0 || r.crashes > 0 || r.vacates > 0 || r.retries_used > 0 || r.staging_fails > 0 || r.record != null
          if (moved) insertState.run(jobId, r.idx, r.state, r.attempts, r.crashes, r.vacates, r.retries_used, r.staging_fails, r.seq ?? null, r.record ?? null, r.commits ?? 0)
        }
        for (const b of toBlocks(specs)) insertBlock.run(jobId, b.first, b.count, packr.pack({ base: b.base, cols: b.cols }))
      }
      this.db.exec('DROP TABLE tasks')
      this.db.exec('COMMIT')
    } catch (err) {
      this.db.exec('ROLLBACK')
      throw err
    }
  }
}
