/**
 * The dispatch curve as a picture: tasks per second (median, with min-max bars) against the number of simulated
 * agents, on a logarithmic x axis. Pure: points in, SVG text out, so the bench writes it and a unit test reads it.
 */

export interface CurvePoint {
  agents: number
  median: number
  min: number
  max: number
}

const W = 560
const H = 320
const PAD = { left: 70, right: 20, top: 40, bottom: 50 }

const esc = (s: string): string => s.replace(/[&<>"]/g, c => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!)

/** A round step for the y axis near a fifth of `top`. */
function step (top: number): number {
  const raw = top / 5
  const p = 10 ** Math.floor(Math.log10(raw))
  return [1, 2, 5, 10].map(m => m * p).find(s => s >= raw) ?? raw
}

export function curveSvg (points: readonly CurvePoint[], title: string): string {
  const pts = points.filter(p => p.agents > 0 && Number.isFinite(p.median)).sort((a, b) => a.agents - b.agents)
  const lo = Math.log10(Math.min(...pts.map(p => p.agents), 1))
  const hi = Math.max(Math.log10(Math.max(...pts.map(p => p.agents), 10)), lo + 1)
  const yStep = step(Math.max(...pts.map(p => p.max), 1) * 1.1)
  const yTop = yStep * Math.ceil(Math.max(...pts.map(p => p.max), 1) * 1.1 / yStep)
  const x = (agents: number): number => PAD.left + (Math.log10(agents) - lo) / (hi - lo) * (W - PAD.left - PAD.right)
  const y = (v: number): number => H - PAD.bottom - v / yTop * (H - PAD.top - PAD.bottom)
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="14">${esc(title)}</text>`
  ]
  for (let v = 0; v <= yTop + 1e-9; v += yStep) {
    out.push(`<line x1="${PAD.left}" x2="${W - PAD.right}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#ddd"/>`)
    out.push(`<text x="${PAD.left - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${Math.round(v).toLocaleString('en-US')}</text>`)
  }
  for (let d = Math.ceil(lo); d <= Math.floor(hi); d++) {
    out.push(`<line x1="${x(10 ** d).toFixed(1)}" x2="${x(10 ** d).toFixed(1)}" y1="${PAD.top}" y2="${H - PAD.bottom}" stroke="#eee"/>`)
  }
  for (const p of pts) out.push(`<text x="${x(p.agents).toFixed(1)}" y="${H - PAD.bottom + 18}" text-anchor="middle">${p.agents}</text>`)
  out.push(`<text x="${(PAD.left + W - PAD.right) / 2}" y="${H - 10}" text-anchor="middle">simulated agents (log scale)</text>`)
  out.push(`<text transform="translate(16 ${(PAD.top + H - PAD.bottom) / 2}) rotate(-90)" text-anchor="middle">tasks dispatched per second</text>`)
  out.push(`<polyline fill="none" stroke="#1f6feb" stroke-width="2" points="${pts.map(p => `${x(p.agents).toFixed(1)},${y(p.median).toFixed(1)}`).join(' ')}"/>`)
  for (const p of pts) {
    const cx = x(p.agents).toFixed(1)
    out.push(`<line x1="${cx}" x2="${cx}" y1="${y(p.min).toFixed(1)}" y2="${y(p.max).toFixed(1)}" stroke="#1f6feb"/>`)
    out.push(`<circle cx="${cx}" cy="${y(p.median).toFixed(1)}" r="4" fill="#1f6feb"><title>${p.agents} agents: ${Math.round(p.median)} tasks/s (${Math.round(p.min)}-${Math.round(p.max)})</title></circle>`)
  }
  out.push('</svg>')
  return out.join('\n') + '\n'
}
