/**
 * Streams for watchers: `client.events` (the event stream after a sequence number, optionally one job's, live
 * with `follow`) and `client.watch` (a job's progress: a summary after each committed batch that changed it,
 * until the job ends). Both follow the committed event stream; neither polls.
 */
import type { Channel } from '../shared/protocol/codec.ts'
import type { ClientReply, ClientRequest } from '../shared/protocol/messages.ts'
import { follow } from './event-feed.ts'
import type { ClientRequestDeps } from './client-requests.ts'

function closedPromise (ch: Channel<ClientRequest, ClientReply>): Promise<void> {
  return new Promise<void>(resolve => {
    if (ch.stream.status !== 'open') resolve()
    else ch.stream.addEventListener('close', () => { resolve() }, { once: true })
  })
}

export async function serveEvents (deps: ClientRequestDeps, req: Extract<ClientRequest, { t: 'client.events' }>, ch: Channel<ClientRequest, ClientReply>): Promise<void> {
  if (req.jobId != null) deps.core.getJob(req.jobId)
  const jobId = req.jobId
  const after = Math.min(req.after, deps.store.lastEventSeq)
  await ch.write({ t: 'reply.events', from: after, events: [] })
  await follow(deps.feed, deps.store, after, e => jobId == null || e.jobId === jobId, async events => {
    await ch.write({ t: 'reply.events', events })
    return true
  }, closedPromise(ch), req.follow)
  if (!req.follow) await ch.write({ t: 'reply.events', events: [] })
}

export async function serveWatch (deps: ClientRequestDeps, jobId: number, ch: Channel<ClientRequest, ClientReply>): Promise<void> {
  const first = deps.core.jobSummary(jobId)
  // Everything up to this event is in the first summary; what comes after brings a new one.
  const seen = deps.store.lastEventSeq
  await ch.write({ t: 'reply.progress', summary: first })
  if (first.state !== 'active') return
  await follow(deps.feed, deps.store, seen, e => e.jobId === jobId, async () => {
    const summary = deps.core.jobSummary(jobId)
    await ch.write({ t: 'reply.progress', summary })
    return summary.state === 'active'
  }, closedPromise(ch))
}
