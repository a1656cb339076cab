/**
 * What the dashboard reads and may change: the coordinator implements this over its store, tests over an
 * in-memory mesh. The dashboard never touches the coordinator otherwise, so pages coming and going cannot
 * affect the work.
 */
import type { AgentSummary, JobSummary, TaskRecord } from '../../shared/protocol/messages.ts'
import type { MeshEvent } from '../../shared/protocol/events.ts'

export type DashboardRole = 'reader' | 'submitter' | 'admin'

export const DASHBOARD_ROLES: readonly DashboardRole[] = ['reader', 'submitter', 'admin']

export interface DashboardUser {
  peerId: string
  name: string
  role: DashboardRole
}

export interface DashboardSource {
  overview (now: number): { agents: AgentSummary[], jobs: JobSummary[] }
  /** Task records of one job (committed ones and live ones), in index order, paged. */
  tasks (jobId: number, after: number, limit: number): { tasks: TaskRecord[], next: number | null }
  /** Events after `seq` (exclusive), oldest first, at most `limit`. */
  eventsSince (seq: number, limit: number): MeshEvent[]
  /** Called for every new event; returns an unsubscribe function. */
  subscribe (listener: (e: MeshEvent) => void): () => void
  /**
   * Actions a logged-in person may take, checked against their role by the server before calling; resolves
   * once the change is committed. A MeshfarmError NOT_FOUND or FORBIDDEN is answered 404 or 403.
   */
  cancelJob (jobId: number, who: { peerId: string, role: DashboardRole }): Promise<number>
  /** Exchanges a one-time login code for who it was issued to; null when unknown, used or expired. */
  redeemLoginCode (code: string, now: number): DashboardUser | null
  /**
   * The newest event's seq (0 when none). Optional: without it the server finds it once by paging
   * `eventsSince` from 0, which is slow on a long history; the coordinator should give it (max(seq) of its store).
   */
  lastSeq? (): number
  /** One job's events after `seq`, oldest first (optional): the timeline draws earlier attempts from them. */
  jobEvents? (jobId: number, seq: number, limit: number): MeshEvent[]
  /**
   * The end of a failed task's stderr when its record does not carry the bytes (optional; the coordinator keeps
   * them in its blob store). null when there is none.
   */
  stderrTail? (jobId: number, index: number): Promise<string | null>
  /**
   * The person's role now (optional): null when they are no longer a member, which ends their sessions; a role
   * changed since login applies at once. Without it, the role given at login stands for the session.
   */
  roleOf? (peerId: string): DashboardRole | null
}
