/**
 * GNU parallel's --joblog, written and read exactly as parallel 20221122 does, so `parallel --resume` and
 * meshfarm's --resume take each other's logs:
 *   Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand
 * Starttime is epoch seconds with 3 decimals, JobRuntime seconds truncated to the millisecond in a field of 10,
 * Send/Receive bytes moved (staged inputs / files and output brought back), a newline in the command written as
 * NUL. On a mesh, Host is the agent's host name. A job parallel killed (timeout) has Exitval -1; one that died of a
 * signal has Exitval 0 and the signal's number.
 * Resume: parallel takes the first line as the header whatever it holds, then --resume counts every Seq as done
 * and --resume-failed only those with Exitval 0 and Signal 0; a line of another shape stops it with
 * "Format of 'FILE' is wrong: LINE". A resumed run appends to the log; a fresh one starts it with the header.
 */
import { constants } from 'node:os'
import type { TaskRecord } from '../protocol/messages.ts'
import { MeshfarmError } from '../util/errors.ts'

export const JOBLOG_HEADER = 'Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n'

export interface JoblogEntry {
  seq: number
  host: string
  /** Epoch seconds. */
  start: number
  /** Seconds. */
  runtime: number
  send: number
  receive: number
  exitval: number
  signal: number
  command: string
}

export function formatJoblogLine (e: JoblogEntry): string {
  const runtime = (Math.trunc(e.runtime * 1000 + 1e-6) / 1000).toFixed(3).padStart(10)
  return [e.seq, e.host, e.start.toFixed(3), runtime, e.send, e.receive, e.exitval, e.signal, e.command.replaceAll('\n', '\u0000')].join('\t') + '\n'
}

function signalNumber (name: string | null): number {
  if (name == null) return 0
  return (constants.signals as Record<string, number>)[name] ?? 0
}

/**
 * A finished task as parallel logs it; null for one that never ran (cancelled while queued). `send` is the bytes
 * staged for it (the CLI knows its inputs' sizes); receive counts what came back.
 */
export function joblogEntry (record: TaskRecord, seq: number, command: string, send: number): JoblogEntry | null {
  if (record.start == null && record.state === 'cancelled') return null
  const start = record.start != null ? Date.parse(record.start) / 1000 : 0
  const killed = record.failure?.kind === 'timeout'
  const signal = signalNumber(record.signal) || (killed ? (constants.signals.SIGTERM) : 0)
  return {
    seq,
    host: record.host ?? ':',
    start,
    runtime: (record.durationMs ?? 0) / 1000,
    send,
    receive: (record.stdout?.size ?? 0) + (record.stderr?.size ?? 0) + record.outputs.reduce((n, o) => n + o.size, 0),
    exitval: record.exitCode ?? (killed || signal === 0 ? -1 : 0),
    signal,
    command
  }
}

/** Where a run's joblog starts: a resumed run appends to what is there; any other run starts it anew. */
export function joblogStart (existing: string | null, resuming: boolean): { append: boolean, text: string } {
  if (resuming && existing != null && existing !== '') return { append: true, text: '' }
  return { append: false, text: JOBLOG_HEADER }
}

/** The Seqs a --resume (or --resume-failed) run skips, read from a joblog as parallel reads it. */
export function resumeSkips (text: string, file: string, mode: 'resume' | 'resume-failed'): Set<number> {
  const done = new Set<number>()
  const lines = text.split('\n')
  if (lines[lines.length - 1] === '') lines.pop()
  const ok = mode === 'resume' ? /^(\d+)/ : /^(\d+)(?:\t[^\t]+){5}\t0\t0\t/
  for (const line of lines.slice(1)) {
    const m = ok.exec(line)
    if (m != null) done.add(Number(m[1]))
    else if (!/\d+\s+[^\s]+\s+([-0-9.]+\s+){6}/.test(line)) {
      throw new MeshfarmError('SPEC_INVALID', `${file}: Format of '${file}' is wrong: ${line.length > 80 ? line.slice(0, 77) + '...' : line}`)
    }
  }
  return done
}
