/**
 * What an agent offers the mesh: cores, memory, GPUs, labels. Reading the machine (systeminformation,
 * nvidia-smi) is kept apart from parsing and overriding, which are pure and unit-tested.
 */
import { execFile } from 'node:child_process'
import os from 'node:os'
import { MeshfarmError } from '../shared/util/errors.ts'
import type { AgentResources, GpuInfo } from '../shared/protocol/messages.ts'
import { parseSize } from '../shared/util/units.ts'

export interface ResourceOverrides {
  cores?: number
  memoryMb?: number
  /** GPU ids, as parsed from `--gpus 0,1`; [] means "offer no GPU". */
  gpus?: number[]
  slots?: number
  labels?: Record<string, string>
  hostname?: string
  /** false: no GPU discovery at all; the agent offers only what --gpus declares (a machine whose driver tools
   * hang, or a test mesh that declares GPUs on a machine that has a different set). MESHFARM_GPU_DETECT=0. */
  detectGpus?: boolean
}

const NVIDIA_SMI_ARGS = ['--query-gpu=index,name,memory.total', '--format=csv,noheader,nounits']
const NVIDIA_SMI_TIMEOUT_MS = 5000
/** Upper bound on GPU ids, so a typo like 0-99999 does not build a huge list. */
const MAX_GPU_ID = 1023

function badArgument (message: string): MeshfarmError {
  return new MeshfarmError('BAD_ARGUMENT', message)
}

// ---- parsing (pure) ----

/**
 * Parses `nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader,nounits`.
 * Lines that do not start with an integer index (warnings, "No devices were found") are skipped;
 * memory that is not a number ("[N/A]") reads as 0.
 */
export function parseNvidiaSmi (csv: string): GpuInfo[] {
  const gpus: GpuInfo[] = []
  for (const line of csv.split(/\r?\n/)) {
    const fields = line.split(',').map(f => f.trim())
    if (fields.length < 3 || !/^\d+$/.test(fields[0])) continue
    // The model sits between the first and last field; rejoin in case it contains a comma.
    const model = fields.slice(1, -1).join(', ')
    const mem = Number(fields[fields.length - 1])
    gpus.push({ index: Number(fields[0]), model, memoryMb: Number.isFinite(mem) ? Math.floor(mem) : 0 })
  }
  return gpus
}

/** Parses one GPU id, or throws a one-line BAD_ARGUMENT. */
function parseGpuId (text: string, whole: string): number {
  if (!/^\d+$/.test(text)) throw badArgument(`--gpus: bad GPU id ${JSON.stringify(text)} in ${JSON.stringify(whole)} (expected e.g. 0,1 or 0-3 or none)`)
  const id = Number(text)
  if (id > MAX_GPU_ID) throw badArgument(`--gpus: GPU id ${id} is too large (max ${MAX_GPU_ID})`)
  return id
}

/** `--gpus` value: "0,1", "0-3", "0,2-3", "none" or "" -> sorted ids; junk or duplicates -> BAD_ARGUMENT. */
export function parseGpuList (text: string): number[] {
  const whole = text.trim()
  if (whole === '' || whole.toLowerCase() === 'none') return []
  const ids: number[] = []
  for (const raw of whole.split(',')) {
    const item = raw.trim()
    const range = /^(\d+)\s*-\s*(\d+)$/.exec(item)
    if (range == null) {
      ids.push(parseGpuId(item, whole))
      continue
    }
    const lo = parseGpuId(range[1], whole)
    const hi = parseGpuId(range[2], whole)
    if (lo > hi) throw badArgument(`--gpus: empty range ${JSON.stringify(item)}`)
    for (let i = lo; i <= hi; i++) ids.push(i)
  }
  const seen = new Set<number>()
  for (const id of ids) {
    if (seen.has(id)) throw badArgument(`--gpus: GPU ${id} listed twice in ${JSON.stringify(whole)}`)
    seen.add(id)
  }
  return ids.sort((a, b) => a - b)
}

/** `--label key=value` items -> record; later items win. Missing '=' or an empty key -> BAD_ARGUMENT. */
export function parseLabels (items: string[]): Record<string, string> {
  const labels: Record<string, string> = {}
  for (const item of items) {
    const eq = item.indexOf('=')
    if (eq < 0) throw badArgument(`--label: expected key=value, got ${JSON.stringify(item)}`)
    const key = item.slice(0, eq).trim()
    if (key === '') throw badArgument(`--label: empty key in ${JSON.stringify(item)}`)
    // A plain object would swallow this key silently by setting its prototype.
    if (key === '__proto__') throw badArgument(`--label: reserved key ${JSON.stringify(key)}`)
    labels[key] = item.slice(eq + 1).trim()
  }
  return labels
}

