/**
 * Receiving a job: its header, then its tasks in chunks (each checked at its place in the job), then the end.
 * The job is refused whole when its files were not uploaded, or when no agent of the mesh could ever run one
 * of its tasks (unless the submitter keeps it for agents yet to come: `--allow-unplaceable`). Otherwise it is
 * stored in one transaction, and "submitted" is answered once that has committed.
 */
import type { Channel } from '../shared/protocol/codec.ts'
import type { ClientReply, ClientRequest, TaskSpec } from '../shared/protocol/messages.ts'
import { checkFileRef, checkTaskSpec } from '../shared/protocol/schema.ts'
import { checkRelativeName } from '../shared/files/safe-path.ts'
import { MeshfarmError } from '../shared/util/errors.ts'
import { unplaceableReason } from './why.ts'
import type { ClientRequestDeps } from './client-requests.ts'

export async function receiveSubmission (deps: ClientRequestDeps, peer: string, begin: Extract<ClientRequest, { t: 'client.submit.begin' }>,
  ch: Channel<ClientRequest, ClientReply>): Promise<void> {
  const header = {
    ...begin.job,
    shared: begin.job.shared.map((f, i) => checkFileRef(f, `shared[${i}]`)),
    specFile: checkRelativeName(begin.job.specFile.split('/').pop() ?? 'job.yaml', 'specFile')
  }
  const tasks: TaskSpec[] = []
  while (true) {
    const msg = await ch.expect()
    if (msg.t === 'client.submit.end') break
    if (msg.t !== 'client.submit.tasks') throw new MeshfarmError('PROTOCOL', `unexpected ${msg.t} during a submission`)
    for (const raw of msg.tasks) {
      if (tasks.length >= begin.total) throw new MeshfarmError('PROTOCOL', `more tasks than the announced ${begin.total}`)
      tasks.push(checkTaskSpec(raw, tasks.length))
    }
  }
  if (tasks.length !== begin.total) throw new MeshfarmError('PROTOCOL', `received ${tasks.length} of ${begin.total} tasks`)
  const missing = new Set<string>()
  for (const f of header.shared) if (!deps.blobs.has(f.hash)) missing.add(f.name)
  for (const t of tasks) for (const f of t.inputs) if (!deps.blobs.has(f.hash)) missing.add(f.name)
  if (missing.size > 0) throw new MeshfarmError('FILE_MISSING', `input files were not uploaded: ${[...missing].slice(0, 5).join(', ')}`)
  if (header.allowUnplaceable !== true) {
    const why = unplaceableReason(deps.core, tasks)
    if (why != null) throw new MeshfarmError('SPEC_INVALID', `${why}; nothing was submitted (--allow-unplaceable keeps such tasks queued for agents yet to come)`)
  }
  const jobId = await deps.loop.run(() => deps.core.submit(peer, header, tasks, Date.now()))
  deps.log(`coordinator: job ${jobId} '${header.name}' with ${tasks.length} tasks from ${peer.slice(-8)}`)
  await ch.write({ t: 'reply.submitted', jobId, total: tasks.length })
}
