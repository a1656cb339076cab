/**
 * The harvest state in one place, for the agent's reactor: `observe` is the async edge (reads the sources with
 * meshfarm's own processes left out), `decide` the synchronous pass (the pure policy; its state kept here),
 * `command` an owner command (run `decide` right after, so it takes effect at once).
 */
import type { HarvestConfig } from './config.ts'
import { composeObservation, observe } from './compose.ts'
import { applyOwnerCommand, decideHarvest, initialHarvestState, type HarvestOutcome, type HarvestState, type OwnerCommand, type TaskView } from './policy.ts'
import type { Observation, OursSnapshot, PresenceSource } from './types.ts'

export interface HarvesterOptions {
  config: HarvestConfig
  sources: PresenceSource[]
  /** meshfarm's own processes (an OursTracker). */
  ours: { snapshot: () => Promise<OursSnapshot> }
  now: number
}

export class Harvester {
  private state: HarvestState
  private observation: Observation
  private outcome: HarvestOutcome | null = null

  private readonly o: HarvesterOptions

  constructor (o: HarvesterOptions) {
    this.o = o
    this.state = initialHarvestState(o.now)
    this.observation = composeObservation([], o.now) // nothing seen yet: unknown, so nothing is lent
  }

  /** Reads every source (bounded by a per-source timeout); the next `decide` uses it. */
  async observe (now = Date.now()): Promise<Observation> {
    this.observation = await observe(this.o.sources, await this.o.ours.snapshot(), now)
    return this.observation
  }

  /** One policy pass over the tasks the agent holds now. Synchronous. */
  decide (tasks: readonly TaskView[], now: number): HarvestOutcome {
    this.outcome = decideHarvest({ observation: this.observation, tasks }, this.o.config, this.state, now)
    this.state = this.outcome.state
    return this.outcome
  }

  command (cmd: OwnerCommand, now: number): void {
    this.state = applyOwnerCommand(this.state, cmd, now)
  }

  /** The last pass's outcome (summary, reason, accept), or null before the first. */
  get last (): HarvestOutcome | null { return this.outcome }
  get details (): string[] { return this.observation.details }
  /** When the sources were last read. */
  get observedAt (): number { return this.observation.at }
}
