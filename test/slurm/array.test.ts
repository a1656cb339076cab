/**
 * Job arrays against the real Slurm (skipped with a printed reason where it cannot be set up): one sbatch per
 * chunk, followed with one squeue per poll to the end, outcomes read from Slurm and the wrappers' files. Arrays
 * split at MaxArraySize are shown end to end through the bridge (bridge-forward.test.ts).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { skipUnlessSlurm, countingSlurm, slurmEnv } from './slurm-env.ts'
import { type ArrayTask, type ChunkSpec } from '../../node/bridge/slurm/script.ts'
import { outputFiles, readStatuses, submitChunk } from '../../node/bridge/slurm/chunk-files.ts'
import { IntentLog } from '../../node/bridge/slurm/intent-log.ts'
import { chunkOutcomes, pollQueue, type ElementView } from '../../node/bridge/slurm/follow.ts'
import type { BatchSystem } from '../../node/bridge/slurm/batch-system.ts'

const skip = skipUnlessSlurm()
const WORK = '/tmp/meshfarm-slurm-tests'

function workDir (name: string): string {
  mkdirSync(WORK, { recursive: true })
  return mkdtempSync(join(WORK, `${name}-`))
}

function tasksIn (dir: string, commands: string[]): ArrayTask[] {
  return commands.map((command, i) => {
    const folder = join(dir, `t${i}`)
    mkdirSync(folder, { recursive: true })
    return { taskId: `j1:${i}`, folder, command }
  })
}

/** Follows chunks with one squeue per round until every element has an outcome. */
async function follow (batch: BatchSystem, chunks: Array<{ jobId: string, dir: string, size: number }>): Promise<{ views: ElementView[][], rounds: number }> {
  let rounds = 0
  let views: ElementView[][] = []
  await new Promise<void>((resolve, reject) => {
    const poller = pollQueue(batch, {
      intervalMs: 1000,
      onQueue: q => {
        rounds++
        views = chunks.map(c => chunkOutcomes(c.jobId, c.size, q, readStatuses(c.dir)))
        if (views.every(v => v.every(e => e.outcome != null))) void poller.stop().then(resolve)
        else if (rounds > 180) void poller.stop().then(() => reject(new Error(`not done after ${rounds} polls: ${JSON.stringify(views.flat().filter(e => e.outcome == null).slice(0, 3))}`)))
      },
      onError: e => { void poller.stop().then(() => reject(new Error(e.message))) }
    })
  })
  return { views, rounds }
}

test('a job array: one sbatch, one squeue per poll, exit codes, signals, outputs and env from the wrappers', { skip, timeout: 180_000 }, async () => {
  const { batch, calls } = countingSlurm()
  const dir = workDir('array')
  const log = IntentLog.open(join(dir, 'intents.log'))
  try {
    const tasks = tasksIn(dir, [
      'echo "out of $MESHFARM_TASK_ID" > result.txt; echo to-stdout; echo to-stderr >&2',
      'printf "%s" "$OMP_NUM_THREADS" > threads.txt',
      'exit 3',
      'kill -SEGV $$',
      "echo 'quotes \" and $dollar' > q.txt",
      'true'
    ])
    const spec: ChunkSpec = { bridgeId: 'test', meshJobId: 'arr', chunk: 0, chunkDir: join(dir, 'c0'), tasks, resources: { cores: 1, memoryMb: 100, gpus: 0, timeLimitMs: 120_000 } }
    const r = await submitChunk(batch, log, spec, Date.now)
    assert.ok(r.ok, r.ok ? '' : r.error.message)
    assert.equal(log.get('mf:test:arr:0')?.jobId, r.value, 'the id is in the intent log')
    const { views, rounds } = await follow(batch, [{ jobId: r.value, dir: spec.chunkDir, size: tasks.length }])
    const v = views[0]
    assert.equal(calls.get('sbatch'), 1, 'one sbatch for the whole array')
    assert.equal(calls.get('squeue'), rounds, 'one squeue per poll, never one per task')
    assert.deepEqual(v.map(e => e.outcome?.state), ['done', 'done', 'failed', 'failed', 'done', 'done'])
    assert.deepEqual(v.map(e => e.slurmState), ['COMPLETED', 'COMPLETED', 'FAILED', 'FAILED', 'COMPLETED', 'COMPLETED'])
    assert.equal(v[2].outcome?.exitCode, 3)
    assert.match(v[2].outcome?.failure?.message ?? '', new RegExp(`exit code 3; Slurm job ${r.value}_2: FAILED, reason NonZeroExitCode`))
    assert.equal(v[3].outcome?.signal, 11)
    assert.equal(v[3].outcome?.failure?.kind, 'signal')
    assert.equal(readFileSync(join(tasks[0].folder, 'result.txt'), 'utf8'), 'out of j1:0\n', 'ran in its folder with MESHFARM_TASK_ID')
    assert.equal(readFileSync(join(tasks[1].folder, 'threads.txt'), 'utf8'), '1')
    assert.equal(readFileSync(join(tasks[4].folder, 'q.txt'), 'utf8'), 'quotes " and $dollar\n', 'the command reached the shell untouched')
    const files = outputFiles(spec.chunkDir, r.value, 0)
    assert.equal(readFileSync(files.stdout, 'utf8'), 'to-stdout\n')
    assert.equal(readFileSync(files.stderr, 'utf8'), 'to-stderr\n')
    const statuses = readStatuses(spec.chunkDir)
    assert.equal(statuses.size, 6)
    assert.equal(statuses.get(0)?.slurmJobId, `${r.value}_0`)
    assert.equal(statuses.get(0)?.host, slurmEnv().ok ? (slurmEnv() as { node: string }).node : '')
    // The same outcomes from the status files alone, as after MinJobAge.
    assert.deepEqual(chunkOutcomes(r.value, 6, new Map(), statuses).map(e => e.outcome?.state), ['done', 'done', 'failed', 'failed', 'done', 'done'])
  } finally {
    log.close()
    rmSync(dir, { recursive: true, force: true })
  }
})
