/**
 * The sbatch scripts, pure. One script carries a whole chunk of tasks as a job array (index i runs the task on
 * line i+1 of the chunk's manifest), so 1,000 tasks cost one sbatch, like a hand-written array. Each element runs
 * a small wrapper that starts the task's command in its folder and writes its exit code, signal and end time
 * atomically (tmp + rename) to `<chunkDir>/status/<index>.json`: there is no sacct, and Slurm forgets a finished
 * job after MinJobAge.
 */
import { MeshfarmError } from '../../../shared/util/errors.ts'
import { formatSlurmDuration } from './hostlist.ts'

export interface ArrayTask {
  /** The mesh's task id (goes into MESHFARM_TASK_ID and the status file). */
  taskId: string
  /** Absolute folder the command runs in (inputs staged there, outputs left there). */
  folder: string
  /** A /bin/sh command line, as any agent runs it. */
  command: string
}

/** What every element of one chunk asks Slurm for (one array has one shape). */
export interface ResourceRequest {
  cores: number
  /** 0: the partition's default memory. */
  memoryMb: number
  gpus: number
  /** null: the partition's default time limit. */
  timeLimitMs: number | null
}

export interface SlurmPlacement {
  partition?: string
  account?: string
  /** User `--sbatch-arg`s, checked by checkSbatchArgs. */
  extraArgs?: string[]
}

export interface ChunkSpec extends SlurmPlacement {
  bridgeId: string
  meshJobId: string
  chunk: number
  /** Absolute folder of the chunk: manifest.tsv, status/, out/ (the %A_%a stdout and stderr). */
  chunkDir: string
  tasks: ArrayTask[]
  resources: ResourceRequest
  /** `%N`: at most N elements at once. */
  throttle?: number
  /** Exported to every task (e.g. MESHFARM_JOB_DIR). */
  env?: Record<string, string>
}

/** The status file the wrapper writes for array index i. */
export interface WrapperStatus {
  index: number
  taskId: string
  /** The command's exit code; 128+N when a signal N ended it (as the shell reports it). */
  exitCode: number
  signal: number | null
  /** The wrapper caught Slurm's SIGTERM (time limit, scancel, node down) while the command ran. */
  terminated: boolean
  startedAt: number
  endedAt: number
  host: string
  slurmJobId: string
}

const bad = (message: string): MeshfarmError => new MeshfarmError('BAD_ARGUMENT', message)
const ID_RE = /^[A-Za-z0-9_.-]{1,64}$/
/** Paths go into #SBATCH lines (no quoting there) and into %-patterns: plain characters only. */
const PATH_RE = /^\/[A-Za-z0-9_./+@=,-]*$/

/** `mf:<bridge>:<job>:<chunk>`: the job name and comment that let a restarted bridge find its jobs. */
export function chunkLabel (bridgeId: string, meshJobId: string, chunk: number): string {
  if (!ID_RE.test(bridgeId)) throw bad(`bridge id: ${JSON.stringify(bridgeId)}: letters, digits, _ . - only`)
  if (!ID_RE.test(meshJobId)) throw bad(`job id: ${JSON.stringify(meshJobId)}: letters, digits, _ . - only`)
  if (!Number.isInteger(chunk) || chunk < 0) throw bad(`chunk: ${chunk}: not a whole number`)
  return `mf:${bridgeId}:${meshJobId}:${chunk}`
}

export function parseChunkLabel (label: string): { bridgeId: string, meshJobId: string, chunk: number } | null {
  const m = /^mf:([A-Za-z0-9_.-]{1,64}):([A-Za-z0-9_.-]{1,64}):(\d+)$/.exec(label.trim())
  return m == null ? null : { bridgeId: m[1], meshJobId: m[2], chunk: Number(m[3]) }
}

/** Options the bridge sets itself; a user's --sbatch-arg may not change them. */
const RESERVED = ['--array', '-a', '--parsable', '--output', '-o', '--error', '-e', '--job-name', '-J', '--comment',
  '--requeue', '--no-requeue', '--wrap', '--chdir', '-D', '--input', '-i', '--dependency', '-d', '--test-only']

/** Checks user --sbatch-args: options only, one line each, none of the bridge's own. */
export function checkSbatchArgs (args: string[]): string[] {
  for (const a of args) {
    if (/[\n\r\0]/.test(a)) throw bad(`--sbatch-arg: ${JSON.stringify(a)}: no newlines`)
    if (!/^--?[A-Za-z]/.test(a)) throw bad(`--sbatch-arg: ${JSON.stringify(a)}: expected an option such as --qos=normal`)
    const name = a.split('=')[0]
    const reserved = RESERVED.find(r => name === r || (r.length === 2 && name.startsWith(r) && !name.startsWith('--')))
    if (reserved != null) throw bad(`--sbatch-arg: ${a}: the bridge sets ${reserved} itself`)
  }
  return args
}

