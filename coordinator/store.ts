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
import type { TaskBlock } from '../shared/protocol/task-blocks.ts'
import { MeshfarmError } from '../shared/util/errors.ts'
import { TASK_SCHEMA, TaskStore, type TaskCounters } from './task-store.ts'

export type { TaskCounters, TaskStateRow } from './task-store.ts'

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

/** Rows per multi-row statement (events of a batch, attempts ended in bulk). */
const EVENT_ROWS = 32
const END_ROWS = 64

/** Events kept for late watchers and reports; older ones are pruned. */
export const EVENTS_KEPT = 1_000_000

export class Store {
  private readonly db: DatabaseSync
  private readonly stmts: Record<string, StatementSync>
  readonly tasks: TaskStore
  private eventSeq: number
    /** Attempts of committed tasks, marked inactive later in bulk (recovery ignores them meanwhile). */
  private endedLater: number[] = []
  private nextAttempt: number
  private depth = 0

  constructor (path: string) {
    try {
      this.db = new DatabaseSync(path)
      this.db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;')
      const check = this.db.prepare('PRAGMA quick_check').get() as { quick_check: string }
      if (check.quick_check !== 'ok') throw new Error(check.quick_check)
      this.db.exec(SCHEMA)
      this.db.exec(TASK_SCHEMA)
      this.migrate()
      this.tasks = new TaskStore(this.db)
      // The database holds every job's commands and the results: nobody else on the machine reads it.
      for (const f of [path, `${path}-wal`, `${path}-shm`]) if (existsSync(f)) chmodSync(f, 0o600)
    } catch (err) {
      throw new MeshfarmError('DISK', `the coordinator database ${path} cannot be used: ${(err as Error).message.split('\n')[0]}; move it aside to start empty, or restore it from a backup`)
    }
    const db = this.db
    this.stmts = {
      insertJob: db.prepare('INSERT INTO jobs (id, owner, header, state, submitted_at, total, held) VALUES (?, ?, ?, ?, ?, ?, 0)'),
      setJobState: db.prepare('UPDATE jobs SET state = ? WHERE id = ?'),
      setJobHeld: db.prepare('UPDATE jobs SET held = ? WHERE id = ?'),
      insertAttempt: db.prepare('INSERT INTO attempts (id, job_id, idx, agent, host, cores, gpu_ids, memory_mb, started_at, active, running, orphan) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, 0, 0)'),
      setAttemptFlags: db.prepare('UPDATE attempts SET running = ?, orphan = ?, suspect = ? WHERE id = ?'),
      endedSuspects: db.prepare('SELECT id, job_id, idx FROM attempts WHERE agent = ? AND suspect = 1 AND active = 0'),
      endAttempt: db.prepare('UPDATE attempts SET active = 0 WHERE id = ?'),
      jobs: db.prepare('SELECT id, owner, header, state, submitted_at, total, held FROM jobs ORDER BY id'),
      activeAttempts: db.prepare('SELECT id, job_id, idx, agent, host, cores, gpu_ids, memory_mb, started_at, running, orphan, suspect FROM attempts WHERE active = 1'),
      maxJob: db.prepare('SELECT COALESCE(MAX(id), 0) AS v FROM jobs'),
      maxAttempt: db.prepare('SELECT COALESCE(MAX(id), 0) AS v FROM attempts'),
      maxEvent: db.prepare('SELECT COALESCE(MAX(seq), 0) AS v FROM events'),
      insertEvent: db.prepare('INSERT INTO events (seq, time, type, job_id, idx, agent, host, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)'),
      insertEvents: db.prepare(`INSERT INTO events (seq, time, type, job_id, idx, agent, host, data) VALUES ${Array(EVENT_ROWS).fill('(?, ?, ?, ?, ?, ?, ?, ?)').join(', ')}`),
      endAttempts: db.prepare(`UPDATE attempts SET active = 0 WHERE id IN (${Array(END_ROWS).fill('?').join(', ')})`),
      eventsAfter: db.prepare('SELECT seq, time, type, job_id, idx, agent, host, data FROM events WHERE seq > ? ORDER BY seq LIMIT ?'),
      eventsOfJobAfter: db.prepare('SELECT seq, time, type, job_id, idx, agent, host, data FROM events WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?'),
      pruneEvents: db.prepare('DELETE FROM events WHERE seq <= ?'),
      loadUsage: db.prepare('SELECT owner, core_seconds, at FROM usage'),
      saveUsage: db.prepare('INSERT INTO usage (owner, core_seconds, at) VALUES (?, ?, ?) ON CONFLICT (owner) DO UPDATE SET core_seconds = excluded.core_seconds, at = excluded.at'),
      getMeta: db.prepare('SELECT value FROM meta WHERE key = ?'),
      setMeta: db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value')
    }
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
      // A table of an older layout that is gone (tasks: now task_blocks + task_state) needs nothing.
      if (cols.length > 0 && !cols.some(c => c.name === column)) this.db.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${decl}`)
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
    const ended = this.endedLater.length
    try {
      const out = fn()
      this.depth--
      this.db.exec(this.depth === 0 ? 'COMMIT' : `RELEASE ${savepoint}`)
      return out
    } catch (err) {
      this.depth--
      // What the undone part deferred is undone with it.
      this.endedLater.length = Math.min(this.endedLater.length, ended)
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

  insertBlock (jobId: number, block: TaskBlock): void {
    this.tasks.insertBlock(jobId, block)
  }

  setJobState (jobId: number, state: JobState): void {
    this.stmts.setJobState.run(state, jobId)
  }

  setJobHeld (jobId: number, held: boolean): void {
    this.stmts.setJobHeld.run(held ? 1 : 0, jobId)
  }

  setTaskState (jobId: number, index: number, state: TaskState, c: TaskCounters): void {
    this.tasks.setState(jobId, index, state, c)
  }

  /** Commits a terminal task with its result; returns the commit sequence number. */
  commitTask (record: TaskRecord, c: TaskCounters): number {
    return this.tasks.commit(record, c)
  }

  /** How many times each task of a job was committed (exactly once for a finished task: tests count here). */
  commitCounts (jobId: number, total: number): number[] {
    return this.tasks.commitCounts(jobId, total)
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
    this.tasks.withdrawCrash(jobId, index)
  }

  endAttempt (id: number): void {
    this.stmts.endAttempt.run(id)
  }

  /**
   * The attempt of a task just committed: marked inactive in bulk later (flushEndedAttempts). Until then a restart
   * tells by the task's state that it has ended.
   */
  endAttemptLater (id: number): void {
    this.endedLater.push(id)
  }

  /** Marks the attempts of committed tasks inactive (inside a transaction). */
  flushEndedAttempts (): void {
    const ids = this.endedLater
    if (ids.length === 0) return
    this.endedLater = []
    let i = 0
    for (; i + END_ROWS <= ids.length; i += END_ROWS) this.stmts.endAttempts.run(...ids.slice(i, i + END_ROWS))
    for (; i < ids.length; i++) this.stmts.endAttempt.run(ids[i])
  }

  taskSpec (jobId: number, index: number): TaskSpec {
    return this.tasks.spec(jobId, index)
  }

  taskRecord (jobId: number, index: number): TaskRecord | null {
    return this.tasks.record(jobId, index)
  }

  /** Committed results of a job in commit order, after the cursor. */
  committedRecords (jobId: number, after: number, limit: number): { records: TaskRecord[], next: number, more: boolean } {
    return this.tasks.committedRecords(jobId, after, limit)
  }

  loadJobs (): StoredJob[] {
    return (this.stmts.jobs.all() as Array<Record<string, any>>).map(r => ({
      id: r.id, owner: r.owner, header: packr.unpack(r.header) as JobHeader, state: r.state as JobState, submittedAt: r.submitted_at, total: r.total, held: r.held === 1
    }))
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

  /**
   * An event with its sequence number. It is written with the others of its batch (writeEvents), just before the
   * batch commits; an event of a handler that was undone is never written (its number stays unused).
   */
  appendEvent (e: Omit<MeshEvent, 'seq'>): MeshEvent {
    return { seq: ++this.eventSeq, ...e }
  }

  /** Writes a batch's events (inside its transaction), several rows per statement. */
  writeEvents (events: readonly MeshEvent[]): void {
    let i = 0
    const row = (e: MeshEvent): unknown[] => [e.seq, e.time, e.type, e.jobId ?? null, e.index ?? null, e.agent ?? null, e.host ?? null, e.data != null ? packr.pack(e.data) : null]
    for (; i + EVENT_ROWS <= events.length; i += EVENT_ROWS) {
      const args: unknown[] = []
      for (let k = i; k < i + EVENT_ROWS; k++) args.push(...row(events[k]))
      this.stmts.insertEvents.run(...args as Array<string | number | null | Uint8Array>)
    }
    for (; i < events.length; i++) this.stmts.insertEvent.run(...row(events[i]) as Array<string | number | null | Uint8Array>)
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
