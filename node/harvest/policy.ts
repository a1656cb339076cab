/**
 * The harvest policy: a synchronous, pure function of (observation, tasks, config, state, now). No clock, no I/O.
 *
 * HTCondor's desktop policy, in meshfarm's words. The machine is in one of four modes:
 *   owner     (HTCondor Owner)              not lent: the owner is present, not idle long enough, or unknown
 *   lending   (Unclaimed / Claimed-Busy)    tasks may start and run
 *   suspended (Claimed-Suspended)           the owner came back: tasks frozen, nothing new taken
 *   vacating  (Preempting-Vacating)         tasks told to stop and go elsewhere (not a crash, no retry used)
 * Owner present = input within keyboardBusyMs, or owner load >= highLoad for highLoadMs. Tasks start after
 * startIdleMs of idleness with owner load <= backgroundLoad, continue after continueIdleMs, and are vacated when
 * suspended maxSuspendMs. GPU tasks are vacated instead of suspended (a stopped process keeps its GPU memory).
 * Unknown presence is not idle. Decisions are level-triggered: a suspend that did not take is asked again.
 */
import type { HarvestConfig } from './config.ts'
import type { Observation } from './types.ts'
import { formatDuration } from './format.ts'

export type HarvestMode = 'owner' | 'lending' | 'suspended' | 'vacating'

export type OwnerControl =
  | { mode: 'default' }
  | { mode: 'lend', untilMs: number | null, label: string | null, at: number }
  | { mode: 'never', at: number }

/** What `meshfarm lend|reclaim` send. `lend` with untilMs null lends until the owner says otherwise. */
export type OwnerCommand =
  | { op: 'lend', untilMs: number | null, label?: string | null }
  | { op: 'reclaim' }
  | { op: 'never' }
  | { op: 'default' }

export interface HarvestState {
  mode: HarvestMode
  modeSince: number
  control: OwnerControl
  /** `reclaim` counts as input at this instant (the owner is here, whatever the sources see). */
  reclaimedAt: number | null
  /** Start of the current stretch of owner load >= highLoad. */
  loadHighSince: number | null
  /** Per task: when its current suspension began (first suspend asked). */
  suspendedAt: Record<string, number>
  /** Tasks told to vacate, and when: told nothing else again. */
  vacating: Record<string, number>
}

/** A task as the agent sees it now. */
export interface TaskView { id: string, gpu: boolean, state: 'running' | 'suspended' }

export type HarvestDecision =
  | { op: 'suspend', taskId: string }
  | { op: 'continue', taskId: string }
  | { op: 'vacate', taskId: string, why: string }

/** What the agent sends the coordinator for `peers` and `why`, and shows in `status --here`. */
export interface HarvestSummary {
  mode: HarvestMode
  /** null when presence is unknown. */
  ownerPresent: boolean | null
  /** Last owner input seen (ms since epoch); null when unknown or nobody has logged in. */
  idleSince: number | null
  lendingUntil: number | null
  control: OwnerControl['mode']
  suspendedTasks: number
  reason: string
}

export interface HarvestOutcome {
  state: HarvestState
  decisions: HarvestDecision[]
  /** Whether to take new tasks: any (cpu), and ones that need a GPU. */
  accept: { cpu: boolean, gpu: boolean }
  reason: string
  summary: HarvestSummary
}

export interface HarvestInput { observation: Observation, tasks: readonly TaskView[] }

type Owner =
  | { kind: 'present', why: string }
  | { kind: 'away', idleMs: number, why: string }
  | { kind: 'unknown', why: string }

export function initialHarvestState (now: number): HarvestState {
  return { mode: 'owner', modeSince: now, control: { mode: 'default' }, reclaimedAt: null, loadHighSince: null, suspendedAt: {}, vacating: {} }
}

/** Applies an owner command; the next `decideHarvest` acts on it (the agent runs one at once). */
export function applyOwnerCommand (state: HarvestState, cmd: OwnerCommand, now: number): HarvestState {
  switch (cmd.op) {
    case 'lend': return { ...state, control: { mode: 'lend', untilMs: cmd.untilMs, label: cmd.label ?? null, at: now }, reclaimedAt: null }
    case 'never': return { ...state, control: { mode: 'never', at: now } }
    case 'default': return { ...state, control: { mode: 'default' } }
    case 'reclaim': return { ...state, control: state.control.mode === 'lend' ? { mode: 'default' } : state.control, reclaimedAt: now }
  }
}

