/**
 * The task state machine: the states (data.ts), the events that move a task between them, and ONE table
 * (state, event) -> state. The core applies every change through `transition`, which refuses an illegal one, so
 * a task can never be committed twice, run while held, or leave a terminal state.
 *
 *   queued ──place──> staging ──start──> running ──suspend──> suspended ──continue──> running
 *     │  ^                │                 │                    │
 *     │  └── retry / vacate / preempt / lose (back to the queue, at its front) ──────┘
 *     ├──hold──> held ──release──> queued
 *     └──reclaim──> running   (an agent thought lost comes back still running the task)
 *   staging | running | suspended ──finish──> done, ──fail──> failed;  any non-terminal ──cancel──> cancelled
 *
 * Which of the returns to the queue count against the task is the core's business (core.ts): `retry` uses one
 * of the job's retries, `lose` may count as a crash, `vacate` (owner came back, agent drained or stopped,
 * allocation ended) and `preempt` (a batch system took the task back) never count.
 */
import type { TaskState } from '../shared/protocol/data.ts'
import { MeshfarmError } from '../shared/util/errors.ts'

export type TaskEvent =
  | 'place' | 'start' | 'suspend' | 'continue' | 'finish' | 'fail' | 'retry' | 'vacate' | 'preempt' | 'lose'
  | 'reclaim' | 'cancel' | 'hold' | 'release'

export const TASK_EVENTS: readonly TaskEvent[] = [
  'place', 'start', 'suspend', 'continue', 'finish', 'fail', 'retry', 'vacate', 'preempt', 'lose', 'reclaim',
  'cancel', 'hold', 'release'
]

/** Events that end an attempt and put its task back in the queue. */
const BACK_TO_QUEUE = { retry: 'queued', vacate: 'queued', preempt: 'queued', lose: 'queued' } as const
/** Events that end a task for good. */
const ENDINGS = { finish: 'done', fail: 'failed', cancel: 'cancelled' } as const

export const TRANSITIONS: Readonly<Record<TaskState, Readonly<Partial<Record<TaskEvent, TaskState>>>>> = {
  // A queued task may still finish or fail: an attempt of an agent thought lost can deliver its result before
  // the task has run anywhere else (its result is accepted, not thrown away).
  queued: { place: 'staging', hold: 'held', reclaim: 'running', ...ENDINGS },
  held: { release: 'queued', cancel: 'cancelled' },
  // A short task may finish before its started notice arrives (agents skip it when the result is ready).
  staging: { start: 'running', ...BACK_TO_QUEUE, ...ENDINGS },
  running: { suspend: 'suspended', ...BACK_TO_QUEUE, ...ENDINGS },
  suspended: { continue: 'running', ...BACK_TO_QUEUE, ...ENDINGS },
  done: {},
  failed: {},
  cancelled: {}
}

/** The state after `event`, or throws INTERNAL-style PROTOCOL error naming the illegal transition. */
export function transition (state: TaskState, event: TaskEvent): TaskState {
  const next = TRANSITIONS[state][event]
  if (next == null) throw new IllegalTransition(state, event)
  return next
}

/** Whether `event` may happen to a task in `state`. */
export function allowed (state: TaskState, event: TaskEvent): boolean {
  return TRANSITIONS[state][event] != null
}

export class IllegalTransition extends MeshfarmError {
  readonly state: TaskState
  readonly event: TaskEvent
  constructor (state: TaskState, event: TaskEvent) {
    super('INTERNAL', `illegal task transition: ${event} in state ${state}`)
    this.state = state
    this.event = event
  }
}

/** States in which a task holds an attempt on some agent. */
export const IN_FLIGHT: ReadonlySet<TaskState> = new Set(['staging', 'running', 'suspended'])
