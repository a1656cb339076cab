/**
 * Between the harvest policy and the agent's reactor: which attempts the policy sees, what the agent offers and
 * tells the coordinator after a pass, which taken-but-unstarted attempts go back, what `status --here` shows (all
 * pure), and `applyHarvest`, which hands one pass's outcome to the reactor (synchronous, no clock, no I/O).
 */
import type { AgentResources, AgentStatus } from '../../shared/protocol/messages.ts'
import type { AgentReactor, HeldAttempt } from '../reactor.ts'
import type { HarvestOutcome, HarvestSummary, TaskView } from './policy.ts'

export type HarvestStatus = NonNullable<AgentStatus['harvest']>
export type Accept = HarvestOutcome['accept']

/** Running attempts as the policy sees them: suspended while a suspension is open. */
export function taskViews (held: readonly HeldAttempt[]): TaskView[] {
  return held.filter(h => h.phase === 'running').map(h => ({ id: String(h.a.attemptId), gpu: h.a.gpuIds.length > 0, state: h.suspendedSince != null ? 'suspended' : 'running' }))
}

/** What the coordinator may place here: no slots while not lending, no GPUs while another process uses one. */
export function offer (base: AgentResources, accept: Accept): AgentResources {
  return { ...base, slots: accept.cpu ? base.slots : 0, gpus: accept.gpu ? base.gpus : [] }
}

export function harvestStatus (accept: Accept, s: HarvestSummary): HarvestStatus {
  return { lending: accept.cpu, ownerPresent: s.ownerPresent, idleSinceMs: s.idleSince, lendingUntil: s.lendingUntil, reason: s.reason.slice(0, 1000) }
}

/**
 * Attempts taken but not started when the machine stops lending (or a GPU is taken) go back at once, to run
 * elsewhere, rather than wait here for the owner to leave.
 */
export function handBack (held: readonly HeldAttempt[], accept: Accept): Array<{ attemptId: number, why: string }> {
  return held.filter(h => !h.stopping && (h.phase === 'staging' || h.phase === 'ready'))
    .filter(h => !accept.cpu || (h.a.gpuIds.length > 0 && !accept.gpu))
    .map(h => ({ attemptId: h.a.attemptId, why: accept.cpu ? 'harvest: a GPU is in use by another process' : 'harvest: its owner is using this machine' }))
}

export interface Sent { slots: number, gpus: number, status: HarvestStatus, at: number }

/**
 * Send agent.update? When the offer or the harvest state changes at once; when only the reason's words change
 * (it counts idle minutes), at most every `minGapMs`.
 */
export function shouldUpdate (last: Sent | null, next: Omit<Sent, 'at'>, now: number, minGapMs = 30_000): boolean {
  if (last == null) return true
  const a = last.status
  const b = next.status
  if (last.slots !== next.slots || last.gpus !== next.gpus || a.lending !== b.lending || a.ownerPresent !== b.ownerPresent || a.lendingUntil !== b.lendingUntil) return true
  return a.reason !== b.reason && now - last.at >= minGapMs
}

export interface HereTask {
  /** JOB.INDEX */
  id: string
  name: string
  /** Who submitted it (the coordinator's name for them), when the coordinator said. */
  submitter: string
  state: 'starting' | 'running' | 'suspended' | 'vacating'
  /** Since when it is in that state (ms since epoch), when known. */
  since: number | null
}

/** The attempts held here, for `status --here`. */
export function hereTasks (held: readonly HeldAttempt[], startedAt: (attemptId: number) => number | null): HereTask[] {
  return held.filter(h => h.phase !== 'collecting').map(h => ({
    id: `${h.a.jobId}.${h.a.index}`,
    name: h.a.task.name,
    submitter: h.a.owner ?? 'unknown',
    state: h.stopping ? 'vacating' : h.phase !== 'running' ? 'starting' : h.suspendedSince != null ? 'suspended' : 'running',
    since: h.suspendedSince ?? (h.phase === 'running' ? startedAt(h.a.attemptId) : null)
  }))
}

export type HarvestReactor = Pick<AgentReactor, 'suspend' | 'resume' | 'vacate' | 'updateResources' | 'state'>

/**
 * One pass's outcome through the reactor: suspend, continue and vacate as decided, hand back what has not started
 * while nothing is lent, and offer (slots, GPUs, harvest status) what the machine lends now, while the agent takes
 * work. Returns what it told (for the log) and what was last sent.
 */
export function applyHarvest (r: HarvestReactor, held: readonly HeldAttempt[], out: Pick<HarvestOutcome, 'decisions' | 'accept' | 'summary'>, base: AgentResources, last: Sent | null, now: number): { told: string[], sent: Sent | null } {
  const name = (id: number): string => { const a = held.find(h => h.a.attemptId === id)?.a; return a != null ? `${a.jobId}.${a.index}` : String(id) }
  const told: string[] = []
  for (const d of out.decisions) {
    const id = Number(d.taskId)
    if (d.op === 'suspend') r.suspend([id], now)
    else if (d.op === 'continue') r.resume([id], now)
    else r.vacate([id], 'vacate', `harvest: ${d.why}`, now)
    told.push(`${d.op} ${name(id)}`)
  }
  for (const b of handBack(held, out.accept)) {
    r.vacate([b.attemptId], 'vacate', b.why, now)
    told.push(`hand back ${name(b.attemptId)}`)
  }
  if (r.state !== 'running' && r.state !== 'connecting') return { told, sent: last }
  const resources = offer(base, out.accept)
  const next = { slots: resources.slots, gpus: resources.gpus.length, status: harvestStatus(out.accept, out.summary) }
  if (!shouldUpdate(last, next, now)) return { told, sent: last }
  r.updateResources(resources, { harvest: next.status })
  return { told, sent: { ...next, at: now } }
}
