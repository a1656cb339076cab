/**
 * The forward backend's decisions, pure: what an array element runs for a task (its variables, then its
 * commands), which buffered tasks share a chunk, whether a task can ever run in the partition, and how a Slurm
 * outcome (outcome.ts) becomes the agent's TaskOutcome with a mesh failure kind, Slurm's words in `detail`.
 */
import type { FailureKind } from '../../../shared/protocol/messages.ts'
import type { BackendTask, TaskOutcome } from '../../backend/backend.ts'
import { SEQUENCE_SCRIPT, taskEnv } from '../../backend/launch-plan.ts'
import { shellQuote, type ResourceRequest } from './script.ts'
import { signalName, type SlurmFailureKind, type TaskOutcome as SlurmOutcome } from './outcome.ts'
import { shortDuration, slurmClock } from './hostlist.ts'

/** Slurm's endings as the mesh counts them: a failed node is a crash, preemption a vacate, the rest the task's. */
export const MESH_KIND: Record<SlurmFailureKind, FailureKind> = {
  exit: 'exit',
  signal: 'signal',
  timeout: 'timeout',
  memory: 'memory',
  'node-fail': 'node-fail',
  'boot-fail': 'node-fail',
  lost: 'node-fail',
  preempted: 'preempted',
  cancelled: 'batch',
  deadline: 'batch',
  slurm: 'batch'
}

/** The variables a task gets under Slurm: the agent's, less what Slurm decides there (GPUs) or means nothing there. */
export function slurmTaskEnv (t: BackendTask): Record<string, string> {
  const env = taskEnv({ attemptId: t.attemptId, jobId: t.jobId, index: t.index, cores: t.cores, gpuIds: [], agentHasGpus: false, env: t.env, taskDir: t.taskDir, jobDir: t.jobDir, agentPid: 0 })
  // The wrapper sets these from what Slurm gave the element (CUDA_VISIBLE_DEVICES), and the bridge's pid is no
  // process on a compute node.
  delete env.MESHFARM_GPUS
  delete env.MESHFARM_AGENT_PID
  return env
}

/**
 * One /bin/sh script for the task: its variables exported, then its command (several: each in a subshell, stopping
 * at the first that fails, as the local launcher runs them). Newlines keep a command's own text whole.
 */
export function taskScript (commands: readonly string[], env: Record<string, string>): string {
  const names = Object.keys(env)
  for (const k of names) if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new Error(`env: ${JSON.stringify(k)} is not a variable name`)
  const exports = names.length > 0 ? `export ${names.map(k => `${k}=${shellQuote(env[k])}`).join(' ')}\n` : ''
  if (commands.length === 1) return `${exports}${commands[0]}`
  return `${exports}set -- ${commands.map(shellQuote).join(' ')}\n${SEQUENCE_SCRIPT}`
}

/** What every element of a chunk shares: one job, one resource shape. */
export function chunkShape (t: Pick<BackendTask, 'jobId' | 'cores' | 'memoryMb' | 'gpuIds' | 'timeoutMs'>): string {
  return `${t.jobId}/${t.cores}/${t.memoryMb}/${t.gpuIds.length}/${t.timeoutMs}`
}

export function resourcesOf (t: Pick<BackendTask, 'cores' | 'memoryMb' | 'gpuIds' | 'timeoutMs'>): ResourceRequest {
  return { cores: t.cores, memoryMb: t.memoryMb, gpus: t.gpuIds.length, timeLimitMs: t.timeoutMs > 0 ? t.timeoutMs : null }
}

/** The partition as placement sees it: its largest node's CPUs, memory and GPUs, and its MaxTime. */
export interface PartitionLimits {
  name: string
  cpusPerNode: number
  memoryMbPerNode: number
  gpusPerNode: number
  maxTimeMs: number | null
}

/** Why the partition can never run this task (no node is big enough, or its MaxTime is shorter), or null. */
export function neverFits (t: Pick<BackendTask, 'cores' | 'memoryMb' | 'gpuIds' | 'timeoutMs'>, p: PartitionLimits): string | null {
  if (t.timeoutMs > 0 && p.maxTimeMs != null && t.timeoutMs > p.maxTimeMs) return `partition ${p.name}: MaxTime ${slurmClock(p.maxTimeMs)} < task timeout ${shortDuration(t.timeoutMs)}`
  if (t.cores > p.cpusPerNode) return `partition ${p.name}: its largest node has ${p.cpusPerNode} CPUs < ${t.cores} cores asked`
  if (t.memoryMb > p.memoryMbPerNode) return `partition ${p.name}: its largest node has ${p.memoryMbPerNode} MB < ${t.memoryMb} MB asked`
  if (t.gpuIds.length > p.gpusPerNode) return `partition ${p.name}: its largest node has ${p.gpusPerNode} GPUs < ${t.gpuIds.length} asked`
  return null
}

export interface ElementInfo {
  arrayJobId: string
  index: number
  node: string | null
  startedAt: number
  endedAt: number
}

/** A Slurm outcome as the agent's: exit status, a mesh failure with Slurm's words, and where it ran. */
export function meshOutcome (o: SlurmOutcome, e: ElementInfo): TaskOutcome {
  const f = o.failure
  return {
    exitCode: o.exitCode,
    signal: o.signal != null ? signalName(o.signal) : null,
    timedOut: f?.kind === 'timeout',
    error: null,
    startedAt: e.startedAt,
    endedAt: Math.max(e.startedAt, e.endedAt),
    stdoutBytes: null,
    stderrBytes: null,
    peakMemoryBytes: null,
    overMemoryLimit: f?.kind === 'memory' ? true : null,
    ...(f != null ? { failure: { kind: MESH_KIND[f.kind], message: f.message, retryable: f.retryable, detail: f.detail.slice(0, 256) } } : {}),
    backend: { system: 'slurm', jobId: e.arrayJobId, arrayIndex: e.index, ...(e.node != null && e.node !== '' ? { node: e.node.slice(0, 256) } : {}) }
  }
}

/** An attempt that never reached a compute node (refused, stopped before submission): it ran nowhere. */
export function unranOutcome (now: number, failure?: TaskOutcome['failure']): TaskOutcome {
  return { exitCode: null, signal: null, timedOut: false, error: null, startedAt: now, endedAt: now, stdoutBytes: 0, stderrBytes: 0, peakMemoryBytes: null, overMemoryLimit: null, ...(failure != null ? { failure } : {}) }
}
