/**
 * Harvest thresholds, compiled once into a frozen, validated object (durations in ms). The defaults are
 * HTCondor's desktop policy: StartIdleTime 15 min, ContinueIdleTime 5 min, MaxSuspendTime 10 min,
 * KeyboardBusy = input within a minute, BackgroundLoad 0.3, HighLoad 0.5, CPU busy for 2 min suspends.
 */
import { MeshfarmError } from '../../shared/util/errors.ts'
import { parseDuration } from './format.ts'

export interface HarvestConfig {
  /** Keyboard idle this long before tasks start (HTCondor StartIdleTime). */
  readonly startIdleMs: number
  /** Keyboard idle this long before suspended tasks continue (ContinueIdleTime). */
  readonly continueIdleMs: number
  /** Input within this long means the owner is at the machine (KeyboardBusy). */
  readonly keyboardBusyMs: number
  /** A task suspended this long is vacated: stopped and requeued elsewhere (MaxSuspendTime). */
  readonly maxSuspendMs: number
  /** Owner load (cores, not ours) at or below which tasks may start or continue (BackgroundLoad). */
  readonly backgroundLoad: number
  /** Owner load at or above which the CPU counts as busy (HighLoad)... */
  readonly highLoad: number
  /** ...and busy this long means the owner is back (CpuBusyTime > 2 min). */
  readonly highLoadMs: number
}

export const DEFAULT_HARVEST_CONFIG: HarvestConfig = Object.freeze({
  startIdleMs: 15 * 60_000,
  continueIdleMs: 5 * 60_000,
  keyboardBusyMs: 60_000,
  maxSuspendMs: 10 * 60_000,
  backgroundLoad: 0.3,
  highLoad: 0.5,
  highLoadMs: 2 * 60_000
})

/** Raw values from flags or a file: durations as ms numbers or strings like "15m"; loads as numbers or strings. */
export type HarvestConfigInput = Partial<Record<keyof HarvestConfig, number | string>>

/** The flag that sets each field, so an error names what the user typed. */
export const HARVEST_FLAGS: Readonly<Record<keyof HarvestConfig, string>> = Object.freeze({
  startIdleMs: '--start-idle',
  continueIdleMs: '--continue-idle',
  keyboardBusyMs: '--keyboard-busy',
  maxSuspendMs: '--max-suspend',
  backgroundLoad: '--background-load',
  highLoad: '--high-load',
  highLoadMs: '--high-load-for'
})

const MAX_DURATION_MS = 7 * 86_400_000
const DURATIONS = ['startIdleMs', 'continueIdleMs', 'keyboardBusyMs', 'maxSuspendMs', 'highLoadMs'] as const
const LOADS = ['backgroundLoad', 'highLoad'] as const

function bad (field: keyof HarvestConfig, what: string): MeshfarmError {
  return new MeshfarmError('BAD_ARGUMENT', `${HARVEST_FLAGS[field]}: ${what}`)
}

function duration (field: keyof HarvestConfig, raw: number | string): number {
  const ms = typeof raw === 'string' ? parseDuration(raw, HARVEST_FLAGS[field]) : raw
  if (!Number.isInteger(ms) || ms < 1 || ms > MAX_DURATION_MS) throw bad(field, `expected a duration from 1 ms to 7 days, got ${JSON.stringify(raw)}`)
  return ms
}

function load (field: keyof HarvestConfig, raw: number | string): number {
  const v = typeof raw === 'string' && /^\s*\d+(\.\d+)?\s*$/.test(raw) ? Number(raw) : raw
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 4096) throw bad(field, `expected a load in cores like 0.3, got ${JSON.stringify(raw)}`)
  return v
}

/** Validates raw settings over the defaults; unknown keys and contradictions are one BAD_ARGUMENT line each. */
export function compileHarvestConfig (input: HarvestConfigInput = {}): HarvestConfig {
  for (const key of Object.keys(input)) {
    if (!(key in DEFAULT_HARVEST_CONFIG)) throw new MeshfarmError('BAD_ARGUMENT', `harvest: unknown setting ${JSON.stringify(key)} (known: ${Object.keys(DEFAULT_HARVEST_CONFIG).join(', ')})`)
  }
  const c: Record<string, number> = { ...DEFAULT_HARVEST_CONFIG }
  for (const f of DURATIONS) if (input[f] != null) c[f] = duration(f, input[f])
  for (const f of LOADS) if (input[f] != null) c[f] = load(f, input[f])
  const cfg = c as unknown as HarvestConfig
  // Starting or continuing while input is "recent" would hand the machine over while the owner is at it.
  if (cfg.startIdleMs < cfg.keyboardBusyMs) throw bad('startIdleMs', `must be at least ${HARVEST_FLAGS.keyboardBusyMs} (${cfg.keyboardBusyMs} ms)`)
  if (cfg.continueIdleMs < cfg.keyboardBusyMs) throw bad('continueIdleMs', `must be at least ${HARVEST_FLAGS.keyboardBusyMs} (${cfg.keyboardBusyMs} ms)`)
  if (cfg.backgroundLoad > cfg.highLoad) throw bad('backgroundLoad', `must not exceed ${HARVEST_FLAGS.highLoad} (${cfg.highLoad})`)
  return Object.freeze(cfg)
}

/**
 * `lend --until` values: "18:00" (today, or tomorrow once past), "2026-11-23T18:00" (ISO, local unless it says
 * Z or an offset), or a duration from now ("2h", "+90m"). Returns the instant and the label to show.
 */
export function parseLendUntil (text: string, now: number): { untilMs: number, label: string } {
  const t = text.trim()
  const clock = /^(\d{1,2}):(\d{2})(?::(\d{2}))?$/.exec(t)
  if (clock != null) {
    const [h, m, s] = [Number(clock[1]), Number(clock[2]), Number(clock[3] ?? 0)]
    if (h > 23 || m > 59 || s > 59) throw new MeshfarmError('BAD_ARGUMENT', `--until: no such time of day ${JSON.stringify(t)}`)
    const d = new Date(now)
    d.setHours(h, m, s, 0)
    let untilMs = d.getTime()
    if (untilMs <= now) { d.setDate(d.getDate() + 1); untilMs = d.getTime() }
    return { untilMs, label: t }
  }
  if (/^\d{4}-\d{2}-\d{2}/.test(t)) {
    const untilMs = Date.parse(t)
    if (!Number.isFinite(untilMs)) throw new MeshfarmError('BAD_ARGUMENT', `--until: not a date and time ${JSON.stringify(t)}`)
    if (untilMs <= now) throw new MeshfarmError('BAD_ARGUMENT', `--until: ${t} is in the past`)
    return { untilMs, label: t }
  }
  let ms: number
  try {
    ms = parseDuration(t.replace(/^\+/, ''), '--until')
  } catch {
    throw new MeshfarmError('BAD_ARGUMENT', `--until: expected a time like 18:00, a date like 2026-11-23T18:00 or a duration like 2h, got ${JSON.stringify(t)}`)
  }
  if (ms <= 0) throw new MeshfarmError('BAD_ARGUMENT', `--until: must be in the future, got ${JSON.stringify(t)}`)
  return { untilMs: now + ms, label: `+${t.replace(/^\+/, '')}` }
}
