/**
 * Fair share between the people on a mesh, as HTCondor's user priority and Slurm's fair share do: each member's
 * recent usage, in core-seconds, decays with a half-life, and the scheduler serves first whoever has the least
 * load, counting what they run now and what they used lately. One person's million-task sweep then does not
 * hold back another's ten tasks: both make progress at once. Pure: no clock, no I/O.
 */

/** How fast past usage is forgotten. HTCondor's PRIORITY_HALFLIFE defaults to a day. */
export const DEFAULT_HALF_LIFE_MS = 86_400_000

export interface UsageRecord {
  /** Core-seconds, as of `at`. */
  coreSeconds: number
  at: number
}

/** Usage decayed from `r.at` to `now`. */
export function decayed (r: UsageRecord, now: number, halfLifeMs = DEFAULT_HALF_LIFE_MS): number {
  const elapsed = Math.max(0, now - r.at)
  return r.coreSeconds * Math.pow(0.5, elapsed / halfLifeMs)
}

/** Usage after `coreSeconds` more at `now`. */
export function charged (r: UsageRecord | undefined, coreSeconds: number, now: number, halfLifeMs = DEFAULT_HALF_LIFE_MS): UsageRecord {
  const base = r == null ? 0 : decayed(r, now, halfLifeMs)
  return { coreSeconds: base + Math.max(0, coreSeconds), at: now }
}

/**
 * A member's load, in cores: what they run now, plus their decayed usage spread over one half-life (a member who
 * kept 10 cores busy for a day weighs like one running 10 cores). Lower load is served first.
 */
export function loadOf (runningCores: number, usage: UsageRecord | undefined, now: number, halfLifeMs = DEFAULT_HALF_LIFE_MS): number {
  return runningCores + (usage == null ? 0 : decayed(usage, now, halfLifeMs) / (halfLifeMs / 1000))
}

/** In-memory usage per member; the coordinator persists it now and then (it is advisory: a crash loses seconds). */
export class UsageBook {
  private readonly records = new Map<string, UsageRecord>()
  private readonly halfLifeMs: number
  private dirty = false

  constructor (halfLifeMs = DEFAULT_HALF_LIFE_MS, initial: Iterable<[string, UsageRecord]> = []) {
    this.halfLifeMs = halfLifeMs
    for (const [owner, r] of initial) this.records.set(owner, r)
  }

  charge (owner: string, coreSeconds: number, now: number): void {
    if (!(coreSeconds > 0)) return
    this.records.set(owner, charged(this.records.get(owner), coreSeconds, now, this.halfLifeMs))
    this.dirty = true
  }

  load (owner: string, runningCores: number, now: number): number {
    return loadOf(runningCores, this.records.get(owner), now, this.halfLifeMs)
  }

  usage (owner: string, now: number): number {
    const r = this.records.get(owner)
    return r == null ? 0 : decayed(r, now, this.halfLifeMs)
  }

  /** The records changed since the last call, to persist. */
  takeDirty (): Array<[string, UsageRecord]> | null {
    if (!this.dirty) return null
    this.dirty = false
    return [...this.records.entries()]
  }
}