const load2 = (x: number): string => x.toFixed(2)

function assessOwner (obs: Observation, cfg: HarvestConfig, state: HarvestState, now: number): Owner {
  const age = Math.max(0, now - obs.at)
  const seen = obs.input.idleMs == null ? null : obs.input.idleMs + age
  const reclaimed = state.reclaimedAt == null ? null : now - state.reclaimedAt
  if (seen != null && seen < cfg.keyboardBusyMs) return { kind: 'present', why: `keyboard used ${formatDuration(seen)} ago${obs.input.from != null ? ` (${obs.input.from})` : ''}` }
  if (reclaimed != null && reclaimed < cfg.keyboardBusyMs) return { kind: 'present', why: `reclaimed by its owner ${formatDuration(reclaimed)} ago` }
  if (state.loadHighSince != null && now - state.loadHighSince >= cfg.highLoadMs) {
    return { kind: 'present', why: `load not ours ${load2(obs.loadNotOurs ?? cfg.highLoad)} for ${formatDuration(now - state.loadHighSince)}` }
  }
  if (obs.input.blind.length > 0) {
    const more = obs.input.blind.length > 1 ? ` and ${obs.input.blind.length - 1} more` : ''
    return { kind: 'unknown', why: `cannot see ${obs.input.blind[0]}${more}` }
  }
  const cap = reclaimed ?? Infinity
  if (seen != null) return { kind: 'away', idleMs: Math.min(seen, cap), why: `idle ${formatDuration(Math.min(seen, cap))}` }
  if (obs.input.sessions === 0) return { kind: 'away', idleMs: cap, why: Number.isFinite(cap) ? `idle ${formatDuration(cap)}` : 'nobody logged in' }
  return { kind: 'unknown', why: 'no presence source can tell' }
}

function modeOf (tasks: readonly TaskView[], decisions: HarvestDecision[], vacating: Record<string, number>, acceptCpu: boolean): HarvestMode {
  if (Object.keys(vacating).length > 0) return 'vacating'
  const told = new Map(decisions.map(d => [d.taskId, d.op]))
  const after = tasks.map(t => told.get(t.id) === 'suspend' ? 'suspended' : told.get(t.id) === 'continue' ? 'running' : t.state)
  if (after.includes('suspended')) return 'suspended'
  if (acceptCpu || after.includes('running')) return 'lending'
  return 'owner'
}

