/**
 * Receiving a job: its header, then its tasks (blocks of tasks, client.submit.block, or older clients' lists,
 * client.submit.tasks), each checked at its place in the job, then the end. The job is refused whole when its
 * files were not uploaded, or when no agent of the mesh could ever run one of its tasks (unless the submitter
 * keeps it for agents yet to come: `--allow-unplaceable`). Otherwise it is stored in one transaction, and
 * "submitted" is answered once that has committed.
 */
import type { Channel } from '../shared/protocol/codec.ts'
import type { ClientReply, ClientRequest, FileRef, TaskSpec } from '../shared/protocol/messages.ts'
import { checkFileRef, checkTaskBlock, checkTaskSpec } from '../shared/protocol/schema.ts'
import { fieldAt, toBlock, type TaskBlock } from '../shared/protocol/task-blocks.ts'
import { checkRelativeName } from '../shared/files/safe-path.ts'
import { MeshfarmError } from '../shared/util/errors.ts'
import { unplaceableReason, type Demand } from './why.ts'
import type { ClientRequestDeps } from './client-requests.ts'

export async function receiveSubmission (deps: ClientRequestDeps, peer: string, begin: Extract<ClientRequest, { t: 'client.submit.begin' }>,
  ch: Channel<ClientRequest, ClientReply>): Promise<void> {
  const header = {
    ...begin.job,
    shared: begin.job.shared.map((f, i) => checkFileRef(f, `shared[${i}]`)),
    specFile: checkRelativeName(begin.job.specFile.split('/').pop() ?? 'job.yaml', 'specFile')
  }
  const blocks: TaskBlock[] = []
  let received = 0
  while (true) {
    const msg = await ch.expect()
    if (msg.t === 'client.submit.end') break
    if (msg.t === 'client.submit.block') {
      const { t: _t, ...block } = msg
      blocks.push(checkTaskBlock(block, received, begin.total))
      received += block.count
      continue
    }
    if (msg.t !== 'client.submit.tasks') throw new MeshfarmError('PROTOCOL', `unexpected ${msg.t} during a submission`)
    const specs: TaskSpec[] = []
    for (const raw of msg.tasks) {
      if (received + specs.length >= begin.total) throw new MeshfarmError('PROTOCOL', `more tasks than the announced ${begin.total}`)
      specs.push(checkTaskSpec(raw, received + specs.length))
    }
    if (specs.length > 0) blocks.push(toBlock(specs, received))
    received += specs.length
  }
  if (received !== begin.total) throw new MeshfarmError('PROTOCOL', `received ${received} of ${begin.total} tasks`)
  const missing = new Set<string>()
  for (const f of header.shared) if (!deps.blobs.has(f.hash)) missing.add(f.name)
  for (const f of inputsOf(blocks)) if (!deps.blobs.has(f.hash)) missing.add(f.name)
  // A job whose files follow (the submitter uploads them after this) waits for them task by task (input-wait.ts).
  if (missing.size > 0 && header.inputsToFollow !== true) throw new MeshfarmError('FILE_MISSING', `input files were not uploaded: ${[...missing].slice(0, 5).join(', ')}`)
  if (header.allowUnplaceable !== true) {
    const why = unplaceableReason(deps.core, demandsOf(blocks))
    if (why != null) throw new MeshfarmError('SPEC_INVALID', `${why}; nothing was submitted (--allow-unplaceable keeps such tasks queued for agents yet to come)`)
  }
  const jobId = await deps.loop.run(() => deps.core.submitBlocks(peer, header, blocks, Date.now()))
  deps.log(`coordinator: job ${jobId} '${header.name}' with ${received} tasks from ${peer.slice(-8)}`)
  await ch.write({ t: 'reply.submitted', jobId, total: received })
}

/** Every input file the tasks name (a block's shared list once). */
function * inputsOf (blocks: TaskBlock[]): Generator<FileRef> {
  for (const b of blocks) {
    if (b.base.inputs != null) yield * b.base.inputs
    for (const list of b.cols.inputs ?? []) if (list != null) yield * list
  }
}

/** Each task's demand, lazily (a block whose tasks ask alike says so once). */
function * demandsOf (blocks: TaskBlock[]): Generator<Demand> {
  for (const b of blocks) {
    const uniform = b.cols.cores == null && b.cols.gpus == null && b.cols.memoryMb == null && b.cols.timeoutMs == null && b.cols.constraints == null
    for (let i = b.first; i < b.first + b.count; i = uniform ? b.first + b.count : i + 1) {
      yield {
        index: i, name: fieldAt(b, 'name', i) || `task-${i}`, cores: fieldAt(b, 'cores', i)!, gpus: fieldAt(b, 'gpus', i)!,
        memoryMb: fieldAt(b, 'memoryMb', i)!, timeoutMs: fieldAt(b, 'timeoutMs', i)!, constraints: fieldAt(b, 'constraints', i)!
      }
    }
  }
}
