/**
 * An active job's tasks in memory: state, counters and demand shape per task in typed arrays (a million tasks
 * cost about 15 MB), and the queue of tasks waiting to be placed. New tasks wait in index order (the back of the
 * queue is a cursor over the indexes, not a list); requeued tasks go to the FRONT: a task that lost its agent
 * has waited once already. Front entries are dropped lazily: each task remembers the stamp of its one valid
 * entry, so a task requeued twice never runs twice.
 */
import type { JobHeader, JobState, TaskState } from '../shared/protocol/data.ts'
import { TASK_STATES } from '../shared/protocol/data.ts'
import type { TaskCounters } from './task-store.ts'
import { fieldAt, uniformShape, type TaskBlock } from '../shared/protocol/task-blocks.ts'
import type { InputWait } from './input-wait.ts'

export interface Shape { cores: number, gpus: number, memoryMb: number, timeoutMs: number, constraints: Record<string, string> }

const CODE = Object.fromEntries(TASK_STATES.map((s, i) => [s, i])) as Record<TaskState, number>

/** Tasks of one shape share one Shape object: a million tasks, a handful of shapes. */
export function shapeKey (cores: number, gpus: number, memoryMb: number, timeoutMs: number, constraints: string): string {
  return `${cores}/${gpus}/${memoryMb}/${timeoutMs}/${constraints}`
}

export function emptyCounts (): Record<TaskState, number> {
  return Object.fromEntries(TASK_STATES.map(s => [s, 0])) as Record<TaskState, number>
}

export class TaskTable {
  readonly total: number
  private readonly states: Uint8Array
  private readonly counters: Record<keyof TaskCounters, Uint8Array>
  private readonly shapeOf: Uint32Array
  readonly shapes: Shape[] = []
  private readonly shapeIds = new Map<string, number>()
  readonly affinity = new Map<number, string>()
  /** Requeued tasks, oldest first; consumed from `frontHead`. */
  private front: number[] = []
  private frontHead = 0
  private frontDropped = 0
  /** Stamp of each task's valid front entry (k > 0); 0: the task waits at the back, in index order, if queued. */
  private readonly stamp: Int32Array
  private frontCounter = 0
  /** Indexes below this are never queued at the back again (placed, held, or requeued to the front since). */
  private backHead = 0

  constructor (total: number) {
    this.total = total
    this.states = new Uint8Array(total)
    const counter = (): Uint8Array => new Uint8Array(total)
    this.counters = { attempts: counter(), crashes: counter(), vacates: counter(), retriesUsed: counter(), stagingFails: counter() }
    this.shapeOf = new Uint32Array(total)
    this.stamp = new Int32Array(total)
  }

  state (i: number): TaskState {
    return TASK_STATES[this.states[i]]
  }

  setState (i: number, s: TaskState): void {
    this.states[i] = CODE[s]
  }

  counts (i: number): TaskCounters {
    const c = this.counters
    return { attempts: c.attempts[i], crashes: c.crashes[i], vacates: c.vacates[i], retriesUsed: c.retriesUsed[i], stagingFails: c.stagingFails[i] }
  }

  setCounts (i: number, v: TaskCounters): void {
    for (const k of Object.keys(this.counters) as Array<keyof TaskCounters>) this.counters[k][i] = Math.min(255, v[k])
  }

  bump (i: number, k: keyof TaskCounters): number {
    const n = Math.min(255, this.counters[k][i] + 1)
    this.counters[k][i] = n
    return n
  }

  private shapeId (shape: Shape, key: string): number {
    let id = this.shapeIds.get(key)
    if (id == null) {
      id = this.shapes.push(shape) - 1
      this.shapeIds.set(key, id)
    }
    return id
  }

  setShape (i: number, shape: Shape, key: string): void {
    this.shapeOf[i] = this.shapeId(shape, key)
  }

