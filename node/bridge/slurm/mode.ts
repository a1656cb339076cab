/**
 * What each bridge mode (forward, allocation, auto) gives the bridge process (node/bridge/bridge-agent.ts): the
 * offer it starts with, the runner the agent builds its backend from, and a tick that says what changed.
 */
import type { AgentResources, CoordMessage } from '../../../shared/protocol/messages.ts'
import type { RemoteRunner } from '../../backend/remote.ts'
import type { AgentService } from '../../agent.ts'

export interface TickResult {
  /** A new offer, when it changed (a mode never sends one itself: this is the offer the bridge keeps sending). */
  resources?: AgentResources
  /** Plain-word lines for `meshfarm peers` and `why`, newest decisions first. */
  notes: string[]
}

export interface BridgeMode {
  resources: AgentResources
  runner: RemoteRunner
  /** One line for the log: what this bridge does. */
  describe: string
  /** Called once the agent runs (its reactor is what vacates and offers). */
  attach: (agent: AgentService) => void
  /** Every poll interval, never overlapping. */
  tick: (now: number) => Promise<TickResult>
  /** `meshfarm bridge resume` (auto mode). */
  resume?: () => string
  /** Resolves when the mode is over by itself (an allocation that ended). */
  ended?: Promise<void>
  close: () => Promise<void>
}

export type BacklogMessage = Extract<CoordMessage, { t: 'coord.backlog' }>
