/**
 * Allocations on the real Slurm: a holder allocation (what auto-alloc will submit) with tasks run into it as srun
 * steps from outside (the login node, --jobid), side by side on their own cores; and the same from inside an
 * allocation, reading it from SLURM_* variables and scontrol as `--in-allocation` will.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { skipUnlessSlurm, countingSlurm, slurmEnv, waitForQueue } from './slurm-env.ts'
import { buildHolderScript, runStep } from '../../node/bridge/slurm/allocation.ts'
import { formatSlurmDuration } from '../../node/bridge/slurm/hostlist.ts'

const skip = skipUnlessSlurm()
const WORK = '/tmp/meshfarm-slurm-tests'
const REPO = join(import.meta.dirname, '..', '..')

test('srun steps into a holder allocation from outside it: own cores, side by side, exit codes; released by scancel', { skip, timeout: 120_000 }, async () => {
  const env = slurmEnv()
  assert.ok(env.ok)
  const { batch } = countingSlurm()
  mkdirSync(WORK, { recursive: true })
  const dir = mkdtempSync(join(WORK, 'holder-'))
  let holder: string | undefined
  try {
    const script = buildHolderScript({ bridgeId: 'test', n: 1, logDir: dir, resources: { cores: 2, memoryMb: 400, gpus: 0, timeLimitMs: 180_000 }, signalBeforeEndS: 30 })
    const r = await batch.submit({ script, cwd: dir })
    assert.ok(r.ok, r.ok ? '' : r.error.message)
    holder = r.value
    await waitForQueue(batch, q => q.get(holder!)?.state === 'RUNNING')
    const d = await batch.details(holder)
    assert.ok(d.ok && d.value.length === 1)
    assert.equal(d.value[0].comment, 'mfa:test:1')
    assert.equal(d.value[0].timeLimitMs, 180_000)
    const steps = [0, 1].map(i => {
      const folder = join(dir, `t${i}`)
      mkdirSync(folder)
      // Each step waits until both have started (a file from the other), so passing proves they ran side by side.
      const command = `touch started.${i}; for n in $(seq 1 100); do [ -e ../t${1 - i}/started.${1 - i} ] && break; sleep 0.1; done; ` +
        `[ -e ../t${1 - i}/started.${1 - i} ] || exit 9; echo "$SLURM_JOB_ID.$SLURM_STEP_ID cpus=$SLURM_CPUS_PER_TASK"; exit ${i * 4}`
      return { folder, step: runStep({ jobId: holder!, cores: 1, memoryMb: 100, gpus: 0, node: env.node, folder, stdout: join(folder, 'stdout'), stderr: join(folder, 'stderr'), command }) }
    })
    const results = await Promise.all(steps.map(async s => await s.step.done))
    assert.deepEqual(results.map(x => x.exitCode), [0, 4], `srun said: ${results.map(x => x.srunSaid).join(' | ')}`)
    assert.match(readFileSync(join(steps[0].folder, 'stdout'), 'utf8'), new RegExp(`^${holder}\\.\\d+ cpus=1\\n$`))
    assert.match(results[1].srunSaid, /task 0: Exited with exit code 4/, 'srun\'s own words about the step')
    const c = await batch.cancel([holder])
    assert.ok(c.ok)
    await waitForQueue(batch, q => q.get(holder!)?.state === 'CANCELLED')
    holder = undefined
  } finally {
    if (holder != null) await batch.cancel([holder])
    rmSync(dir, { recursive: true, force: true })
  }
})

test('inside an allocation: SLURM_* variables and scontrol give its nodes, CPUs and end; a step runs into it', { skip, timeout: 120_000 }, async () => {
  const env = slurmEnv()
  assert.ok(env.ok)
  const { batch } = countingSlurm()
  mkdirSync(WORK, { recursive: true })
  const dir = mkdtempSync(join(WORK, 'inside-'))
  try {
    const folder = join(dir, 'task')
    mkdirSync(folder)
    const out = join(dir, 'seen.json')
    const script = ['#!/bin/bash', '#SBATCH --job-name=mf-inside-test', `#SBATCH --output=${dir}/%j.out`, `#SBATCH --time=${formatSlurmDuration(120_000)}`,
      '#SBATCH --cpus-per-task=2', '#SBATCH --mem=400M', '#SBATCH --no-requeue',
      `exec ${process.execPath} --import tsx ${join(REPO, 'test', 'slurm', 'step-child.ts')} ${out} ${folder}`].join('\n')
    const r = await batch.submit({ script, cwd: REPO })
    assert.ok(r.ok, r.ok ? '' : r.error.message)
    const q = await waitForQueue(batch, q => ['COMPLETED', 'FAILED'].includes(q.get(r.value)?.state ?? ''), { timeoutMs: 90_000 })
    assert.equal(q.get(r.value)?.state, 'COMPLETED', readFileSync(join(dir, `${r.value}.out`), 'utf8'))
    const seen = JSON.parse(readFileSync(out, 'utf8'))
    assert.equal(seen.alloc.jobId, r.value)
    assert.deepEqual(seen.alloc.nodes, [{ name: env.node, cpus: 2 }], `from SLURM_JOB_NODELIST=${seen.env.SLURM_JOB_NODELIST} SLURM_JOB_CPUS_PER_NODE=${seen.env.SLURM_JOB_CPUS_PER_NODE}`)
    const d = await batch.details(r.value)
    assert.ok(d.ok)
    assert.equal(seen.alloc.endsAt, d.value[0].startAt! + 120_000, 'ends at its start plus its time limit')
    assert.equal(seen.step.exitCode, 5)
    assert.match(readFileSync(join(folder, 'stdout'), 'utf8'), new RegExp(`^step 0 of ${r.value} on ${env.node}\\n$`))
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
