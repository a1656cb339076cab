/**
 * Configuration, compiled once per process: flags > environment > files > defaults become one frozen,
 * validated object (durations in ms, sizes in bytes or MB as named). A bad value is one line naming the flag or
 * variable it came from, and exit code 2, before anything starts. Everything downstream takes these objects,
 * never `process.env` or raw flag strings.
 */
import { MeshfarmError } from '../shared/util/errors.ts'
import { parseDuration, parseSizeMb, parseWholeNumber } from '../shared/util/units.ts'
import type { SpecDefaults } from '../shared/client/spec.ts'
import { parseIsolationFlag, type IsolationChoice } from '../node/isolation.ts'
import { parseGpuList, parseLabels, parseMemoryFlag } from '../node/resources.ts'
import type { ResultLayout } from '../shared/protocol/data.ts'

/** Every default, in one place. */
export const DEFAULTS = Object.freeze({
  coordinatorListen: ['/ip4/0.0.0.0/tcp/7341'],
  agentListen: ['/ip4/0.0.0.0/tcp/0'],
  heartbeatMs: 2000,
  agentLostMs: 15_000,
  crashLimit: 3,
  prefetch: 1,
  inviteTtlMs: 3_600_000,
  discoveryMs: 10_000,
  /** `--dashboard` without a port. */
  dashboardPort: 7342
})

export type Env = Readonly<Record<string, string | undefined>>

export interface CoordinatorFlags { listen: string[], agentLost?: string, heartbeat?: string, crashLimit?: string, prefetch?: string, dashboard?: string | true }

export interface CoordinatorSettings {
  readonly listen: readonly string[]
  readonly heartbeatMs: number
  readonly agentLostMs: number
  readonly crashLimit: number
  readonly prefetch: number
  readonly debug: boolean
  /** The dashboard's port on 127.0.0.1 (0: any free one); null: no dashboard. */
  readonly dashboardPort: number | null
  /** MESHFARM_SPREAD=off: agents fetch shared inputs from the coordinator alone (the benchmark's comparison). */
  readonly spread: boolean
}

export function compileCoordinator (f: CoordinatorFlags, env: Env): CoordinatorSettings {
  const heartbeatMs = f.heartbeat != null ? parseDuration(f.heartbeat, '--heartbeat') : DEFAULTS.heartbeatMs
  const agentLostMs = f.agentLost != null ? parseDuration(f.agentLost, '--agent-lost') : DEFAULTS.agentLostMs
  if (heartbeatMs < 100) throw bad('--heartbeat: must be at least 100ms')
  if (agentLostMs <= heartbeatMs) throw bad(`--agent-lost: must be longer than the heartbeat (${heartbeatMs} ms), got ${agentLostMs} ms`)
  return Object.freeze({
    listen: Object.freeze(f.listen.length > 0 ? checkAddrs(f.listen, '--listen') : [...DEFAULTS.coordinatorListen]),
    heartbeatMs,
    agentLostMs,
    crashLimit: f.crashLimit != null ? parseWholeNumber(f.crashLimit, '--crash-limit', 1, 100) : DEFAULTS.crashLimit,
    prefetch: f.prefetch != null ? parseWholeNumber(f.prefetch, '--prefetch', 0, 64) : DEFAULTS.prefetch,
    debug: env.MESHFARM_LOG === 'debug',
    dashboardPort: compileDashboardPort(f.dashboard),
    spread: compileOnOff(env.MESHFARM_SPREAD, 'MESHFARM_SPREAD', true)
  })
}

/** An on/off switch from the environment. */
function compileOnOff (v: string | undefined, name: string, fallback: boolean): boolean {
  if (v == null || v === '') return fallback
  if (v === 'on' || v === '1') return true
  if (v === 'off' || v === '0') return false
  throw bad(`${name}: must be on or off, got ${JSON.stringify(v.slice(0, 40))}`)
}

/** `--dashboard [PORT]`: absent, no dashboard; without a port, the default one; 0, any free port. */
export function compileDashboardPort (v: string | true | undefined): number | null {
  if (v == null) return null
  if (v === true) return DEFAULTS.dashboardPort
  if (!/^\d{1,5}$/.test(v) || Number(v) > 65535) throw bad(`--dashboard: must be a port number from 0 to 65535 (0: any free port), got ${JSON.stringify(v.slice(0, 40))}`)
  return Number(v)
}

export interface SubmitFlags {
  cores?: string
  gpus?: string
  memory?: string
  timeout?: string
  retries?: string
  name?: string
  layout?: string
  priority?: string
  allowUnplaceable?: boolean
  format?: string
  /** Repeatable: files staged into every task, names or globs brought back from every task, files staged once per machine. */
  input?: string[]
  output?: string[]
  shared?: string[]
}

