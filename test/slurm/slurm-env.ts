/**
 * The real Slurm for test/slurm: runs setup.sh once per process (it installs and starts a single-node Slurm, or
 * says in one line why it cannot) and tells the tests whether to run or to skip with that reason.
 */
import { spawnSync } from 'node:child_process'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { createSlurmCli, spawnRunner, type CommandRunner } from '../../node/bridge/slurm/slurm-cli.ts'
import type { BatchSystem, QueueEntry } from '../../node/bridge/slurm/batch-system.ts'

export type SlurmEnv = { ok: true, partition: string, shortPartition: string, node: string } | { ok: false, reason: string }

let cached: SlurmEnv | undefined

export function slurmEnv (): SlurmEnv {
  if (cached != null) return cached
  if (process.env.MESHFARM_SKIP_SLURM === '1') return (cached = { ok: false, reason: 'MESHFARM_SKIP_SLURM=1' })
  const r = spawnSync('bash', [join(import.meta.dirname, 'setup.sh')], { encoding: 'utf8', timeout: 600_000 })
  const said = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n').filter(Boolean).pop() ?? ''
  if (r.error != null) cached = { ok: false, reason: `slurm setup: ${r.error.message}` }
  else if (r.status !== 0) cached = { ok: false, reason: said !== '' ? said : `slurm setup exited with ${String(r.status)}` }
  else cached = { ok: true, partition: 'debug', shortPartition: 'short', node: hostname().split('.')[0] }
  if (!cached.ok) console.log(`# skipping Slurm tests: ${cached.reason}`)
  return cached
}

/** node:test's `skip` option: false when Slurm is up, else the printed reason. */
export function skipUnlessSlurm (): string | false {
  const env = slurmEnv()
  return env.ok ? false : env.reason
}

/** The real runner, wrapped to count the commands it really ran (sbatch above all). Nothing is faked. */
export function countingSlurm (): { batch: BatchSystem, calls: Map<string, number>, run: CommandRunner } {
  const calls = new Map<string, number>()
  const run: CommandRunner = async (command, args, opts) => {
    calls.set(command, (calls.get(command) ?? 0) + 1)
    return await spawnRunner(command, args, opts)
  }
  return { batch: createSlurmCli({ run }), calls, run }
}

/** Polls with one squeue per round until `done` holds for the queue, at most `timeoutMs`. */
export async function waitForQueue (batch: BatchSystem, done: (q: Map<string, QueueEntry>) => boolean, o: { intervalMs?: number, timeoutMs?: number } = {}): Promise<Map<string, QueueEntry>> {
  const until = Date.now() + (o.timeoutMs ?? 120_000)
  for (;;) {
    const q = await batch.queue()
    if (!q.ok) throw new Error(q.error.message)
    if (done(q.value)) return q.value
    if (Date.now() > until) throw new Error(`gave up waiting after ${o.timeoutMs ?? 120_000} ms; queue: ${JSON.stringify([...q.value.values()].slice(-5))}`)
    await new Promise(resolve => setTimeout(resolve, o.intervalMs ?? 1000))
  }
}
