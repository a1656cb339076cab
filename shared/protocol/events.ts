/**
 * The mesh's event stream: what happened, in commit order. The coordinator's core emits these with a sequence
 * number, the store keeps them, and every watcher (the CLI's `watch`, the dashboard, reports) reads the same
 * stream, live or after a restart, resuming after the last sequence number it saw.
 */

export type MeshEventType =
  | 'job.submitted'
  | 'job.done'
  | 'job.held'
  | 'job.released'
  | 'task.started'
  | 'task.finished'
  | 'task.failed'
  | 'task.cancelled'
  | 'task.suspended'
  | 'task.continued'
  | 'task.vacated'
  | 'task.requeued'
  | 'agent.joined'
  | 'agent.lost'
  | 'agent.draining'
  | 'agent.left'
  | 'agent.owner'

export interface MeshEvent {
  /** Strictly increasing, never reused (also across restarts). */
  seq: number
  /** Milliseconds since the epoch, when the change was committed. */
  time: number
  type: MeshEventType
  jobId?: number
  /** Task index within the job. */
  index?: number
  /** The agent's peer id. */
  agent?: string
  host?: string
  /** Event-specific details: exit code, failure kind and message, job state, owner presence, ... */
  data?: Record<string, string | number | boolean | null>
}

export const MESH_EVENT_TYPES: readonly MeshEventType[] = [
  'job.submitted', 'job.done', 'job.held', 'job.released',
  'task.started', 'task.finished', 'task.failed', 'task.cancelled', 'task.suspended', 'task.continued',
  'task.vacated', 'task.requeued',
  'agent.joined', 'agent.lost', 'agent.draining', 'agent.left', 'agent.owner'
]
