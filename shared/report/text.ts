/** A job report for people: a few lines and tables (cli-table3), from `summarizeJob`'s result. */
import Table from 'cli-table3'
import type { JobReport } from './summary.ts'

function table (head: string[], rows: Array<Array<string | number>>): string {
  const t = new Table({ head, style: { head: [], border: [] } })
  for (const r of rows) t.push(r.map(String))
  return t.toString()
}

const pct = (x: number): string => `${(x * 100).toFixed(1)}%`

export function formatReport (r: JobReport): string {
  const out: string[] = []
  const title = `job ${r.jobId ?? '?'}${r.name != null ? ` ${r.name}` : ''}`
  const states = Object.entries(r.states).map(([s, n]) => `${n} ${s}`).join(', ')
  out.push(`${title}: ${r.tasks} task${r.tasks === 1 ? '' : 's'} (${states || 'none'})`)
  if (r.start != null) out.push(`ran ${r.spanSeconds.toFixed(2)} s, from ${r.start} to ${r.end}`)
  if (r.durations != null) {
    const d = r.durations
    out.push(`task durations over ${d.count} attempts: min ${d.minSeconds.toFixed(3)} s, median ${d.medianSeconds.toFixed(3)} s, max ${d.maxSeconds.toFixed(3)} s`)
  }
  if (r.hosts.length > 0) {
    out.push(table(['host', 'tasks', 'done', 'failed', 'busy s', 'slots', 'tasks/s', 'utilisation'], r.hosts.map(h => [
      h.host, h.tasks, h.done, h.failed, h.busySeconds.toFixed(2), h.slotsFrom === 'agent' ? h.slots : `${h.slots} (seen)`, h.tasksPerSecond.toFixed(3), pct(h.utilisation)
    ])))
  }
  if (r.failures.length > 0) {
    out.push(`${r.failures.length} failed task${r.failures.length === 1 ? '' : 's'}:`)
    out.push(table(['task', 'name', 'host', 'exit', 'why', 'attempts'], r.failures.map(f => [
      f.index, f.name, f.host ?? '', f.exitCode ?? f.signal ?? '', f.message ?? f.kind ?? '', f.attempts
    ])))
    for (const f of r.failures) {
      if (f.stderrTail == null) continue
      out.push(`task ${f.index} ${f.name}, end of stderr:`)
      out.push(f.stderrTail.split('\n').map(l => `  | ${l}`).join('\n'))
    }
  }
  if (r.missingOutputs.length > 0) {
    out.push(`${r.missingOutputs.length} task${r.missingOutputs.length === 1 ? '' : 's'} did not write declared outputs:`)
    for (const m of r.missingOutputs.slice(0, 50)) out.push(`  task ${m.index} ${m.name} (${m.state}): ${m.outputs.slice(0, 10).join(', ')}${m.outputs.length > 10 ? ', ...' : ''}`)
    if (r.missingOutputs.length > 50) out.push(`  ... and ${r.missingOutputs.length - 50} more`)
  }
  return out.join('\n')
}
