/**
 * Runs INSIDE an allocation (as the batch script of a job the allocation test submits): reads the allocation the
 * way `--in-allocation` will, runs one task into it as an srun step, and writes what it saw to OUT as JSON.
 * Usage: node --import tsx step-child.ts OUT FOLDER
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createSlurmCli } from '../../node/bridge/slurm/slurm-cli.ts'
import { currentAllocation, runStep } from '../../node/bridge/slurm/allocation.ts'

const [out, folder] = process.argv.slice(2)
const alloc = await currentAllocation(createSlurmCli())
if (!alloc.ok) {
  writeFileSync(out, JSON.stringify({ error: alloc.error.message }))
  process.exit(1)
}
const step = runStep({
  jobId: alloc.value.jobId, cores: 1, memoryMb: 100, gpus: 0, folder, stdout: join(folder, 'stdout'), stderr: join(folder, 'stderr'),
  command: 'echo "step $SLURM_STEP_ID of $SLURM_JOB_ID on $(hostname -s)"; exit 5'
})
const result = await step.done
writeFileSync(out, JSON.stringify({ alloc: alloc.value, env: { SLURM_JOB_NODELIST: process.env.SLURM_JOB_NODELIST, SLURM_JOB_CPUS_PER_NODE: process.env.SLURM_JOB_CPUS_PER_NODE }, step: result }))
