/**
 * The scheduler's view of per-agent job limits (JobHeader.perAgent): for each active job that has one, how many
 * of its attempts each agent holds now. Read-only over the core's state; the rule itself is the scheduler's.
 */
import type { PerAgentLimit } from './scheduler.ts'
import type { CoreState } from './core-state.ts'

export function perAgentLimits (s: Readonly<CoreState>): Map<number, PerAgentLimit> {
  const limits = new Map<number, { limit: number, held: Map<string, number> }>()
  for (const job of s.jobs.values()) {
    const limit = job.header.perAgent
    if (limit != null && job.state === 'active') limits.set(job.id, { limit, held: new Map() })
  }
  if (limits.size === 0) return limits
  // Every attempt an agent holds counts, staged or running (an agent runs what it holds as its slots free up).
  for (const a of s.attempts.values()) {
    const held = limits.get(a.jobId)?.held
    if (held != null) held.set(a.agent, (held.get(a.agent) ?? 0) + 1)
  }
  return limits
}