/** What `submit` asks of the job as a whole, beside its file. */
export interface JobOptions { priority?: number, allowUnplaceable?: boolean }

export type JobFormat = 'yaml' | 'tasklist'

/**
 * Flags of `submit` that override the job file, checked like the file's own fields. --input/--output/--shared
 * are relative to `cwd` (where the command runs); that the files exist is checked where they are read.
 */
export function compileSubmitOverrides (f: SubmitFlags, cwd: string = process.cwd()): { spec: Readonly<SpecDefaults>, job: Readonly<JobOptions>, format?: JobFormat } {
  const d: SpecDefaults = {}
  const job: JobOptions = {}
  if (f.cores != null) d.cores = parseWholeNumber(f.cores, '--cores', 1, 4096)
  if (f.gpus != null) d.gpus = parseWholeNumber(f.gpus, '--gpus', 0, 64)
  if (f.memory != null) d.memoryMb = parseSizeMb(f.memory, '--memory')
  if (f.timeout != null) d.timeoutMs = parseDuration(f.timeout, '--timeout')
  if (f.retries != null) d.retries = parseWholeNumber(f.retries, '--retries', 0, 100)
  if (f.name != null) {
    if (f.name.trim() === '' || f.name.length > 200 || f.name.includes('/')) throw bad(`--name: must be a name of 1 to 200 characters without '/', got ${JSON.stringify(f.name)}`)
    d.name = f.name
  }
  if (f.layout != null) d.layout = checkLayout(f.layout)
  if (f.priority != null) job.priority = parseWholeNumber(f.priority, '--priority', -1000, 1000)
  if (f.allowUnplaceable === true) job.allowUnplaceable = true
  const files = (values: string[] | undefined, flag: string, inside: boolean): string[] | undefined => {
    if (values == null || values.length === 0) return undefined
    return Object.freeze(values.map(v => checkPathFlag(v, flag, inside))) as string[]
  }
  const inputs = files(f.input, '--input', false)
  const outputs = files(f.output, '--output', true)
  const shared = files(f.shared, '--shared', false)
  if (inputs != null) d.inputs = inputs
  if (outputs != null) d.outputs = outputs
  if (shared != null) d.shared = shared
  if (inputs != null || shared != null) d.cwd = cwd
  const out: { spec: Readonly<SpecDefaults>, job: Readonly<JobOptions>, format?: JobFormat } = { spec: Object.freeze(d), job: Object.freeze(job) }
  if (f.format != null) {
    if (f.format !== 'yaml' && f.format !== 'tasklist') throw bad(`--format: must be yaml or tasklist, got ${JSON.stringify(f.format)}`)
    out.format = f.format
  }
  return Object.freeze(out)
}

/** A path flag: a file here (--input, --shared), or a name or glob inside the task folder (--output). */
function checkPathFlag (v: string, flag: string, insideTask: boolean): string {
  if (v.trim() === '' || /[\u0000-\u001f]/.test(v)) throw bad(`${flag}: must be a file name, got ${JSON.stringify(v)}`)
  if (insideTask && (v.startsWith('/') || v.split('/').includes('..') || v.includes('\\'))) {
    throw bad(`${flag}: must be a name or glob inside the task folder, got ${JSON.stringify(v)}`)
  }
  return v
}

/** `fetch` flags. */
export function compileFetch (f: { layout?: string }): { readonly layout?: ResultLayout } {
  return Object.freeze(f.layout != null ? { layout: checkLayout(f.layout) } : {})
}

function checkLayout (v: string): ResultLayout {
  if (v === 'per-task' || v === 'flat' || v === 'ictasks') return v
  throw bad(`--layout: must be per-task, flat or ictasks, got ${JSON.stringify(v)}`)
}

/** The client's settings: how long to look for the coordinator. */
export function compileClient (env: Env): { readonly discoveryMs: number } {
  const raw = env.MESHFARM_DISCOVERY_MS
  return Object.freeze({ discoveryMs: raw != null ? parseWholeNumber(raw, 'MESHFARM_DISCOVERY_MS', 100, 3_600_000) : DEFAULTS.discoveryMs })
}

/** What the agent takes from its environment: which task launcher, which compiler builds it, where bubblewrap is,
 * whether to look for GPUs. Read here once; the agent gets the result. */
