/**
 * `submit` as the CLI runs it: the job is stored before its files are uploaded (its tasks start as their files
 * arrive), so Ctrl-C during the upload would leave a job whose remaining tasks wait for files that are not coming.
 * Ctrl-C then cancels that job, says so, and exits 130; while the job is being sent it waits for the job's id to
 * cancel it; before that (hashing) it just exits.
 */
import type { MeshClient, SubmitProgress } from '../shared/client/client.ts'
import type { ParsedJob } from '../shared/client/spec.ts'
import { errorMessage } from '../shared/util/errors.ts'

export async function submitInterruptibly (client: MeshClient, job: ParsedJob, opts: Parameters<MeshClient['submit']>[2] = {}): Promise<{ jobId: number, total: number }> {
  let phase: SubmitProgress['phase'] | null = null
  let stored: number | null = null
  let interrupted = false
  const cancelAndExit = (jobId: number): void => {
    process.stderr.write(`meshfarm: interrupted while uploading its files: cancelling job ${jobId}\n`)
    client.cancel(jobId).then(
      () => { process.exit(130) },
      err => { process.stderr.write(`meshfarm: could not cancel job ${jobId}: ${errorMessage(err)}\n`); process.exit(130) })
  }
  const onInterrupt = (): void => {
    if (stored != null) return cancelAndExit(stored)
    if (phase !== 'submitting') process.exit(130)
    interrupted = true // the coordinator may be storing the job right now: cancel it once its id is known
  }
  process.once('SIGINT', onInterrupt)
  try {
    return await client.submit(job, p => {
      phase = p.phase
      if (p.jobId == null || stored != null) return
      stored = p.jobId
      if (interrupted) cancelAndExit(stored)
    }, opts)
  } finally {
    process.off('SIGINT', onInterrupt)
  }
}
