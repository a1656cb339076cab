/**
 * Slurm's compact notations, pure: hostlists (`node[01-04,07],gpu1`), `SLURM_JOB_CPUS_PER_NODE` (`4(x2),2`) and
 * durations (`1-02:03:04`, `2:00`, `UNLIMITED`). Bad input throws a one-line Error naming what was wrong.
 */

/** Upper bound on names one hostlist may expand to, so a typo like `n[0-99999999]` cannot eat the memory. */
const MAX_HOSTS = 100_000

/** Splits on commas outside brackets. */
function topLevel (text: string): string[] {
  const parts: string[] = []
  let depth = 0
  let start = 0
  for (let i = 0; i < text.length; i++) {
    const c = text[i]
    if (c === '[') depth++
    else if (c === ']') depth--
    else if (c === ',' && depth === 0) {
      parts.push(text.slice(start, i))
      start = i + 1
    }
    if (depth < 0 || depth > 1) throw new Error(`hostlist: unbalanced brackets in ${JSON.stringify(text)}`)
  }
  if (depth !== 0) throw new Error(`hostlist: unbalanced brackets in ${JSON.stringify(text)}`)
  parts.push(text.slice(start))
  return parts.filter(p => p !== '')
}

function expandRange (inner: string, whole: string): string[] {
  const out: string[] = []
  for (const item of inner.split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(item)
    if (m == null) throw new Error(`hostlist: bad range ${JSON.stringify(item)} in ${JSON.stringify(whole)}`)
    const lo = Number(m[1])
    const hi = m[2] != null ? Number(m[2]) : lo
    if (hi < lo) throw new Error(`hostlist: empty range ${JSON.stringify(item)} in ${JSON.stringify(whole)}`)
    if (hi - lo + out.length > MAX_HOSTS) throw new Error(`hostlist: more than ${MAX_HOSTS} hosts in ${JSON.stringify(whole)}`)
    for (let i = lo; i <= hi; i++) out.push(String(i).padStart(m[1].length, '0'))
  }
  return out
}

/** `node[01-04,07],gpu1` -> node01 node02 node03 node04 node07 gpu1; `r[1-2]n[1-2]` -> the product, in order. */
export function expandHostlist (text: string): string[] {
  const whole = text.trim()
  if (whole === '' || whole === '(null)' || whole === 'None') return []
  const hosts: string[] = []
  for (const part of topLevel(whole)) {
    let names = ['']
    for (const piece of part.split(/(\[[^\]]*\])/)) {
      if (piece === '') continue
      const alternatives = piece.startsWith('[') ? expandRange(piece.slice(1, -1), whole) : [piece]
      if (names.length * alternatives.length > MAX_HOSTS) throw new Error(`hostlist: more than ${MAX_HOSTS} hosts in ${JSON.stringify(whole)}`)
      names = names.flatMap(n => alternatives.map(a => n + a))
    }
    hosts.push(...names)
  }
  return hosts
}

/** `SLURM_JOB_CPUS_PER_NODE`: `4(x2),2` -> [4, 4, 2]. */
export function expandCpusPerNode (text: string): number[] {
  const out: number[] = []
  for (const item of text.trim().split(',')) {
    const m = /^(\d+)(?:\(x(\d+)\))?$/.exec(item.trim())
    if (m == null) throw new Error(`SLURM_JOB_CPUS_PER_NODE: bad item ${JSON.stringify(item)} in ${JSON.stringify(text)}`)
    const count = m[2] != null ? Number(m[2]) : 1
    if (out.length + count > MAX_HOSTS) throw new Error(`SLURM_JOB_CPUS_PER_NODE: more than ${MAX_HOSTS} nodes in ${JSON.stringify(text)}`)
    for (let i = 0; i < count; i++) out.push(Number(m[1]))
  }
  return out
}

/**
 * A Slurm duration as printed by scontrol/sinfo or accepted by --time: `MM`, `MM:SS`, `HH:MM:SS`, `D-HH`,
 * `D-HH:MM`, `D-HH:MM:SS` -> ms; `UNLIMITED`/`INFINITE` -> null. Anything else throws.
 */
export function parseSlurmDuration (text: string): number | null {
  const t = text.trim()
  if (/^(UNLIMITED|INFINITE|infinite|unlimited)$/.test(t)) return null
  const m = /^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$/.exec(t)
  if (m == null) throw new Error(`bad Slurm duration ${JSON.stringify(text)}`)
  const [, d, a, b, c] = m
  let days = 0; let h = 0; let min = 0; let s = 0
  if (d != null) {
    days = Number(d); h = Number(a); min = Number(b ?? 0); s = Number(c ?? 0)
  } else if (c != null) {
    h = Number(a); min = Number(b); s = Number(c)
  } else if (b != null) {
    min = Number(a); s = Number(b)
  } else {
    min = Number(a)
  }
  return (((days * 24 + h) * 60 + min) * 60 + s) * 1000
}

/**
 * ms -> `D-HH:MM:00` for --time. Slurm keeps time limits in whole minutes (it turns `0:05` into one minute), so
 * the limit is rounded up to the next minute here, where it shows.
 */
export function formatSlurmDuration (ms: number): string {
  if (!Number.isFinite(ms) || ms <= 0) throw new Error(`time limit must be positive, got ${ms} ms`)
  const minutes = Math.ceil(ms / 60_000)
  const p = (n: number): string => String(n).padStart(2, '0')
  return `${Math.floor(minutes / 1440)}-${p(Math.floor(minutes / 60) % 24)}:${p(minutes % 60)}:00`
}

/** Short human form for a task's limit in reasons: 3600000 -> `1h`, 90000 -> `90s`, null -> `unlimited`. */
export function shortDuration (ms: number | null): string {
  if (ms == null) return 'unlimited'
  const s = Math.round(ms / 1000)
  if (s % 86400 === 0 && s > 0) return `${s / 86400}d`
  if (s % 3600 === 0 && s > 0) return `${s / 3600}h`
  if (s % 60 === 0 && s > 0) return `${s / 60}m`
  return `${s}s`
}

/** Slurm's own clock form for a partition's limit in reasons: 120000 -> `0:02:00`, 90000000 -> `1-01:00:00`. */
export function slurmClock (ms: number | null): string {
  if (ms == null) return 'UNLIMITED'
  const total = Math.round(ms / 1000)
  const p = (n: number): string => String(n).padStart(2, '0')
  const hms = `${Math.floor(total / 3600) % 24}:${p(Math.floor(total / 60) % 60)}:${p(total % 60)}`
  return total >= 86400 ? `${Math.floor(total / 86400)}-${hms.padStart(8, '0')}` : hms
}
