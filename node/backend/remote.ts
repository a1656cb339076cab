/**
 * Backends whose tasks run elsewhere (a batch system's nodes) in place of the local launchers: what the agent
 * needs from one (RemoteRunner), and the isolation such an agent reports. The agent-side sandbox does not apply
 * there; the tasks get what the batch system gives, which is the submitting user's account and nothing more.
 */
import type { Assignment, CoordMessage } from '../../shared/protocol/messages.ts'
import { MeshfarmError } from '../../shared/util/errors.ts'
import type { Isolation } from './launch-plan.ts'
import type { TaskBackend } from './backend.ts'
import type { AgentPaths } from '../work-dir.ts'

export interface RemoteContext {
  paths: AgentPaths
  /** The agent's peer id (a bridge names its batch jobs after it). */
  peerId: string
  /** Attempts whose results wait in the outbox: finished, not to be adopted again. */
  pending: ReadonlySet<number>
  log: (line: string) => void
}

export interface RemoteRunner {
  /** The start line that replaces the isolation probe's. */
  isolationLine: string
  /** Builds the backend; `adopted` are attempts it still runs from before a restart (held, not counted as crashes). */
  create: (ctx: RemoteContext) => Promise<{ backend: TaskBackend, adopted: Assignment[] }>
  /** Coordinator messages meant for the backend's policy (coord.backlog), before the reactor sees them. */
  onMessage?: (msg: CoordMessage) => void
}

/**
 * The isolation of an agent whose tasks run remotely: none of ours. Refused on the coordinator's own state folder,
 * whose keys the tasks could read there; a bridge elsewhere starts without the local first-machine refusal.
 */
export function remoteIsolation (sharesCoordinatorState: boolean, home: string): Isolation {
  if (sharesCoordinatorState) {
    throw new MeshfarmError('FORBIDDEN', `${home} is the coordinator's state folder: tasks run by a batch system run as your user and could read the mesh's keys there; give the bridge a state folder of its own (meshfarm --home DIR join ...)`)
  }
  return { mode: 'none', mounts: null, userns: false, hide: [], slotUsers: null, bwrap: null, inputs: 'link', shared: 'link' }
}
