/**
 * The task timeline (a Gantt chart per host) as an SVG string: one pure function shared by the dashboard
 * (served at /api/jobs/:id/timeline.svg) and `meshfarm report` (written as SVG and PNG), so both draw the same.
 * One `<rect class="bar ...">` per task attempt on its host's row; concurrent attempts stack in lanes. A task's
 * earlier attempts (retried, lost or vacated: attempts.ts derives them from the event stream) are drawn faded,
 * with the class `bar-earlier`, so "one bar per task" still holds for the bars without it.
 * Outcomes differ in colour (Okabe-Ito, safe for colour-blind readers) and also in fill pattern, and the
 * legend names them, so the picture reads without colour. Every text from outside is escaped.
 */
import type { TaskRecord } from '../protocol/messages.ts'

export type BarOutcome = 'done' | 'failed' | 'cancelled' | 'lost' | 'running' | 'suspended'

export interface TimelineBar {
  host: string
  /** Task index within the job. */
  index: number
  name: string
  /** Milliseconds since the epoch. */
  start: number
  /** null while it runs: drawn up to `now`. */
  end: number | null
  outcome: BarOutcome
  /** An attempt before the task's last one. */
  earlier?: boolean
}

export interface TimelineOptions {
  /** Where running bars end; also the right edge while a job runs. */
  now: number
  title?: string
  /** Width in pixels (default 960). */
  width?: number
  /** Bars drawn at most, the earliest first (default 20000); the picture says how many were left out. */
  maxBars?: number
}

export const OUTCOMES: readonly BarOutcome[] = ['done', 'failed', 'lost', 'cancelled', 'running', 'suspended']

export const OUTCOME_COLOURS: Record<BarOutcome, string> = {
  done: '#0072B2',
  failed: '#D55E00',
  lost: '#CC79A7',
  cancelled: '#999999',
  running: '#E69F00',
  suspended: '#56B4E9'
}

// Fills: solid for done, hatched for failed, dotted for lost, light for cancelled, striped for running,
// lined for suspended (frozen while a desktop's owner is back).
const FILLS: Record<BarOutcome, string> = {
  done: OUTCOME_COLOURS.done,
  failed: 'url(#p-failed)',
  lost: 'url(#p-lost)',
  cancelled: 'url(#p-cancelled)',
  running: 'url(#p-running)',
  suspended: 'url(#p-suspended)'
}

const PATTERNS = [
  `<pattern id="p-failed" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="${OUTCOME_COLOURS.failed}"/><line x1="0" y1="0" x2="0" y2="6" stroke="#ffffff" stroke-width="1.5"/></pattern>`,
  `<pattern id="p-lost" width="5" height="5" patternUnits="userSpaceOnUse"><rect width="5" height="5" fill="${OUTCOME_COLOURS.lost}"/><circle cx="2.5" cy="2.5" r="1" fill="#ffffff"/></pattern>`,
  `<pattern id="p-cancelled" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(-45)"><rect width="6" height="6" fill="${OUTCOME_COLOURS.cancelled}"/><line x1="0" y1="0" x2="0" y2="6" stroke="#dddddd" stroke-width="3"/></pattern>`,
  `<pattern id="p-running" width="8" height="8" patternUnits="userSpaceOnUse"><rect width="8" height="8" fill="${OUTCOME_COLOURS.running}"/><rect width="4" height="8" fill="#f3c46b"/></pattern>`,
  `<pattern id="p-suspended" width="6" height="6" patternUnits="userSpaceOnUse"><rect width="6" height="6" fill="${OUTCOME_COLOURS.suspended}"/><rect width="6" height="2" fill="#ffffff"/></pattern>`
].join('')

