/**
 * The agents the coordinator knows: what each offers, whether its session is up, when it was last heard from,
 * which attempts it holds, and what it says about its owner and its backend. Pure bookkeeping: no I/O, no clock
 * (callers pass `now`).
 */
import type { AgentResources, AgentStatus } from '../shared/protocol/data.ts'
import { MeshfarmError } from '../shared/util/errors.ts'
import type { SchedAgent } from './scheduler.ts'

export interface AgentRuntime {
  id: string
  resources: AgentResources
  addrs: string[]
  /** up: takes tasks; draining: finishes what it has; lost: silent past the timeout; left: drained and gone. */
  state: 'up' | 'draining' | 'lost' | 'left'
  connected: boolean
  lastSeen: number
  attempts: Set<number>
  /** What those attempts hold, kept as they come and go: a scheduling pass reads it instead of every attempt. */
  held: Held
  status?: AgentStatus
  /** Recent task run time on this agent (moving average, ms); null until a task has finished there. */
  recentTaskMs: number | null
}

export interface Held { count: number, cores: number, memoryMb: number, gpus: Map<number, number> }

export function emptyHeld (): Held {
  return { count: 0, cores: 0, memoryMb: 0, gpus: new Map() }
}

/** Adds (sign 1) or removes (-1) an attempt's share to what an agent holds. */
export function holdOn (h: Held, a: { cores: number, memoryMb: number, gpuIds: number[] }, sign: 1 | -1): void {
  h.count += sign
  h.cores += sign * a.cores
  h.memoryMb += sign * a.memoryMb
  for (const g of a.gpuIds) {
    const n = (h.gpus.get(g) ?? 0) + sign
    if (n > 0) h.gpus.set(g, n)
    else h.gpus.delete(g)
  }
}

const NO_RESOURCES: AgentResources = { hostname: '?', os: '', cores: 1, physicalCores: 0, memoryMb: 0, slots: 1, gpus: [], labels: {}, runsAsRoot: false }

/**
 * How many tasks per slot an agent holds (running plus queued at the agent). Short tasks need a deeper queue,
 * or the agent idles while its results and the next assignments cross the network; long tasks keep it shallow,
 * so the queue stays here where any agent that frees up can take it.
 */
export function queueDepth (recentTaskMs: number | null, prefetch: number): number {
  if (recentTaskMs == null || recentTaskMs >= 1000) return 1 + prefetch
  if (recentTaskMs >= 100) return Math.max(1 + prefetch, 3)
  return Math.max(1 + prefetch, 8)
}

export class AgentRegistry {
  private readonly agents = new Map<string, AgentRuntime>()

  get (id: string): AgentRuntime | undefined {
    return this.agents.get(id)
  }

  all (): IterableIterator<AgentRuntime> {
    return this.agents.values()
  }

  /** The agent with this id, created as a placeholder (not connected, no resources yet) when unknown. */
  ensure (id: string, host: string, now: number): AgentRuntime {
    let agent = this.agents.get(id)
    if (agent == null) {
      agent = { id, resources: { ...NO_RESOURCES, hostname: host }, addrs: [], state: 'up', connected: false, lastSeen: now, attempts: new Set(), held: emptyHeld(), recentTaskMs: null }
      this.agents.set(id, agent)
    }
    return agent
  }

  /** Agents connected and taking tasks. */
  * accepting (): Generator<AgentRuntime> {
    for (const a of this.agents.values()) if (a.connected && a.state === 'up') yield a
  }

  /** Agents silent for longer than `lostMs` and not yet declared lost. */
  silent (now: number, lostMs: number): AgentRuntime[] {
    return [...this.agents.values()].filter(a => (a.state === 'up' || a.state === 'draining') && now - a.lastSeen > lostMs)
  }

  /** Finds an agent by peer id, a unique prefix of it, or its host name. */
  find (query: string): AgentRuntime {
    const exact = this.agents.get(query)
    if (exact != null) return exact
    const matches = [...this.agents.values()].filter(a => a.id.startsWith(query) || a.resources.hostname === query)
    if (matches.length === 1) return matches[0]
    if (matches.length === 0) throw new MeshfarmError('NOT_FOUND', `no agent ${query} on this mesh`)
    throw new MeshfarmError('BAD_ARGUMENT', `${query} matches ${matches.length} agents: give more of the peer id`)
  }

  /** Forgets agents that left or were lost and hold nothing, so the registry does not grow without bound. */
  forgetGone (): void {
    for (const [id, a] of this.agents) if ((a.state === 'left' || a.state === 'lost') && a.attempts.size === 0 && !a.connected) this.agents.delete(id)
  }
}

/** What the scheduler sees of an agent: its free capacity, given what its attempts hold. */
export function schedView (agent: AgentRuntime, prefetch: number): SchedAgent {
  const r = agent.resources
  const depth = queueDepth(agent.recentTaskMs, prefetch)
  const h = agent.held
  const count = h.count
  const cores = r.cores * depth - h.cores
  const memory = r.memoryMb * depth - h.memoryMb
  const gpus = r.gpus.length === 0 ? [] : r.gpus.map(g => g.index).filter(g => !h.gpus.has(g))
  return {
    id: agent.id,
    hostname: r.hostname,
    labels: r.labels,
    accepting: true,
    freeSlots: r.slots * depth - count,
    idleSlots: r.slots - count,
    freeCores: cores,
    freeMemoryMb: memory,
    freeGpus: gpus.sort((x, y) => x - y),
    maxTaskMs: r.maxTaskMs,
    ...(r.backend != null && r.backend !== 'local' ? { spill: true } : {})
  }
}
