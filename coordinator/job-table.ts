/**
 * An active job's tasks in memory: state, counters and demand shape per task in typed arrays (a million tasks
 * cost a few MB), and the queue of tasks waiting to be placed. Requeued tasks go to the FRONT of the queue: a
 * task that lost its agent has waited once already. Queue entries are dropped lazily: each task remembers the
 * stamp of its one valid entry, so a task requeued twice never runs twice.
 */
import type { JobHeader, JobState, TaskState } from '../shared/protocol/data.ts'
import { TASK_STATES } from '../shared/protocol/data.ts'
import type { TaskCounters } from './store.ts'

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
  /** Tasks in submission order; consumed from `backHead`. */
  private back: number[] = []
  private backHead = 0
  private backDropped = 0
  /** Stamp of each task's valid queue entry: >= 0 a back position, < 0 a front position; NaN none. */
  private readonly stamp: Float64Array
  private frontCounter = 0

  constructor (total: number) {
    this.total = total
    this.states = new Uint8Array(total)
    const counter = (): Uint8Array => new Uint8Array(total)
    this.counters = { attempts: counter(), crashes: counter(), vacates: counter(), retriesUsed: counter(), stagingFails: counter() }
    this.shapeOf = new Uint32Array(total)
    this.stamp = new Float64Array(total).fill(NaN)
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

  setShape (i: number, shape: Shape, key: string): void {
    let id = this.shapeIds.get(key)
    if (id == null) {
      id = this.shapes.push(shape) - 1
      this.shapeIds.set(key, id)
    }
    this.shapeOf[i] = id
  }

  shape (i: number): Shape {
    return this.shapes[this.shapeOf[i]]
  }

  /** Puts a task at the back (new) or the front (requeued) of the queue. */
  enqueue (i: number, where: 'back' | 'front'): void {
    if (where === 'back') {
      this.stamp[i] = this.backDropped + this.back.length
      this.back.push(i)
    } else {
      this.stamp[i] = -(++this.frontCounter)
      this.front.push(i)
    }
  }

  /** Queued tasks in queue order (requeued ones first); compacts the consumed heads as it goes. */
  * queued (): Generator<number> {
    const validFront = (k: number): boolean => this.states[this.front[k]] === CODE.queued && this.stamp[this.front[k]] === -(this.frontDropped + k + 1)
    while (this.frontHead < this.front.length && !validFront(this.frontHead)) this.frontHead++
    for (let k = this.frontHead; k < this.front.length; k++) if (validFront(k)) yield this.front[k]
    const validBack = (k: number): boolean => this.states[this.back[k]] === CODE.queued && this.stamp[this.back[k]] === this.backDropped + k
    while (this.backHead < this.back.length && !validBack(this.backHead)) this.backHead++
    this.compact()
    for (let k = this.backHead; k < this.back.length; k++) if (validBack(k)) yield this.back[k]
  }

  private compact (): void {
    if (this.backHead > 4096 && this.backHead * 2 > this.back.length) {
      this.back = this.back.slice(this.backHead)
      this.backDropped += this.backHead
      this.backHead = 0
    }
    if (this.frontHead > 1024 && this.frontHead * 2 > this.front.length) {
      this.front = this.front.slice(this.frontHead)
      this.frontDropped += this.frontHead
      this.frontHead = 0
    }
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
  cancelRequested: boolean
}
