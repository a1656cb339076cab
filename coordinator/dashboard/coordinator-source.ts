/**
 * The dashboard's view of a running coordinator: reads from the core's memory and the store, events from the
 * store and the event feed (published synchronously after each commit), and its one action through the commit
 * loop like every other change. Nothing here keeps state of its own but login codes and a cache of stderr tails
 * (committed blobs never change).
 */
import { open } from 'node:fs/promises'
import type { MeshEvent } from '../../shared/protocol/events.ts'
import type { Role } from '../../shared/protocol/data.ts'
import type { BlobStore } from '../../shared/files/blob-store.ts'
import { stderrTail } from '../../shared/report/summary.ts'
import type { CoordinatorCore } from '../core.ts'
import type { Store } from '../store.ts'
import type { EventFeed } from '../event-feed.ts'
import type { CommitLoop } from '../commit-loop.ts'
import type { LoginCodes } from './login-codes.ts'
import type { DashboardRole, DashboardSource } from './source.ts'

export interface CoordinatorSourceDeps {
  core: CoordinatorCore
  store: Store
  feed: EventFeed
  loop: CommitLoop
  blobs: BlobStore
  codes: LoginCodes
  /** The roles a peer holds on the access list now (none: not a member). */
  rolesOf: (peerId: string) => readonly Role[]
  now?: () => number
}

/** Bytes read from the end of a stderr blob for its tail. */
const TAIL_BYTES = 16 * 1024
const TAIL_CACHE = 2000

/** The dashboard role a member's mesh roles give: admin, submitter, or reader for any other member (agents). */
export function dashboardRole (roles: readonly Role[]): DashboardRole | null {
  if (roles.includes('admin')) return 'admin'
  if (roles.includes('submitter')) return 'submitter'
  return roles.length > 0 ? 'reader' : null
}

export function coordinatorSource (deps: CoordinatorSourceDeps): DashboardSource {
  const { core, store, feed, loop, blobs, codes } = deps
  const now = deps.now ?? Date.now
  const tails = new Map<string, string | null>()

  const readTail = async (hash: string, size: number): Promise<string | null> => {
    if (tails.has(hash)) return tails.get(hash)!
    if (!blobs.has(hash)) return null
    const f = await open(blobs.path(hash), 'r')
    try {
      const length = Math.min(size, TAIL_BYTES)
      const buf = Buffer.alloc(length)
      const { bytesRead } = await f.read(buf, 0, length, Math.max(0, size - length))
      const tail = stderrTail(buf.subarray(0, bytesRead))
      if (tails.size >= TAIL_CACHE) tails.delete(tails.keys().next().value!)
      tails.set(hash, tail === '' ? null : tail)
      return tails.get(hash)!
    } finally {
      await f.close()
    }
  }

  return {
    overview: t => ({ agents: core.peers(t), jobs: core.jobSummaries() }),
    tasks: (jobId, after, limit) => core.tasks(jobId, after, limit),
    eventsSince: (seq, limit) => store.eventsAfter(seq, limit),
    jobEvents: (jobId, seq, limit) => store.eventsAfter(seq, limit, jobId),
    lastSeq: () => store.lastEventSeq,
    // The feed hands over each committed batch; the dashboard's hub takes events one at a time.
    subscribe: listener => feed.subscribe((events: MeshEvent[]) => { for (const e of events) listener(e) }),
    cancelJob: async (jobId, who) => await loop.run(() => core.cancelJob(jobId, who.peerId, who.role === 'admin', now())),
    redeemLoginCode: (code, t) => codes.redeem(code, t),
    roleOf: peerId => dashboardRole(deps.rolesOf(peerId)),
    stderrTail: async (jobId, index) => {
      const ref = store.taskRecord(jobId, index)?.stderr
      if (ref == null || ref.size === 0) return null
      return await readTail(ref.hash, ref.size)
    }
  }
}
