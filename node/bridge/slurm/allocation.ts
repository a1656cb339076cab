/**
 * Allocations: what one is (from SLURM_JOB_ID, SLURM_JOB_NODELIST, SLURM_JOB_CPUS_PER_NODE and its EndTime),
 * the holder script auto-alloc submits (it only waits; the bridge runs tasks into it), and one task run as an
 * `srun` step. The step runner works inside the allocation (salloc, an sbatch script) and from the login node
 * alike: it always names the allocation with --jobid.
 */
import { spawn } from 'node:child_process'
import { MeshfarmError, errorMessage } from '../../../shared/util/errors.ts'
import type { BatchSystem, JobDetails, SlurmResult } from './batch-system.ts'
import { expandCpusPerNode, expandHostlist } from './hostlist.ts'
import { resourceLines, type ResourceRequest, type SlurmPlacement } from './script.ts'

export interface AllocationInfo {
  jobId: string
  nodes: Array<{ name: string, cpus: number }>
  /** Epoch ms when Slurm ends it; null for no limit. */
  endsAt: number | null
}

/** The allocation this process runs in, from its environment (pure). Throws a one-line BAD_ARGUMENT outside one. */
export function allocationFromEnv (env: Record<string, string | undefined>): { jobId: string, nodes: Array<{ name: string, cpus: number }> } {
  const bad = (m: string): MeshfarmError => new MeshfarmError('BAD_ARGUMENT', `--in-allocation: ${m}`)
  const jobId = env.SLURM_JOB_ID ?? env.SLURM_JOBID
  if (jobId == null || jobId === '') throw bad('SLURM_JOB_ID is not set: not inside a Slurm allocation (salloc or an sbatch script)')
  if (!/^\d+$/.test(jobId)) throw bad(`SLURM_JOB_ID=${JSON.stringify(jobId)} is not a job id`)
  const list = env.SLURM_JOB_NODELIST ?? env.SLURM_NODELIST
  const cpus = env.SLURM_JOB_CPUS_PER_NODE
  if (list == null || cpus == null) throw bad('SLURM_JOB_NODELIST or SLURM_JOB_CPUS_PER_NODE is not set')
  let names: string[]; let perNode: number[]
  try {
    names = expandHostlist(list)
    perNode = expandCpusPerNode(cpus)
  } catch (e) { throw bad(errorMessage(e)) }
  if (names.length === 0 || names.length !== perNode.length) throw bad(`SLURM_JOB_NODELIST=${list} names ${names.length} nodes, SLURM_JOB_CPUS_PER_NODE=${cpus} ${perNode.length}`)
  return { jobId, nodes: names.map((name, i) => ({ name, cpus: perNode[i] })) }
}

/** The allocation's end from `scontrol show job` (pure). */
export function allocationInfo (env: Record<string, string | undefined>, details: JobDetails[]): AllocationInfo {
  const base = allocationFromEnv(env)
  const d = details.find(x => x.jobId === base.jobId) ?? details[0]
  if (d == null) throw new MeshfarmError('NOT_FOUND', `--in-allocation: Slurm does not know job ${base.jobId}`)
  return { ...base, endsAt: d.timeLimitMs == null ? null : d.endAt }
}

/** Reads the current allocation: the environment plus one `scontrol show job`. */
export async function currentAllocation (batch: BatchSystem, env: Record<string, string | undefined> = process.env): Promise<SlurmResult<AllocationInfo>> {
  const { jobId } = allocationFromEnv(env)
  const d = await batch.details(jobId)
  if (!d.ok) return d
  return { ok: true, value: allocationInfo(env, d.value) }
}

/** `mfa:<bridge>:<n>`: an auto-alloc holder's name and comment (mesh job chunks are `mf:...`). */
export function holderLabel (bridgeId: string, n: number): string {
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(bridgeId)) throw new MeshfarmError('BAD_ARGUMENT', `bridge id: ${JSON.stringify(bridgeId)}: letters, digits, _ . - only`)
  return `mfa:${bridgeId}:${n}`
}

export interface HolderSpec extends SlurmPlacement {
  bridgeId: string
  n: number
  /** The allocation's shape: cores = CPUs on its node, timeLimitMs = its --time. */
  resources: ResourceRequest
  /** Folder for its own (empty) stdout/stderr. */
  logDir: string
  /** Seconds before the end at which Slurm sends USR1 to the holder (phase 2 drains then). */
  signalBeforeEndS?: number
}

