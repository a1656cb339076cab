/**
 * Presence sources folded into one Observation. Sessions (logind's, or the terminals in use when there is no
 * logind) are the channels the owner may be using; every other report is a signal. A channel without its own
 * idle time is seen through a signal that covers it (its terminal's atime, the helper's report for that session
 * or user, the input devices for a local desktop), or else it is blind and presence is unknown. `composeObservation`
 * is pure; `readSources` and `setupPresence` are the edges.
 */
import type { Channel, Observation, OursSnapshot, PresenceSource, Probe, ReadContext, Reading } from './types.ts'
import { LogindSource } from './sources/logind.ts'
import { TtySource } from './sources/ttys.ts'
import { HelperSource } from './sources/helper.ts'
import { InputSource } from './sources/input.ts'
import { LoadSource } from './sources/load.ts'
import { GpuSource } from './sources/gpu.ts'
import { InjectedSource } from './sources/injected.ts'

/** Sources whose failure says nothing about input (their values just read as unknown). */
const NOT_INPUT = new Set(['load', 'gpu'])

function covers (signal: Channel, ch: Channel): boolean {
  if (ch.tty != null && signal.tty === ch.tty) return true
  if (ch.kind !== 'graphical') return false
  if (signal.key.startsWith('helper:')) return signal.sessionId != null ? signal.sessionId === ch.sessionId : signal.uid === ch.uid
  return signal.coversLocal === true && ch.remote !== true
}

const minBy = (xs: Channel[]): Channel | undefined => xs.filter(x => x.idleMs != null).sort((a, b) => a.idleMs! - b.idleMs!)[0]

/** Pure: readings taken at `now` -> one observation. */
export function composeObservation (readings: Reading[], now: number): Observation {
  const channels = readings.flatMap(r => r.channels ?? [])
  const signals = readings.flatMap(r => r.signals ?? [])
  const blind: string[] = []
  const known: Channel[] = []
  for (const ch of channels) {
    const best = minBy([ch, ...signals.filter(s => covers(s, ch))])
    if (best == null) blind.push(ch.label)
    else known.push(best === ch ? ch : { ...best, label: `${ch.label} via ${best.label}` })
  }
  for (const r of readings) if (r.error != null && !NOT_INPUT.has(r.source)) blind.push(`${r.source}: ${r.error}`)
  const counted = readings.filter(r => r.sessions != null)
  const newest = minBy([...known, ...signals])
  const load = readings.find(r => r.loadNotOurs !== undefined)
  const gpu = readings.find(r => r.foreignGpu !== undefined)
  return {
    at: now,
    input: {
      idleMs: newest?.idleMs ?? null,
      from: newest == null ? null : `${newest.label}${newest.how != null ? ` (${newest.how})` : ''}`,
      blind,
      sessions: counted.length === 0 ? null : counted.reduce((n, r) => n + r.sessions!, 0)
    },
    loadNotOurs: load?.loadNotOurs ?? null,
    foreignGpu: gpu?.foreignGpu == null ? null : { processes: gpu.foreignGpu.processes, memoryMb: gpu.foreignGpu.memoryMb },
    details: readings.map(r => r.detail)
  }
}

const READ_TIMEOUT_MS = 3000

/** Reads every source at once; one that throws or hangs gives an error reading, never a stall. */
export async function readSources (sources: PresenceSource[], ctx: ReadContext, timeoutMs = READ_TIMEOUT_MS): Promise<Reading[]> {
  return await Promise.all(sources.map(async s => {
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<Reading>(resolve => { timer = setTimeout(() => resolve({ source: s.name, detail: `${s.name}: no answer in ${timeoutMs} ms`, error: `no answer in ${timeoutMs} ms` }), timeoutMs) })
    try {
      return await Promise.race([s.read(ctx).catch((err: unknown): Reading => ({ source: s.name, detail: `${s.name}: ${(err as Error).message}`, error: (err as Error).message })), late])
    } finally {
      clearTimeout(timer)
    }
  }))
}

/** The agent's start line: "presence: logind (2 sessions), ttys (3 in use, 6 consoles); input devices off (not root)". Pure. */
export function presenceStartLine (probes: Array<{ name: string, probe: Probe }>): string {
  const label: Record<string, string> = { input: 'input devices', helper: 'helper' }
  const on = probes.filter(p => p.probe.available).map(p => `${label[p.name] ?? p.name} (${p.probe.why})`)
  const off = probes.filter(p => !p.probe.available).map(p => `${label[p.name] ?? p.name} off (${p.probe.why})`)
  return `presence: ${on.length > 0 ? on.join(', ') : 'no source can tell: not lent unless its owner says meshfarm lend'}${off.length > 0 ? `; ${off.join('; ')}` : ''}`
}

export interface PresenceSetupOptions {
  /** The helper's reports arrive on the owner socket; pass its path to list the helper as ready. */
  helperSocket?: string | null
  /** `--input-devices`: read /dev/input (root only). */
  inputDevices?: boolean
  /** A file a test drives (InjectedSource). With it, the real input sources are left out. */
  injectedFile?: string
  /** Overrides for tests. */
  devDir?: string
  inputDir?: string
}

export interface PresenceSetup {
  sources: PresenceSource[]
  probes: Array<{ name: string, probe: Probe }>
  line: string
  /** Feed `onPresence` reports here. */
  helper: HelperSource
  close: () => Promise<void>
}

/** Probes every source once, keeps the available ones, and says which. */
export async function setupPresence (o: PresenceSetupOptions = {}): Promise<PresenceSetup> {
  const helper = new HelperSource(30_000, o.helperSocket ?? '')
  const load = new LoadSource()
  const gpu = new GpuSource()
  const candidates: PresenceSource[] = o.injectedFile != null
    ? [new InjectedSource(o.injectedFile), load, gpu]
    : [new LogindSource(), new TtySource({ devDir: o.devDir }), ...(o.helperSocket != null ? [helper] : []), load, gpu]
  const input = o.injectedFile == null ? new InputSource({ dir: o.inputDir }) : null
  const probes = await Promise.all(candidates.map(async s => ({ name: s.name, probe: await s.probe().catch((err: unknown) => ({ available: false, why: (err as Error).message })) })))
  if (input != null) {
    probes.push({ name: 'input', probe: o.inputDevices === true ? await input.probe() : { available: false, why: 'opt-in: --input-devices, as root' } })
  }
  const sources = candidates.filter((_, i) => probes[i].probe.available)
  const logind = probes.find(p => p.name === 'logind')?.probe.available === true
  for (const s of sources) if (s instanceof TtySource) s.signalsOnly = logind
  if (input != null && probes[probes.length - 1].probe.available) { await input.start(); sources.push(input) }
  return {
    sources,
    probes,
    line: presenceStartLine(probes),
    helper,
    close: async () => { for (const s of sources) await s.close?.() }
  }
}

/** One harvest observation: read every source with the agent's own processes left out, then compose. */
export async function observe (sources: PresenceSource[], ours: OursSnapshot, now = Date.now()): Promise<Observation> {
  const ctx: ReadContext = { now, monotonicMs: Number(process.hrtime.bigint() / 1_000_000n), ours }
  return composeObservation(await readSources(sources, ctx), now)
}
