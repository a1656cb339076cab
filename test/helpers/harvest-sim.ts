/**
 * A scripted agent for harvest policy tests: holds tasks, applies the policy's decisions to them the way the
 * agent's backend would (suspend -> suspended, continue -> running, vacate -> gone), and keeps a log.
 * No processes, no clock: every tick names its time.
 */
import { decideHarvest, initialHarvestState, applyOwnerCommand, type HarvestOutcome, type HarvestState, type OwnerCommand, type TaskView, type HarvestInput } from '../../node/harvest/policy.ts'
import type { HarvestConfig } from '../../node/harvest/config.ts'
import type { Observation } from '../../node/harvest/types.ts'

export const MIN = 60_000

export interface ObsSpec {
  idleMs?: number | null
  from?: string
  blind?: string[]
  sessions?: number | null
  load?: number | null
  gpuProcs?: number | null
  /** When the readings were taken, if not at the tick's time. */
  at?: number
}

export function observe (now: number, o: ObsSpec = {}): Observation {
  return {
    at: o.at ?? now,
    input: { idleMs: o.idleMs === undefined ? 30 * MIN : o.idleMs, from: o.from ?? 'pts/1 (tty atime)', blind: o.blind ?? [], sessions: o.sessions === undefined ? 1 : o.sessions },
    loadNotOurs: o.load === undefined ? 0.05 : o.load,
    foreignGpu: o.gpuProcs == null ? null : { processes: o.gpuProcs, memoryMb: o.gpuProcs * 512 },
    details: []
  }
}

export type Decide = (input: HarvestInput, cfg: HarvestConfig, state: HarvestState, now: number) => HarvestOutcome

export class HarvestSim {
  tasks: TaskView[] = []
  state: HarvestState
  last!: HarvestOutcome
  readonly vacated: Array<{ id: string, at: number, why: string }> = []
  readonly suspendedSince = new Map<string, number>()
  private nextId = 1

  readonly cfg: HarvestConfig
  readonly decide: Decide

  constructor (cfg: HarvestConfig, start: number, decide: Decide = decideHarvest) {
    this.cfg = cfg
    this.decide = decide
    this.state = initialHarvestState(start)
  }

  command (cmd: OwnerCommand, now: number): void {
    this.state = applyOwnerCommand(this.state, cmd, now)
  }

  /** One policy pass at `now`, its decisions applied. */
  tick (now: number, obs: ObsSpec = {}): HarvestOutcome {
    const out = this.decide({ observation: observe(now, obs), tasks: this.tasks.map(t => ({ ...t })) }, this.cfg, this.state, now)
    this.state = out.state
    for (const d of out.decisions) {
      const t = this.tasks.find(x => x.id === d.taskId)
      if (t == null) throw new Error(`decision for a task the agent does not hold: ${JSON.stringify(d)}`)
      if (d.op === 'suspend' && t.state === 'running') { t.state = 'suspended'; this.suspendedSince.set(t.id, now) }
      if (d.op === 'continue' && t.state === 'suspended') { t.state = 'running'; this.suspendedSince.delete(t.id) }
      if (d.op === 'vacate') {
        this.tasks = this.tasks.filter(x => x !== t)
        this.suspendedSince.delete(t.id)
        this.vacated.push({ id: t.id, at: now, why: d.why })
      }
    }
    this.last = out
    return out
  }

  /** Starts a task if the last pass accepted one of its kind; returns its id, or null. */
  offer (gpu = false): string | null {
    if (!this.last.accept.cpu || (gpu && !this.last.accept.gpu)) return null
    const id = `t${this.nextId++}`
    this.tasks.push({ id, gpu, state: 'running' })
    return id
  }

  finish (id: string): void {
    this.tasks = this.tasks.filter(t => t.id !== id)
    this.suspendedSince.delete(id)
  }

  states (): string {
    return this.tasks.map(t => `${t.id}${t.gpu ? '(gpu)' : ''}:${t.state}`).join(' ')
  }
}
