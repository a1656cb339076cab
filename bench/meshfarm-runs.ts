/**
 * meshfarm's side of the benchmark: real coordinator and agent processes on loopback (bin/local-mesh.ts),
 * jobs submitted through the public API from this process, timed from submission to the last result.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { startLocalMesh, type LocalAgentSpec, type LocalMesh } from '../bin/local-mesh.ts'
import { TS_ARGS } from '../bin/processes.ts'
import { connect, type MeshClient, type SubmitProgress } from '../shared/client/client.ts'
import type { ParsedJob, ParsedTask } from '../shared/client/spec.ts'
import { since } from './stats.ts'

export interface BenchMesh {
  mesh: LocalMesh
  client: MeshClient
  stop: () => Promise<void>
}

export async function startBenchMesh (dir: string, agents: LocalAgentSpec[], coordinatorArgs: string[] = []): Promise<BenchMesh> {
  const mesh = await startLocalMesh({ dir, agents, coordinatorArgs })
  const client = await connect({ home: mesh.clientHome })
  return {
    mesh,
    client,
    stop: async () => {
      await client.close()
      await mesh.stop()
    }
  }
}

/** A job built in memory, as the API allows: `n` tasks whose commands come from `command(i)`. */
export function makeJob (name: string, n: number, command: (i: number) => string, extra: Partial<ParsedTask> = {}, shared: ParsedJob['shared'] = []): ParsedJob {
  const tasks: ParsedTask[] = new Array(n)
  for (let i = 0; i < n; i++) {
    tasks[i] = {
      index: i, name: `t${i}`, commands: [command(i)], cores: 1, gpus: 0, memoryMb: 0, timeoutMs: 0,
      env: {}, inputs: [], outputs: [], constraints: {}, ...extra
    }
  }
  return { name, layout: 'per-task', retries: 0, shared, tasks, specText: `# ${name}: built by the benchmark\n`, specFile: `${name}.bench` }
}

export interface JobTiming {
  /** Seconds spent uploading input files to the coordinator (0 when there were none). */
  uploadS: number
  /** Seconds from the start until the job was stored and its files uploaded. */
  submitS: number
  /** Seconds from the start until the last task had its result committed. */
  totalS: number
}

/** Submits a job and waits for its last result; fails unless every task is done. */
export async function runJob (client: MeshClient, job: ParsedJob): Promise<JobTiming> {
  const t0 = performance.now()
  // Files are uploaded after the job is stored (its tasks start as their own files arrive); submit resolves after.
  let upload0 = 0
  const onProgress = (p: SubmitProgress): void => {
    if (p.phase === 'uploading' && p.total > 0 && upload0 === 0) upload0 = performance.now()
  }
  const { jobId } = await client.submit(job, onProgress)
  const submitS = since(t0)
  const summary = await client.watch(jobId)
  const totalS = since(t0)
  if (summary.counts.done !== job.tasks.length) {
    throw new Error(`benchmark job ${job.name}: ${summary.counts.done} of ${job.tasks.length} tasks done (${JSON.stringify(summary.counts)})`)
  }
  return { uploadS: upload0 > 0 ? (t0 + submitS * 1000 - upload0) / 1000 : 0, submitS, totalS }
}

/** Simulated agents (bench/sim-agents.ts) in one child process: they acknowledge tasks without running them. */
export async function startSimAgents (mesh: LocalMesh, count: number, slots: number, name = 'sim'): Promise<{ child: ChildProcess, connected: Promise<void>, stop: () => Promise<void> }> {
  const homes: string[] = []
  for (let i = 0; i < count; i++) homes.push(await mesh.newHome(`${name}-${i}`, { roles: ['agent'] }))
  const entry = fileURLToPath(new URL('./sim-agents.ts', import.meta.url))
  const child = spawn(process.execPath, [...TS_ARGS, entry, '--slots', String(slots), ...homes], { stdio: ['ignore', 'pipe', 'inherit'] })
  const connected = new Promise<void>((resolve, reject) => {
    let out = ''
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('connected')) resolve() })
    child.once('exit', code => { reject(new Error(`simulated agents exited (${code})`)) })
  })
  const stop = async (): Promise<void> => {
    if (child.exitCode != null) return
    const gone = new Promise(resolve => child.once('exit', resolve))
    child.kill('SIGKILL')
    await gone
  }
  return { child, connected, stop }
}

/** CPU seconds (user + system) a process has used so far, from /proc. */
export function cpuSeconds (pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100
}

/** The peak resident memory of a process so far, in MiB, from /proc. */
export function peakRssMb (pid: number): number {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmHWM:\s+(\d+) kB/)
  return m != null ? Number(m[1]) / 1024 : NaN
}
