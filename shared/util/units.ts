/**
 * The one parser for sizes and the one for durations, used by job files, flags and configuration alike.
 * Sizes are binary (1K = 1024 bytes); a bare number is in the caller's default unit (job files and --memory
 * say megabytes, as ictasks and Slurm users expect). Durations are `30s`, `10m`, `2h`, `1d`, `250ms`; a bare
 * number is seconds. Every refusal is one line naming where the value came from.
 */
import { MeshfarmError, type ErrorCode } from './errors.ts'

const MiB = 1024 * 1024
const SIZE_UNITS: Record<string, number> = { b: 1, k: 1024, m: MiB, g: 1024 * MiB, t: 1024 * 1024 * MiB }
const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/** The largest size anyone can mean (64 TiB): beyond it a value is a typo, and would lose precision anyway. */
export const MAX_SIZE_BYTES = 64 * 1024 * 1024 * MiB
/** The longest duration anyone can mean (a year). */
export const MAX_DURATION_MS = 366 * 86_400_000

export interface ParseOptions {
  /** Error code for a refusal: SPEC_INVALID in job files, BAD_ARGUMENT for flags (both exit 2). */
  code?: ErrorCode
}

function show (v: unknown): string {
  const s = JSON.stringify(v) ?? String(v)
  return s.length > 60 ? `${s.slice(0, 57)}...` : s
}

/** `512M`, `2G`, `16GiB`, `1.5T`, `100K`; a bare number is in `defaultUnit`. Returns bytes. */
export function parseSize (value: unknown, where: string, defaultUnit: 'B' | 'M' = 'M', opts: ParseOptions = {}): number {
  const fail = (): never => {
    throw new MeshfarmError(opts.code ?? 'BAD_ARGUMENT', `${where}: must be a size like 512M or 2G, got ${show(value)}`)
  }
  let bytes: number
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) fail()
    bytes = value * SIZE_UNITS[defaultUnit.toLowerCase()]
  } else {
    const m = typeof value === 'string' ? /^\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:i?b)?|(b))?\s*$/i.exec(value) : null
    if (m == null) return fail()
    const unit = (m[2] ?? m[3] ?? defaultUnit).toLowerCase()
    bytes = Number(m[1]) * SIZE_UNITS[unit]
  }
  if (bytes > MAX_SIZE_BYTES) throw new MeshfarmError(opts.code ?? 'BAD_ARGUMENT', `${where}: ${show(value)} is more than 64 TiB`)
  return Math.ceil(bytes)
}

/** A size in whole megabytes (rounded up), for task demands and agent resources. */
export function parseSizeMb (value: unknown, where: string, opts: ParseOptions = {}): number {
  return Math.ceil(parseSize(value, where, 'M', opts) / MiB)
}

/** `30s`, `10m`, `2h`, `1d`, `250ms`; a bare number is seconds. Returns milliseconds. */
export function parseDuration (value: unknown, where: string, opts: ParseOptions = {}): number {
  const fail = (): never => {
    throw new MeshfarmError(opts.code ?? 'BAD_ARGUMENT', `${where}: must be a duration like 30s, 10m or 2h, got ${show(value)}`)
  }
  let ms: number
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) fail()
    ms = value * 1000
  } else {
    const m = typeof value === 'string' ? /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(value) : null
    if (m == null) return fail()
    ms = Number(m[1]) * DURATION_UNITS[m[2] ?? 's']
  }
  if (ms > MAX_DURATION_MS) throw new MeshfarmError(opts.code ?? 'BAD_ARGUMENT', `${where}: ${show(value)} is longer than a year`)
  return Math.round(ms)
}

/** A whole number within [min, max], from a flag's text or a file's number. */
export function parseWholeNumber (value: unknown, where: string, min: number, max: number, opts: ParseOptions = {}): number {
  const n = typeof value === 'string' && /^\s*-?\d+\s*$/.test(value) ? Number(value) : value
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
    throw new MeshfarmError(opts.code ?? 'BAD_ARGUMENT', `${where}: must be a whole number from ${min} to ${max}, got ${show(value)}`)
  }
  return n
}

/** Bytes as people read them: 512 B, 1.5 KiB, 2.1 GiB. */
export function formatBytes (bytes: number): string {
  if (bytes < 1024) return `${bytes} B`
  const units = ['KiB', 'MiB', 'GiB', 'TiB']
  let v = bytes / 1024
  let i = 0
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++ }
  return `${v >= 10 ? v.toFixed(0) : v.toFixed(1)} ${units[i]}`
}
