/**
 * Brings a blob into the agent's cache from the coordinator. While the coordinator is away (restarting, say) it
 * waits for the next session and goes on from the bytes it has; a partial download that does not add up is
 * discarded and fetched again from the start (three times at most); errors that another try cannot mend fail.
 */
import { rm, stat } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import type { PeerId } from '@libp2p/interface'
import { isMeshfarmError } from '../shared/util/errors.ts'
import type { BlobStore } from '../shared/files/blob-store.ts'
import type { MeshNode } from '../shared/net/mesh.ts'
import { downloadBlob } from '../shared/net/blob-protocol.ts'

export interface BlobFetchDeps {
  node: MeshNode
  cache: BlobStore
  /** The coordinator of the session now or the next one; null when the agent stops first. */
  nextCoordinator: (signal: AbortSignal) => Promise<PeerId | null>
  /** Fetches into `tmp`, going on from what it holds (default: whole from the coordinator; agents: blob-peer.ts). */
  download?: (coordinator: PeerId, hash: string, tmp: string, signal: AbortSignal) => Promise<void>
}

const FINAL = new Set(['NOT_FOUND', 'DISK', 'FORBIDDEN', 'UNSAFE_PATH'])
const MAX_MISMATCHES = 3

export async function fetchBlob (deps: BlobFetchDeps, hash: string, signal: AbortSignal): Promise<void> {
  let backoff = 250
  let mismatches = 0
  while (true) {
    signal.throwIfAborted()
    const coordinator = await deps.nextCoordinator(signal)
    if (coordinator == null) continue
    const tmp = deps.cache.downloadPath(hash)
    try {
      if (deps.download != null) await deps.download(coordinator, hash, tmp, signal)
      else await downloadBlob(deps.node, coordinator, hash, tmp, (await stat(tmp).catch(() => null))?.size ?? 0)
      await deps.cache.adopt(hash, tmp)
      return
    } catch (err) {
      const code = isMeshfarmError(err) ? err.code : null
      if (code === 'HASH_MISMATCH') {
        await rm(tmp, { force: true })
        if (++mismatches >= MAX_MISMATCHES) throw err
      } else if (code != null && FINAL.has(code)) {
        throw err
      }
      await sleep(backoff, undefined, { signal })
      backoff = Math.min(backoff * 2, 5000)
    }
  }
}
