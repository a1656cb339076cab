/**
 * A bridge process for the restart test, killed for real (SIGKILL) by the test at a chosen point of submitChunk:
 *   before-sbatch  the intent is on disk, sbatch never ran
 *   after-sbatch   sbatch answered with an id, the id is not in the log yet
 *   during-sbatch  sbatch is running (the test has stopped slurmctld), so it outlives this process as an orphan
 * Each sbatch it really starts is counted in COUNT_FILE. It prints one line when it reaches the point, then waits.
 * Usage: node --import tsx submit-child.ts DIR MODE COUNT_FILE BRIDGE_ID
 */
import { appendFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { createSlurmCli, spawnRunner, type CommandRunner } from '../../node/bridge/slurm/slurm-cli.ts'
import { IntentLog } from '../../node/bridge/slurm/intent-log.ts'
import { submitChunk } from '../../node/bridge/slurm/chunk-files.ts'

const [dir, mode, countFile, bridgeId] = process.argv.slice(2)
const forever = async (): Promise<never> => await new Promise(() => {})

const run: CommandRunner = async (command, args, opts) => {
  if (command !== 'sbatch') return await spawnRunner(command, args, opts)
  if (mode === 'before-sbatch') {
    console.log('at before-sbatch')
    return await forever()
  }
  appendFileSync(countFile, `sbatch from child ${process.pid}\n`)
  if (mode === 'during-sbatch') setTimeout(() => console.log('at during-sbatch'), 500)
  const r = await spawnRunner(command, args, opts)
  console.log(`at after-sbatch ${r.stdout.trim()}`)
  return await forever()
}

const log = IntentLog.open(join(dir, 'intents.log'))
const tasks = [0, 1, 2].map(i => {
  const folder = join(dir, mode, `t${i}`)
  mkdirSync(folder, { recursive: true })
  return { taskId: `${mode}:${i}`, folder, command: `echo done > result.txt` }
})
await submitChunk(createSlurmCli({ run }), log, {
  bridgeId, meshJobId: mode, chunk: 0, chunkDir: join(dir, mode, 'chunk'), tasks, resources: { cores: 1, memoryMb: 50, gpus: 0, timeLimitMs: 60_000 }
}, Date.now)
console.log('submitted (should have been killed before this)')