/** A batch script that holds an allocation open and does nothing else; tasks arrive as srun steps. */
export function buildHolderScript (h: HolderSpec): string {
  const label = holderLabel(h.bridgeId, h.n)
  if (!/^\/[A-Za-z0-9_./+@=,-]*$/.test(h.logDir)) throw new MeshfarmError('BAD_ARGUMENT', `work folder: ${JSON.stringify(h.logDir)}: an absolute path of plain characters`)
  const lines = [`--job-name=${label}`, `--comment=${label}`, `--output=${h.logDir}/%j.out`, `--error=${h.logDir}/%j.err`, '--no-requeue',
    ...(h.signalBeforeEndS != null ? [`--signal=B:USR1@${h.signalBeforeEndS}`] : []), ...resourceLines(h.resources, h)]
  // `wait` returns on the USR1 so the script can end; the bridge decides what ends the allocation (scancel).
  return ['#!/bin/bash', ...lines.map(l => `#SBATCH ${l}`), 'trap "exit 0" USR1', 'sleep infinity & wait', ''].join('\n')
}

export interface StepSpec {
  jobId: string
  cores: number
  /** The step's memory; 0 lets Slurm give it the allocation's whole memory, which serialises steps. */
  memoryMb: number
  gpus: number
  /** One node of the allocation, or any. */
  node?: string
  folder: string
  stdout: string
  stderr: string
  command: string
  name?: string
}

/** srun's arguments for one task as a step: exclusive cores (--exact), one task, its folder and output files. */
export function srunArgs (s: StepSpec): string[] {
  if (!/^\d+$/.test(s.jobId)) throw new MeshfarmError('BAD_ARGUMENT', `srun: job id ${JSON.stringify(s.jobId)}`)
  if (!Number.isInteger(s.cores) || s.cores < 1) throw new MeshfarmError('BAD_ARGUMENT', `srun: cores ${s.cores}`)
  const args = [`--jobid=${s.jobId}`, '--exact', '-N1', '-n1', `-c${s.cores}`, '--quiet']
  if (s.memoryMb > 0) args.push(`--mem=${s.memoryMb}M`)
  if (s.gpus > 0) args.push(`--gres=gpu:${s.gpus}`)
  if (s.node != null) args.push(`--nodelist=${s.node}`)
  if (s.name != null) args.push(`--job-name=${s.name}`)
  args.push(`--chdir=${s.folder}`, `--output=${s.stdout}`, `--error=${s.stderr}`, '/bin/sh', '-c', s.command)
  return args
}

export interface RunningStep {
  pid: number
  /** Ends when srun does: the task's exit code or signal, and srun's own complaints (not the task's stderr). */
  done: Promise<{ exitCode: number | null, signal: string | null, srunSaid: string }>
  /** Signals srun, which forwards SIGINT/SIGTERM to the step (SIGKILL to srun leaves it to Slurm to clean up). */
  kill: (signal?: NodeJS.Signals) => void
}

/**
 * The variables an sbatch or salloc leaves that would change a step without a flag of ours to override them
 * (srun reads them as options): GPU requests per task or per node. CPUs, memory, tasks and nodes are always given
 * on the command line, which wins over the environment (checked on 22.05 with --mem-per-cpu in the environment).
 */
const BENDING = /^SLURM_(GPUS|GPUS_PER_\w+|TRES_PER_\w+|CPUS_PER_GPU|MEM_PER_GPU|GPU_\w+)$/

/** Starts one task as an srun step, in this process's environment less the variables that would bend it. */
export function runStep (s: StepSpec, env: Record<string, string | undefined> = process.env): RunningStep {
  const stepEnv: Record<string, string> = {}
  for (const [k, v] of Object.entries(env)) if (v != null && !BENDING.test(k)) stepEnv[k] = v
  const child = spawn('srun', srunArgs(s), { stdio: ['ignore', 'ignore', 'pipe'], env: stepEnv })
  let said = ''
  child.stderr.on('data', (b: Buffer) => { if (said.length < 16_384) said += b.toString('utf8') })
  const done = new Promise<{ exitCode: number | null, signal: string | null, srunSaid: string }>(resolve => {
    child.on('error', e => resolve({ exitCode: null, signal: null, srunSaid: `srun: ${errorMessage(e)}` }))
    child.on('close', (code, signal) => resolve({ exitCode: code, signal, srunSaid: said.trim() }))
  })
  return { pid: child.pid ?? -1, done, kill: (sig = 'SIGTERM') => { child.kill(sig) } }
}
