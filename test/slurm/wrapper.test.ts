/**
 * The array wrapper run directly with bash, with the variables slurmstepd sets, for what this machine's Slurm
 * cannot give it: GPUs (CUDA_VISIBLE_DEVICES from a gres plugin) and a SIGTERM delivered at a chosen moment.
 * Needs bash only, no Slurm.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { prepareChunk, readStatus } from '../../node/bridge/slurm/chunk-files.ts'

function chunk (commands: string[]): { dir: string, script: string, folders: string[] } {
  const dir = mkdtempSync(join(tmpdir(), 'mf-wrapper-'))
  const folders = commands.map((_, i) => { const f = join(dir, `t${i}`); mkdirSync(f); return f })
  const script = prepareChunk({ bridgeId: 'w', meshJobId: 'j', chunk: 0, chunkDir: join(dir, 'c'), tasks: commands.map((command, i) => ({ taskId: `j:${i}`, folder: folders[i], command })), resources: { cores: 1, memoryMb: 0, gpus: 1, timeLimitMs: null } })
  writeFileSync(join(dir, 'job.sh'), script)
  return { dir, script: join(dir, 'job.sh'), folders }
}

function element (script: string, index: number, env: Record<string, string> = {}): ReturnType<typeof spawn> {
  return spawn('bash', [script], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', SLURM_ARRAY_TASK_ID: String(index), SLURM_ARRAY_JOB_ID: '77', SLURM_CPUS_PER_TASK: '1', ...env }, stdio: 'ignore', detached: true })
}

const exit = async (p: ReturnType<typeof spawn>): Promise<number | null> => await new Promise(resolve => p.on('exit', code => resolve(code)))

test('GPUs: the task sees the ids Slurm set, one per line in gpu_ids.txt and in MESHFARM_GPUS; without them no file', async () => {
  const c = chunk(['echo "$CUDA_VISIBLE_DEVICES $MESHFARM_GPUS" > cvd.txt', 'true'])
  try {
    // The mesh staged placeholder ids before it knew the task would run in Slurm.
    writeFileSync(join(c.folders[0], 'gpu_ids.txt'), '0\n')
    writeFileSync(join(c.folders[1], 'gpu_ids.txt'), '0\n')
    assert.equal(await exit(element(c.script, 0, { CUDA_VISIBLE_DEVICES: '2,5' })), 0)
    assert.equal(readFileSync(join(c.folders[0], 'gpu_ids.txt'), 'utf8'), '2\n5\n')
    assert.equal(readFileSync(join(c.folders[0], 'cvd.txt'), 'utf8'), '2,5 2,5\n')
    assert.equal(await exit(element(c.script, 1)), 0)
    assert.ok(!existsSync(join(c.folders[1], 'gpu_ids.txt')))
    assert.equal(readStatus(join(c.dir, 'c'), 1)?.exitCode, 0)
  } finally {
    rmSync(c.dir, { recursive: true, force: true })
  }
})

test('SIGTERM to the element (as Slurm sends at a time limit): the status says terminated, by signal 15', async () => {
  const c = chunk(['touch started; sleep 30'])
  try {
    const p = element(c.script, 0)
    const exited = exit(p)
    while (!existsSync(join(c.folders[0], 'started'))) await new Promise(resolve => setTimeout(resolve, 20))
    process.kill(-p.pid!, 'SIGTERM') // every process of the element, as Slurm's proctrack does
    assert.equal(await exited, 143)
    const s = readStatus(join(c.dir, 'c'), 0)
    assert.equal(s?.terminated, true)
    assert.equal(s?.signal, 15)
    assert.equal(s?.slurmJobId, '77_0')
    assert.ok(!existsSync(join(c.dir, 'c', 'status', `0.json.tmp.${p.pid!}`)), 'no temporary file left')
  } finally {
    rmSync(c.dir, { recursive: true, force: true })
  }
})
