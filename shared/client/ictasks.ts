/**
 * ictasks (ICHEC's task farm, `pip install ictasks`, 0.2.4) as its users write it and read it back.
 *
 * In: the YAML config (`job_id`, `task_distribution`, `tasks` as a list or `tasks.items`, `stdout_filename`, ...)
 * and the tasklist numbering (see tasklist.ts). Out: the `ictasks` results layout, `task_<id>/` folders with
 * `task.json` in ictasks' field names and `task_stdout.txt`/`task_stderr.txt`, so scripts that read ictasks
 * results (`ictasks.task.read_all`) keep working.
 *
 * task_distribution, with ictasks' meaning (ictasks/worker.py):
 *   cores_per_task: 1   cores each task gets (meshfarm reserves them and sets OMP_NUM_THREADS to it)
 *   gpus_per_task: 0    GPUs each task gets (gpu_ids.txt and CUDA_VISIBLE_DEVICES in its folder)
 *   cores_per_node: 0   0 = what the machine has; else ictasks runs floor(cores_per_node / cores_per_task) *
 *   threads_per_core: 1   threads_per_core tasks at once on a node, fewer if floor(gpus_per_node / gpus_per_task)
 *   gpus_per_node: 0      is smaller. On a mesh a "node" is an agent: that number becomes the job's per-agent cap
 *                         (ParsedJob.perAgent); with cores_per_node 0 only the GPU limit caps, as in ictasks.
 * ictasks 0.2.4 accepts `stop_on_error` and `stopping_conditions` but never acts on them: meshfarm checks and
 * ignores them the same way. `check_slurm: true` and `slurm_job` are refused: on a mesh, agents (and the Slurm
 * bridge) decide where tasks run.
 */
import { constants } from 'node:os'
import type { TaskRecord } from '../protocol/messages.ts'
import { checkKeys, isMap, relativeName, show, type SpecContext } from './spec-fields.ts'

export const ICTASKS_TOP_KEYS = ['job_id', 'task_distribution', 'stop_on_error', 'stopping_conditions', 'stdout_filename', 'stderr_filename', 'check_slurm', 'slurm_job']
const DISTRIBUTION_KEYS = ['cores_per_node', 'threads_per_core', 'cores_per_task', 'gpus_per_node', 'gpus_per_task']

export interface IctasksSettings {
  /** Per-task resources from task_distribution, when given. */
  cores?: number
  gpus?: number
  /** At most this many tasks of the job at once on one agent (ictasks' workers per node). */
  perAgent?: number
  logNames?: { stdout: string, stderr: string }
}

/** True when a YAML job file is written the ictasks way (then its results default to the ictasks layout). */
export function looksLikeIctasks (raw: Record<string, unknown>): boolean {
  return raw.job_id != null || raw.task_distribution != null || (isMap(raw.tasks) && Array.isArray(raw.tasks.items))
}

function count (ctx: SpecContext, raw: Record<string, unknown>, key: string, dflt: number, min: number): number {
  const v = raw[key] ?? dflt
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) ctx.fail(`task_distribution.${key}`, `must be a whole number >= ${min}, got ${show(v)}`)
  return v
}

/** Reads ictasks' top-level keys (other than job_id and tasks) into per-task resources and a per-agent cap. */
export function readIctasksSettings (ctx: SpecContext, raw: Record<string, unknown>): IctasksSettings {
  const out: IctasksSettings = {}
  if (raw.check_slurm != null && raw.check_slurm !== false) ctx.fail('check_slurm', 'meshfarm places tasks itself: leave check_slurm out (a Slurm cluster joins the mesh through `meshfarm bridge slurm`)')
  if (raw.slurm_job != null) ctx.fail('slurm_job', 'meshfarm places tasks itself: leave slurm_job out (a Slurm cluster joins the mesh through `meshfarm bridge slurm`)')
  if (raw.stop_on_error != null && typeof raw.stop_on_error !== 'boolean') ctx.fail('stop_on_error', `must be true or false, got ${show(raw.stop_on_error)}`)
  if (raw.stopping_conditions != null) {
    if (!Array.isArray(raw.stopping_conditions)) ctx.fail('stopping_conditions', `must be a list, got ${show(raw.stopping_conditions)}`)
    raw.stopping_conditions.forEach((c, i) => {
      if (!isMap(c)) ctx.fail(`stopping_conditions[${i}]`, `must be a map with stopfile and stopmagic, got ${show(c)}`)
      checkKeys(ctx, c, ['stopfile', 'stopmagic'], `stopping_conditions[${i}]`)
    })
  }
  const logName = (key: string, dflt: string): string => {
    const v = raw[key] ?? dflt
    if (typeof v !== 'string' || v.includes('/')) ctx.fail(key, `must be a file name, got ${show(v)}`)
    return relativeName(ctx, v, key)
  }
  if (raw.stdout_filename != null || raw.stderr_filename != null) {
    out.logNames = { stdout: logName('stdout_filename', 'task_stdout.txt'), stderr: logName('stderr_filename', 'task_stderr.txt') }
    if (out.logNames.stdout === out.logNames.stderr) ctx.fail('stderr_filename', 'must differ from stdout_filename')
  }
  const td = raw.task_distribution
  if (td == null) return out
  if (!isMap(td)) ctx.fail('task_distribution', `must be a map, got ${show(td)}`)
  checkKeys(ctx, td, DISTRIBUTION_KEYS, 'task_distribution')
  const coresPerTask = count(ctx, td, 'cores_per_task', 1, 1)
  const gpusPerTask = count(ctx, td, 'gpus_per_task', 0, 0)
  const coresPerNode = count(ctx, td, 'cores_per_node', 0, 0)
  const threadsPerCore = count(ctx, td, 'threads_per_core', 1, 0)
  const gpusPerNode = count(ctx, td, 'gpus_per_node', 0, 0)
  if (td.cores_per_task != null) out.cores = coresPerTask
  if (td.gpus_per_task != null) out.gpus = gpusPerTask
  const gpuWorkers = gpusPerTask > 0 ? Math.floor(gpusPerNode / gpusPerTask) : 0
  if (gpusPerNode > 0 && gpusPerTask > gpusPerNode) ctx.fail('task_distribution.gpus_per_task', `${gpusPerTask} is more than gpus_per_node (${gpusPerNode}): no task could run`)
  if (coresPerNode > 0) {
    const workers = Math.floor(coresPerNode / coresPerTask) * threadsPerCore
    if (workers === 0) ctx.fail('task_distribution', `cores_per_node ${coresPerNode} / cores_per_task ${coresPerTask} * threads_per_core ${threadsPerCore} leaves no task running at once`)
    out.perAgent = gpuWorkers !== 0 && gpuWorkers < workers ? gpuWorkers : workers
  } else if (gpuWorkers > 0) {
    out.perAgent = gpuWorkers
  }
  return out
}

