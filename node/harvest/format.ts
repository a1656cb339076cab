/** Durations and sizes in words, and durations from flags. Pure. */
import { MeshfarmError } from '../../shared/util/errors.ts'

/** 20 s, 16 min, 1 h 5 min, 2 d 3 h. Rounded down; negative reads as 0 s. */
export function formatDuration (ms: number): string {
  if (!Number.isFinite(ms)) return 'ever'
  const s = Math.max(0, Math.floor(ms / 1000))
  if (s < 60) return `${s} s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m} min`
  const h = Math.floor(m / 60)
  if (h < 24) return m % 60 === 0 ? `${h} h` : `${h} h ${m % 60} min`
  const d = Math.floor(h / 24)
  return h % 24 === 0 ? `${d} d` : `${d} d ${h % 24} h`
}

/** 512 MiB, 2.1 GiB, 900 KiB. */
export function formatBytes (bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let v = Math.max(0, bytes)
  let i = 0
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++ }
  if (i === 0) return `${Math.round(v)} B`
  const text = v >= 10 || Number.isInteger(v) ? String(Math.round(v)) : v.toFixed(1).replace(/\.0$/, '')
  return `${text} ${units[i]}`
}

const DURATION_UNITS_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, min: 60_000, h: 3_600_000, d: 86_400_000 }

/** "15m", "90s", "1h30m", "500ms", "2 min" -> ms. A bare number is seconds. Anything else: one BAD_ARGUMENT line. */
export function parseDuration (text: string, what: string): number {
  const t = text.trim().toLowerCase()
  if (/^\d+(\.\d+)?$/.test(t)) return Math.round(Number(t) * 1000)
  const parts = [...t.matchAll(/(\d+(?:\.\d+)?)\s*(ms|min|s|m|h|d)\s*/g)]
  const joined = parts.map(p => p[0]).join('')
  if (parts.length === 0 || joined.replace(/\s+/g, '') !== t.replace(/\s+/g, '')) {
    throw new MeshfarmError('BAD_ARGUMENT', `${what}: expected a duration like 15m, 90s or 1h30m, got ${JSON.stringify(text)}`)
  }
  return Math.round(parts.reduce((ms, p) => ms + Number(p[1]) * DURATION_UNITS_MS[p[2]], 0))
}