/** `--memory` value -> MB, with the one size parser: "2048" is MB; K/M/G/T suffixes (optionally "B" or "iB"). */
export function parseMemoryFlag (text: string): number {
  const bytes = parseSize(text, '--memory', 'M')
  if (bytes < 2 ** 20) throw badArgument(`--memory: must be at least 1 MB, got ${JSON.stringify(text)}`)
  return Math.floor(bytes / 2 ** 20)
}

function checkPositiveInt (value: number, flag: string): number {
  if (!Number.isInteger(value) || value < 1) throw badArgument(`${flag}: expected a positive integer, got ${value}`)
  return value
}

/** Declared GPUs stand in when none were detected; otherwise keep only listed, existing ones. */
function selectGpus (detected: GpuInfo[], ids: number[]): GpuInfo[] {
  if (detected.length === 0) return ids.map(index => ({ index, model: 'declared', memoryMb: 0 }))
  return ids.map(id => {
    const gpu = detected.find(g => g.index === id)
    if (gpu == null) throw badArgument(`--gpus: GPU ${id} not found (detected: ${detected.map(g => g.index).join(',')})`)
    return { ...gpu }
  })
}

/** Applies command-line overrides to detected resources. Pure: returns a new object. */
export function applyOverrides (detected: AgentResources, o: ResourceOverrides): AgentResources {
  const cores = o.cores != null ? checkPositiveInt(o.cores, '--cores') : detected.cores
  const slots = o.slots != null ? checkPositiveInt(o.slots, '--slots') : (o.cores != null ? cores : detected.slots)
  const memoryMb = o.memoryMb != null ? checkPositiveInt(o.memoryMb, '--memory') : detected.memoryMb
  const hostname = o.hostname != null && o.hostname.trim() !== '' ? o.hostname.trim() : detected.hostname
  return {
    ...detected,
    hostname,
    cores,
    physicalCores: Math.min(detected.physicalCores, cores),
    memoryMb,
    slots,
    gpus: o.gpus != null ? selectGpus(detected.gpus, o.gpus) : detected.gpus.map(g => ({ ...g })),
    labels: { ...detected.labels, ...o.labels }
  }
}

// ---- reading the machine ----

/** GPUs from nvidia-smi, or null when it is missing, fails, times out, or lists nothing. */
async function readNvidiaSmi (): Promise<GpuInfo[] | null> {
  return await new Promise(resolve => {
    execFile('nvidia-smi', NVIDIA_SMI_ARGS, { timeout: NVIDIA_SMI_TIMEOUT_MS, encoding: 'utf8' }, (err, stdout) => {
      if (err != null) return resolve(null)
      const gpus = parseNvidiaSmi(stdout)
      resolve(gpus.length > 0 ? gpus : null)
    })
  })
}

/** Fallback when nvidia-smi is unusable: NVIDIA controllers as systeminformation sees them. */
async function readGraphicsGpus (): Promise<GpuInfo[]> {
  try {
    const si = await systemInformation()
    const { controllers } = await si.graphics()
    return controllers
      .filter(c => /nvidia/i.test(c.vendor ?? ''))
      .map((c, index) => ({ index, model: c.model || c.name || 'NVIDIA GPU', memoryMb: Math.floor(c.vram ?? c.memoryTotal ?? 0) }))
  } catch {
    return []
  }
}

/** systeminformation is large: loaded when the machine is read, not by every command that parses a flag. */
async function systemInformation (): Promise<typeof import('systeminformation')> {
  return (await import('systeminformation')).default
}

function osName (info: { distro: string, release: string, platform: string }): string {
  const name = `${info.distro ?? ''} ${info.release ?? ''}`.trim()
  return name !== '' ? name : (info.platform || process.platform)
}

/** Reads this machine (systeminformation can be slow, so the reads run concurrently) and applies overrides. */
export async function detectResources (overrides: ResourceOverrides = {}): Promise<AgentResources> {
  const detectGpus = overrides.detectGpus !== false
  const si = await systemInformation()
  const [cpu, mem, osInfo, smiGpus] = await Promise.all([si.cpu(), si.mem(), si.osInfo(), detectGpus ? readNvidiaSmi() : Promise.resolve([])])
  const gpus = smiGpus ?? await readGraphicsGpus()
  const cores = cpu.cores > 0 ? cpu.cores : os.availableParallelism()
  const detected: AgentResources = {
    hostname: os.hostname(),
    os: osName(osInfo),
    cores,
    physicalCores: cpu.physicalCores > 0 ? cpu.physicalCores : cores,
    memoryMb: Math.floor(mem.total / (1024 * 1024)),
    slots: cores,
    gpus,
    labels: { os: process.platform, arch: process.arch },
    runsAsRoot: process.getuid?.() === 0
  }
  return applyOverrides(detected, overrides)
}