  /** One shape for `count` tasks from `first` (a block whose tasks all ask for the same). */
  setShapeRange (first: number, count: number, shape: Shape, key: string): void {
    this.shapeOf.fill(this.shapeId(shape, key), first, first + count)
  }

  shape (i: number): Shape {
    return this.shapes[this.shapeOf[i]]
  }

  /** Puts a requeued (or released) task at the front of the queue. */
  enqueueFront (i: number): void {
    this.stamp[i] = ++this.frontCounter
    this.front.push(i)
  }

  /** Queued tasks in queue order (requeued ones first); compacts the consumed heads as it goes. */
  * queued (): Generator<number> {
    const validFront = (k: number): boolean => this.states[this.front[k]] === CODE.queued && this.stamp[this.front[k]] === this.frontDropped + k + 1
    while (this.frontHead < this.front.length && !validFront(this.frontHead)) this.frontHead++
    this.compact()
    for (let k = this.frontHead; k < this.front.length; k++) if (validFront(k)) yield this.front[k]
    const queued = CODE.queued
    while (this.backHead < this.total && (this.states[this.backHead] !== queued || this.stamp[this.backHead] !== 0)) this.backHead++
    for (let i = this.backHead; i < this.total; i++) if (this.states[i] === queued && this.stamp[i] === 0) yield i
  }

  private compact (): void {
    if (this.frontHead > 1024 && this.frontHead * 2 > this.front.length) {
      this.front = this.front.slice(this.frontHead)
      this.frontDropped += this.frontHead
      this.frontHead = 0
    }
  }
}

/** Constraints as a canonical string: equal constraint sets give equal keys (used for shapes). */
export function constraintKey (constraints: Record<string, string>): string {
  const keys = Object.keys(constraints).sort()
  return keys.length === 0 ? '' : JSON.stringify(keys.map(k => [k, constraints[k]]))
}

/** The demand shapes and affinity keys of a block's tasks, into the job's table. */
export function addBlock (t: TaskTable, b: TaskBlock): void {
  const shapeAt = (i: number): [Shape, string] => {
    const shape: Shape = { cores: fieldAt(b, 'cores', i)!, gpus: fieldAt(b, 'gpus', i)!, memoryMb: fieldAt(b, 'memoryMb', i)!, timeoutMs: fieldAt(b, 'timeoutMs', i)!, constraints: fieldAt(b, 'constraints', i)! }
    return [shape, shapeKey(shape.cores, shape.gpus, shape.memoryMb, shape.timeoutMs, constraintKey(shape.constraints))]
  }
  if (uniformShape(b)) t.setShapeRange(b.first, b.count, ...shapeAt(b.first))
  else for (let i = b.first; i < b.first + b.count; i++) t.setShape(i, ...shapeAt(i))
  if (b.base.affinity == null && b.cols.affinity == null) return
  for (let i = b.first; i < b.first + b.count; i++) {
    const a = fieldAt(b, 'affinity', i)
    if (a != null && a !== '') t.affinity.set(i, a)
  }
}

export interface JobRuntime {
  id: number
  owner: string
  header: JobHeader
  submittedAt: number
  total: number
  state: JobState
  held: boolean
  counts: Record<TaskState, number>
  /** Absent for finished jobs. */
  tasks?: TaskTable
  /** Tasks whose files are still on their way from the submitter (`inputsToFollow`); absent when none wait. */
  inputs?: InputWait
  cancelRequested: boolean
  /**
   * What the summary of the ended job names (its first failed tasks, its first missing outputs), gathered as its
   * tasks are committed; absent for a job submitted before a restart (read back from its records then).
   */
  notes?: EndNotes
}

export interface EndNotes {
  failures: Array<{ index: number, name: string, exitCode: number | null, message: string }>
  missingOutputs: Array<{ index: number, name: string, missing: string[] }>
}

/** Failed tasks (and tasks with missing outputs) named in a finished job's summary. */
export const SUMMARY_NOTES = 5
