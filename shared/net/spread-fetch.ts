/**
 * Fetching a large shared blob in chunks from whichever peers hold them (the I/O around chunk-plan.ts). The
 * coordinator names the peers that hold or are fetching the blob and sends the chunk manifest; every chunk is
 * checked against it as it arrives (a peer whose chunk does not match is never asked again, the chunk is fetched
 * elsewhere), a peer that goes away costs the chunks it had in flight one more try, and the whole file is hashed
 * against the blob's hash before the caller adopts it. While it runs, the download is listed in `downloads`, so
 * that this peer serves the chunks it already has to others.
 */
import type { PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { open } from 'node:fs/promises'
import { MeshfarmError, errorMessage, isMeshfarmError } from '../util/errors.ts'
import type { BlobReply } from '../protocol/messages.ts'
import { chunkSpan, decodeManifest, type Manifest } from '../files/manifest.ts'
import {
  COORDINATOR, chunkDone, fetchEnded, fetchStarted, isComplete, newPlan, nextFetches, sourceFailed,
  DEFAULT_LIMITS, type ChunkPlan, type ChunkSource, type PlanLimits
} from '../files/chunk-plan.ts'
import { askBlob, fetchRange, type BlobTransferOptions } from './blob-protocol.ts'
import { bulkEngine } from './bulk/engine.ts'
import type { MeshNode } from './mesh.ts'

export type SourcesReply = Extract<BlobReply, { t: 'blob.sources.reply' }>

/** A download in progress, served to other peers chunk by chunk. */
export interface Download {
  path: string
  size: number
  manifest: Manifest
  plan: ChunkPlan
}

export interface SpreadDeps {
  node: MeshNode
  coordinator: PeerId
  log: (line: string) => void
  /** Downloads in progress on this peer (its blob service serves their chunks). */
  downloads: Map<string, Download>
  /** Asks the coordinator again who holds the blob (default: blob.sources). */
  sources?: () => Promise<SourcesReply>
  limits?: PlanLimits
  /** How often peers' chunk maps and the coordinator's list of sources are asked again. */
  refreshMs?: number
  /** A chunk fetch that takes longer than this is given up (a peer that vanished without closing). */
  chunkTimeoutMs?: number
  transfer?: BlobTransferOptions
}

export interface SpreadResult {
  size: number
  /** Bytes that came from the coordinator, and from peers. */
  fromCoordinator: number
  fromPeers: number
}

/**
 * Fetches `hash` into `dest` (emptied first) following `first` (a sources reply with a manifest). Resolves once
 * the file is complete, hash-checked and fsynced; rejects when the coordinator itself cannot send a chunk.
 */
export async function fetchSpread (deps: SpreadDeps, hash: string, first: SourcesReply, dest: string, signal?: AbortSignal): Promise<SpreadResult> {
  if (first.manifest == null) throw new MeshfarmError('PROTOCOL', `blob ${hash.slice(0, 12)}: no chunk manifest to spread with`)
  const manifest = decodeManifest(first.manifest, first.size, `blob ${hash.slice(0, 12)}: manifest`)
  const plan = newPlan(Math.ceil(manifest.size / manifest.chunkBytes), first.start)
  const sources = new Map<string, ChunkSource>([[COORDINATOR, { id: COORDINATOR, have: 'all', busy: 0, failures: 0, restUntil: 0 }]])
  const peerIds = new Map<string, PeerId>()
  const limits = deps.limits ?? DEFAULT_LIMITS
  const refreshMs = deps.refreshMs ?? 400
  const result: SpreadResult = { size: manifest.size, fromCoordinator: 0, fromPeers: 0 }
  const fh = await open(dest, 'w', 0o600)
  await fh.truncate(manifest.size)
  await fh.close()
  deps.downloads.set(hash, { path: dest, size: manifest.size, manifest, plan })

  const addPeers = async (reply: SourcesReply): Promise<void> => {
    for (const p of reply.peers) {
      if (p.peerId === deps.node.peerId.toString() || sources.has(p.peerId)) continue
      try {
        const id = peerIdFromString(p.peerId)
        await deps.node.peerStore.merge(id, { multiaddrs: p.addrs.map(a => multiaddr(a)) })
        peerIds.set(p.peerId, id)
        sources.set(p.peerId, { id: p.peerId, have: new Uint8Array(0), busy: 0, failures: 0, restUntil: 0 })
      } catch (err) {
        deps.log(`spread: peer ${p.peerId.slice(-8)} skipped: ${errorMessage(err)}`)
      }
    }
  }
  const askSources = deps.sources ?? (async () => await askBlob(deps.node, deps.coordinator, { t: 'blob.sources', hash }, 'blob.sources.reply', signal))

  // Ends the fetches still in flight when this download ends early.
  const stop = new AbortController()
  let wake: () => void = () => {}
  let failure: unknown = null
  // In-order bytes are hashed as they land; whatever came out of order is read back at the end.
  const engine = bulkEngine()
  const session = await engine.digestOpen()
  const fetchRun = async (chunk: number, count: number, source: ChunkSource): Promise<void> => {
    const fromCoordinator = source.id === COORDINATOR
    const { offset } = chunkSpan(chunk, manifest.size, manifest.chunkBytes)
    const last = chunkSpan(chunk + count - 1, manifest.size, manifest.chunkBytes)
    const length = last.offset + last.length - offset
    const peer = fromCoordinator ? deps.coordinator : peerIds.get(source.id)!
    const timeout = AbortSignal.timeout((deps.chunkTimeoutMs ?? 30_000) * count)
    try {
      // Chunks from peers are checked against the manifest; the coordinator's are its verified copy, and the
      // whole file is checked at the end in any case.
      await fetchRange(deps.node, peer, hash, offset, length, {
        file: dest,
        position: offset,
        // Only the coordinator's bytes are hashed as they land: a peer's are checked per chunk at its end, and a
        // refused chunk must not have gone into the whole file's digest (it is read back at the end instead).
        feed: fromCoordinator ? session : undefined,
        chunks: { chunkBytes: manifest.chunkBytes, first: chunk, expected: fromCoordinator ? null : manifest.hashes.subarray(chunk * 32, (chunk + count) * 32) },
        onChunk: i => {
          if (stop.signal.aborted || plan.done[i] === 1) return
          chunkDone(plan, source, i)
          const n = chunkSpan(i, manifest.size, manifest.chunkBytes).length
          if (fromCoordinator) result.fromCoordinator += n
          else result.fromPeers += n
        }
      }, { ...deps.transfer, signal: AbortSignal.any([stop.signal, timeout, ...(signal != null ? [signal] : [])]) })
    } catch (err) {
      if (stop.signal.aborted || signal?.aborted === true) return
      const tampered = isMeshfarmError(err) && err.code === 'HASH_MISMATCH'
      sourceFailed(source, Date.now(), tampered)
      const who = fromCoordinator ? 'the coordinator' : `peer ${source.id.slice(-8)}`
      const what = count === 1 ? `chunk ${chunk}` : `chunks ${chunk}-${chunk + count - 1}`
      deps.log(tampered
        ? `spread: ${what} of ${hash.slice(0, 12)} from ${who} does not match the manifest; refused, fetched elsewhere, ${who} not asked again`
        : `spread: ${what} of ${hash.slice(0, 12)} from ${who} failed (${errorMessage(err)}); it will be fetched again`)
      if (fromCoordinator && source.failures >= 5) failure ??= err
    } finally {
      fetchEnded(plan, source, chunk, count)
    }
  }

  let finalized = false
  let lastSources = Date.now()
  let lastHave = 0
  try {
    await addPeers(first)
    while (!isComplete(plan)) {
      signal?.throwIfAborted()
      if (failure != null) throw failure
      const now = Date.now()
      if (now - lastSources >= refreshMs * 3) {
        lastSources = now
        await askSources().then(addPeers, err => { deps.log(`spread: asking the coordinator for sources: ${errorMessage(err)}`) })
      }
      if (now - lastHave >= refreshMs) {
        lastHave = now
        await Promise.all([...sources.values()].filter(s => s.have !== 'all' && s.restUntil <= now).map(async s => {
          try {
            const r = await askBlob(deps.node, peerIds.get(s.id)!, { t: 'blob.have', hash }, 'blob.have.reply', AbortSignal.timeout(5000))
            s.have = r.complete ? 'all' : r.chunks
            s.coming = r.coming
          } catch (err) {
            sourceFailed(s, Date.now(), false)
            if (s.failures === 1) deps.log(`spread: peer ${s.id.slice(-8)} does not answer (${errorMessage(err)}); fetched elsewhere`)
          }
        }))
      }
      const settled = new Promise<void>(resolve => { wake = resolve })
      for (const { chunk, count, source } of nextFetches(plan, [...sources.values()], Date.now(), limits)) {
        const s = sources.get(source)!
        fetchStarted(plan, s, chunk, count)
        void fetchRun(chunk, count, s).catch(err => { failure ??= err }).finally(() => { wake() })
      }
      await Promise.race([settled, new Promise(resolve => setTimeout(resolve, refreshMs))])
    }
    // Every chunk is in; the whole file must match the blob's hash too.
    await engine.digestCatchup(session, dest, manifest.size)
    const { hex } = await engine.digestFinal(session)
    finalized = true
    if (hex !== hash) throw new MeshfarmError('HASH_MISMATCH', `${dest}: content hashes to ${hex.slice(0, 12)}, expected ${hash.slice(0, 12)}`)
    const out = await open(dest, 'r+')
    try {
      await out.sync()
    } finally {
      await out.close()
    }
    return result
  } finally {
    deps.downloads.delete(hash)
    stop.abort(new MeshfarmError('TIMEOUT', 'download ended'))
    if (!finalized) await engine.digestFinal(session).catch(() => {})
  }
}
