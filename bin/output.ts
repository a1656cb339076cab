/**
 * The CLI's output layer: tables, progress bars and --json, so commands only compute what to show. Colours
 * (colour.ts) come in as a `Colours` the caller decided once for its stream: on a terminal, states in colour and
 * table heads in bold; anywhere else the plain text, byte for byte as without colours (scripts parse it).
 */
import Table from 'cli-table3'
import cliProgress from 'cli-progress'
import type { AgentSummary, JobSummary, TaskRecord } from '../shared/protocol/messages.ts'
import type { MeshEvent } from '../shared/protocol/events.ts'
import { colours, stateColour, type Colours } from './colour.ts'

const PLAIN = colours(false)

export function printJson (value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n')
}

export function table (head: string[], rows: Array<Array<string | number>>, c: Colours = PLAIN): string {
  // cli-table3 measures cells without their ANSI codes, so coloured cells keep the columns aligned.
  const t = new Table({ head: head.map(h => c.bold(h)), style: { head: [], border: [] } })
  for (const r of rows) t.push(r.map(String))
  return t.toString()
}

function age (ms: number): string {
  if (ms < 1500) return 'now'
  if (ms < 90_000) return `${Math.round(ms / 1000)}s ago`
  return `${Math.round(ms / 60_000)}m ago`
}

export function jobsTable (jobs: JobSummary[], c: Colours = PLAIN): string {
  return table(['job', 'name', 'owner', 'state', 'done', 'failed', 'running', 'queued', 'held', 'cancelled', 'total'], jobs.map(j => [
    j.jobId, j.name, j.ownerName ?? j.owner.slice(-8), stateColour(c, j.state), j.counts.done, j.counts.failed, j.counts.running + j.counts.staging + j.counts.suspended,
    j.counts.queued, j.counts.held, j.counts.cancelled, j.total
  ]), c)
}

export function tasksTable (tasks: TaskRecord[], c: Colours = PLAIN): string {
  return table(['task', 'name', 'state', 'host', 'exit', 'attempts', 'duration', 'why'], tasks.map(t => [
    t.id, t.name, stateColour(c, t.state), t.host ?? '', t.exitCode ?? '', t.attempts, t.durationMs != null ? `${(t.durationMs / 1000).toFixed(2)}s` : '', t.failure?.message ?? ''
  ]), c)
}

export function peersTable (agents: AgentSummary[], c: Colours = PLAIN): string {
  return table(['peer', 'host', 'state', 'slots', 'running', 'cores', 'memory', 'gpus', 'labels', 'seen', 'isolation', 'notes'], agents.map(a => [
    a.peerId.slice(-12), a.name != null && a.name !== a.hostname && !a.name.startsWith('this machine') ? `${a.hostname} (${a.name})` : a.hostname, a.state === 'up' ? c.green(a.state) : a.state === 'lost' ? c.red(a.state) : a.state, a.slots, a.running + (a.suspended != null && a.suspended > 0 ? ` (+${a.suspended} suspended)` : ''), a.cores,
    `${(a.memoryMb / 1024).toFixed(1)}G`, a.gpus.map(g => g.index).join(',') || '-', Object.entries(a.labels).map(([k, v]) => `${k}=${v}`).join(' '),
    age(a.lastSeen), `${a.isolation ?? '?'}${a.runsAsRoot ? ' (root)' : ''}`, agentNotes(a)
  ]), c)
}

function agentNotes (a: AgentSummary): string {
  const notes: string[] = []
  if (a.backend != null && a.backend !== 'local') notes.push(a.backend)
  const h = a.status?.harvest
  if (h != null) notes.push(h.lending ? `lent: ${h.reason}` : `not lent: ${h.reason}`)
  notes.push(...(a.status?.notes ?? []).slice(0, 2))
  return notes.join('; ').slice(0, 120)
}

export function whyTable (reasons: Array<{ index?: number, name?: string, state: string, reason: string }>, c: Colours = PLAIN): string {
  return table(['task', 'state', 'why'], reasons.map(r => [r.index != null ? String(r.index) : '', stateColour(c, r.state), r.reason]), c)
}

/** One event as a line: time, what, where. */
export function eventLine (e: MeshEvent): string {
  const time = new Date(e.time).toISOString().slice(11, 19)
  const task = e.jobId != null ? (e.index != null ? ` ${e.jobId}.${e.index}` : ` job ${e.jobId}`) : ''
  const where = e.host != null ? ` on ${e.host}` : ''
  const d = e.data ?? {}
  const detail = [
    d.exitCode != null ? `exit ${String(d.exitCode)}` : '',
    d.message != null ? String(d.message) : d.why != null ? String(d.why) : d.reason != null ? String(d.reason) : '',
    d.state != null ? String(d.state) : '',
    typeof d.durationMs === 'number' ? `${(d.durationMs / 1000).toFixed(2)} s` : ''
  ].filter(x => x !== '').join(', ')
  return `${time} #${e.seq} ${e.type}${task}${where}${detail !== '' ? ` (${detail})` : ''}`
}

export function summaryLine (s: JobSummary, c: Colours = PLAIN): string {
  const n = s.counts
  return `job ${s.jobId} ${s.name} (${s.ownerName ?? s.owner.slice(-8)}): ${stateColour(c, s.state)}, ${n.done} done, ${n.failed} failed, ${n.cancelled} cancelled of ${s.total}`
}

/** A progress bar on a terminal; plain lines when stdout is not one (logs, CI). */
export class Progress {
  private bar: cliProgress.SingleBar | null = null
  private lastLine = 0
  private readonly label: string

  constructor (label: string) {
    this.label = label
  }

  update (done: number, total: number, detail: string): void {
    if (process.stderr.isTTY) {
      if (this.bar == null) {
        this.bar = new cliProgress.SingleBar({ format: `${this.label} [{bar}] {value}/{total} {detail}`, stream: process.stderr, hideCursor: true }, cliProgress.Presets.shades_classic)
        this.bar.start(total, done, { detail })
      }
      this.bar.setTotal(total)
      this.bar.update(done, { detail })
      return
    }
    const now = Date.now()
    if (now - this.lastLine > 2000 || done === total) {
      this.lastLine = now
      process.stderr.write(`${this.label}: ${done}/${total} ${detail}\n`)
    }
  }

  stop (): void {
    this.bar?.stop()
    this.bar = null
  }
}
