/**
 * BatchSystem on the real Slurm commands. Each call spawns one command directly (never through a shell), with a
 * time limit: sbatch's allows for its own EAGAIN retries, which last minutes. Failures come back as data
 * (classify.ts); output that cannot be parsed is a permanent error naming the command.
 */
import { spawn } from 'node:child_process'
import type { BatchSystem, JobDetails, PartitionInfo, SlurmConfig, SlurmResult, SubmitRequest } from './batch-system.ts'
import { classifySlurmFailure } from './classify.ts'
import { parseConfig, parseJobDetails, parsePartition, parseQueue, parseSinfoNodes, QUEUE_ARGS, SINFO_NODE_ARGS } from './parse.ts'
import { errorMessage } from '../../../shared/util/errors.ts'

export interface CommandResult { code: number | null, signal: string | null, stdout: string, stderr: string, timedOut: boolean }
export interface CommandOptions { cwd?: string, input?: string, timeoutMs: number }
/** Runs one command; tests wrap the real one to count calls (never to replace Slurm). */
export type CommandRunner = (command: string, args: string[], opts: CommandOptions) => Promise<CommandResult>

/** Output beyond this is dropped (a queue of 100,000 array elements is ~10 MB). */
const MAX_OUTPUT = 64 * 1024 * 1024

/** What Slurm commands (and the jobs sbatch starts, which inherit it) get: this process's environment less meshfarm's. */
function slurmEnv (): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('MESHFARM_')) env[k] = v
  return env
}

export const spawnRunner: CommandRunner = async (command, args, opts) => await new Promise(resolve => {
  const child = spawn(command, args, { cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'], env: slurmEnv() })
  const out: Buffer[] = []; const err: Buffer[] = []
  let size = 0; let timedOut = false; let done = false
  const collect = (into: Buffer[]) => (b: Buffer): void => { if ((size += b.length) <= MAX_OUTPUT) into.push(b) }
  child.stdout.on('data', collect(out))
  child.stderr.on('data', collect(err))
  const timer = setTimeout(() => {
    timedOut = true
    child.kill('SIGTERM')
    setTimeout(() => { if (!done) child.kill('SIGKILL') }, 5000).unref()
  }, opts.timeoutMs)
  const finish = (code: number | null, signal: string | null, extra = ''): void => {
    if (done) return
    done = true
    clearTimeout(timer)
    resolve({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') + extra, timedOut })
  }
  child.on('error', e => finish(null, null, `${command}: ${errorMessage(e)}`))
  child.on('close', (code, signal) => finish(code, signal))
  child.stdin.on('error', () => {}) // a command that exits without reading its input
  child.stdin.end(opts.input ?? '')
})

export interface SlurmCliOptions {
  run?: CommandRunner
  /** sbatch: long enough for its own retries on EAGAIN (default 5 min). */
  submitTimeoutMs?: number
  /** squeue, scontrol, scancel, sinfo (default 60 s: they retry slurmctld for MessageTimeout themselves). */
  queryTimeoutMs?: number
}

export function createSlurmCli (options: SlurmCliOptions = {}): BatchSystem {
  const run = options.run ?? spawnRunner
  const submitTimeoutMs = options.submitTimeoutMs ?? 300_000
  const queryTimeoutMs = options.queryTimeoutMs ?? 60_000

  async function call<T> (command: string, args: string[], parse: (stdout: string) => T, opts: Partial<CommandOptions> = {}): Promise<SlurmResult<T>> {
    const timeoutMs = opts.timeoutMs ?? queryTimeoutMs
    const r = await run(command, args, { ...opts, timeoutMs })
    if (r.timedOut) return { ok: false, error: { kind: 'transient', message: `${command}: no answer within ${Number((timeoutMs / 1000).toFixed(1))} s (stopped)` } }
    // scontrol says some failures on stdout ("Partition x not found").
    if (r.code !== 0) return { ok: false, error: classifySlurmFailure(command, r.stderr.trim() !== '' ? r.stderr : r.stdout, r.code) }
    try {
      return { ok: true, value: parse(r.stdout) }
    } catch (e) {
      return { ok: false, error: { kind: 'permanent', message: `${command}: ${errorMessage(e)}` } }
    }
  }

  return {
    async submit (req: SubmitRequest) {
      return await call('sbatch', ['--parsable'], out => {
        // --parsable prints `id` or `id;cluster`.
        const id = out.trim().split('\n').pop()?.split(';')[0] ?? ''
        if (!/^\d+$/.test(id)) throw new Error(`expected a job id, got ${JSON.stringify(out.trim().slice(0, 200))}`)
        return id
      }, { cwd: req.cwd, input: req.script, timeoutMs: submitTimeoutMs })
    },
    async queue () {
      return await call('squeue', QUEUE_ARGS, parseQueue)
    },
    async details (jobId: string): Promise<SlurmResult<JobDetails[]>> {
      if (!/^\d+(_\d+)?$/.test(jobId)) return { ok: false, error: { kind: 'permanent', message: `scontrol: not a Slurm job id: ${JSON.stringify(jobId)}` } }
      const r = await call('scontrol', ['show', 'job', '-o', jobId], parseJobDetails)
      // A job past MinJobAge is simply gone: an answer, not a failure.
      if (!r.ok && /Invalid job id/i.test(r.error.message)) return { ok: true, value: [] }
      return r
    },
    async cancel (jobIds: string[]) {
      if (jobIds.length === 0) return { ok: true, value: undefined }
      const bad = jobIds.find(id => !/^\d+(_\d+)?$/.test(id))
      if (bad != null) return { ok: false, error: { kind: 'permanent', message: `scancel: not a Slurm job id: ${JSON.stringify(bad)}` } }
      const r = await run('scancel', jobIds, { timeoutMs: queryTimeoutMs })
      if (r.timedOut) return { ok: false, error: { kind: 'transient', message: `scancel: no answer within ${Number((queryTimeoutMs / 1000).toFixed(1))} s (stopped)` } }
      // Ids Slurm has already forgotten, or jobs already ending, are what cancelling wanted anyway.
      const complaints = r.stderr.split('\n').filter(l => l.trim() !== '' && !/Invalid job id|already completing or completed/i.test(l))
      if (r.code === 0 || complaints.length === 0) return { ok: true, value: undefined }
      return { ok: false, error: classifySlurmFailure('scancel', complaints.join('\n'), r.code) }
    },
    async config (): Promise<SlurmResult<SlurmConfig>> {
      return await call('scontrol', ['show', 'config'], parseConfig)
    },
    async partition (name: string): Promise<SlurmResult<PartitionInfo>> {
      if (!/^[A-Za-z0-9_.-]+$/.test(name)) return { ok: false, error: { kind: 'permanent', message: `partition: bad name ${JSON.stringify(name)}` } }
      const nodes = await call('sinfo', SINFO_NODE_ARGS(name), parseSinfoNodes)
      if (!nodes.ok) return nodes
      const part = await call('scontrol', ['show', 'partition', '-o', name], out => parsePartition(out, nodes.value))
      if (!part.ok && /Partition \S+ not found|Invalid partition/i.test(part.error.message)) {
        return { ok: false, error: { kind: 'permanent', message: `scontrol: Invalid partition name specified: ${name}` } }
      }
      return part
    }
  }
}
