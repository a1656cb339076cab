/**
 * The only way the bridge talks to Slurm. `slurm-cli.ts` implements it with the real commands; pure unit tests
 * of the decision code may implement it with a recorder. Every call is one command: `queue()` is one
 * `squeue --me` for all of the bridge's jobs, never one per job.
 */

/** A Slurm error as data, Slurm's own words kept. Permanent: retrying reproduces it. Transient: back off, retry. */
export interface SlurmError {
  kind: 'permanent' | 'transient'
  /** `command: Slurm's first error line`, e.g. `sbatch: Invalid partition name specified`. */
  message: string
}

export type SlurmResult<T> = { ok: true, value: T } | { ok: false, error: SlurmError }

/** One `sbatch` submission: a whole script (see script.ts), its working folder and extra stdin-free options. */
export interface SubmitRequest {
  /** The batch script, `#!/bin/bash` and `#SBATCH` lines included. */
  script: string
  /** Folder sbatch runs in (`--chdir` for the job unless the script sets one). */
  cwd: string
}

/** One line of `squeue --me -h -r -t all -o QUEUE_FORMAT`: a job or one element of an array. */
export interface QueueEntry {
  /** `123` for a plain job, `123_4` for array element 4. */
  jobId: string
  /** The array's job id (`%A`); equals jobId for a plain job. */
  arrayJobId: string
  /** The array index, or null for a plain job. */
  arrayIndex: number | null
  /** Slurm's full state name: PENDING, RUNNING, COMPLETED, TIMEOUT, NODE_FAIL, ... */
  state: string
  /** Slurm's reason (`None`, `Resources`, `JobArrayTaskLimit`, ...). */
  reason: string
  /** The nodes it runs or ran on (a hostlist), '' while pending. */
  nodes: string
  name: string
  comment: string
}

/** `scontrol show job -o` for one job or array element, as parsed fields plus the few the bridge reads. */
export interface JobDetails {
  jobId: string
  arrayJobId: string | null
  arrayIndex: number | null
  state: string
  reason: string
  /** `ExitCode=N:S`: the batch script's exit code and the signal that ended it (0 when none). */
  exitCode: number
  exitSignal: number
  /** Epoch ms, or null when Slurm says Unknown/None. */
  startAt: number | null
  endAt: number | null
  /** ms, or null for UNLIMITED. */
  timeLimitMs: number | null
  nodes: string
  name: string
  comment: string
  /** Every field as Slurm printed it. */
  fields: Record<string, string>
}

/** What the bridge needs from `scontrol show config`. */
export interface SlurmConfig {
  version: string
  clusterName: string
  /** Highest array index + 1 (Slurm's MaxArraySize). */
  maxArraySize: number
  /** `max_array_tasks` from SchedulerParameters, or null when unset. */
  maxArrayTasks: number | null
  /** How long Slurm keeps a finished job visible, ms. */
  minJobAgeMs: number
  /** Every `Key = value` line as printed. */
  fields: Record<string, string>
}

export interface PartitionNode {
  name: string
  cpus: number
  memoryMb: number
  /** GPUs from `Gres=gpu:N` or `gpu:type:N`, 0 when none. */
  gpus: number
  /** sinfo's state, lower case: idle, mixed, allocated, down*, drained, ... */
  state: string
}

export interface PartitionInfo {
  name: string
  /** UP, DOWN, DRAIN, INACTIVE. */
  state: string
  /** ms, or null for INFINITE/UNLIMITED. */
  maxTimeMs: number | null
  /** ms, or null when the partition sets no default. */
  defaultTimeMs: number | null
  totalCpus: number
  nodes: PartitionNode[]
  /** `AllowAccounts`, ['ALL'] when open. */
  allowAccounts: string[]
  isDefault: boolean
}

export interface BatchSystem {
  /** `sbatch --parsable`: the job id (the array's id for an array). */
  submit (req: SubmitRequest): Promise<SlurmResult<string>>
  /** One `squeue --me` for all of this user's jobs, array elements one by one, terminal ones included. */
  queue (): Promise<SlurmResult<Map<string, QueueEntry>>>
  /** `scontrol show job -o ID`: one record per job or element ([] when Slurm has forgotten it). */
  details (jobId: string): Promise<SlurmResult<JobDetails[]>>
  /** `scancel ID...`. Ids Slurm no longer knows are not an error. */
  cancel (jobIds: string[]): Promise<SlurmResult<void>>
  config (): Promise<SlurmResult<SlurmConfig>>
  partition (name: string): Promise<SlurmResult<PartitionInfo>>
}