/** One pass of the policy. Never mutates its inputs. */
export function decideHarvest (input: HarvestInput, cfg: HarvestConfig, prev: HarvestState, now: number): HarvestOutcome {
  const { observation: obs, tasks } = input
  const ids = new Set(tasks.map(t => t.id))
  const keep = (r: Record<string, number>): Record<string, number> => Object.fromEntries(Object.entries(r).filter(([id]) => ids.has(id)))
  let control = prev.control
  let ended = ''
  if (control.mode === 'lend' && control.untilMs != null && control.untilMs <= now) {
    ended = `; lending by its owner ended ${formatDuration(now - control.untilMs)} ago`
    control = { mode: 'default' }
  }
  const loadHighSince = obs.loadNotOurs == null ? prev.loadHighSince : obs.loadNotOurs >= cfg.highLoad ? (prev.loadHighSince ?? obs.at) : null
  const forget = prev.reclaimedAt != null && now - prev.reclaimedAt >= Math.max(cfg.startIdleMs, cfg.continueIdleMs)
  const state: HarvestState = { ...prev, control, loadHighSince, reclaimedAt: forget ? null : prev.reclaimedAt, suspendedAt: keep(prev.suspendedAt), vacating: keep(prev.vacating) }
  const owner = assessOwner(obs, cfg, state, now)
  const gpuBusy = obs.foreignGpu != null && obs.foreignGpu.processes > 0
  const loadOk = obs.loadNotOurs != null && obs.loadNotOurs <= cfg.backgroundLoad
  const decisions: HarvestDecision[] = []
  const vacate = (t: TaskView, why: string): void => { decisions.push({ op: 'vacate', taskId: t.id, why }); state.vacating[t.id] = now; delete state.suspendedAt[t.id] }
  const suspend = (t: TaskView): void => { decisions.push({ op: 'suspend', taskId: t.id }); state.suspendedAt[t.id] ??= now }
  const resume = (t: TaskView): void => { if (t.state === 'suspended') decisions.push({ op: 'continue', taskId: t.id }); delete state.suspendedAt[t.id] }

  let accept = { cpu: false, gpu: false }
  let reason: string
  for (const t of tasks) if (t.state === 'suspended' && state.vacating[t.id] == null) state.suspendedAt[t.id] ??= now
  const live = tasks.filter(t => state.vacating[t.id] == null)
  if (control.mode === 'never') {
    for (const t of live) vacate(t, 'its owner said lend --never')
    reason = 'never lent: its owner said meshfarm lend --never'
  } else if (control.mode === 'lend') {
    for (const t of live) {
      if (t.gpu && gpuBusy) vacate(t, 'a GPU is in use by another process')
      else resume(t)
    }
    accept = { cpu: true, gpu: !gpuBusy }
    reason = `lent by its owner ${control.untilMs == null ? 'until they say otherwise' : `until ${control.label ?? new Date(control.untilMs).toISOString()}`}`
  } else if (owner.kind !== 'away') {
    for (const t of live) {
      if (t.gpu) vacate(t, `GPU task: ${owner.kind === 'present' ? 'owner present' : 'presence unknown'}`)
      else if (now - (state.suspendedAt[t.id] ?? now) >= cfg.maxSuspendMs) vacate(t, `suspended ${formatDuration(now - state.suspendedAt[t.id])}`)
      else if (t.state === 'running') suspend(t)
    }
    reason = owner.kind === 'present' ? `owner present: ${owner.why}` : `presence unknown: ${owner.why}; not lent unless its owner says meshfarm lend`
  } else {
    const canStart = owner.idleMs >= cfg.startIdleMs && loadOk
    const canContinue = owner.idleMs >= cfg.continueIdleMs && loadOk
    for (const t of live) {
      if (t.gpu && gpuBusy) vacate(t, 'a GPU is in use by another process')
      else if (t.state === 'running' && state.suspendedAt[t.id] == null) continue
      else if (canContinue) resume(t)
      else if (now - state.suspendedAt[t.id] >= cfg.maxSuspendMs) vacate(t, `suspended ${formatDuration(now - state.suspendedAt[t.id])}`)
      else if (t.state === 'running') suspend(t) // a suspend that has not taken yet
    }
    accept = { cpu: canStart, gpu: canStart && !gpuBusy }
    const loadText = obs.loadNotOurs == null ? 'load not ours not measured yet' : `load not ours ${load2(obs.loadNotOurs)}`
    const waiting = live.some(t => state.suspendedAt[t.id] != null)
    if (canStart) reason = `${owner.why}, ${loadText}: lending`
    else if (!loadOk) reason = `owner away: ${owner.why}, but ${loadText} (lending at ${load2(cfg.backgroundLoad)} or less)`
    else if (waiting && !canContinue) reason = `owner away: ${owner.why}, suspended tasks continue after ${formatDuration(cfg.continueIdleMs)} idle`
    else reason = `owner away: ${owner.why}, lending after ${formatDuration(cfg.startIdleMs)} idle`
  }
  const vacated = decisions.filter(d => d.op === 'vacate').length
  const suspendedNow = live.filter(t => state.suspendedAt[t.id] != null).length
  if (vacated > 0) reason += `; vacating ${vacated} task${vacated > 1 ? 's' : ''}`
  if (suspendedNow > 0) reason += `; ${suspendedNow} task${suspendedNow > 1 ? 's' : ''} suspended, vacated after ${formatDuration(cfg.maxSuspendMs)}`
  if (gpuBusy && control.mode !== 'never') reason += '; a GPU is in use by another process: no GPU tasks'
  reason += ended

  const mode = modeOf(tasks, decisions, state.vacating, accept.cpu)
  if (mode !== prev.mode) { state.mode = mode; state.modeSince = now }
  // The last input anyone saw: the sources' or a reclaim, whichever is later.
  const seenAt = obs.input.idleMs == null || (obs.input.blind.length > 0 && owner.kind !== 'present') ? null : obs.at - obs.input.idleMs
  const lastInput = Math.max(seenAt ?? -Infinity, state.reclaimedAt ?? -Infinity)
  const summary: HarvestSummary = {
    mode,
    ownerPresent: owner.kind === 'unknown' ? null : owner.kind === 'present',
    idleSince: Number.isFinite(lastInput) ? lastInput : null,
    lendingUntil: control.mode === 'lend' ? control.untilMs : null,
    control: control.mode,
    suspendedTasks: suspendedNow,
    reason
  }
  return { state, decisions, accept, reason, summary }
}
