/** Summaries of repeated measurements: the benchmark reports medians with their min and max. */

export interface Summary {
  median: number
  min: number
  max: number
  runs: number[]
}

export function summarize (runs: number[]): Summary {
  const sorted = [...runs].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  const median = sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
  return { median, min: sorted[0], max: sorted[sorted.length - 1], runs }
}

/**
 * Runs each contender `rounds` times, alternating between them (A B C A B C ...) so that a slow spell of the
 * machine hits all of them alike. Each function returns one measurement.
 */
export async function alternate (rounds: number, contenders: Record<string, () => Promise<number>>): Promise<Record<string, Summary>> {
  const runs: Record<string, number[]> = Object.fromEntries(Object.keys(contenders).map(k => [k, []]))
  for (let r = 0; r < rounds; r++) {
    for (const [name, fn] of Object.entries(contenders)) runs[name].push(await fn())
  }
  return Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, summarize(v)]))
}

/** Seconds since `t0` (a performance.now() reading). */
export function since (t0: number): number {
  return (performance.now() - t0) / 1000
}

export function fmt (n: number, digits = 2): string {
  if (!Number.isFinite(n)) return String(n)
  if (Math.abs(n) >= 1000) return Math.round(n).toLocaleString('en-US')
  if (n !== 0 && Math.abs(n) < 0.1) return n.toPrecision(2)
  return n.toFixed(digits)
}
