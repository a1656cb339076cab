/**
 * The dashboard as a part of the coordinator process: its server over the coordinator's source, and the login
 * codes that `client.dashboard` hands to members it has already authenticated over the mesh.
 */
import type { Role } from '../../shared/protocol/data.ts'
import type { BlobStore } from '../../shared/files/blob-store.ts'
import type { CoordinatorCore } from '../core.ts'
import type { Store } from '../store.ts'
import type { EventFeed } from '../event-feed.ts'
import type { CommitLoop } from '../commit-loop.ts'
import { createLoginCodes } from './login-codes.ts'
import { coordinatorSource, dashboardRole } from './coordinator-source.ts'
import { startDashboard } from './server.ts'

export interface CoordinatorDashboardDeps {
  /** 0 picks a free port. */
  port: number
  core: CoordinatorCore
  store: Store
  feed: EventFeed
  loop: CommitLoop
  blobs: BlobStore
  rolesOf: (peerId: string) => readonly Role[]
  nameOf: (peerId: string) => string | undefined
  log: (line: string) => void
}

export interface CoordinatorDashboard {
  /** http://127.0.0.1:PORT/ */
  url: string
  /** A one-time login code for a member, as `client.dashboard` answers it (admin, submitter, else reader). */
  issueCode: (peerId: string, role: Role) => { url: string, code: string, expiresAt: number }
  close: () => Promise<void>
}

export async function startCoordinatorDashboard (deps: CoordinatorDashboardDeps): Promise<CoordinatorDashboard> {
  const codes = createLoginCodes()
  const source = coordinatorSource({ ...deps, codes })
  const dashboard = await startDashboard({ source, port: deps.port, log: deps.log })
  return {
    url: dashboard.url,
    issueCode: (peerId, role) => {
      const who = { peerId, name: deps.nameOf(peerId) ?? peerId.slice(-8), role: dashboardRole([role]) ?? 'reader' }
      deps.log(`dashboard: a login code for ${who.name} (${who.role})`)
      return { url: dashboard.url, ...codes.issue(who, Date.now()) }
    },
    close: async () => { await dashboard.close() }
  }
}