export interface AgentEnvSettings {
  /** MESHFARM_LAUNCHER=js: the Node launcher even where a C compiler could build the native one. */
  readonly launcher: 'auto' | 'js'
  /** CC: the C compiler for the native launcher. */
  readonly cc: string
  /** MESHFARM_GPU_DETECT=0: no GPU discovery; only what --gpus declares. */
  readonly detectGpus: boolean
}

export function compileAgentEnv (env: Env): AgentEnvSettings {
  const launcher = env.MESHFARM_LAUNCHER ?? 'auto'
  if (launcher !== 'auto' && launcher !== 'js' && launcher !== 'native') throw bad(`MESHFARM_LAUNCHER: must be js or native, got ${JSON.stringify(launcher.slice(0, 40))}`)
  const gpu = env.MESHFARM_GPU_DETECT ?? '1'
  if (gpu !== '0' && gpu !== '1') throw bad(`MESHFARM_GPU_DETECT: must be 0 or 1, got ${JSON.stringify(gpu.slice(0, 40))}`)
  return Object.freeze({ launcher: launcher === 'js' ? 'js' : 'auto', cc: env.CC != null && env.CC !== '' ? env.CC : 'cc', detectGpus: gpu === '1' })
}

/** The agent's flags as the command line gives them (bin/commands/services.ts, agent-service.ts). */
export interface AgentFlagValues {
  listen: string[]
  cores?: string
  memory?: string
  gpus?: string
  slots?: string
  label: string[]
  hostname?: string
  allowRoot?: boolean
  isolation?: string
  workDir?: string
}

/** The agent's flags compiled: what it offers (overriding what it detects), where it listens, how it isolates. */
export interface AgentSettings {
  readonly listen: readonly string[]
  readonly offer: Readonly<{ cores?: number, slots?: number, memoryMb?: number, gpus?: readonly number[], labels: Readonly<Record<string, string>>, hostname?: string }>
  readonly isolation: IsolationChoice
  readonly allowRoot: boolean
  readonly workDir?: string
}

export function compileAgent (f: AgentFlagValues): AgentSettings {
  if (f.hostname != null && (f.hostname.trim() === '' || /[\s\u0000-\u001f]/.test(f.hostname))) throw bad(`--hostname: must be a host name without spaces, got ${JSON.stringify(f.hostname)}`)
  if (f.workDir != null && f.workDir.trim() === '') throw bad('--work-dir: must name a folder')
  const offer = {
    ...(f.cores != null ? { cores: parseWholeNumber(f.cores, '--cores', 1, 4096) } : {}),
    ...(f.slots != null ? { slots: parseWholeNumber(f.slots, '--slots', 1, 4096) } : {}),
    ...(f.memory != null ? { memoryMb: parseMemoryFlag(f.memory) } : {}),
    ...(f.gpus != null ? { gpus: Object.freeze(parseGpuList(f.gpus)) } : {}),
    labels: Object.freeze(parseLabels(f.label)),
    ...(f.hostname != null ? { hostname: f.hostname } : {})
  }
  return Object.freeze({
    listen: Object.freeze(checkAddrs(f.listen, '--listen')),
    offer: Object.freeze(offer),
    isolation: parseIsolationFlag(f.isolation ?? 'auto'),
    allowRoot: f.allowRoot === true,
    ...(f.workDir != null ? { workDir: f.workDir } : {})
  })
}

/** A job id argument. */
export function jobIdArg (v: string): number {
  return parseWholeNumber(v, 'JOB', 1, Number.MAX_SAFE_INTEGER)
}

/** A task index argument (the number after the job id, or JOB.INDEX as status prints it). */
export function taskArg (job: string, task?: string): { jobId: number, index?: number } {
  const dotted = /^(\d+)\.(\d+)$/.exec(job)
  if (dotted != null && task == null) return { jobId: jobIdArg(dotted[1]), index: parseWholeNumber(dotted[2], 'TASK', 0, 2 ** 31 - 1) }
  return { jobId: jobIdArg(job), ...(task != null ? { index: parseWholeNumber(task, 'TASK', 0, 2 ** 31 - 1) } : {}) }
}

export function checkAddrs (addrs: string[], flag: string): string[] {
  for (const a of addrs) {
    if (!/^\/(ip4|ip6|dns4|dns6|dns)\/[^/]+\/tcp\/\d{1,5}(\/.*)?$/.test(a)) throw bad(`${flag}: not a multiaddr like /ip4/0.0.0.0/tcp/7341, got ${JSON.stringify(a)}`)
  }
  return addrs
}

function bad (message: string): MeshfarmError {
  return new MeshfarmError('BAD_ARGUMENT', message)
}