/** Text safe inside XML content and attribute values; characters XML 1.0 forbids are dropped. */
export function escapeXml (s: string): string {
  return s.replace(/[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/g, '')
    .replace(/[&<>"']/g, ch => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[ch]!)
}

function outcomeOf (r: TaskRecord): BarOutcome | null {
  if (r.state === 'done') return 'done'
  if (r.state === 'failed') return r.failure?.kind === 'agent-lost' || r.failure?.kind === 'crash-limit' ? 'lost' : 'failed'
  if (r.state === 'cancelled') return 'cancelled'
  if (r.state === 'running' || r.state === 'staging') return 'running'
  if (r.state === 'suspended') return 'suspended'
  return null
}

/** The bars of a job's task records: each record's latest attempt that started on a host. */
export function barsFromRecords (records: readonly TaskRecord[]): TimelineBar[] {
  const bars: TimelineBar[] = []
  for (const r of records) {
    const outcome = outcomeOf(r)
    const start = r.start != null ? Date.parse(r.start) : NaN
    if (outcome == null || r.host == null || !Number.isFinite(start)) continue
    const endMs = r.end != null ? Date.parse(r.end) : NaN
    const end = outcome === 'running' || outcome === 'suspended' ? null : (Number.isFinite(endMs) ? Math.max(endMs, start) : start + (r.durationMs ?? 0))
    bars.push({ host: r.host, index: r.index, name: r.name, start, end, outcome })
  }
  return bars
}

/** Lanes for overlapping intervals (greedy by start): lane[i] for bars[i], and how many lanes. */
export function assignLanes (intervals: ReadonlyArray<{ start: number, end: number }>): { lane: number[], lanes: number } {
  const order = intervals.map((_, i) => i).sort((a, b) => intervals[a].start - intervals[b].start || intervals[a].end - intervals[b].end)
  const laneEnds: number[] = []
  const lane = new Array<number>(intervals.length)
  for (const i of order) {
    const { start, end } = intervals[i]
    let l = laneEnds.findIndex(e => e <= start)
    if (l < 0) { l = laneEnds.length; laneEnds.push(end) } else laneEnds[l] = end
    lane[i] = l
  }
  return { lane, lanes: laneEnds.length }
}

const STEPS_MS = [100, 200, 500, 1000, 2000, 5000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000,
  900_000, 1_800_000, 3_600_000, 7_200_000, 10_800_000, 21_600_000, 43_200_000, 86_400_000, 172_800_000, 604_800_000]

/** A tick step that gives at most `maxTicks` intervals over the span. */
export function tickStep (spanMs: number, maxTicks = 8): number {
  return STEPS_MS.find(s => spanMs / s <= maxTicks) ?? Math.ceil(spanMs / maxTicks / 86_400_000) * 86_400_000
}

/** A time offset as people read it on an axis: 0s, 0.5s, 45s, 2m, 2m30s, 1h05m, 2d. */
export function formatOffset (ms: number): string {
  if (ms === 0) return '0s'
  if (ms < 1000) return `${(ms / 1000).toFixed(1)}s`
  const s = Math.round(ms / 1000)
  if (s < 60) return `${s}s`
  const d = Math.floor(s / 86_400)
  const h = Math.floor((s % 86_400) / 3600)
  const m = Math.floor((s % 3600) / 60)
  const sec = s % 60
  if (d > 0) return h > 0 ? `${d}d${h}h` : `${d}d`
  if (h > 0) return m > 0 ? `${h}h${String(m).padStart(2, '0')}m` : `${h}h`
  return sec > 0 ? `${m}m${String(sec).padStart(2, '0')}s` : `${m}m`
}

function clip (s: string, max: number): string {
  return s.length <= max ? s : s.slice(0, max - 1) + '…'
}

function num (n: number): string {
  return String(Math.round(n * 10) / 10)
}

const FONT = 'font-family="DejaVu Sans, Liberation Sans, Arial, sans-serif"'

export function renderTimelineSvg (allBars: readonly TimelineBar[], opts: TimelineOptions): string {
  const width = Math.max(320, Math.min(opts.width ?? 960, 8000))
  const maxBars = opts.maxBars ?? 20_000
  const sorted = [...allBars].sort((a, b) => a.start - b.start || a.index - b.index)
  const bars = sorted.slice(0, maxBars)
  const endOf = (b: TimelineBar): number => Math.max(b.start, b.end ?? opts.now)
  const title = escapeXml(clip(opts.title ?? 'task timeline', 120))

  const counts = new Map<BarOutcome, number>()
  for (const b of bars) counts.set(b.outcome, (counts.get(b.outcome) ?? 0) + 1)
  const legend = OUTCOMES.map((o, i) => {
    const x = 10 + i * 120
    return `<g class="legend-item" data-outcome="${o}"><rect x="${x}" y="28" width="14" height="12" fill="${FILLS[o]}" stroke="#333333" stroke-width="0.5"/>` +
      `<text x="${x + 19}" y="38.5" font-size="11" ${FONT} fill="#222222">${o} (${counts.get(o) ?? 0})</text></g>`
  }).join('')

  const head = `<svg xmlns="http://www.w3.org/2000/svg" class="timeline" role="img" aria-label="${title}"`
  if (bars.length === 0) {
    const h = 90
    return `${head} width="${width}" height="${h}" viewBox="0 0 ${width} ${h}"><title>${title}</title><defs>${PATTERNS}</defs>` +
      `<rect width="${width}" height="${h}" fill="#ffffff"/><text x="10" y="18" font-size="13" font-weight="bold" ${FONT} fill="#111111">${title}</text>${legend}` +
      `<text x="10" y="70" font-size="12" ${FONT} fill="#444444">no task has started yet</text></svg>`
  }

  const t0 = bars[0].start
  const t1 = Math.max(...bars.map(endOf), t0 + 1)
  const span = t1 - t0

  // Rows: one per host (sorted by name), as tall as the host's most concurrent attempts.
  const hosts = [...new Set(bars.map(b => b.host))].sort()
  const byHost = new Map(hosts.map(h => [h, [] as number[]]))
  bars.forEach((b, i) => byHost.get(b.host)!.push(i))
  const laneOf = new Array<number>(bars.length)
  const rows = hosts.map(h => {
    const idx = byHost.get(h)!
    const { lane, lanes } = assignLanes(idx.map(i => ({ start: bars[i].start, end: endOf(bars[i]) })))
    idx.forEach((i, k) => { laneOf[i] = lane[k] })
    return { host: h, lanes }
  })
  const hostLabel = (h: string): string => clip(h, 28)
  const left = Math.min(220, Math.max(80, 14 + 7 * Math.max(...hosts.map(h => hostLabel(h).length))))
  const right = 16
  const plotW = width - left - right
  const axisY = 64
  const rowPad = 4
  let y = axisY + 6
  const rowY = new Map<string, { y: number, laneH: number, h: number }>()
  for (const r of rows) {
    const laneH = r.lanes <= 8 ? 12 : Math.max(2, Math.floor(96 / r.lanes))
    const h = r.lanes * laneH + 2 * rowPad
    rowY.set(r.host, { y, laneH, h })
    y += h
  }
  const footerY = y + 18
  const height = footerY + (sorted.length > bars.length ? 18 : 4)
  const xOf = (t: number): number => left + ((t - t0) / span) * plotW

  const parts: string[] = []
  parts.push(`${head} width="${width}" height="${height}" viewBox="0 0 ${width} ${height}"><title>${title}</title><defs>${PATTERNS}</defs>`)
  parts.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`)
  parts.push(`<text x="10" y="18" font-size="13" font-weight="bold" ${FONT} fill="#111111">${title}</text>${legend}`)
  rows.forEach((r, i) => {
    const ry = rowY.get(r.host)!
    if (i % 2 === 0) parts.push(`<rect x="0" y="${ry.y}" width="${width}" height="${ry.h}" fill="#f2f2f2"/>`)
    parts.push(`<text class="host" x="${left - 8}" y="${num(ry.y + ry.h / 2 + 4)}" text-anchor="end" font-size="11" ${FONT} fill="#111111">${escapeXml(hostLabel(r.host))}</text>`)
  })
  const step = tickStep(span)
  for (let t = 0; t <= span; t += step) {
    const x = num(xOf(t0 + t))
    parts.push(`<line x1="${x}" y1="${axisY}" x2="${x}" y2="${y}" stroke="#cccccc" stroke-width="1"/>`)
    parts.push(`<text class="tick" x="${x}" y="${axisY - 4}" text-anchor="middle" font-size="10" ${FONT} fill="#333333">${formatOffset(t)}</text>`)
  }
  parts.push(`<line x1="${left}" y1="${axisY}" x2="${width - right}" y2="${axisY}" stroke="#666666" stroke-width="1"/>`)
  bars.forEach((b, i) => {
    const ry = rowY.get(b.host)!
    const x = xOf(b.start)
    const w = Math.max(1, xOf(endOf(b)) - x)
    const by = ry.y + rowPad + laneOf[i] * ry.laneH
    const bh = Math.max(1, ry.laneH - (ry.laneH > 4 ? 2 : 0))
    const secs = ((endOf(b) - b.start) / 1000).toFixed(2)
    const tip = escapeXml(`task ${b.index} ${clip(b.name, 80)} on ${clip(b.host, 80)}: ${b.earlier === true ? 'earlier attempt, ' : ''}${b.outcome}, ${secs} s`)
    const cls = `bar bar-${b.outcome}${b.earlier === true ? ' bar-earlier' : ''}`
    const faded = b.earlier === true ? ' opacity="0.5"' : ''
    parts.push(`<rect class="${cls}" data-task="${b.index}" x="${num(x)}" y="${by}" width="${num(w)}" height="${bh}" fill="${FILLS[b.outcome]}"${faded}><title>${tip}</title></rect>`)
  })
  const started = new Date(t0).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC')
  const earlierCount = bars.filter(b => b.earlier === true).length
  const earlierNote = earlierCount > 0 ? ` (${earlierCount} earlier, faded)` : ''
  parts.push(`<text x="${left}" y="${footerY - 2}" font-size="10" ${FONT} fill="#444444">time since the first start (${started}); ${hosts.length} host${hosts.length === 1 ? '' : 's'}, ${bars.length} attempt${bars.length === 1 ? '' : 's'}${earlierNote}</text>`)
  if (sorted.length > bars.length) {
    parts.push(`<text x="${left}" y="${footerY + 14}" font-size="10" ${FONT} fill="#444444">showing the first ${bars.length} of ${sorted.length} attempts</text>`)
  }
  parts.push('</svg>')
  return parts.join('')
}
