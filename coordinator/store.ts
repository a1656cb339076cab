/**
 * The coordinator's durable state in SQLite (node:sqlite, WAL, synchronous=FULL): jobs, tasks, attempts,
 * committed results and the event stream. The commit loop (commit-loop.ts) groups the changes of many
 * handlers into one transaction and answers anyone only after it commits, so an acknowledged submission or
 * result survives kill -9 and power loss.
 */
import { chmodSync, existsSync } from 'node:fs'
import { randomInt } from 'node:crypto'
import { DatabaseSync, type StatementSync } from 'node:sqlite'
import { Packr } from 'msgpackr'
import type { JobHeader, JobState, TaskRecord, TaskSpec, TaskState } from '../shared/protocol/data.ts'
import type { MeshEvent } from '../shared/protocol/events.ts'
import { MeshfarmError } from '../shared/util/errors.ts'

const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true, int64AsType: 'number' })

export interface StoredJob {
  id: number
  owner: string
  header: JobHeader
  state: JobState
  submittedAt: number
  total: number
  held: boolean
}

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

export interface StoredTaskRow extends TaskCounters {
  jobId: number
  index: number
  state: TaskState
  /** Demand shape, so the queue can be rebuilt without decoding every spec. */
  cores: number
  gpus: number
  memoryMb: number
  constraints: string
  affinity: string | null
  timeoutMs: number
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
  /** The agent reported it started (or is running it). */
  running: boolean
  /** Its agent was declared lost; the attempt stays valid until the task runs elsewhere. */
  orphan: boolean
  /**
   * Counted as a crash because its agent went silent while it ran; withdrawn if the agent comes back still holding
   * it (a cut link, a slow reconnect), confirmed if the agent says it died with it.
   */
  suspect: boolean
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
  id INTEGER PRIMARY KEY, owner TEXT NOT NULL, header BLOB NOT NULL, state TEXT NOT NULL,
  submitted_at INTEGER NOT NULL, total INTEGER NOT NULL, held INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS tasks (
  job_id INTEGER NOT NULL, idx INTEGER NOT NULL, spec BLOB NOT NULL, state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0, crashes INTEGER NOT NULL DEFAULT 0,
  vacates INTEGER NOT NULL DEFAULT 0, retries_used INTEGER NOT NULL DEFAULT 0, staging_fails INTEGER NOT NULL DEFAULT 0,
  cores INTEGER NOT NULL, gpus INTEGER NOT NULL, memory_mb INTEGER NOT NULL,
  constraints TEXT NOT NULL, affinity TEXT, timeout_ms INTEGER NOT NULL DEFAULT 0,
  seq INTEGER, record BLOB, commits INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (job_id, idx)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tasks_by_commit ON tasks (job_id, seq) WHERE seq IS NOT NULL;
CREATE TABLE IF NOT EXISTS attempts (
  id INTEGER PRIMARY KEY, job_id INTEGER NOT NULL, idx INTEGER NOT NULL, agent TEXT NOT NULL, host TEXT NOT NULL,
  cores INTEGER NOT NULL, gpu_ids TEXT NOT NULL, memory_mb INTEGER NOT NULL, started_at INTEGER NOT NULL,
  active INTEGER NOT NULL, running INTEGER NOT NULL DEFAULT 0, orphan INTEGER NOT NULL DEFAULT 0,
  suspect INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS attempts_active ON attempts (active) WHERE active = 1;
CREATE INDEX IF NOT EXISTS attempts_suspect ON attempts (agent) WHERE suspect = 1;
CREATE TABLE IF NOT EXISTS events (
  seq INTEGER PRIMARY KEY, time INTEGER NOT NULL, type TEXT NOT NULL, job_id INTEGER, idx INTEGER,
  agent TEXT, host TEXT, data BLOB);
CREATE INDEX IF NOT EXISTS events_by_job ON events (job_id, seq) WHERE job_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS usage (owner TEXT PRIMARY KEY, core_seconds REAL NOT NULL, at INTEGER NOT NULL);
`

/** Columns added since the first release, for databases created by it. */
const ADDED_COLUMNS: Array<[table: string, column: string, decl: string]> = [
  ['jobs', 'held', 'INTEGER NOT NULL DEFAULT 0'],
  ['tasks', 'vacates', 'INTEGER NOT NULL DEFAULT 0'],
  ['tasks', 'retries_used', 'INTEGER NOT NULL DEFAULT 0'],
  ['tasks', 'staging_fails', 'INTEGER NOT NULL DEFAULT 0'],
  ['tasks', 'commits', 'INTEGER NOT NULL DEFAULT 0'],
  ['tasks', 'timeout_ms', 'INTEGER NOT NULL DEFAULT 0'],
  ['attempts', 'running', 'INTEGER NOT NULL DEFAULT 0'],
  ['attempts', 'orphan', 'INTEGER NOT NULL DEFAULT 0'],
  ['attempts', 'suspect', 'INTEGER NOT NULL DEFAULT 0']
]

/** Events kept for late watchers and reports; older ones are pruned. */
export const EVENTS_KEPT = 1_000_000

export class Store {
  private readonly db: DatabaseSync
  private readonly stmts: Record<string, StatementSync>
  private seq: number
  private eventSeq: number
  private nextAttempt: number
  private depth = 0

  constructor (path: string) {
    try {
      this.db = new DatabaseSync(path)
      this.db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;')
      const check = this.db.prepare('PRAGMA quick_check').get() as { quick_check: string }
      if (check.quick_check !== 'ok') throw new Error(check.quick_check)
      this.db.exec(SCHEMA)
      this.migrate()
      // The database holds every job's commands and the results: nobody else on the machine reads it.
      for (const f of [path, `${path}-wal`, `${path}-shm`]) if (existsSync(f)) chmodSync(f, 0o600)
    } catch (err) {
      throw new MeshfarmError('DISK', `the coordinator database ${path} cannot be used: ${(err as Error).message.split('\n')[0]}; move it aside to start empty, or restore it from a backup`)
    }
    const db = this.db
    this.stmts = {
      insertJob: db.prepare('INSERT INTO jobs (id, owner, header, state, submitted_at, total, held) VALUES (?, ?, ?, ?, ?, ?, 0)'),
      insertTask: db.prepare('INSERT INTO tasks (job_id, idx, spec, state, cores, gpus, memory_mb, constraints, affinity, timeout_ms) VALUES (?, ?, ?, \'queued\', ?, ?, ?, ?, ?, ?)'),
      setJobState: db.prepare('UPDATE jobs SET state = ? WHERE id = ?'),
      setJobHeld: db.prepare('UPDATE jobs SET held = ? WHERE id = ?'),
      setTaskState: db.prepare('UPDATE tasks SET state = ?, attempts = ?, crashes = ?, vacates = ?, retries_used = ?, staging_fails = ? WHERE job_id = ? AND idx = ?'),
      commitTask: db.prepare('UPDATE tasks SET state = ?, attempts = ?, crashes = ?, vacates = ?, retries_used = ?, staging_fails = ?, seq = ?, record = ?, commits = commits + 1 WHERE job_id = ? AND idx = ?'),
      insertAttempt: db.prepare('INSERT INTO attempts (id, job_id, idx, agent, host, cores, gpu_ids, memory_mb, started_at, active, running, orphan) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, 0, 0)'),
      setAttemptFlags: db.prepare('UPDATE attempts SET running = ?, orphan = ?, suspect = ? WHERE id = ?'),
      endedSuspects: db.prepare('SELECT id, job_id, idx FROM attempts WHERE agent = ? AND suspect = 1 AND active = 0'),
      withdrawCrash: db.prepare('UPDATE tasks SET crashes = MAX(0, crashes - 1) WHERE job_id = ? AND idx = ?'),
      endAttempt: db.prepare('UPDATE attempts SET active = 0 WHERE id = ?'),
      spec: db.prepare('SELECT spec FROM tasks WHERE job_id = ? AND idx = ?'),
      records: db.prepare('SELECT seq, record FROM tasks WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?'),
      record: db.prepare('SELECT record FROM tasks WHERE job_id = ? AND idx = ?'),
      commits: db.prepare('SELECT idx, commits FROM tasks WHERE job_id = ? ORDER BY idx'),
      jobs: db.prepare('SELECT id, owner, header, state, submitted_at, total, held FROM jobs ORDER BY id'),
      tasksOfJob: db.prepare('SELECT idx, state, attempts, crashes, vacates, retries_used, staging_fails, cores, gpus, memory_mb, constraints, affinity, timeout_ms FROM tasks WHERE job_id = ? ORDER BY idx'),
      activeAttempts: db.prepare('SELECT id, job_id, idx, agent, host, cores, gpu_ids, memory_mb, started_at, running, orphan, suspect FROM attempts WHERE active = 1'),
      maxJob: db.prepare('SELECT COALESCE(MAX(id), 0) AS v FROM jobs'),
      maxSeq: db.prepare('SELECT COALESCE(MAX(seq), 0) AS v FROM tasks'),
      maxAttempt: db.prepare('SELECT COALESCE(MAX(id), 0) AS v FROM attempts'),
      maxEvent: db.prepare('SELECT COALESCE(MAX(seq), 0) AS v FROM events'),
      insertEvent: db.prepare('INSERT INTO events (seq, time, type, job_id, idx, agent, host, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)'),
      eventsAfter: db.prepare('SELECT seq, time, type, job_id, idx, agent, host, data FROM events WHERE seq > ? ORDER BY seq LIMIT ?'),
      eventsOfJobAfter: db.prepare('SELECT seq, time, type, job_id, idx, agent, host, data FROM events WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?'),
      pruneEvents: db.prepare('DELETE FROM events WHERE seq <= ?'),
      loadUsage: db.prepare('SELECT owner, core_seconds, at FROM usage'),
      saveUsage: db.prepare('INSERT INTO usage (owner, core_seconds, at) VALUES (?, ?, ?) ON CONFLICT (owner) DO UPDATE SET core_seconds = excluded.core_seconds, at = excluded.at'),
      getMeta: db.prepare('SELECT value FROM meta WHERE key = ?'),
      setMeta: db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value')
    }
    this.seq = (this.stmts.maxSeq.get() as { v: number }).v
    this.eventSeq = (this.stmts.maxEvent.get() as { v: number }).v
    // Attempt ids start from this database's own random base: results an agent still holds from a database that
    // was moved aside can never match an attempt of this one.
    let epoch = Number((this.stmts.getMeta.get('attempt_epoch') as { value: string } | undefined)?.value)
    if (!Number.isInteger(epoch)) {
      epoch = randomInt(1, 2 ** 20)
      this.stmts.setMeta.run('attempt_epoch', String(epoch))
    }
    this.nextAttempt = Math.max((this.stmts.maxAttempt.get() as { v: number }).v + 1, epoch * 2 ** 32 + 1)
  }

  private migrate (): void {
    for (const [table, column, decl] of ADDED_COLUMNS) {
      const cols = this.db.prepare(`PRAGMA table_info(${table})`).all() as Array<{ name: string }>
      if (!cols.some(c => c.name === column)) this.db.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${decl}`)
    }
  }

  /**
   * Runs fn in one transaction: all of its writes land, or none. Calls nest (a savepoint inside the outer
   * transaction), so the commit loop groups many handlers into one commit: one fsync for a whole batch.
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

  get inTransaction (): boolean {
    return this.depth > 0
  }

  nextJobId (): number {
    return (this.stmts.maxJob.get() as { v: number }).v + 1
  }

  allocateAttemptId (): number {
    return this.nextAttempt++
  }

  insertJob (job: Omit<StoredJob, 'held'>): void {
    this.stmts.insertJob.run(job.id, job.owner, packr.pack(job.header), job.state, job.submittedAt, job.total)
  }

  insertTask (jobId: number, spec: TaskSpec): void {
    this.stmts.insertTask.run(jobId, spec.index, packr.pack(spec), spec.cores, spec.gpus, spec.memoryMb,
      constraintKey(spec.constraints), spec.affinity ?? null, spec.timeoutMs)
  }

  setJobState (jobId: number, state: JobState): void {
    this.stmts.setJobState.run(state, jobId)
  }

  setJobHeld (jobId: number, held: boolean): void {
    this.stmts.setJobHeld.run(held ? 1 : 0, jobId)
  }

  setTaskState (jobId: number, index: number, state: TaskState, c: TaskCounters): void {
    this.stmts.setTaskState.run(state, c.attempts, c.crashes, c.vacates, c.retriesUsed, c.stagingFails, jobId, index)
  }

  /** Commits a terminal task with its result; returns the commit sequence number. */
  commitTask (record: TaskRecord, c: TaskCounters): number {
    const seq = ++this.seq
    this.stmts.commitTask.run(record.state, c.attempts, c.crashes, c.vacates, c.retriesUsed, c.stagingFails, seq, packr.pack(record), record.jobId, record.index)
    return seq
  }

  /** How many times each task of a job was committed (exactly once for a finished task: tests count here). */
  commitCounts (jobId: number): number[] {
    return (this.stmts.commits.all(jobId) as Array<{ commits: number }>).map(r => r.commits)
  }

  insertAttempt (a: StoredAttempt): void {
    this.stmts.insertAttempt.run(a.id, a.jobId, a.index, a.agent, a.host, a.cores, a.gpuIds.join(','), a.memoryMb, a.startedAt)
  }

  setAttemptFlags (a: Pick<StoredAttempt, 'id' | 'running' | 'orphan' | 'suspect'>): void {
    this.stmts.setAttemptFlags.run(a.running ? 1 : 0, a.orphan ? 1 : 0, a.suspect ? 1 : 0, a.id)
  }

  /** An agent's ended attempts still counted as suspected crashes (it has not been heard from since). */
  endedSuspectsOf (agentId: string): Array<{ id: number, jobId: number, index: number }> {
    return (this.stmts.endedSuspects.all(agentId) as Array<{ id: number, job_id: number, idx: number }>).map(r => ({ id: r.id, jobId: r.job_id, index: r.idx }))
  }

  /** A suspected crash of a task that has ended turned out not to be one. */
  withdrawCrash (jobId: number, index: number): void {
    this.stmts.withdrawCrash.run(jobId, index)
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
      id: r.id, owner: r.owner, header: packr.unpack(r.header) as JobHeader, state: r.state as JobState, submittedAt: r.submitted_at, total: r.total, held: r.held === 1
    }))
  }

  * loadTasks (jobId: number): Generator<StoredTaskRow> {
    for (const r of this.stmts.tasksOfJob.iterate(jobId) as Iterable<Record<string, any>>) {
      yield {
        jobId, index: r.idx, state: r.state, attempts: r.attempts, crashes: r.crashes, vacates: r.vacates, retriesUsed: r.retries_used,
        stagingFails: r.staging_fails, cores: r.cores, gpus: r.gpus, memoryMb: r.memory_mb, constraints: r.constraints, affinity: r.affinity, timeoutMs: r.timeout_ms
      }
    }
  }

  loadActiveAttempts (): StoredAttempt[] {
    return (this.stmts.activeAttempts.all() as Array<Record<string, any>>).map(r => ({
      id: r.id, jobId: r.job_id, index: r.idx, agent: r.agent, host: r.host, cores: r.cores,
      gpuIds: r.gpu_ids === '' ? [] : String(r.gpu_ids).split(',').map(Number), memoryMb: r.memory_mb, startedAt: r.started_at,
      running: r.running === 1, orphan: r.orphan === 1, suspect: r.suspect === 1
    }))
  }

  // ---- fair share ----

  loadUsage (): Array<[string, { coreSeconds: number, at: number }]> {
    return (this.stmts.loadUsage.all() as Array<{ owner: string, core_seconds: number, at: number }>).map(r => [r.owner, { coreSeconds: r.core_seconds, at: r.at }])
  }

  saveUsage (entries: Array<[string, { coreSeconds: number, at: number }]>): void {
    for (const [owner, r] of entries) this.stmts.saveUsage.run(owner, r.coreSeconds, r.at)
  }

  // ---- the event stream ----

  /** Appends an event inside the current transaction; returns it with its sequence number. */
  appendEvent (e: Omit<MeshEvent, 'seq'>): MeshEvent {
    const event: MeshEvent = { seq: ++this.eventSeq, ...e }
    this.stmts.insertEvent.run(event.seq, event.time, event.type, event.jobId ?? null, event.index ?? null, event.agent ?? null,
      event.host ?? null, event.data != null ? packr.pack(event.data) : null)
    return event
  }

  /** The sequence number of the newest event (0 when there is none). */
  get lastEventSeq (): number {
    return this.eventSeq
  }

  /** Events after `after`, oldest first; only one job's when jobId is given. */
  eventsAfter (after: number, limit: number, jobId?: number): MeshEvent[] {
    const rows = (jobId != null ? this.stmts.eventsOfJobAfter.all(jobId, after, limit) : this.stmts.eventsAfter.all(after, limit)) as Array<Record<string, any>>
    return rows.map(r => ({
      seq: r.seq,
      time: r.time,
      type: r.type,
      ...(r.job_id != null ? { jobId: r.job_id } : {}),
      ...(r.idx != null ? { index: r.idx } : {}),
      ...(r.agent != null ? { agent: r.agent } : {}),
      ...(r.host != null ? { host: r.host } : {}),
      ...(r.data != null ? { data: packr.unpack(r.data) } : {})
    }))
  }

  /** Drops all but the newest `keep` events. */
  pruneEvents (keep = EVENTS_KEPT): void {
    if (this.eventSeq > keep) this.stmts.pruneEvents.run(this.eventSeq - keep)
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
