/**
 * A presence source a test (or a site script) drives through a JSON file, through the same interface as the real
 * sources:
 *   { "lastInputAt": 1732350000000, "blind": [], "sessions": 1, "loadNotOurs": 0.05, "foreignGpu": null }
 * `lastInputAt` (ms since epoch) or `idleMs`; `blind` names sessions nothing can see into; absent fields tell
 * nothing. A malformed file is one `file: field: what` line and tells nothing that read.
 */
import { readFile } from 'node:fs/promises'
import type { Channel, PresenceSource, Probe, ReadContext, Reading } from '../types.ts'

export interface InjectedState {
  lastInputAt?: number | null
  idleMs?: number | null
  blind?: string[]
  sessions?: number | null
  loadNotOurs?: number | null
  foreignGpu?: { processes: number, memoryMb: number } | null
}

const FIELDS = new Set(['lastInputAt', 'idleMs', 'blind', 'sessions', 'loadNotOurs', 'foreignGpu'])

/** Parses and checks the file's text. Pure. */
export function parseInjected (text: string, file: string): InjectedState {
  let v: unknown
  try { v = JSON.parse(text) } catch { throw new Error(`${file}: not JSON`) }
  if (v == null || typeof v !== 'object' || Array.isArray(v)) throw new Error(`${file}: expected an object`)
  const o = v as Record<string, unknown>
  const bad = (f: string, what: string): Error => new Error(`${file}: ${f}: ${what}`)
  for (const k of Object.keys(o)) if (!FIELDS.has(k)) throw bad(k, `unknown field (known: ${[...FIELDS].join(', ')})`)
  const nonNeg = (f: string): number | null | undefined => {
    const x = o[f]
    if (x == null) return x as null | undefined
    if (typeof x !== 'number' || !Number.isFinite(x) || x < 0) throw bad(f, 'expected a number >= 0 or null')
    return x
  }
  if (o.blind != null && (!Array.isArray(o.blind) || o.blind.some(b => typeof b !== 'string'))) throw bad('blind', 'expected a list of names')
  const g = o.foreignGpu as Record<string, unknown> | null | undefined
  if (g != null && (typeof g !== 'object' || typeof g.processes !== 'number' || typeof g.memoryMb !== 'number')) throw bad('foreignGpu', 'expected { processes, memoryMb } or null')
  return { lastInputAt: nonNeg('lastInputAt'), idleMs: nonNeg('idleMs'), blind: o.blind as string[] | undefined, sessions: nonNeg('sessions'), loadNotOurs: nonNeg('loadNotOurs'), foreignGpu: g as InjectedState['foreignGpu'] }
}

/** State -> reading at `now`. Pure. */
export function injectedReading (s: InjectedState, now: number): Reading {
  const channels: Channel[] = []
  const idle = s.lastInputAt != null ? Math.max(0, now - s.lastInputAt) : s.idleMs
  if (idle != null) channels.push({ key: 'injected', label: 'injected', idleMs: idle, how: 'injected' })
  for (const b of s.blind ?? []) channels.push({ key: `injected:${b}`, label: b, idleMs: null })
  const r: Reading = { source: 'injected', channels, detail: `injected: ${JSON.stringify(s)}` }
  if (s.sessions !== undefined) r.sessions = s.sessions ?? undefined
  else if (channels.length > 0) r.sessions = channels.length
  if (s.loadNotOurs !== undefined) r.loadNotOurs = s.loadNotOurs
  if (s.foreignGpu !== undefined) r.foreignGpu = s.foreignGpu == null ? null : { ...s.foreignGpu, pids: [] }
  return r
}

export class InjectedSource implements PresenceSource {
  readonly name = 'injected'
  private readonly file: string

  constructor (file: string) {
    this.file = file
  }

  async probe (): Promise<Probe> {
    return { available: true, why: this.file }
  }

  async read (ctx: ReadContext): Promise<Reading> {
    try {
      return injectedReading(parseInjected(await readFile(this.file, 'utf8'), this.file), ctx.now)
    } catch (err) {
      const msg = (err as NodeJS.ErrnoException).code === 'ENOENT' ? `${this.file}: missing` : (err as Error).message
      return { source: this.name, detail: `injected: ${msg}`, error: msg }
    }
  }
}
