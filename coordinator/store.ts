/**
 * The coordinator's durable state in SQLite (node:sqlite, WAL, synchronous=FULL): jobs, tasks, attempts and
 * committed results. Every handler of the coordinator's core writes its changes in one transaction before it
 * answers anyone, so an acknowledged submission or result survives kill -9 and power loss.
 */
import { DatabaseSync, type StatementSync } from 'node:sqlite'
import { Packr } from 'msgpackr'
import type { JobHeader, JobState, TaskRecord, TaskSpec, TaskState } from '../shared/protocol/messages.ts'
import { MeshfarmError } from '../shared/util/errors.ts'

const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true, int64AsType: 'number' })

export interface StoredJob {
  id: number
  owner: string
  header: JobHeader
  state: JobState
  submittedAt: number
  total: number
}

export interface StoredTaskRow {
  jobId: number
  index: number
  state: TaskState
  attempts: number
  crashes: number
  /** Demand shape, so the queue can be rebuilt without decoding every spec. */
  cores: number
  gpus: number
  memoryMb: number
  constraints: string
  affinity: string | null
}

export interface StoredAttempt {
  id: number
  jobId: number
  index: number
  agent: string
  host: string
  cores: number
  gpuIds: number[]
  memoryMb: number
  startedAt: number
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
  id INTEGER PRIMARY KEY, owner TEXT NOT NULL, header BLOB NOT NULL, state TEXT NOT NULL,
  submitted_at INTEGER NOT NULL, total INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
  job_id INTEGER NOT NULL, idx INTEGER NOT NULL, spec BLOB NOT NULL, state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0, crashes INTEGER NOT NULL DEFAULT 0,
  cores INTEGER NOT NULL, gpus INTEGER NOT NULL, memory_mb INTEGER NOT NULL,
  constraints TEXT NOT NULL, affinity TEXT,
  seq INTEGER, record BLOB,
  PRIMARY KEY (job_id, idx)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tasks_by_commit ON tasks (job_id, seq) WHERE seq IS NOT NULL;
CREATE TABLE IF NOT EXISTS attempts (
  id INTEGER PRIMARY KEY, job_id INTEGER NOT NULL, idx INTEGER NOT NULL, agent TEXT NOT NULL, host TEXT NOT NULL,
  cores INTEGER NOT NULL, gpu_ids TEXT NOT NULL, memory_mb INTEGER NOT NULL, started_at INTEGER NOT NULL,
  active INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS attempts_active ON attempts (active) WHERE active = 1;
`

export class Store {
  private readonly db: DatabaseSync
  private readonly stmts: Record<string, StatementSync>
  private seq: number
  private nextAttempt: number

  constructor (path: string) {
    try {
      this.db = new DatabaseSync(path)
      this.db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;')
      const check = this.db.prepare('PRAGMA quick_check').get() as { quick_check: string }
      if (check.quick_check !== 'ok') throw new Error(check.quick_check)
      this.db.exec(SCHEMA)
    } catch (err) {
      throw new MeshfarmError('DISK', `the coordinator database ${path} cannot be used: ${(err as Error).message.split('\n')[0]}; move it aside to start empty, or restore it from a backup`)
    }
    const db = this.db
    this.stmts = {
      insertJob: db.prepare('INSERT INTO jobs (id, owner, header, state, submitted_at, total) VALUES (?, ?, ?, ?, ?, ?)'),
      insertTask: db.prepare('INSERT INTO tasks (job_id, idx, spec, state, cores, gpus, memory_mb, constraints, affinity) VALUES (?, ?, ?, \'queued\', ?, ?, ?, ?, ?)'),
      setJobState: db.prepare('UPDATE jobs SET state = ? WHERE id = ?'),
      setTaskState: db.prepare('UPDATE tasks SET state = ?, attempts = ?, crashes = ? WHERE job_id = ? AND idx = ?'),
      commitTask: db.prepare('UPDATE tasks SET state = ?, attempts = ?, crashes = ?, seq = ?, record = ? WHERE job_id = ? AND idx = ?'),
      insertAttempt: db.prepare('INSERT INTO attempts (id, job_id, idx, agent, host, cores, gpu_ids, memory_mb, started_at, active) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1)'),
      endAttempt: db.prepare('UPDATE attempts SET active = 0 WHERE id = ?'),
      spec: db.prepare('SELECT spec FROM tasks WHERE job_id = ? AND idx = ?'),
      records: db.prepare('SELECT seq, record FROM tasks WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?'),
      record: db.prepare('SELECT record FROM tasks WHERE job_id = ? AND idx = ?'),
      jobs: db.prepare('SELECT id, owner, header, state, submitted_at, total FROM jobs ORDER BY id'),
      tasksOfJob: db.prepare('SELECT idx, state, attempts, crashes, cores, gpus, memory_mb, constraints, affinity FROM tasks WHERE job_id = ? ORDER BY idx'),
      activeAttempts: db.prepare('SELECT id, job_id, idx, agent, host, cores, gpu_ids, memory_mb, started_at FROM attempts WHERE active = 1'),
      maxJob: db.prepare('SELECT COALESCE(MAX(id), 0) AS v FROM jobs'),
      maxSeq: db.prepare('SELECT COALESCE(MAX(seq), 0) AS v FROM tasks'),
      maxAttempt: db.prepare('SELECT COALESCE(MAX(id), 0) AS v FROM attempts')
    }
    this.seq = (this.stmts.maxSeq.get() as { v: number }).v
    this.nextAttempt = (this.stmts.maxAttempt.get() as { v: number }).v + 1
  }

  private depth = 0

  /**
   * Runs fn in one transaction: all of its writes land, or none. Calls nest (a savepoint inside the outer
   * transaction), so a caller can group many handlers into one commit: one fsync for a whole batch.
   */
  transaction<T> (fn: () => T): T {
    const savepoint = `s${this.depth}`
    this.db.exec(this.depth === 0 ? 'BEGIN IMMEDIATE' : `SAVEPOINT ${savepoint}`)
    this.depth++
    try {
      const out = fn()
      this.depth--
      this.db.exec(this.depth === 0 ? 'COMMIT' : `RELEASE ${savepoint}`)
      return out
    } catch (err) {
      this.depth--
      this.db.exec(this.depth === 0 ? 'ROLLBACK' : `ROLLBACK TO ${savepoint}; RELEASE ${savepoint}`)
      throw err
    }
  }

  nextJobId (): number {
    return (this.stmts.maxJob.get() as { v: number }).v + 1
  }

  allocateAttemptId (): number {
    return this.nextAttempt++
  }

  insertJob (job: StoredJob): void {
    this.stmts.insertJob.run(job.id, job.owner, packr.pack(job.header), job.state, job.submittedAt, job.total)
  }

  insertTask (jobId: number, spec: TaskSpec): void {
    this.stmts.insertTask.run(jobId, spec.index, packr.pack(spec), spec.cores, spec.gpus, spec.memoryMb,
      constraintKey(spec.constraints), spec.affinity ?? null)
  }

  setJobState (jobId: number, state: JobState): void {
    this.stmts.setJobState.run(state, jobId)
  }

  setTaskState (jobId: number, index: number, state: TaskState, attempts: number, crashes: number): void {
    this.stmts.setTaskState.run(state, attempts, crashes, jobId, index)
  }

  /** Commits a terminal task with its result; returns the commit sequence number. */
  commitTask (record: TaskRecord, crashes: number): number {
    const seq = ++this.seq
    this.stmts.commitTask.run(record.state, record.attempts, crashes, seq, packr.pack(record), record.jobId, record.index)
    return seq
  }

  insertAttempt (a: StoredAttempt): void {
    this.stmts.insertAttempt.run(a.id, a.jobId, a.index, a.agent, a.host, a.cores, a.gpuIds.join(','), a.memoryMb, a.startedAt)
  }

  endAttempt (id: number): void {
    this.stmts.endAttempt.run(id)
  }

  taskSpec (jobId: number, index: number): TaskSpec {
    const row = this.stmts.spec.get(jobId, index) as { spec: Uint8Array } | undefined
    if (row == null) throw new MeshfarmError('NOT_FOUND', `no task ${jobId}.${index}`)
    return packr.unpack(row.spec) as TaskSpec
  }

  taskRecord (jobId: number, index: number): TaskRecord | null {
    const row = this.stmts.record.get(jobId, index) as { record: Uint8Array | null } | undefined
    return row?.record != null ? packr.unpack(row.record) as TaskRecord : null
  }

  /** Committed results of a job in commit order, after the cursor. */
  committedRecords (jobId: number, after: number, limit: number): { records: TaskRecord[], next: number, more: boolean } {
    const rows = this.stmts.records.all(jobId, after, limit) as Array<{ seq: number, record: Uint8Array }>
    const records = rows.map(r => packr.unpack(r.record) as TaskRecord)
    return { records, next: rows.length > 0 ? rows[rows.length - 1].seq : after, more: rows.length === limit }
  }

  loadJobs (): StoredJob[] {
    return (this.stmts.jobs.all() as Array<Record<string, any>>).map(r => ({
      id: r.id, owner: r.owner, header: packr.unpack(r.header) as JobHeader, state: r.state as JobState, submittedAt: r.submitted_at, total: r.total
    }))
  }

  *loadTasks (jobId: number): Generator<StoredTaskRow> {
    for (const r of this.stmts.tasksOfJob.iterate(jobId) as Iterable<Record<string, any>>) {
      yield { jobId, index: r.idx, state: r.state, attempts: r.attempts, crashes: r.crashes, cores: r.cores, gpus: r.gpus, memoryMb: r.memory_mb, constraints: r.constraints, affinity: r.affinity }
    }
  }

  loadActiveAttempts (): StoredAttempt[] {
    return (this.stmts.activeAttempts.all() as Array<Record<string, any>>).map(r => ({
      id: r.id, jobId: r.job_id, index: r.idx, agent: r.agent, host: r.host, cores: r.cores,
      gpuIds: r.gpu_ids === '' ? [] : String(r.gpu_ids).split(',').map(Number), memoryMb: r.memory_mb, startedAt: r.started_at
    }))
  }

  close (): void {
    this.db.close()
  }
}

/** Constraints as a canonical string: equal constraint sets give equal keys (used for shapes). */
export function constraintKey (constraints: Record<string, string>): string {
  const keys = Object.keys(constraints).sort()
  return keys.length === 0 ? '' : JSON.stringify(keys.map(k => [k, constraints[k]]))
}

export function parseConstraintKey (key: string): Record<string, string> {
  return key === '' ? {} : Object.fromEntries(JSON.parse(key) as Array<[string, string]>)
}