/** Single-quotes a value for bash. */
export function shellQuote (s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`
}

/** One line per array index: `folder<TAB>taskId<TAB>base64(command)`; commands may hold anything, newlines too. */
export function buildManifest (tasks: ArrayTask[]): string {
  return tasks.map((t, i) => {
    if (!t.folder.startsWith('/') || /[\t\n\r\0]/.test(t.folder)) throw bad(`task ${i}: folder ${JSON.stringify(t.folder)}: an absolute path without tabs or newlines`)
    if (!/^[A-Za-z0-9_.:-]{1,200}$/.test(t.taskId)) throw bad(`task ${i}: id ${JSON.stringify(t.taskId)}: letters, digits, _ . : - only`)
    return `${t.folder}\t${t.taskId}\t${Buffer.from(t.command, 'utf8').toString('base64')}`
  }).join('\n') + '\n'
}

/** The #SBATCH lines for a resource shape and placement (shared by arrays and holder allocations). */
export function resourceLines (r: ResourceRequest, p: SlurmPlacement): string[] {
  if (!Number.isInteger(r.cores) || r.cores < 1) throw bad(`cores: ${r.cores}: at least 1`)
  if (!Number.isInteger(r.gpus) || r.gpus < 0) throw bad(`gpus: ${r.gpus}: a whole number`)
  if (!Number.isInteger(r.memoryMb) || r.memoryMb < 0) throw bad(`memory: ${r.memoryMb} MB: a whole number`)
  for (const [k, v] of [['partition', p.partition], ['account', p.account]] as const) {
    if (v != null && !/^[A-Za-z0-9_.-]+$/.test(v)) throw bad(`--${k}: ${JSON.stringify(v)}: letters, digits, _ . - only`)
  }
  const lines: string[] = []
  if (p.partition != null) lines.push(`--partition=${p.partition}`)
  if (p.account != null) lines.push(`--account=${p.account}`)
  if (r.timeLimitMs != null) lines.push(`--time=${formatSlurmDuration(r.timeLimitMs)}`)
  lines.push('--nodes=1', '--ntasks=1', `--cpus-per-task=${r.cores}`)
  if (r.memoryMb > 0) lines.push(`--mem=${r.memoryMb}M`)
  if (r.gpus > 0) lines.push(`--gres=gpu:${r.gpus}`)
  lines.push(...checkSbatchArgs(p.extraArgs ?? []))
  return lines
}

/** The wrapper every array element runs (bash; the task's command itself runs under /bin/sh like any agent's). */
function wrapper (chunkDir: string): string {
  return `set -u
i=\${SLURM_ARRAY_TASK_ID:?meshfarm: not started as a job array element}
chunk=${shellQuote(chunkDir)}
# Few processes per task (a hand-written array runs none): bash builtins where they exist.
now_ms () { if [ -n "\${EPOCHREALTIME:-}" ]; then local t=\${EPOCHREALTIME/[.,]/}; echo $((t / 1000)); else date +%s%3N; fi; }
mapfile -t -s "$i" -n 1 line < "$chunk/manifest.tsv"
line=\${line[0]:-}
[ -n "$line" ] || { echo "meshfarm: no task at index $i in $chunk/manifest.tsv" >&2; exit 3; }
folder=\${line%%$'\\t'*}; rest=\${line#*$'\\t'}
task=\${rest%%$'\\t'*}; cmd=$(printf %s "\${rest#*$'\\t'}" | base64 -d)
export MESHFARM_TASK_ID="$task" OMP_NUM_THREADS="\${SLURM_CPUS_PER_TASK:-1}"
started=$(now_ms)
# GPUs: the ones Slurm gave this element (CUDA_VISIBLE_DEVICES comes from its gres plugin), never the mesh's
# placeholders staged before it was known where the task would run.
if [ -n "\${CUDA_VISIBLE_DEVICES:-}" ]; then printf '%s\\n' "\${CUDA_VISIBLE_DEVICES//,/$'\\n'}" > "$folder/gpu_ids.txt"; else rm -f "$folder/gpu_ids.txt"; fi
export MESHFARM_GPUS="\${CUDA_VISIBLE_DEVICES:-}"
# Slurm sends SIGTERM to every process at a time limit, scancel or node loss: note it, let the command go first.
terminated=false
trap 'terminated=true' TERM
code=0
cd "$folder" && /bin/sh -c "$cmd" || code=$?
[ -d "$folder" ] || code=127
signal=null; [ "$code" -gt 128 ] && [ "$code" -lt 193 ] && signal=$((code - 128))
status="$chunk/status/$i.json"
printf '{"index":%d,"taskId":"%s","exitCode":%d,"signal":%s,"terminated":%s,"startedAt":%s,"endedAt":%s,"host":"%s","slurmJobId":"%s"}\\n' \\
  "$i" "$task" "$code" "$signal" "$terminated" "$started" "$(now_ms)" "\${HOSTNAME%%.*}" "\${SLURM_ARRAY_JOB_ID}_$i" > "$status.tmp.$$"
mv -f "$status.tmp.$$" "$status"
exit "$code"
`
}

/** The whole sbatch script for one chunk (the manifest is written beside it, see buildManifest). */
export function buildArrayScript (spec: ChunkSpec): string {
  const label = chunkLabel(spec.bridgeId, spec.meshJobId, spec.chunk)
  if (!PATH_RE.test(spec.chunkDir)) throw bad(`work folder: ${JSON.stringify(spec.chunkDir)}: an absolute path of plain characters (no spaces, quotes or %)`)
  const k = spec.tasks.length
  if (k < 1) throw bad(`chunk ${spec.chunk}: no tasks`)
  if (spec.throttle != null && (!Number.isInteger(spec.throttle) || spec.throttle < 1)) throw bad(`throttle: ${spec.throttle}: at least 1`)
  const lines = [
    `--job-name=${label}`,
    `--comment=${label}`,
    `--array=0-${k - 1}${spec.throttle != null ? `%${spec.throttle}` : ''}`,
    `--output=${spec.chunkDir}/out/%A_%a.out`,
    `--error=${spec.chunkDir}/out/%A_%a.err`,
    `--chdir=${spec.chunkDir}`,
    '--no-requeue',
    ...resourceLines(spec.resources, spec)
  ]
  const env = Object.entries(spec.env ?? {}).map(([k, v]) => {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw bad(`env: ${JSON.stringify(k)}: not a variable name`)
    return `export ${k}=${shellQuote(v)}`
  })
  return ['#!/bin/bash', ...lines.map(l => `#SBATCH ${l}`), `# meshfarm ${label}: ${k} task${k === 1 ? '' : 's'}, see manifest.tsv`, ...env, wrapper(spec.chunkDir)].join('\n')
}

/** Parses a status file the wrapper wrote; null when it is not (yet) a complete one. */
export function parseWrapperStatus (text: string): WrapperStatus | null {
  let v: unknown
  try { v = JSON.parse(text) } catch { return null }
  if (typeof v !== 'object' || v == null) return null
  const s = v as Record<string, unknown>
  const int = (x: unknown): boolean => typeof x === 'number' && Number.isInteger(x)
  if (!int(s.index) || !int(s.exitCode) || !(s.signal === null || int(s.signal)) || typeof s.terminated !== 'boolean' ||
    !int(s.startedAt) || !int(s.endedAt) || typeof s.taskId !== 'string' || typeof s.host !== 'string' || typeof s.slurmJobId !== 'string') return null
  return s as unknown as WrapperStatus
}

/** The largest chunk Slurm accepts as one array: indexes 0..k-1 need k-1 < MaxArraySize and k <= max_array_tasks. */
export function chunkLimit (cfg: { maxArraySize: number, maxArrayTasks: number | null }): number {
  const byIndex = cfg.maxArraySize - 1
  const limit = cfg.maxArrayTasks != null ? Math.min(byIndex, cfg.maxArrayTasks) : byIndex
  if (limit < 1) throw new MeshfarmError('BAD_ARGUMENT', `Slurm allows no job arrays here (MaxArraySize=${cfg.maxArraySize}, max_array_tasks=${String(cfg.maxArrayTasks)})`)
  return limit
}

/** Splits tasks into chunks of at most `limit`, grouped by resource shape, order kept within a shape. */
export function planChunks<T> (tasks: T[], limit: number, shapeOf: (t: T) => string): T[][] {
  if (!Number.isInteger(limit) || limit < 1) throw new Error(`chunk limit ${limit}: at least 1`)
  const byShape = new Map<string, T[]>()
  for (const t of tasks) {
    const key = shapeOf(t)
    const list = byShape.get(key)
    if (list == null) byShape.set(key, [t]); else list.push(t)
  }
  const chunks: T[][] = []
  for (const list of byShape.values()) for (let i = 0; i < list.length; i += limit) chunks.push(list.slice(i, i + limit))
  return chunks
}