/** The ictasks id of a task: its name, or N for the names meshfarm gives unnamed tasks and tasklist lines (task-N). */
export function ictasksId (name: string): string {
  return /^task-(\d+)$/.exec(name)?.[1] ?? name
}

/** `task_<id>`, as ictasks.task.get_task_dirname; a '/' in a name would make a sub-folder, so it becomes '_'. */
export function ictasksFolder (name: string): string {
  return `task_${ictasksId(name).replaceAll('/', '_')}`
}

/** ictasks' Task model, in its field order, plus what only meshfarm knows (ictasks' reader ignores extra keys). */
export interface IctasksTask {
  id: string
  launch_cmd: string
  state: string
  return_code: number
  launch_time: number
  finish_time: number
  worker_id: number
  host_id: number
  pid: number
  host?: string
  failure?: string
}

const STATES: Record<TaskRecord['state'], string> = { queued: 'created', held: 'created', staging: 'running', suspended: 'running', running: 'running', done: 'finished', failed: 'finished', cancelled: 'cancelled' }

function epochSeconds (iso: string | null): number {
  const ms = iso != null ? Date.parse(iso) : NaN
  return Number.isFinite(ms) ? ms / 1000 : 0
}

/** The return code Python's subprocess reports: the exit code, minus the signal number, or 1 for a task that never ran to an end. */
export function returnCode (record: Pick<TaskRecord, 'exitCode' | 'signal' | 'state'>): number {
  if (record.exitCode != null) return record.exitCode
  if (record.signal != null) return -((constants.signals as Record<string, number>)[record.signal] ?? 1)
  return record.state === 'done' ? 0 : 1
}

/**
 * A meshfarm result as ictasks writes task.json. host_id is a number in ictasks (the host's place in its node
 * list): the caller numbers hosts (fetch keeps the table in hosts.json); pid and worker_id are ictasks' "unknown"
 * (0 and -1) as the mesh does not report them.
 */
export function toIctasksTask (record: TaskRecord, hostId: number): IctasksTask {
  const t: IctasksTask = {
    id: ictasksId(record.name),
    launch_cmd: record.commands.join(' && '),
    state: STATES[record.state],
    return_code: returnCode(record),
    launch_time: epochSeconds(record.start),
    finish_time: epochSeconds(record.end),
    worker_id: -1,
    host_id: hostId,
    pid: 0
  }
  if (record.host != null) t.host = record.host
  if (record.failure != null) t.failure = record.failure.message
  return t
}

/** Numbers hosts in the order they are first seen, as ictasks numbers its node list; kept across fetches. */
export class HostNumbers {
  private readonly ids: Map<string, number>
  constructor (known: Record<string, string> = {}) {
    this.ids = new Map(Object.entries(known).map(([id, host]) => [host, Number(id)]))
  }

  /** The host's number, and whether it is new (then the table should be saved). */
  idOf (host: string | null): { id: number, added: boolean } {
    if (host == null) return { id: -1, added: false }
    const have = this.ids.get(host)
    if (have != null) return { id: have, added: false }
    const id = this.ids.size
    this.ids.set(host, id)
    return { id, added: true }
  }

  /** hosts.json: host_id -> host name. */
  toJson (): Record<string, string> {
    return Object.fromEntries([...this.ids].map(([host, id]) => [String(id), host]))
  }
}
